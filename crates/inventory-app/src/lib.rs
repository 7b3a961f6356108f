//! The inventory service: wires the domain to PostgreSQL, HTTP and Kafka,
//! runs the background work, and stops it all in order.

pub mod cli;
pub mod settings;
pub mod tasks;
pub mod telemetry;
pub mod token;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use inventory_domain::{AvailabilityConfig, Clock, InventoryService, OutboxStore, ServiceConfig};
use inventory_http::{ApiState, Readiness};
use inventory_kafka::{ConsumerHealth, KafkaPublisher};
use inventory_postgres::{CachedRepository, PgRepository, StockCache};
use tokio_util::sync::CancellationToken;

pub use settings::Settings;
use tasks::{Stage, TaskResult, Tasks};

/// A boxed error with a readable message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Real time.
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// The service as the app runs it.
pub type Service = InventoryService<CachedRepository<PgRepository>, SystemClock>;

/// Kafka is ready when the broker answers and the saga consumes.
struct KafkaReadiness(Option<(KafkaPublisher, Arc<ConsumerHealth>, inventory_kafka::KafkaConfig)>);

#[async_trait]
impl Readiness for KafkaReadiness {
    async fn check(&self) -> Vec<(&'static str, Result<(), String>)> {
        let Some((publisher, health, config)) = &self.0 else {
            return Vec::new();
        };
        let result = if inventory_kafka::broker_reachable(&publisher.producer(), Duration::from_secs(2)).await {
            health.status()
        } else {
            // Say why when librdkafka knows (a refused password, a failed TLS handshake).
            let config = config.clone();
            let problem = tokio::task::spawn_blocking(move || {
                inventory_kafka::connection_problem(&config, Duration::from_millis(1500))
            })
            .await
            .ok()
            .flatten();
            Err(match problem {
                Some(problem) => format!("the broker does not answer: {problem}"),
                None => "the broker does not answer".to_owned(),
            })
        };
        vec![("kafka", result)]
    }
}

/// A built, not yet running, service.
pub struct Application {
    http_addr: SocketAddr,
    ops_addr: Option<SocketAddr>,
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
    /// Stops what writes to the database (consumer, sweeper, purge, gauges).
    stop_writers: CancellationToken,
    /// Stops the relay, after the writers, so its last drain sees their last commit.
    stop_relay: CancellationToken,
    tasks: Tasks,
    publisher: Option<KafkaPublisher>,
    saga: Option<Arc<ConsumerHealth>>,
    service: Service,
}

impl Application {
    /// Connects, binds and starts nothing yet but the HTTP listener.
    pub async fn build(mut settings: Settings) -> Result<Self, BoxError> {
        settings.prepare()?;
        let database_url = settings.database.url();
        if settings.migrate_on_start {
            let applied = inventory_postgres::run_migrations(database_url).await?;
            tracing::info!(?applied, "migrations applied");
        }
        let pool_config = settings.database.pool();
        let repo = PgRepository::new(inventory_postgres::pool(database_url, &pool_config), &pool_config);
        let config = ServiceConfig {
            max_attempts: settings.max_conflict_retries,
            hold_ttl: Duration::from_secs(settings.hold_ttl_secs),
            availability: AvailabilityConfig {
                enabled: settings.availability_events_enabled,
                default_low_stock_threshold: settings.low_stock_threshold_default,
            },
            ..ServiceConfig::default()
        };
        let cache = Arc::new(StockCache::new(settings.database.cache()));
        let cached = CachedRepository::new(Arc::new(repo.clone()), Arc::clone(&cache));
        let service = InventoryService::new(Arc::new(cached), Arc::new(SystemClock), config);
        let shutdown = CancellationToken::new();
        let stop_writers = CancellationToken::new();
        let stop_relay = CancellationToken::new();
        let mut tasks = Tasks::default();
        if cache.config().enabled {
            tasks.spawn(
                "stock cache listener",
                Stage::Writing,
                until_stopped(
                    inventory_postgres::run_listener(database_url.to_owned(), Arc::clone(&cache), stop_writers.clone()),
                    stop_writers.clone(),
                ),
            );
        }

        let mut saga = None;
        let kafka_config = settings.kafka.config();
        let publisher = match kafka_config.clone() {
            Some(kafka) => {
                inventory_kafka::ensure_topics(&kafka).await?;
                let publisher = KafkaPublisher::new(&kafka)?;
                let health = ConsumerHealth::new();
                tasks.spawn(
                    "saga consumer",
                    Stage::Writing,
                    until_stopped(
                        inventory_kafka::run_saga(
                            kafka.clone(),
                            service.clone(),
                            publisher.clone(),
                            Arc::clone(&health),
                            stop_writers.clone(),
                        ),
                        stop_writers.clone(),
                    ),
                );
                saga = Some(health);
                tasks.spawn(
                    "outbox relay",
                    Stage::Relaying,
                    until_stopped(
                        inventory_kafka::run_relay(
                            Arc::new(repo.clone()),
                            Arc::new(publisher.clone()),
                            repo.outbox_notifier(),
                            Duration::from_millis(250),
                            stop_relay.clone(),
                        ),
                        stop_relay.clone(),
                    ),
                );
                tracing::info!(bootstrap = %kafka.bootstrap_servers, "saga enabled");
                Some(publisher)
            }
            None => {
                tracing::warn!("KAFKA_BOOTSTRAP_SERVERS is not set: the saga is off, only the REST API runs");
                None
            }
        };
        tasks.spawn(
            "expiry sweeper",
            Stage::Writing,
            until_stopped(
                sweep_expired(service.clone(), settings.expiry_sweep_interval_ms, stop_writers.clone()),
                stop_writers.clone(),
            ),
        );
        tasks.spawn(
            "retention purge",
            Stage::Writing,
            until_stopped(
                purge(
                    repo.clone(),
                    Retention {
                        hours: settings.retention_hours,
                        reservation_days: settings.reservation_retention_days,
                    },
                    stop_writers.clone(),
                ),
                stop_writers.clone(),
            ),
        );
        let readiness = Arc::new(KafkaReadiness(
            publisher
                .clone()
                .zip(saga.clone())
                .zip(kafka_config)
                .map(|((p, h), c)| (p, h, c)),
        ));
        tasks.spawn(
            "gauges",
            Stage::Writing,
            until_stopped(
                gauges(
                    repo.clone(),
                    service.clone(),
                    Arc::clone(&readiness),
                    pool_config.max_size,
                    stop_writers.clone(),
                ),
                stop_writers.clone(),
            ),
        );

        let listener = TcpListener::bind(settings.http_addr)?;
        let http_addr = listener.local_addr()?;
        let handle = telemetry::metrics_handle();
        let auth = settings.jwt.auth()?;
        if let Some(jwks) = &auth.jwks {
            // The first fetch now, so the first admin request does not wait for it; an identity
            // provider that is down does not stop the service (its keys are fetched when it is back).
            if let Err(e) = jwks.refresh().await {
                tracing::warn!(error = %e, "cannot fetch the identity provider's keys yet; tokens are refused until it answers");
            }
        }
        let state = ApiState {
            service: Arc::new(service.clone()),
            auth,
            readiness,
            metrics: Arc::new(move || handle.render()),
            writes: Arc::default(),
        };
        let workers = if settings.http_workers == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            settings.http_workers
        };
        let ops = settings.ops_addr.map(TcpListener::bind).transpose()?;
        let ops_addr = ops.as_ref().map(TcpListener::local_addr).transpose()?;
        let tuning = inventory_http::ServerTuning {
            workers,
            keep_alive: Duration::from_secs(settings.http_keep_alive_secs),
        };
        let server = inventory_http::server(state, listener, ops, tuning)?;
        tracing::info!(%http_addr, "HTTP API listening");
        if let Some(ops_addr) = ops_addr {
            tracing::info!(%ops_addr, "metrics and health listening");
        }
        Ok(Self {
            http_addr,
            ops_addr,
            server,
            shutdown,
            stop_writers,
            stop_relay,
            tasks,
            publisher,
            saga,
            service,
        })
    }

    /// The saga consumer's health (when Kafka is configured): what readiness
    /// reports, and a fault-injection hook for tests.
    pub fn saga_health(&self) -> Option<Arc<ConsumerHealth>> {
        self.saga.clone()
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where `/metrics` and health listen apart from the API, if `OPS_ADDR` is set.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// Cancel it to stop the service gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The use cases (tests read through them).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until the shutdown token is cancelled, then stops HTTP, lets the
    /// consumer finish its batch and commit offsets, drains the outbox and
    /// flushes the producer, each within a time limit. A background task that
    /// ends before that stops the service the same way, and is returned as the error.
    pub async fn run(mut self) -> Result<(), BoxError> {
        let handle = self.server.handle();
        let server = self.server;
        self.tasks.spawn("HTTP server", Stage::Serving, async move {
            server.await.map_err(|e| format!("HTTP server failed: {e}"))
        });
        let outcome = self.tasks.supervise(&self.shutdown).await;
        tracing::info!("shutting down");
        if tokio::time::timeout(Duration::from_secs(15), handle.stop(true))
            .await
            .is_err()
        {
            tracing::warn!("HTTP did not stop within 15 s");
        }
        self.tasks.stopped(Stage::Serving, Duration::from_secs(1)).await;
        // The consumer finishes its batch and commits offsets; then nothing writes any more.
        self.stop_writers.cancel();
        for name in self.tasks.stopped(Stage::Writing, Duration::from_secs(20)).await {
            tracing::warn!(task = name, "did not stop within 20 s");
        }
        // Only now does the relay drain for the last time: it sees every commit.
        self.stop_relay.cancel();
        if !self
            .tasks
            .stopped(Stage::Relaying, Duration::from_secs(20))
            .await
            .is_empty()
        {
            tracing::warn!("the outbox relay did not stop within 20 s");
        }
        if let Some(publisher) = self.publisher
            && let Err(e) = publisher.flush(Duration::from_secs(10))
        {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
        tracing::info!("stopped");
        outcome.map_err(BoxError::from)
    }
}

/// A background loop that is meant to run until `stop`: returning before it is a failure.
async fn until_stopped(task: impl std::future::Future<Output = ()>, stop: CancellationToken) -> TaskResult {
    task.await;
    if stop.is_cancelled() {
        Ok(())
    } else {
        Err("it returned before it was asked to stop".to_owned())
    }
}

async fn sweep_expired(service: Service, interval_ms: u64, shutdown: CancellationToken) {
    let interval = Duration::from_millis(interval_ms.max(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        loop {
            match service.expire_holds(500).await {
                Ok(0) => break,
                Ok(n) => {
                    metrics::counter!("inventory_holds_expired_total").increment(n as u64);
                    tracing::info!(released = n, "expired holds released");
                    if n < 500 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %inventory_domain::ErrorChain(&e), "expiry sweep failed");
                    break;
                }
            }
        }
    }
}

/// How long what the purge deletes is kept.
struct Retention {
    /// Processed events, published outbox rows, idempotency keys.
    hours: u64,
    /// Settled reservations; 0 keeps them.
    reservation_days: u64,
}

async fn purge(repo: PgRepository, retention: Retention, shutdown: CancellationToken) {
    loop {
        let before = Utc::now() - chrono::Duration::hours(retention.hours.min(100_000) as i64);
        match repo.purge(before).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "purged old processed-event and outbox rows"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %inventory_domain::ErrorChain(&e), "purge failed"),
        }
        if retention.reservation_days > 0 {
            let before = Utc::now() - chrono::Duration::days(retention.reservation_days.min(100_000) as i64);
            match repo.purge_settled_reservations(before).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "purged old settled reservations"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %inventory_domain::ErrorChain(&e), "reservation purge failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn gauges(
    repo: PgRepository,
    service: Service,
    kafka: Arc<KafkaReadiness>,
    pool_max: u32,
    shutdown: CancellationToken,
) {
    let process = metrics_process::Collector::default();
    process.describe();
    metrics::gauge!("db_pool_max_connections").set(f64::from(pool_max));
    loop {
        process.collect();
        let state = repo.pool().state();
        metrics::gauge!("db_pool_connections").set(f64::from(state.connections));
        metrics::gauge!("db_pool_idle_connections").set(f64::from(state.idle_connections));
        let cache = service.repository().cache().stats();
        metrics::counter!("stock_cache_hits_total").absolute(cache.hits);
        metrics::counter!("stock_cache_misses_total").absolute(cache.misses);
        metrics::counter!("stock_cache_fills_refused_total").absolute(cache.refused);
        metrics::counter!("stock_cache_notices_total").absolute(cache.notices);
        metrics::gauge!("stock_cache_products").set(cache.size as f64);
        metrics::gauge!("stock_cache_fresh").set(if service.repository().cache().is_fresh() {
            1.0
        } else {
            0.0
        });
        let m = service.metrics();
        metrics::counter!("inventory_optimistic_conflicts_total").absolute(m.conflicts());
        metrics::counter!("inventory_optimistic_retries_total").absolute(m.retries());
        metrics::counter!("inventory_optimistic_retries_exhausted_total").absolute(m.exhausted());
        if let Ok(backlog) = repo.backlog().await {
            metrics::gauge!("inventory_outbox_backlog").set(backlog.pending as f64);
            metrics::gauge!("inventory_outbox_relay_lag_seconds").set(backlog.oldest_age_ms as f64 / 1000.0);
        }
        // The readiness verdict as a series, so an alert sees what the probes see.
        use inventory_domain::InventoryRepository as _;
        let database = repo.ping().await.map_err(|e| e.to_string());
        for (check, result) in std::iter::once(("database", database)).chain(kafka.check().await) {
            metrics::gauge!("inventory_ready", "check" => check).set(if result.is_ok() { 1.0 } else { 0.0 });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
