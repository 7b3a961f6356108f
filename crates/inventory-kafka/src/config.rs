//! Kafka settings.

use std::time::Duration;

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
    /// Most records handled in one database transaction.
    pub batch_max: usize,
    /// How long to wait for more records once one has arrived.
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
            batch_max: Self::DEFAULT_BATCH_MAX,
            batch_linger: Duration::from_millis(2),
            source: "/inventory-service".into(),
            session_timeout: Duration::from_millis(Self::DEFAULT_SESSION_TIMEOUT_MS),
            max_poll_interval: Duration::from_millis(Self::DEFAULT_MAX_POLL_INTERVAL_MS),
            publish_timeout: Duration::from_millis(Self::DEFAULT_PUBLISH_TIMEOUT_MS),
            watchdog: WatchdogConfig::default(),
            decode: DecodeOptions::default(),
        }
    }

    /// Dead-letter topic of a consumed topic.
    pub fn dead_letter_topic(topic: &str) -> String {
        format!("{topic}.DLT")
    }
}
