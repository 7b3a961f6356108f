//! The saga consumer: records in, reservations and outcome events out.
//!
//! Records are taken in batches (whatever has arrived, up to `batch_max`)
//! and handled in one database transaction, in order, each order
//! all-or-nothing. Work on the same product is thereby serialised inside the
//! service instead of racing in the database. Offsets are stored only after
//! that transaction commits (or a poison record reached its dead-letter
//! topic), and committed by librdkafka in the background and at shutdown.

use std::time::Duration;

use inventory_domain::{Clock, IncomingEvent, InventoryRepository, InventoryService, Outcome, ServiceError};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::decode::{Decoded, RawRecord, decode};

/// Attempts at a batch that fails for a non-transient reason before its
/// events are handled one by one, so one bad event cannot stall the rest.
const ATTEMPTS_BEFORE_ISOLATING: u32 = 3;

/// How long a stopping consumer waits for its close (final commit, leaving the group).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How handling a group of events ended.
enum Attempted {
    /// Committed, with one outcome per event.
    Done(Vec<Outcome>),
    /// Still failing, not transiently, after the allowed attempts.
    Failed(ServiceError),
    /// Shutdown came first; nothing was committed.
    Stopped,
}

/// The consumer of order and payment events.
pub struct SagaConsumer<R, C> {
    consumer: StreamConsumer,
    producer: FutureProducer,
    service: InventoryService<R, C>,
    config: KafkaConfig,
}

struct Record {
    message: OwnedMessage,
    headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    fn new(message: OwnedMessage) -> Self {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Self { message, headers }
    }
}

impl<R: InventoryRepository, C: Clock> SagaConsumer<R, C> {
    /// Subscribes to the order and payment topics.
    pub fn new(
        config: &KafkaConfig,
        service: InventoryService<R, C>,
        producer: FutureProducer,
    ) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, after the database commit.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            .set(
                "max.poll.interval.ms",
                config
                    .max_poll_interval
                    .max(config.session_timeout)
                    .as_millis()
                    .to_string(),
            )
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()?;
        consumer.subscribe(&[&config.order_topic, &config.payment_topic])?;
        Ok(Self {
            consumer,
            producer,
            service,
            config: config.clone(),
        })
    }

    /// Consumes until `shutdown`; then finishes the batch in hand and commits offsets.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut batch = vec![Record::new(first)];
            let deadline = tokio::time::Instant::now() + self.config.batch_linger;
            while batch.len() < self.config.batch_max {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(Record::new(m.detach())),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !self.process(&batch, &shutdown).await {
                break;
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
            // Nothing stored since the last commit is also reported as an error.
            tracing::debug!(error = %e, "final offset commit");
        }
        // Closing commits what is stored and leaves the group. librdkafka can wait a long time for a
        // group coordinator after a broker hiccup (a synchronous commit here once waited for good),
        // so the close runs on a thread of its own and is awaited for a bounded time: offsets it
        // could not commit are only redelivered, and redelivery changes nothing twice.
        let (closed, close_done) = tokio::sync::oneshot::channel();
        let consumer = self.consumer;
        let spawned = std::thread::Builder::new()
            .name("kafka-consumer-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = closed.send(());
            });
        let outcome = match spawned {
            Ok(_) => tokio::time::timeout(CLOSE_TIMEOUT, close_done).await.ok(),
            Err(_) => None,
        };
        match outcome {
            Some(_) => tracing::info!("saga consumer stopped"),
            None => tracing::warn!(
                timeout = ?CLOSE_TIMEOUT,
                "saga consumer did not close in time; records after its last committed offsets will be redelivered"
            ),
        }
    }

    /// Handles a batch; false when shutdown interrupted it (offsets not stored).
    async fn process(&self, batch: &[Record], shutdown: &CancellationToken) -> bool {
        metrics::histogram!("inventory_consumer_batch_size").record(batch.len() as f64);
        // The decoded commands, and for each its type and its record's place in the batch.
        let mut commands: Vec<IncomingEvent> = Vec::new();
        let mut origins: Vec<(&'static str, usize)> = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let raw = RawRecord {
                payload: record.message.payload(),
                headers: &record.headers,
            };
            match decode(raw) {
                Decoded::Event { event, event_type } => {
                    commands.push(event);
                    origins.push((event_type, index));
                }
                Decoded::Skip { event_type } => {
                    metrics::counter!("inventory_events_skipped_total").increment(1);
                    tracing::debug!(%event_type, topic = record.message.topic(), "skipping an event of another type");
                }
                Decoded::Poison { error } => {
                    if !self.dead_letter(record, &error, shutdown).await {
                        return false;
                    }
                }
            }
        }
        if !commands.is_empty() && !self.handle(&commands, &origins, batch, shutdown).await {
            return false;
        }
        for record in batch {
            let m = &record.message;
            if let Err(e) = self.consumer.store_offset(m.topic(), m.partition(), m.offset()) {
                // The partition was revoked meanwhile; its new owner redelivers, harmlessly.
                tracing::debug!(error = %e, "offset not stored");
            }
        }
        true
    }

    async fn handle(
        &self,
        commands: &[IncomingEvent],
        origins: &[(&'static str, usize)],
        batch: &[Record],
        shutdown: &CancellationToken,
    ) -> bool {
        match self.handle_with_retries(commands, shutdown).await {
            Attempted::Done(outcomes) => {
                for ((event_type, _), outcome) in origins.iter().zip(&outcomes) {
                    count(event_type, *outcome);
                }
                true
            }
            Attempted::Stopped => false,
            Attempted::Failed(e) => {
                tracing::error!(error = %e, "batch keeps failing; handling its events one by one");
                self.isolate(commands, origins, batch, shutdown).await
            }
        }
    }

    /// Handles each event on its own; one that still fails goes to the dead letters.
    async fn isolate(
        &self,
        commands: &[IncomingEvent],
        origins: &[(&'static str, usize)],
        batch: &[Record],
        shutdown: &CancellationToken,
    ) -> bool {
        for (event, (event_type, index)) in commands.iter().zip(origins) {
            match self.handle_with_retries(std::slice::from_ref(event), shutdown).await {
                Attempted::Done(outcomes) => count(event_type, outcomes[0]),
                Attempted::Stopped => return false,
                Attempted::Failed(e) => {
                    let error = format!("processing failed: {e}");
                    if !self.dead_letter(&batch[*index], &error, shutdown).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Handles `events` in one transaction, retrying a transient failure for as
    /// long as it lasts and any other until `ATTEMPTS_BEFORE_ISOLATING` attempts.
    async fn handle_with_retries(&self, events: &[IncomingEvent], shutdown: &CancellationToken) -> Attempted {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.service.handle_events(events).await {
                Ok(outcomes) => return Attempted::Done(outcomes),
                Err(e) if is_transient(&e) || attempt < ATTEMPTS_BEFORE_ISOLATING => {
                    metrics::counter!("inventory_consumer_retries_total").increment(1);
                    tracing::warn!(error = %e, attempt, size = events.len(), "handling failed; retrying");
                    if !pause(attempt, shutdown).await {
                        return Attempted::Stopped;
                    }
                }
                Err(e) => return Attempted::Failed(e),
            }
        }
    }

    /// Sends a record to `<topic>.DLT`, retrying until the broker takes it.
    async fn dead_letter(&self, record: &Record, error: &str, shutdown: &CancellationToken) -> bool {
        let m = &record.message;
        let topic = KafkaConfig::dead_letter_topic(m.topic());
        tracing::warn!(%error, source_topic = m.topic(), partition = m.partition(), offset = m.offset(), "dead-lettering a record");
        let mut attempt = 0;
        let mut drop_payload = false;
        loop {
            attempt += 1;
            let headers = dead_letter_headers(record, error, drop_payload);
            let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
            if let Some(key) = m.key() {
                out = out.key(key);
            }
            if !drop_payload && let Some(payload) = m.payload() {
                out = out.payload(payload);
            }
            match self.producer.send(out, Duration::from_secs(10)).await {
                Ok(_) => {
                    metrics::counter!("inventory_dead_letters_total", "topic" => m.topic().to_owned()).increment(1);
                    return true;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) if !drop_payload => {
                    tracing::warn!(%topic, "record too large for the dead-letter topic; sending it without its value");
                    drop_payload = true;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, %topic, "cannot write a dead letter; retrying");
                    if !pause(attempt, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// The original headers (unless the value is dropped: then only the
/// evidence) plus where the record came from and why it failed.
fn dead_letter_headers(record: &Record, error: &str, drop_payload: bool) -> OwnedHeaders {
    let m = &record.message;
    let mut headers = OwnedHeaders::new();
    if !drop_payload {
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: Some(v.as_slice()),
            });
        }
    }
    let mut extra = vec![
        ("dlt-error", error.to_owned()),
        ("dlt-source-topic", m.topic().to_owned()),
        ("dlt-source-partition", m.partition().to_string()),
        ("dlt-source-offset", m.offset().to_string()),
        ("dlt-failed-at", chrono::Utc::now().to_rfc3339()),
    ];
    if drop_payload {
        // The broker refuses the value itself: keep the evidence, not the bytes.
        extra.push((
            "dlt-payload-dropped-bytes",
            m.payload().map_or(0, <[u8]>::len).to_string(),
        ));
    }
    for (key, value) in &extra {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_str()),
        });
    }
    headers
}

fn is_transient(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Unavailable(_) | ServiceError::Contention { .. })
}

fn count(event_type: &'static str, outcome: Outcome) {
    metrics::counter!("inventory_events_total", "type" => event_type, "outcome" => outcome.as_str()).increment(1);
}

/// Backs off before a retry; false when shutdown came first.
async fn pause(attempt: u32, shutdown: &CancellationToken) -> bool {
    let wait = Duration::from_millis(50 * 2u64.pow(attempt.min(7))).min(Duration::from_secs(5));
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.cancelled() => false,
    }
}
