//! The idempotent producer: outbox events and dead letters.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use inventory_domain::{EventPublisher, PendingEvent, PublishError};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;
use crate::trace;
use tracing::Instrument;

/// Publishes outbox events to the inventory topic with CloudEvents headers.
///
/// An idempotent producer can reach a state it never leaves (librdkafka's *fatal* errors: a
/// sequence gap it cannot repair after timeouts, a fenced producer id); every send then fails at
/// once. Whoever sees a failed send asks [`KafkaPublisher::renew_if_fatal`], which replaces such a
/// producer with a new one (a new producer id), so the outbox and the dead letters flow again
/// without a restart. Clones share the current producer.
#[derive(Clone)]
pub struct KafkaPublisher {
    inner: Arc<Inner>,
    topic: String,
    source: String,
}

struct Inner {
    config: ClientConfig,
    current: RwLock<FutureProducer>,
}

impl KafkaPublisher {
    /// An idempotent producer (acks=all, in order per partition).
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut client = config.client_config();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            // How long a record may wait for the broker before its send fails; the relay then
            // rolls back and sends the batch again.
            .set("message.timeout.ms", config.publish_timeout.as_millis().to_string())
            // Room to dead-letter a record over the 1 MB we accept (topics permitting).
            .set("message.max.bytes", "4194304")
            .set("client.id", "inventory-service");
        let producer: FutureProducer = client.create()?;
        Ok(Self {
            inner: Arc::new(Inner {
                config: client,
                current: RwLock::new(producer),
            }),
            topic: config.inventory_topic.clone(),
            source: config.source.clone(),
        })
    }

    /// The current producer (dead letters, metadata); after a failed send, see [`Self::renew_if_fatal`].
    pub fn producer(&self) -> FutureProducer {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When `used` (a producer a send just failed on) has hit a fatal error, replaces it with a new
    /// producer, once however many senders saw it; the fatal error's description, or `None`.
    pub fn renew_if_fatal(&self, used: &FutureProducer) -> Option<String> {
        let (code, reason) = used.client().fatal_error()?;
        let why = format!("{code:?}: {reason}");
        let mut current = self.inner.current.write().unwrap_or_else(PoisonError::into_inner);
        if std::ptr::eq(current.client().native_ptr(), used.client().native_ptr()) {
            match self.inner.config.create::<FutureProducer>() {
                Ok(fresh) => {
                    let old = std::mem::replace(&mut *current, fresh);
                    // Dropping a producer purges and waits for it; not on an async worker.
                    std::thread::spawn(move || drop(old));
                    metrics::counter!("inventory_producer_renewals_total").increment(1);
                    tracing::error!(
                        error = %why,
                        "the Kafka producer hit a fatal error; replaced by a new one (unsent events stay in \
                         the outbox and go with the next pass)"
                    );
                }
                Err(e) => tracing::error!(
                    error = %why,
                    cause = %e,
                    "the Kafka producer hit a fatal error and a new one cannot be made; retrying at the next failure"
                ),
            }
        }
        Some(why)
    }

    /// Waits until queued records are delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer().flush(Timeout::After(timeout))
    }
}

fn cloud_event_headers(event: &PendingEvent, source: &str) -> OwnedHeaders {
    let id = event.event_id.to_string();
    let time = event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    OwnedHeaders::new()
        .insert(Header {
            key: "ce_specversion",
            value: Some("1.0"),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(id.as_str()),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(event.event_type.as_str()),
        })
        .insert(Header {
            key: "ce_source",
            value: Some(source),
        })
        .insert(Header {
            key: "ce_time",
            value: Some(time.as_str()),
        })
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        // Spring's JsonDeserializer maps this (with `spring.json.type.mapping`) to the reader's class.
        .insert(Header {
            key: "__TypeId__",
            value: Some(event.event_type.as_str()),
        })
}

#[async_trait]
impl EventPublisher for KafkaPublisher {
    async fn publish(&self, events: &[PendingEvent]) -> Result<(), PublishError> {
        let producer = self.producer();
        let failed = |what: String| match self.renew_if_fatal(&producer) {
            Some(fatal) => PublishError(format!(
                "{what} (the producer was replaced after a fatal error: {fatal})"
            )),
            None => PublishError(what),
        };
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            // The span of this send: child of the span that wrote the outbox row (its headers carry
            // that context), and the parent the published record names in its `traceparent`.
            let span = tracing::info_span!(
                "publish event",
                otel.name = %format_args!("publish {}", event.event_type),
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.destination.name = %self.topic,
                event.r#type = %event.event_type,
                event.id = %event.event_id,
                order.id = %event.key,
            );
            let mut carried = event.headers.clone();
            trace::continue_from(&span, &carried);
            trace::carry(&span, &mut carried);
            let mut headers = cloud_event_headers(event, &self.source);
            for (key, value) in &carried {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_str()),
                });
            }
            let record = FutureRecord::to(&self.topic)
                .key(event.key.as_str())
                .payload(event.payload.as_str())
                .headers(headers);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| failed(format!("cannot queue event {}: {e}", event.event_id)))?;
            deliveries.push((delivery, span));
        }
        for ((delivery, span), event) in deliveries.into_iter().zip(events) {
            let delivered = delivery.instrument(span).await;
            match delivered {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(failed(format!("event {} not delivered: {e}", event.event_id))),
                Err(_) => return Err(failed(format!("event {} delivery cancelled", event.event_id))),
            }
        }
        metrics::counter!("inventory_events_published_total").increment(events.len() as u64);
        Ok(())
    }
}
