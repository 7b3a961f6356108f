//! The idempotent producer: outbox events and dead letters.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use inventory_domain::{EventPublisher, PendingEvent, PublishError};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext};

use crate::config::KafkaConfig;
use crate::trace;
use tracing::Instrument;

/// Sends in a row that time out on one producer before it is replaced by a new one.
pub const RENEW_AFTER_TIMEOUTS: u32 = 3;

/// The service's producer: librdkafka's log lines and client errors go to the service's log.
pub type ServiceProducer = FutureProducer<ProducerLog>;

/// The producer's context. rust-rdkafka's default one writes librdkafka's log to the `log` crate,
/// which nothing here reads: the producer's warnings (requests timed out, a broker connection
/// lost) would never be seen.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProducerLog;

impl ClientContext for ProducerLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::watchdog::route_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // A lost or refused connection is logged by the saga's consumer, on the same brokers, and
        // the relay logs every failed pass: at debug here, not once more every 100 ms of an outage.
        let transient = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        );
        if transient {
            tracing::debug!(target: "librdkafka", %error, reason, "kafka producer error");
        } else {
            tracing::warn!(target: "librdkafka", %error, reason, "kafka producer error");
        }
    }
}

/// Publishes outbox events to the inventory topic with CloudEvents headers.
///
/// A producer can get stuck, and a new one (new connections, a new producer id) is then the way
/// out, without a restart. Whoever sees a failed send asks [`KafkaPublisher::renew_if_stuck`],
/// which replaces the producer, once however many senders saw it, when:
/// - it is in librdkafka's *fatal* state (an idempotent producer's sequence gap it cannot repair
///   after timeouts, a fenced producer id): every send then fails at once;
/// - [`RENEW_AFTER_TIMEOUTS`] of its sends in a row timed out. After a broker hung, such a
///   producer was seen timing out every send for as long as it was watched (over 20 s), its
///   metadata requests unanswered too, while new clients were served within a second.
///
/// Unsent events stay in the outbox and go on the new producer; an event that was written but not
/// acknowledged goes again with the same id, which readers dedupe by. Clones share the current
/// producer.
#[derive(Clone)]
pub struct KafkaPublisher {
    inner: Arc<Inner>,
    topic: String,
    source: String,
}

struct Inner {
    config: ClientConfig,
    current: RwLock<ServiceProducer>,
    /// Sends in a row that timed out on the current producer.
    timeouts_in_a_row: AtomicU32,
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
        let producer = client.create_with_context(ProducerLog)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config: client,
                current: RwLock::new(producer),
                timeouts_in_a_row: AtomicU32::new(0),
            }),
            topic: config.inventory_topic.clone(),
            source: config.source.clone(),
        })
    }

    /// The current producer (dead letters, metadata); after a failed send, see [`Self::renew_if_stuck`].
    pub fn producer(&self) -> ServiceProducer {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After a send on `used` failed with `error`: replaces `used` with a new producer when it is
    /// stuck (see the type's documentation); why, when it was.
    pub fn renew_if_stuck(&self, used: &ServiceProducer, error: &KafkaError) -> Option<String> {
        if let Some((code, reason)) = used.client().fatal_error() {
            let why = format!("a fatal error: {code:?}: {reason}");
            self.replace(used, &why, "fatal");
            return Some(why);
        }
        if !matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)) {
            return None;
        }
        let in_a_row = self.inner.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row < RENEW_AFTER_TIMEOUTS {
            return None;
        }
        let why = format!("{in_a_row} sends in a row timed out");
        self.replace(used, &why, "timeouts");
        Some(why)
    }

    /// A send went through: the timeouts in a row start again from zero.
    pub fn sent(&self) {
        self.inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
    }

    /// Replaces `used` with a new producer, unless another sender already did.
    fn replace(&self, used: &ServiceProducer, why: &str, reason: &'static str) {
        let mut current = self.inner.current.write().unwrap_or_else(PoisonError::into_inner);
        if !std::ptr::eq(current.client().native_ptr(), used.client().native_ptr()) {
            return;
        }
        match self.inner.config.create_with_context::<_, ServiceProducer>(ProducerLog) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *current, fresh);
                self.inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
                // Dropping a producer purges and waits for it; not on an async worker.
                std::thread::spawn(move || drop(old));
                metrics::counter!("inventory_producer_renewals_total", "reason" => reason).increment(1);
                tracing::error!(
                    why,
                    "the Kafka producer is stuck; replaced by a new one (unsent events stay in the outbox \
                     and go with the next pass)"
                );
            }
            Err(e) => tracing::error!(
                why,
                cause = %e,
                "the Kafka producer is stuck and a new one cannot be made; retrying at the next failure"
            ),
        }
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
        let failed = |what: String, error: &KafkaError| match self.renew_if_stuck(&producer, error) {
            Some(why) => PublishError(format!("{what} (the producer was replaced after {why})")),
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
                .map_err(|(e, _)| failed(format!("cannot queue event {}: {e}", event.event_id), &e))?;
            deliveries.push((delivery, span));
        }
        for ((delivery, span), event) in deliveries.into_iter().zip(events) {
            let delivered = delivery.instrument(span).await;
            match delivered {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(failed(format!("event {} not delivered: {e}", event.event_id), &e)),
                Err(_) => {
                    return Err(failed(
                        format!("event {} delivery cancelled", event.event_id),
                        &KafkaError::Canceled,
                    ));
                }
            }
        }
        self.sent();
        metrics::counter!("inventory_events_published_total").increment(events.len() as u64);
        Ok(())
    }
}
