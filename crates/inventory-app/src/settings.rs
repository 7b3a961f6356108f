//! Configuration: command-line flags, each with an environment variable.
//!
//! Each default is a constant of the adapter's own configuration type (or of this module for the
//! app's own settings); a value out of its range is refused at start-up, never clamped. Secrets are
//! [`SecretString`]s: `Debug` prints `[REDACTED]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum, value_parser};
use inventory_domain::ServiceConfig;
use inventory_kafka::{KafkaConfig, WatchdogConfig};
use inventory_postgres::{CacheConfig, PoolConfig};
use secrecy::{ExposeSecret, SecretString};

/// Default `HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default `HTTP_KEEP_ALIVE_SECS`: above the 60 s idle timeout common to load balancers and proxies.
pub const DEFAULT_HTTP_KEEP_ALIVE_SECS: u64 = 75;
/// Default `EXPIRY_SWEEP_INTERVAL_MS`.
pub const DEFAULT_EXPIRY_SWEEP_INTERVAL_MS: u64 = 5_000;
/// Default `RETENTION_HOURS`.
pub const DEFAULT_RETENTION_HOURS: u64 = 168;
/// Default `RESERVATION_RETENTION_DAYS`.
pub const DEFAULT_RESERVATION_RETENTION_DAYS: u64 = 30;

fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value.to_owned()))
}

/// A secret given directly (`NAME`) or as a file (`NAME_FILE`, as mounted Kubernetes secrets and
/// container secrets are): the file's content, without its final line break, replaces it.
fn load_secret(name: &str, value: &mut Option<SecretString>, file: &Option<PathBuf>) -> Result<(), String> {
    let Some(path) = file else {
        return Ok(());
    };
    if value.is_some() {
        return Err(format!("{name} and {name}_FILE are both set: set one"));
    }
    let content = std::fs::read_to_string(path).map_err(|e| format!("{name}_FILE {}: {e}", path.display()))?;
    let content = content.strip_suffix('\n').unwrap_or(&content);
    let content = content.strip_suffix('\r').unwrap_or(content);
    if content.is_empty() {
        return Err(format!("{name}_FILE {} is empty", path.display()));
    }
    *value = Some(SecretString::from(content.to_owned()));
    Ok(())
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
    /// PostgreSQL URL of inventory_db (a secret: it may hold the password); required, here or in
    /// DATABASE_URL_FILE.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret)]
    pub database_url: Option<SecretString>,
    /// A file holding the database URL (instead of DATABASE_URL).
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
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
    /// Serve GET and /check reads from the in-process stock cache (kept fresh by LISTEN/NOTIFY).
    #[arg(long, env = "STOCK_CACHE_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub stock_cache_enabled: bool,
    /// Oldest change a cached read may miss, in milliseconds (10-60000); past it reads go to the
    /// database until the cache's channel is proven again.
    #[arg(long, env = "STOCK_CACHE_MAX_STALENESS_MS", default_value_t = CacheConfig::DEFAULT_MAX_STALENESS_MS,
          value_parser = value_parser!(u64).range(10..=60_000))]
    pub stock_cache_max_staleness_ms: u64,
    /// Products the stock cache keeps (1-10000000).
    #[arg(long, env = "STOCK_CACHE_CAPACITY", default_value_t = CacheConfig::DEFAULT_CAPACITY,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub stock_cache_capacity: usize,
}

impl DatabaseSettings {
    /// Settings for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            database_url: Some(SecretString::from(url.into())),
            database_url_file: None,
            db_pool_max_size: PoolConfig::DEFAULT_MAX_SIZE,
            db_pool_min_idle: PoolConfig::DEFAULT_MIN_IDLE,
            db_pool_acquire_timeout_ms: PoolConfig::DEFAULT_ACQUIRE_TIMEOUT_MS,
            stock_cache_enabled: true,
            stock_cache_max_staleness_ms: CacheConfig::DEFAULT_MAX_STALENESS_MS,
            stock_cache_capacity: CacheConfig::DEFAULT_CAPACITY,
        }
    }

    /// Stock cache settings for the adapter: pings every fifth of the staleness bound.
    pub fn cache(&self) -> CacheConfig {
        let max_staleness = Duration::from_millis(self.stock_cache_max_staleness_ms);
        CacheConfig {
            enabled: self.stock_cache_enabled,
            capacity: self.stock_cache_capacity,
            max_staleness,
            heartbeat: max_staleness / 5,
        }
    }

    /// The database URL, for the adapter to connect with (empty before [`Self::prepare`] found none).
    pub fn url(&self) -> &str {
        self.database_url.as_ref().map_or("", ExposeSecret::expose_secret)
    }

    /// Reads the secret files, then checks the settings.
    pub fn prepare(&mut self) -> Result<(), String> {
        load_secret("DATABASE_URL", &mut self.database_url, &self.database_url_file)?;
        self.database_url_file = None;
        self.validate()
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
    fn validate(&self) -> Result<(), String> {
        if self.url().is_empty() {
            return Err("DATABASE_URL (or DATABASE_URL_FILE) is required".to_owned());
        }
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
    /// Replication factor of topics the service creates when missing (1-32); 3 on a production cluster.
    #[arg(long, env = "KAFKA_TOPIC_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = value_parser!(i32).range(1..=32))]
    pub kafka_topic_replication_factor: i32,
    /// `min.insync.replicas` of topics the service creates (1-32; the broker's default when unset):
    /// with `acks=all`, how many replicas must hold an event before it counts as published.
    #[arg(long, env = "KAFKA_TOPIC_MIN_INSYNC_REPLICAS", value_parser = value_parser!(i32).range(1..=32))]
    pub kafka_topic_min_insync_replicas: Option<i32>,
    /// Most records handled in one database transaction (1-10000).
    #[arg(long, env = "KAFKA_BATCH_MAX", default_value_t = KafkaConfig::DEFAULT_BATCH_MAX,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub kafka_batch_max: usize,
    /// When a batch is full (records are waiting), work out the next batch while it is being saved
    /// (the load and the rules overlap the save's transaction); `false` handles one batch at a time.
    #[arg(long, env = "KAFKA_BATCH_OVERLAP", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_batch_overlap: bool,
    /// How long, in milliseconds (0-1000), a batch waits for more records when its first record
    /// found no others waiting (the consumer had caught up). Records already waiting never wait.
    #[arg(long, env = "KAFKA_BATCH_LINGER_MS", default_value_t = KafkaConfig::DEFAULT_BATCH_LINGER_MS,
          value_parser = value_parser!(u64).range(0..=1_000))]
    pub kafka_batch_linger_ms: u64,
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
    /// How the clients talk to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(
        long,
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value = "PLAINTEXT"
    )]
    pub kafka_security_protocol: SecurityProtocol,
    /// SASL mechanism (with SASL_*): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum, ignore_case = true)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password (or KAFKA_SASL_PASSWORD_FILE).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub kafka_sasl_password: Option<SecretString>,
    /// A file holding the SASL password.
    #[arg(long, env = "KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the brokers' certificates (with SSL, SASL_SSL); the
    /// system's trust store when unset.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,
    /// PEM file of this client's certificate, for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<PathBuf>,
    /// PEM file of this client's private key, for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<PathBuf>,
    /// Password of that private key, if it is encrypted (or KAFKA_SSL_KEY_PASSWORD_FILE).
    #[arg(long, env = "KAFKA_SSL_KEY_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub kafka_ssl_key_password: Option<SecretString>,
    /// A file holding the private key's password.
    #[arg(long, env = "KAFKA_SSL_KEY_PASSWORD_FILE")]
    pub kafka_ssl_key_password_file: Option<PathBuf>,
    /// A file of other librdkafka properties, `name=value` per line (`#` comments), for every
    /// client; `KAFKA_PROPERTY_<NAME>` variables (`KAFKA_PROPERTY_SOCKET_KEEPALIVE_ENABLE=true` is
    /// `socket.keepalive.enable=true`) are read too and win over the file.
    #[arg(long, env = "KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<PathBuf>,
    /// What [`Self::prepare`] made of the above.
    #[arg(skip)]
    pub client_properties: inventory_kafka::ClientProperties,
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[value(name = "PLAINTEXT")]
    Plaintext,
    /// TLS (mutual TLS with a client certificate).
    #[value(name = "SSL")]
    Ssl,
    /// SASL without TLS.
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL over TLS.
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
    fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
    fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    /// User and password in the clear (over TLS).
    #[value(name = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The prefix of pass-through librdkafka properties.
pub const KAFKA_PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// `KAFKA_PROPERTY_SOCKET_KEEPALIVE_ENABLE` -> `socket.keepalive.enable`.
fn property_name(variable: &str) -> Option<String> {
    let rest = variable.strip_prefix(KAFKA_PROPERTY_PREFIX)?;
    (!rest.is_empty()).then(|| rest.to_ascii_lowercase().replace('_', "."))
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
        config.replication_factor = self.kafka_topic_replication_factor;
        config.min_insync_replicas = self.kafka_topic_min_insync_replicas;
        config.batch_max = self.kafka_batch_max;
        config.batch_overlap = self.kafka_batch_overlap;
        config.batch_linger = Duration::from_millis(self.kafka_batch_linger_ms);
        config.session_timeout = Duration::from_millis(self.kafka_session_timeout_ms);
        config.max_poll_interval = Duration::from_millis(self.kafka_max_poll_interval_ms);
        config.publish_timeout = Duration::from_millis(self.kafka_publish_timeout_ms);
        config.decode = self.event_type_aliases.clone();
        config.watchdog = WatchdogConfig::with_bound(Duration::from_millis(self.kafka_watchdog_bound_ms));
        config.client_properties = self.client_properties.clone();
        Some(config)
    }

    /// Reads the secret and properties files and the `KAFKA_PROPERTY_*` variables, then checks the
    /// settings. Call once, before [`Self::config`].
    pub fn prepare(&mut self) -> Result<(), String> {
        load_secret(
            "KAFKA_SASL_PASSWORD",
            &mut self.kafka_sasl_password,
            &self.kafka_sasl_password_file,
        )?;
        load_secret(
            "KAFKA_SSL_KEY_PASSWORD",
            &mut self.kafka_ssl_key_password,
            &self.kafka_ssl_key_password_file,
        )?;
        self.kafka_sasl_password_file = None;
        self.kafka_ssl_key_password_file = None;
        self.validate()?;
        let mut p = inventory_kafka::ClientProperties::default();
        p.set("security.protocol", self.kafka_security_protocol.as_str());
        if let Some(mechanism) = self.kafka_sasl_mechanism {
            p.set("sasl.mechanism", mechanism.as_str());
        }
        if let Some(user) = &self.kafka_sasl_username {
            p.set("sasl.username", user);
        }
        if let Some(password) = &self.kafka_sasl_password {
            p.set("sasl.password", password.expose_secret());
        }
        let paths = [
            ("ssl.ca.location", &self.kafka_ssl_ca_location),
            ("ssl.certificate.location", &self.kafka_ssl_certificate_location),
            ("ssl.key.location", &self.kafka_ssl_key_location),
        ];
        for (name, path) in paths {
            if let Some(path) = path {
                std::fs::metadata(path).map_err(|e| format!("{name} {}: {e}", path.display()))?;
                p.set(name, path.display().to_string());
            }
        }
        if let Some(password) = &self.kafka_ssl_key_password {
            p.set("ssl.key.password", password.expose_secret());
        }
        if let Some(path) = &self.kafka_properties_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("KAFKA_PROPERTIES_FILE {}: {e}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (name, value) = line.split_once('=').ok_or_else(|| {
                    format!(
                        "KAFKA_PROPERTIES_FILE {} line {}: expected name=value",
                        path.display(),
                        n + 1
                    )
                })?;
                p.set(name.trim(), value.trim());
            }
        }
        let mut passed: Vec<(String, String)> = std::env::vars()
            .filter_map(|(k, v)| property_name(&k).map(|name| (name, v)))
            .collect();
        passed.sort();
        for (name, value) in passed {
            p.set(name, value);
        }
        self.client_properties = p;
        Ok(())
    }

    /// Refuses combinations no single flag can check.
    fn validate(&self) -> Result<(), String> {
        let protocol = self.kafka_security_protocol;
        let sasl_given = self.kafka_sasl_mechanism.is_some()
            || self.kafka_sasl_username.is_some()
            || self.kafka_sasl_password.is_some();
        if protocol.sasl()
            && (self.kafka_sasl_mechanism.is_none()
                || self.kafka_sasl_username.is_none()
                || self.kafka_sasl_password.is_none())
        {
            return Err(format!(
                "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
                protocol.as_str()
            ));
        }
        if !protocol.sasl() && sasl_given {
            return Err(format!(
                "SASL settings are given but KAFKA_SECURITY_PROTOCOL is {} (use SASL_SSL or SASL_PLAINTEXT)",
                protocol.as_str()
            ));
        }
        let tls_given = self.kafka_ssl_ca_location.is_some()
            || self.kafka_ssl_certificate_location.is_some()
            || self.kafka_ssl_key_location.is_some();
        if !protocol.tls() && tls_given {
            return Err(format!(
                "TLS files are given but KAFKA_SECURITY_PROTOCOL is {} (use SSL or SASL_SSL)",
                protocol.as_str()
            ));
        }
        if self.kafka_ssl_certificate_location.is_some() != self.kafka_ssl_key_location.is_some() {
            return Err("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together".to_owned());
        }
        let min_insync = self.kafka_topic_min_insync_replicas.unwrap_or(1);
        if min_insync > self.kafka_topic_replication_factor {
            return Err(format!(
                "KAFKA_TOPIC_MIN_INSYNC_REPLICAS ({min_insync}) cannot exceed KAFKA_TOPIC_REPLICATION_FACTOR ({}): \
                 no event could ever be published",
                self.kafka_topic_replication_factor
            ));
        }
        if self.kafka_max_poll_interval_ms < self.kafka_session_timeout_ms {
            return Err(format!(
                "KAFKA_MAX_POLL_INTERVAL_MS ({}) must be at least KAFKA_SESSION_TIMEOUT_MS ({})",
                self.kafka_max_poll_interval_ms, self.kafka_session_timeout_ms
            ));
        }
        Ok(())
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            kafka_bootstrap_servers: None,
            kafka_group_id: KafkaConfig::DEFAULT_GROUP_ID.to_owned(),
            kafka_order_topic: KafkaConfig::DEFAULT_ORDER_TOPIC.to_owned(),
            kafka_payment_topic: KafkaConfig::DEFAULT_PAYMENT_TOPIC.to_owned(),
            kafka_inventory_topic: KafkaConfig::DEFAULT_INVENTORY_TOPIC.to_owned(),
            kafka_topic_partitions: KafkaConfig::DEFAULT_PARTITIONS,
            kafka_topic_replication_factor: 1,
            kafka_topic_min_insync_replicas: None,
            kafka_batch_max: KafkaConfig::DEFAULT_BATCH_MAX,
            kafka_batch_overlap: true,
            kafka_batch_linger_ms: KafkaConfig::DEFAULT_BATCH_LINGER_MS,
            kafka_session_timeout_ms: KafkaConfig::DEFAULT_SESSION_TIMEOUT_MS,
            kafka_max_poll_interval_ms: KafkaConfig::DEFAULT_MAX_POLL_INTERVAL_MS,
            kafka_publish_timeout_ms: KafkaConfig::DEFAULT_PUBLISH_TIMEOUT_MS,
            kafka_watchdog_bound_ms: WatchdogConfig::DEFAULT_BOUND_MS,
            event_type_aliases: inventory_kafka::DecodeOptions::default(),
            kafka_security_protocol: SecurityProtocol::Plaintext,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_sasl_password_file: None,
            kafka_ssl_ca_location: None,
            kafka_ssl_certificate_location: None,
            kafka_ssl_key_location: None,
            kafka_ssl_key_password: None,
            kafka_ssl_key_password_file: None,
            kafka_properties_file: None,
            client_properties: inventory_kafka::ClientProperties::default(),
        }
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
    /// Seconds an idle HTTP connection stays open for the next request (0 closes it after each response; at most 3600).
    #[arg(long, env = "HTTP_KEEP_ALIVE_SECS", default_value_t = DEFAULT_HTTP_KEEP_ALIVE_SECS,
          value_parser = value_parser!(u64).range(0..=3600))]
    pub http_keep_alive_secs: u64,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    /// Apply pending migrations before serving.
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = false)]
    pub migrate_on_start: bool,
    /// Publish availability events (low, out of, back in stock, low stock cleared) on the inventory topic.
    #[arg(long, env = "AVAILABILITY_EVENTS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub availability_events_enabled: bool,
    /// Low-stock threshold of products without their own (0-1000000000); unset: such products are never low.
    #[arg(long, env = "LOW_STOCK_THRESHOLD_DEFAULT", value_parser = value_parser!(u32).range(0..=1_000_000_000))]
    pub low_stock_threshold_default: Option<u32>,
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
    /// Reads the secret files and checks combinations no single flag can check (ranges are checked
    /// as each flag is read). [`crate::Application::build`] calls it.
    pub fn prepare(&mut self) -> Result<(), String> {
        self.database.prepare()?;
        self.kafka.prepare()?;
        self.jwt.prepare()
    }
}

/// Token verification settings.
#[derive(Debug, Clone, Args)]
pub struct JwtSettings {
    /// HS256 shared secret for bearer tokens (or JWT_SECRET_FILE).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub jwt_secret: Option<SecretString>,
    /// A file holding the HS256 secret.
    #[arg(long, env = "JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM file with an RS256 or ES256 public key (instead of JWT_SECRET).
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// Required token issuer.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required token audience.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The identity provider's JWKS URL (Spring's `jwk-set-uri`): keys fetched, cached and
    /// chosen by `kid` (instead of JWT_SECRET / JWT_PUBLIC_KEY_FILE).
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Find the JWKS URL by OpenID Connect discovery from JWT_ISSUER
    /// (`<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "JWT_OIDC_DISCOVERY", default_value_t = false)]
    pub jwt_oidc_discovery: bool,
    /// A token naming an unknown `kid` fetches the keys again at most this often, in milliseconds
    /// (100-3600000).
    #[arg(long, env = "JWT_JWKS_REFETCH_MS", default_value_t = DEFAULT_JWKS_REFETCH_MS,
          value_parser = value_parser!(u64).range(100..=3_600_000))]
    pub jwt_jwks_refetch_ms: u64,
}

/// Default `JWT_JWKS_REFETCH_MS`.
pub const DEFAULT_JWKS_REFETCH_MS: u64 = 10_000;

impl JwtSettings {
    /// Reads the secret file.
    pub fn prepare(&mut self) -> Result<(), String> {
        load_secret("JWT_SECRET", &mut self.jwt_secret, &self.jwt_secret_file)?;
        self.jwt_secret_file = None;
        Ok(())
    }

    /// Verification settings for the HTTP adapter.
    pub fn auth(&self) -> Result<inventory_http::AuthConfig, String> {
        let static_key = self.jwt_public_key_file.is_some() || self.jwt_secret.is_some();
        let source = match (&self.jwt_jwks_url, self.jwt_oidc_discovery, &self.jwt_issuer) {
            (Some(url), false, _) => Some(inventory_http::JwksSource::Url(url.clone())),
            (None, true, Some(issuer)) => Some(inventory_http::JwksSource::Discovery { issuer: issuer.clone() }),
            (None, true, None) => return Err("JWT_OIDC_DISCOVERY needs JWT_ISSUER".to_owned()),
            (Some(_), true, _) => return Err("set JWT_JWKS_URL or JWT_OIDC_DISCOVERY, not both".to_owned()),
            (None, false, _) => None,
        };
        if let Some(source) = source {
            if static_key {
                return Err("set JWT_JWKS_URL (or JWT_OIDC_DISCOVERY) or a fixed key (JWT_SECRET, JWT_PUBLIC_KEY_FILE), not both".to_owned());
            }
            let jwks =
                inventory_http::Jwks::new(source).with_refetch_after(Duration::from_millis(self.jwt_jwks_refetch_ms));
            return Ok(inventory_http::AuthConfig {
                jwks: Some(std::sync::Arc::new(jwks)),
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
                ..inventory_http::AuthConfig::default()
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_variables_name_librdkafka_properties() {
        assert_eq!(
            property_name("KAFKA_PROPERTY_SOCKET_KEEPALIVE_ENABLE").as_deref(),
            Some("socket.keepalive.enable")
        );
        assert_eq!(property_name("KAFKA_PROPERTY_").as_deref(), None);
        assert_eq!(property_name("KAFKA_GROUP_ID").as_deref(), None);
    }

    #[test]
    fn min_insync_replicas_beyond_the_replication_factor_is_refused() {
        let mut settings = KafkaSettings {
            kafka_topic_replication_factor: 3,
            kafka_topic_min_insync_replicas: Some(2),
            ..KafkaSettings::default()
        };
        assert_eq!(settings.validate(), Ok(()));
        settings.kafka_topic_min_insync_replicas = Some(4);
        let refused = settings.validate().expect_err("4 of 3 replicas can never be in sync");
        assert!(refused.contains("KAFKA_TOPIC_MIN_INSYNC_REPLICAS (4)"), "{refused}");
        // The broker's default (unset) with the default factor of 1 is fine.
        assert_eq!(KafkaSettings::default().validate(), Ok(()));
        let config = KafkaSettings {
            kafka_bootstrap_servers: Some("a:9092".into()),
            kafka_topic_replication_factor: 3,
            kafka_topic_min_insync_replicas: Some(2),
            ..KafkaSettings::default()
        }
        .config()
        .expect("configured");
        assert_eq!((config.replication_factor, config.min_insync_replicas), (3, Some(2)));
    }
}
