//! Kafka settings.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::decode::DecodeOptions;
use crate::watchdog::WatchdogConfig;

/// Where and how the saga talks to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Consumer group.
    pub group_id: String,
    /// Order Service events (consumed).
    pub order_topic: String,
    /// Payment Service events (consumed).
    pub payment_topic: String,
    /// This service's events (produced).
    pub inventory_topic: String,
    /// Partitions of topics this service creates.
    pub partitions: i32,
    /// Replication factor of topics this service creates.
    pub replication_factor: i32,
    /// `min.insync.replicas` of topics this service creates (the broker's default when `None`).
    pub min_insync_replicas: Option<i32>,
    /// Most records handled in one database transaction.
    pub batch_max: usize,
    /// Whether the next batch is worked out while the last one is being saved.
    pub batch_overlap: bool,
    /// How long to wait for more records once one has arrived and no others were waiting.
    pub batch_linger: Duration,
    /// `ce_source` of produced events.
    pub source: String,
    /// Consumer `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Consumer `max.poll.interval.ms` (at least `session_timeout`).
    pub max_poll_interval: Duration,
    /// Producer `message.timeout.ms`.
    pub publish_timeout: Duration,
    /// When the saga consumer counts as stalled.
    pub watchdog: WatchdogConfig,
    /// How consumed records are read (type aliases).
    pub decode: DecodeOptions,
    /// librdkafka properties every client gets (security, and anything passed through).
    pub client_properties: ClientProperties,
}

/// librdkafka properties set on every client (consumer, producer, admin): security settings and
/// whatever the user passes through. `Debug` hides the values of secret ones.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties(Vec<(String, String)>);

impl ClientProperties {
    /// Sets `name` (a later value replaces an earlier one).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.into()));
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every property, in the order set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether a property's value must never be shown.
    pub fn is_secret(name: &str) -> bool {
        ["password", "secret", "key.pem", "keystore", "sasl.jaas", "token"]
            .iter()
            .any(|s| name.contains(s))
    }
}

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(n, v)| (n, if Self::is_secret(n) { "[REDACTED]" } else { v.as_str() })),
            )
            .finish()
    }
}

impl KafkaConfig {
    /// Default consumer group.
    pub const DEFAULT_GROUP_ID: &str = "inventory-service";
    /// Default topic of Order Service events.
    pub const DEFAULT_ORDER_TOPIC: &str = "order-events";
    /// Default topic of Payment Service events.
    pub const DEFAULT_PAYMENT_TOPIC: &str = "payment-events";
    /// Default topic of this service's events.
    pub const DEFAULT_INVENTORY_TOPIC: &str = "inventory-events";
    /// Default partitions of created topics.
    pub const DEFAULT_PARTITIONS: i32 = 3;
    /// Default most records per transaction.
    pub const DEFAULT_BATCH_MAX: usize = 500;
    /// Default consumer session timeout, in milliseconds.
    pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;
    /// Default consumer `max.poll.interval.ms`.
    pub const DEFAULT_MAX_POLL_INTERVAL_MS: u64 = 300_000;
    /// Default batch linger, in milliseconds (see `batch_linger`).
    pub const DEFAULT_BATCH_LINGER_MS: u64 = 2;
    /// Default producer `message.timeout.ms`.
    pub const DEFAULT_PUBLISH_TIMEOUT_MS: u64 = 30_000;

    /// Defaults for a broker at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: Self::DEFAULT_GROUP_ID.into(),
            order_topic: Self::DEFAULT_ORDER_TOPIC.into(),
            payment_topic: Self::DEFAULT_PAYMENT_TOPIC.into(),
            inventory_topic: Self::DEFAULT_INVENTORY_TOPIC.into(),
            partitions: Self::DEFAULT_PARTITIONS,
            replication_factor: 1,
            min_insync_replicas: None,
            batch_max: Self::DEFAULT_BATCH_MAX,
            batch_overlap: true,
            batch_linger: Duration::from_millis(Self::DEFAULT_BATCH_LINGER_MS),
            source: "/inventory-service".into(),
            session_timeout: Duration::from_millis(Self::DEFAULT_SESSION_TIMEOUT_MS),
            max_poll_interval: Duration::from_millis(Self::DEFAULT_MAX_POLL_INTERVAL_MS),
            publish_timeout: Duration::from_millis(Self::DEFAULT_PUBLISH_TIMEOUT_MS),
            watchdog: WatchdogConfig::default(),
            decode: DecodeOptions::default(),
            client_properties: ClientProperties::default(),
        }
    }

    /// A client configuration for the brokers, with the client properties: every client starts here.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        // rust-rdkafka derives librdkafka's log level from the `log` crate's, which nothing sets
        // here (we log with tracing): without this, librdkafka's warnings and errors (a refused
        // password, a failed TLS handshake) never reach the contexts that route them into our log.
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        config.set("bootstrap.servers", &self.bootstrap_servers);
        // librdkafka backs off up to 10 s between attempts to reach a broker that is gone; the Java
        // client's default is 1 s. After a broker's restart a client at the 10 s step waits up to
        // that long before it tries again, while others are served (seen in the broker soak). The
        // properties below may set it otherwise.
        config.set("reconnect.backoff.max.ms", "1000");
        for (name, value) in self.client_properties.iter() {
            config.set(name, value);
        }
        config
    }

    /// Dead-letter topic of a consumed topic.
    pub fn dead_letter_topic(topic: &str) -> String {
        format!("{topic}.DLT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_gets_the_properties_and_debug_hides_secrets() {
        let mut config = KafkaConfig::new("b:9092");
        config.client_properties.set("security.protocol", "SASL_SSL");
        config.client_properties.set("sasl.password", "hunter2");
        config.client_properties.set("sasl.password", "hunter3");
        let client = config.client_config();
        assert_eq!(client.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(client.get("reconnect.backoff.max.ms"), Some("1000"));
        config.client_properties.set("reconnect.backoff.max.ms", "5000");
        assert_eq!(config.client_config().get("reconnect.backoff.max.ms"), Some("5000"));
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.password"), Some("hunter3"));
        let shown = format!("{config:?}");
        assert!(shown.contains("SASL_SSL") && !shown.contains("hunter"), "{shown}");
    }
}
