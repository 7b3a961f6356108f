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
    /// Defaults for a broker at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: "inventory-service".into(),
            order_topic: "order-events".into(),
            payment_topic: "payment-events".into(),
            inventory_topic: "inventory-events".into(),
            partitions: 3,
            batch_max: 500,
            batch_linger: Duration::from_millis(2),
            source: "/inventory-service".into(),
            session_timeout: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(300),
            publish_timeout: Duration::from_secs(30),
            watchdog: WatchdogConfig::default(),
            decode: DecodeOptions::default(),
        }
    }

    /// Dead-letter topic of a consumed topic.
    pub fn dead_letter_topic(topic: &str) -> String {
        format!("{topic}.DLT")
    }
}
