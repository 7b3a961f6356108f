//! Configuration: command-line flags, each with an environment variable.
//!
//! Each default is a constant of the adapter's own configuration type (or of this module for the
//! app's own settings); a value out of its range is refused at start-up, never clamped. Secrets are
//! [`SecretString`]s: `Debug` prints `[REDACTED]`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum, value_parser};
use inventory_domain::ServiceConfig;
use inventory_kafka::{KafkaConfig, WatchdogConfig};
use inventory_postgres::PoolConfig;
use secrecy::{ExposeSecret, SecretString};

/// Default `HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default `EXPIRY_SWEEP_INTERVAL_MS`.
pub const DEFAULT_EXPIRY_SWEEP_INTERVAL_MS: u64 = 5_000;
/// Default `RETENTION_HOURS`.
pub const DEFAULT_RETENTION_HOURS: u64 = 168;
/// Default `RESERVATION_RETENTION_DAYS`.
pub const DEFAULT_RESERVATION_RETENTION_DAYS: u64 = 30;

fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value.to_owned()))
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Database settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL URL of inventory_db (a secret: it may hold the password).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret)]
    pub database_url: SecretString,
    /// Most pooled connections (1-1000).
    #[arg(long, env = "DB_POOL_MAX_SIZE", default_value_t = PoolConfig::DEFAULT_MAX_SIZE,
          value_parser = value_parser!(u32).range(1..=1000))]
    pub db_pool_max_size: u32,
    /// Idle connections kept open (at most DB_POOL_MAX_SIZE).
    #[arg(long, env = "DB_POOL_MIN_IDLE", default_value_t = PoolConfig::DEFAULT_MIN_IDLE,
          value_parser = value_parser!(u32).range(0..=1000))]
    pub db_pool_min_idle: u32,
    /// Longest wait for a pooled connection, in milliseconds (1-600000); then 503.
    #[arg(long, env = "DB_POOL_ACQUIRE_TIMEOUT_MS", default_value_t = PoolConfig::DEFAULT_ACQUIRE_TIMEOUT_MS,
          value_parser = value_parser!(u64).range(1..=600_000))]
    pub db_pool_acquire_timeout_ms: u64,
}

impl DatabaseSettings {
    /// The database URL, for the adapter to connect with.
    pub fn url(&self) -> &str {
        self.database_url.expose_secret()
    }

    /// Pool settings for the adapter.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_size: self.db_pool_max_size,
            min_idle: self.db_pool_min_idle,
            acquire_timeout: Duration::from_millis(self.db_pool_acquire_timeout_ms),
        }
    }

    /// Refuses combinations no single flag can check.
    pub fn validate(&self) -> Result<(), String> {
        if self.db_pool_min_idle > self.db_pool_max_size {
            return Err(format!(
                "DB_POOL_MIN_IDLE ({}) must not exceed DB_POOL_MAX_SIZE ({})",
                self.db_pool_min_idle, self.db_pool_max_size
            ));
        }
        Ok(())
    }
}

/// Kafka settings.
#[derive(Debug, Clone, Args)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers; without them the saga does not run.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// Consumer group.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = KafkaConfig::DEFAULT_GROUP_ID)]
    pub kafka_group_id: String,
    /// Topic of Order Service events.
    #[arg(long, env = "KAFKA_ORDER_TOPIC", default_value = KafkaConfig::DEFAULT_ORDER_TOPIC)]
    pub kafka_order_topic: String,
    /// Topic of Payment Service events.
    #[arg(long, env = "KAFKA_PAYMENT_TOPIC", default_value = KafkaConfig::DEFAULT_PAYMENT_TOPIC)]
    pub kafka_payment_topic: String,
    /// Topic this service publishes to.
    #[arg(long, env = "KAFKA_INVENTORY_TOPIC", default_value = KafkaConfig::DEFAULT_INVENTORY_TOPIC)]
    pub kafka_inventory_topic: String,
    /// Partitions of topics the service creates when missing (1-10000).
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = KafkaConfig::DEFAULT_PARTITIONS,
          value_parser = value_parser!(i32).range(1..=10_000))]
    pub kafka_topic_partitions: i32,
    /// Most records handled in one database transaction (1-10000).
    #[arg(long, env = "KAFKA_BATCH_MAX", default_value_t = KafkaConfig::DEFAULT_BATCH_MAX,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub kafka_batch_max: usize,
    /// Consumer session timeout in milliseconds (1000-3600000): how soon the group notices a dead instance.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = KafkaConfig::DEFAULT_SESSION_TIMEOUT_MS,
          value_parser = value_parser!(u64).range(1_000..=3_600_000))]
    pub kafka_session_timeout_ms: u64,
    /// How long one batch (with its retries during a database outage) may take, in milliseconds
    /// (at least the session timeout, at most a day), before the consumer leaves the group and
    /// rejoins after it.
    #[arg(long, env = "KAFKA_MAX_POLL_INTERVAL_MS", default_value_t = KafkaConfig::DEFAULT_MAX_POLL_INTERVAL_MS,
          value_parser = value_parser!(u64).range(1_000..=86_400_000))]
    pub kafka_max_poll_interval_ms: u64,
    /// How long a produced record may wait for the broker before the send fails and is retried,
    /// in milliseconds (1000-3600000).
    #[arg(long, env = "KAFKA_PUBLISH_TIMEOUT_MS", default_value_t = KafkaConfig::DEFAULT_PUBLISH_TIMEOUT_MS,
          value_parser = value_parser!(u64).range(1_000..=3_600_000))]
    pub kafka_publish_timeout_ms: u64,
    /// The watchdog's bound in milliseconds (1000-3600000): a consumer that holds no partition the
    /// group needs, or has lag and makes no progress, for this long is recreated (readiness is
    /// DOWN meanwhile).
    #[arg(long, env = "KAFKA_WATCHDOG_BOUND_MS", default_value_t = WatchdogConfig::DEFAULT_BOUND_MS,
          value_parser = value_parser!(u64).range(WatchdogConfig::MIN_BOUND_MS..=3_600_000))]
    pub kafka_watchdog_bound_ms: u64,
    /// Other names for the consumed event types, `alias=Type,...`: Spring type
    /// aliases (`orderCreated=OrderCreatedEvent`) or reverse-DNS CloudEvents
    /// types (`com.shop.order.created=OrderCreatedEvent`).
    #[arg(long, env = "EVENT_TYPE_ALIASES", default_value = "", value_parser = parse_aliases)]
    pub event_type_aliases: inventory_kafka::DecodeOptions,
}

fn parse_aliases(spec: &str) -> Result<inventory_kafka::DecodeOptions, String> {
    inventory_kafka::DecodeOptions::with_aliases(spec)
}

impl KafkaSettings {
    /// Adapter settings, if Kafka is configured.
    pub fn config(&self) -> Option<inventory_kafka::KafkaConfig> {
        let servers = self.kafka_bootstrap_servers.as_deref().filter(|s| !s.is_empty())?;
        let mut config = KafkaConfig::new(servers);
        config.group_id = self.kafka_group_id.clone();
        config.order_topic = self.kafka_order_topic.clone();
        config.payment_topic = self.kafka_payment_topic.clone();
        config.inventory_topic = self.kafka_inventory_topic.clone();
        config.partitions = self.kafka_topic_partitions;
        config.batch_max = self.kafka_batch_max;
        config.session_timeout = Duration::from_millis(self.kafka_session_timeout_ms);
        config.max_poll_interval = Duration::from_millis(self.kafka_max_poll_interval_ms);
        config.publish_timeout = Duration::from_millis(self.kafka_publish_timeout_ms);
        config.decode = self.event_type_aliases.clone();
        config.watchdog = WatchdogConfig::with_bound(Duration::from_millis(self.kafka_watchdog_bound_ms));
        Some(config)
    }

    /// Refuses combinations no single flag can check.
    pub fn validate(&self) -> Result<(), String> {
        if self.kafka_max_poll_interval_ms < self.kafka_session_timeout_ms {
            return Err(format!(
                "KAFKA_MAX_POLL_INTERVAL_MS ({}) must be at least KAFKA_SESSION_TIMEOUT_MS ({})",
                self.kafka_max_poll_interval_ms, self.kafka_session_timeout_ms
            ));
        }
        Ok(())
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address the HTTP API listens on (port 0 picks a free one).
    #[arg(long, env = "HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// A second, private address for `/metrics` and health; when set, `/metrics` is served only there.
    #[arg(long, env = "OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// HTTP worker threads (0 = one per core; at most 1024).
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 0,
          value_parser = RangedU64ValueParser::<usize>::new().range(0..=1024))]
    pub http_workers: usize,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    /// Apply pending migrations before serving.
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = false)]
    pub migrate_on_start: bool,
    /// Seconds a hold lasts before it is released as EXPIRED (1 s to 30 days).
    #[arg(long, env = "HOLD_TTL_SECS", default_value_t = ServiceConfig::DEFAULT_HOLD_TTL_SECS,
          value_parser = value_parser!(u64).range(1..=2_592_000))]
    pub hold_ttl_secs: u64,
    /// How often expired holds are looked for, in milliseconds (10-3600000).
    #[arg(long, env = "EXPIRY_SWEEP_INTERVAL_MS", default_value_t = DEFAULT_EXPIRY_SWEEP_INTERVAL_MS,
          value_parser = value_parser!(u64).range(10..=3_600_000))]
    pub expiry_sweep_interval_ms: u64,
    /// Hours processed-event and published-outbox rows are kept (1-100000).
    #[arg(long, env = "RETENTION_HOURS", default_value_t = DEFAULT_RETENTION_HOURS,
          value_parser = value_parser!(u64).range(1..=100_000))]
    pub retention_hours: u64,
    /// Days settled reservations (committed, released, failed, cancelled) are kept; 0 keeps them
    /// forever (at most 100000). They make replayed order events change nothing: keep them longer
    /// than the consumed topics keep records.
    #[arg(long, env = "RESERVATION_RETENTION_DAYS", default_value_t = DEFAULT_RESERVATION_RETENTION_DAYS,
          value_parser = value_parser!(u64).range(0..=100_000))]
    pub reservation_retention_days: u64,
    /// Attempts per use case when optimistic locking meets a concurrent change (1-1000).
    #[arg(long, env = "MAX_CONFLICT_RETRIES", default_value_t = ServiceConfig::DEFAULT_MAX_ATTEMPTS,
          value_parser = value_parser!(u32).range(1..=1000))]
    pub max_conflict_retries: u32,
}

impl Settings {
    /// Refuses combinations no single flag can check (ranges are checked as each flag is read).
    pub fn validate(&self) -> Result<(), String> {
        self.database.validate()?;
        self.kafka.validate()?;
        self.jwt.auth().map(drop)
    }
}

/// Token verification settings.
#[derive(Debug, Clone, Args)]
pub struct JwtSettings {
    /// HS256 shared secret for bearer tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub jwt_secret: Option<SecretString>,
    /// PEM file with an RS256 or ES256 public key (instead of JWT_SECRET).
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// Required token issuer.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required token audience.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl JwtSettings {
    /// Verification settings for the HTTP adapter.
    pub fn auth(&self) -> Result<inventory_http::AuthConfig, String> {
        let mut auth = match (
            &self.jwt_public_key_file,
            self.jwt_secret
                .as_ref()
                .map(ExposeSecret::expose_secret)
                .filter(|s| !s.is_empty()),
        ) {
            (Some(path), _) => {
                let pem = std::fs::read(path).map_err(|e| format!("JWT_PUBLIC_KEY_FILE {}: {e}", path.display()))?;
                inventory_http::AuthConfig::public_key_pem(&pem)?
            }
            (None, Some(secret)) => inventory_http::AuthConfig::hs256(secret.as_bytes()),
            (None, None) => inventory_http::AuthConfig::default(),
        };
        auth.issuer = self.jwt_issuer.clone();
        auth.audience = self.jwt_audience.clone();
        Ok(auth)
    }
}
