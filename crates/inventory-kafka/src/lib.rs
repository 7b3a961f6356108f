//! Kafka adapter: the saga consumer, the outbox relay's publisher, dead
//! letters and topic administration, over rdkafka.

mod admin;
mod config;
mod consumer;
pub mod decode;
mod publisher;
mod relay;
pub mod trace;
pub mod watchdog;

pub use admin::{LastClientError, TopicsError, broker_reachable, connection_problem, ensure_topics};
pub use config::{ClientProperties, KafkaConfig};
pub use consumer::{SagaConsumer, run_saga};
pub use decode::DecodeOptions;
pub use publisher::{KafkaPublisher, ProducerLog, RENEW_AFTER_TIMEOUTS, ServiceProducer};
pub use relay::{RELAY_BATCH, run_relay};
pub use watchdog::{ConsumerHealth, WatchdogConfig};
