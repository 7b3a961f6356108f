//! The service under test, in-process, on port 0, with its own schema and topics.

use std::net::SocketAddr;
use std::sync::Arc;

use inventory_app::settings::{DatabaseSettings, JwtSettings, KafkaSettings, Settings};
use inventory_app::{Application, Service};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::TestDb;
use crate::kafka::Topics;
use crate::stack;

/// The HS256 secret test tokens are signed with.
pub const TEST_JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256";

/// Knobs a test may turn.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Run the saga (needs Kafka).
    pub kafka: bool,
    /// Hold time to live.
    pub hold_ttl_secs: u64,
    /// Expiry sweep interval.
    pub sweep_ms: u64,
    /// Verification key configured.
    pub jwt: bool,
    /// Records per transaction.
    pub batch_max: usize,
    /// Pool size.
    pub pool_max: u32,
    /// Required token issuer.
    pub jwt_issuer: Option<String>,
    /// Required token audience.
    pub jwt_audience: Option<String>,
    /// RS256/ES256 public key file instead of the HS256 secret.
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// Another broker than the stack's (a test's own).
    pub kafka_bootstrap: Option<String>,
    /// The identity provider's JWKS URL (turns `jwt` off).
    pub jwt_jwks_url: Option<String>,
    /// Find the JWKS URL by OpenID Connect discovery from `jwt_issuer`.
    pub jwt_oidc_discovery: bool,
    /// Publish availability events. Off by default here: the saga's tests read the inventory
    /// topic record by record, and availability events (keyed by product) have tests of their own.
    pub availability_events: bool,
    /// LOW_STOCK_THRESHOLD_DEFAULT.
    pub low_stock_threshold_default: Option<u32>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            kafka: true,
            hold_ttl_secs: 1800,
            sweep_ms: 5000,
            jwt: true,
            batch_max: 500,
            pool_max: 8,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_public_key_file: None,
            kafka_bootstrap: None,
            jwt_jwks_url: None,
            jwt_oidc_discovery: false,
            availability_events: false,
            low_stock_threshold_default: None,
        }
    }
}

/// A running service.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where `/metrics` and health listen apart, when `ops_addr` was set.
    pub ops_addr: Option<SocketAddr>,
    /// Its topics and group.
    pub topics: Topics,
    /// Its use cases, to arrange and check state.
    pub service: Service,
    /// The saga consumer's health, when Kafka is on.
    pub saga: Option<std::sync::Arc<inventory_kafka::ConsumerHealth>>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Settings for an app on `db` and `topics`.
pub fn settings(db: &TestDb, topics: &Topics, options: &AppOptions) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().expect("address"),
        ops_addr: None,
        http_workers: 2,
        http_keep_alive_secs: inventory_app::settings::DEFAULT_HTTP_KEEP_ALIVE_SECS,
        database: DatabaseSettings {
            db_pool_max_size: options.pool_max,
            db_pool_min_idle: 1,
            db_pool_acquire_timeout_ms: 5000,
            ..DatabaseSettings::new(db.url.clone())
        },
        kafka: KafkaSettings {
            kafka_bootstrap_servers: options.kafka.then(|| {
                options
                    .kafka_bootstrap
                    .clone()
                    .unwrap_or_else(|| stack().kafka_bootstrap.clone())
            }),
            kafka_group_id: topics.group.clone(),
            kafka_order_topic: topics.orders.clone(),
            kafka_payment_topic: topics.payments.clone(),
            kafka_inventory_topic: topics.inventory.clone(),
            kafka_batch_max: options.batch_max,
            ..KafkaSettings::default()
        },
        jwt: JwtSettings {
            jwt_secret: options.jwt.then(|| TEST_JWT_SECRET.to_owned().into()),
            jwt_secret_file: None,
            jwt_jwks_url: options.jwt_jwks_url.clone(),
            jwt_oidc_discovery: options.jwt_oidc_discovery,
            jwt_jwks_refetch_ms: 100,
            jwt_public_key_file: options.jwt_public_key_file.clone(),
            jwt_issuer: options.jwt_issuer.clone(),
            jwt_audience: options.jwt_audience.clone(),
        },
        migrate_on_start: false,
        availability_events_enabled: options.availability_events,
        low_stock_threshold_default: options.low_stock_threshold_default,
        hold_ttl_secs: options.hold_ttl_secs,
        expiry_sweep_interval_ms: options.sweep_ms,
        retention_hours: 168,
        reservation_retention_days: 30,
        max_conflict_retries: 50,
    }
}

/// The service's logs (`TEST_LOG` filter, default warnings) go to the test's captured output, so
/// a failing test prints what the service reported while it ran. The first test of a binary to
/// start an app installs it; a binary that installs the service's own logging first keeps that.
fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rdkafka=error"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

impl TestApp {
    /// Starts the service on `db` with fresh topics.
    pub async fn spawn(db: &TestDb, options: AppOptions) -> Self {
        Self::spawn_on(db, Topics::new(), options).await
    }

    /// Starts the service on `db` and the given topics (a second instance shares them).
    pub async fn spawn_on(db: &TestDb, topics: Topics, options: AppOptions) -> Self {
        Self::spawn_with(settings(db, &topics, &options), topics).await
    }

    /// Starts the service with these settings.
    pub async fn spawn_with(settings: Settings, topics: Topics) -> Self {
        capture_logs();
        let app = Application::build(settings).await.unwrap_or_else(|e| {
            panic!("the service did not start: {e}; run `just test` so PostgreSQL and Kafka are up")
        });
        let addr = app.http_addr();
        let ops_addr = app.ops_addr();
        let service = app.service().clone();
        let saga = app.saga_health();
        let shutdown = app.shutdown_token();
        let task = tokio::spawn(async move {
            app.run().await.expect("service runs");
        });
        let app = Self {
            addr,
            ops_addr,
            topics,
            service,
            saga,
            shutdown,
            task: Some(task),
        };
        // Ready means the saga holds partitions: the test starts from a consumer that has joined. With
        // three partitions, up to three instances of one group each get some.
        if app.saga.is_some() {
            app.wait_ready(std::time::Duration::from_secs(30)).await;
        }
        app
    }

    /// `GET /health/ready`: status and body.
    pub async fn readiness(&self) -> (u16, serde_json::Value) {
        let reply = crate::http::client()
            .get(self.url("/health/ready"))
            .send()
            .await
            .expect("GET /health/ready");
        (reply.status().as_u16(), reply.json().await.expect("a JSON body"))
    }

    /// Waits until `/health/ready` is 200 or `within` passes (then panics with the last answer).
    pub async fn wait_ready(&self, within: std::time::Duration) {
        let started = std::time::Instant::now();
        loop {
            let (status, body) = self.readiness().await;
            if status == 200 {
                return;
            }
            assert!(
                started.elapsed() < within,
                "not ready within {within:?}: {status} {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// What `GET /metrics` answers now (on the operations listener when there is one).
    pub async fn metrics(&self) -> String {
        let url = match self.ops_addr {
            Some(ops) => format!("http://{ops}/metrics"),
            None => self.url("/metrics"),
        };
        crate::http::client()
            .get(url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("a text body")
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops it gracefully and waits.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Shared handle type for tests that spawn several apps.
pub type Shared<T> = Arc<T>;
