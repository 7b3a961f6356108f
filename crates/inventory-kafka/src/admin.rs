//! Topic creation and broker health.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use std::sync::{Arc, Mutex};

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// Remembers the errors librdkafka reported for a client's connections (a refused password, a
/// failed TLS handshake, then "1/1 brokers are down"): an operation that times out can say why.
#[derive(Clone, Default)]
pub struct LastClientError(Arc<Mutex<Vec<String>>>);

impl LastClientError {
    /// The distinct errors so far, most telling first (a cause before "brokers are down").
    pub fn get(&self) -> Option<String> {
        let seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ordered: Vec<&String> = seen.iter().filter(|e| !e.contains("brokers are down")).collect();
        ordered.extend(seen.iter().filter(|e| e.contains("brokers are down")));
        (!ordered.is_empty()).then(|| ordered.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("; "))
    }

    fn note(&self, problem: &str) {
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() < 5 && !seen.iter().any(|e| e == problem) {
            seen.push(problem.to_owned());
        }
    }

    /// Whether a cause more telling than "the brokers are down" was reported.
    fn has_cause(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|e| !e.contains("brokers are down"))
    }
}

impl ClientContext for LastClientError {
    // A refused password or a failed TLS handshake reaches us as a log line (the admin client's
    // error events are not polled): errors are kept, the rest routed as usual.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::watchdog::route_log(level, facility, message);
        if matches!(
            level,
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error
        ) {
            self.note(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        self.note(reason);
    }
}

impl rdkafka::producer::ProducerContext for LastClientError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Topics could not be made ready.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the topics: {source}{}", .connection.as_deref().map(|c| format!("; the connection to the brokers failed: {c}")).unwrap_or_default())]
pub struct TopicsError {
    /// What the admin operation returned.
    #[source]
    pub source: KafkaError,
    /// What librdkafka said of its connections meanwhile (authentication, TLS).
    pub connection: Option<String>,
}

/// Why the brokers cannot be used, as librdkafka reports it to a fresh client whose events are
/// polled (an admin operation only times out), waiting up to `within`. Blocking.
pub fn connection_problem(config: &KafkaConfig, within: Duration) -> Option<String> {
    let context = LastClientError::default();
    let producer: BaseProducer<LastClientError> = config.client_config().create_with_context(context.clone()).ok()?;
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        producer.poll(Duration::from_millis(100));
        if context.has_cause() {
            break;
        }
    }
    context.get()
}

/// Creates the consumed, produced and dead-letter topics when missing.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), TopicsError> {
    match create_topics(config).await {
        Ok(()) => Ok(()),
        Err(source) => {
            let probe = config.clone();
            let connection = tokio::task::spawn_blocking(move || connection_problem(&probe, Duration::from_secs(10)))
                .await
                .ok()
                .flatten();
            Err(TopicsError { source, connection })
        }
    }
}

async fn create_topics(config: &KafkaConfig) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let names = [
        config.order_topic.clone(),
        config.payment_topic.clone(),
        config.inventory_topic.clone(),
        KafkaConfig::dead_letter_topic(&config.order_topic),
        KafkaConfig::dead_letter_topic(&config.payment_topic),
    ];
    let min_insync = config.min_insync_replicas.map(|n| n.to_string());
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            let topic = NewTopic::new(n, config.partitions, TopicReplication::Fixed(config.replication_factor));
            match &min_insync {
                Some(value) => topic.set("min.insync.replicas", value),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// Whether the broker answers a metadata request within `timeout`.
pub async fn broker_reachable(producer: &crate::publisher::ServiceProducer, timeout: Duration) -> bool {
    use rdkafka::producer::Producer;
    let client = producer.clone();
    tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, timeout).is_ok())
        .await
        .unwrap_or(false)
}
