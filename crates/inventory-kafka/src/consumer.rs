//! The saga consumer: records in, reservations and outcome events out.
//!
//! Records are taken in batches (whatever has arrived, up to `batch_max`)
//! and handled in one database transaction, in order, each order
//! all-or-nothing. Work on the same product is thereby serialised inside the
//! service instead of racing in the database. Offsets are stored only after
//! that transaction commits (or a poison record reached its dead-letter
//! topic), and committed by librdkafka in the background and at shutdown.
//!
//! With `batch_overlap`, a full batch (records are waiting) is saved in a task
//! of its own while the next batch is read, loaded and worked out on top of it (see
//! `Snapshot::overlay`); that next batch's save starts only once the first
//! has committed. When a save fails, nothing of it was written: its batch is
//! handled again from the start, and the batch worked out on top of it is
//! worked out again after it, so outcomes and offsets keep the records' order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inventory_domain::{
    ChangeSet, Clock, ErrorChain, IncomingEvent, InventoryRepository, InventoryService, Outcome, ServiceError,
};
use opentelemetry::trace::TraceContextExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;

use crate::publisher::KafkaPublisher;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::KafkaConfig;
use crate::decode::{Decoded, RawRecord, decode_with};
use crate::trace;
use crate::watchdog::{ConsumerHealth, SagaContext, watch};

/// Attempts at a batch that fails for a non-transient reason before its
/// events are handled one by one, so one bad event cannot stall the rest.
const ATTEMPTS_BEFORE_ISOLATING: u32 = 3;

/// How long a stopping consumer waits for its close (final commit, leaving the group).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a consumer being recreated is waited for to close before its successor is created.
const RECREATE_CLOSE_PATIENCE: Duration = Duration::from_secs(2);

/// What the consumer's loop waited for.
enum Next {
    Record(Result<OwnedMessage, KafkaError>),
    Saved(Result<Result<(), ServiceError>, tokio::task::JoinError>),
}

/// A batch worked out and being saved, in a task of its own, while the next one is read.
struct InFlight {
    save: tokio::task::JoinHandle<Result<(), ServiceError>>,
    saving: Saving,
}

/// A batch between its decoding and its offsets.
struct Saving {
    batch: Vec<Record>,
    commands: Vec<IncomingEvent>,
    origins: Vec<Origin>,
    /// One per command, valid once `changes` are saved.
    outcomes: Vec<Outcome>,
    changes: Arc<ChangeSet>,
    started: Instant,
    span: tracing::Span,
}

/// How a batch's handling left it.
enum Processed {
    /// Its save is in flight.
    Saving(InFlight),
    /// Through: saved (or nothing to save) and its offsets stored.
    Done,
    /// Shutdown interrupted it; its offsets are not stored.
    Stopped,
}

/// How a batch's save in flight ended.
#[derive(PartialEq, Eq)]
enum Landed {
    Saved,
    /// It failed, and the batch was handled again from the start.
    Redone,
    Stopped,
}

/// The save in flight's outcome (never called without one).
async fn saved(in_flight: &mut Option<InFlight>) -> Result<Result<(), ServiceError>, tokio::task::JoinError> {
    match in_flight {
        Some(flight) => (&mut flight.save).await,
        None => std::future::pending().await,
    }
}

/// Gathers a batch behind `first`, up to `max` records, from `next` (the consumer's `recv`). The
/// records already waiting are taken at once. Only when none were (the loop had caught up) does it
/// wait up to `linger` for more. When records wait, the loop is busy: a linger would add to every
/// waiting record's time, and to the next batch's wait. A consume error ends the batch (it is
/// logged).
async fn gather<T, F>(first: T, max: usize, linger: Duration, mut next: impl FnMut() -> F) -> Vec<T>
where
    F: std::future::Future<Output = Result<T, KafkaError>>,
{
    let mut batch = vec![first];
    let started = tokio::time::Instant::now();
    let mut deadline = started;
    let mut lingering = false;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, next()).await {
            Ok(Ok(record)) => batch.push(record),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "kafka consume error");
                break;
            }
            // A flag, not `deadline > started`: with a linger of zero that would never end.
            Err(_) if batch.len() == 1 && !lingering => {
                lingering = true;
                deadline = started + linger;
            }
            Err(_) => break,
        }
    }
    batch
}

/// How handling a group of events ended.
enum Attempted {
    /// Committed, with one outcome per event.
    Done(Vec<Outcome>),
    /// Still failing, not transiently, after the allowed attempts.
    Failed(ServiceError),
    /// Shutdown came first; nothing was committed.
    Stopped,
}

/// At most one WARN per unknown event type in this long.
const UNKNOWN_TYPE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Distinct unknown types counted by name; the rest count as `other`.
const UNKNOWN_TYPES_COUNTED: usize = 100;

/// The librdkafka consumer, closed on a thread of its own whichever way it
/// goes: closing waits for the group coordinator, which a broker outage can
/// make wait for good, and that must never block an async worker.
struct Handle(Option<Arc<StreamConsumer<SagaContext>>>);

impl std::ops::Deref for Handle {
    type Target = StreamConsumer<SagaContext>;
    fn deref(&self) -> &Self::Target {
        // Taken only by `close`, which consumes the handle.
        self.0
            .as_deref()
            .unwrap_or_else(|| unreachable!("the consumer is closed"))
    }
}

impl Handle {
    /// A weak reference, for the watchdog: its looks never make it the last owner for long.
    fn watch(&self) -> std::sync::Weak<StreamConsumer<SagaContext>> {
        self.0.as_ref().map(Arc::downgrade).unwrap_or_default()
    }

    /// Closes on a thread of its own; resolves when closed.
    fn close(mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (closed, done) = tokio::sync::oneshot::channel();
        if let Some(consumer) = self.0.take() {
            close_detached(consumer, Some(closed));
        }
        done
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close_detached(consumer, None);
        }
    }
}

/// Drops the consumer (which closes it) on a new thread, once that thread is
/// its last owner: a look of the watchdog may hold it for a few seconds.
fn close_detached(consumer: Arc<StreamConsumer<SagaContext>>, closed: Option<tokio::sync::oneshot::Sender<()>>) {
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || {
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            let mut consumer = consumer;
            loop {
                match Arc::try_unwrap(consumer) {
                    Ok(last) => {
                        drop(last);
                        break;
                    }
                    // Still shared past the deadline: the other owner closes it when it lets go.
                    Err(shared) if Instant::now() >= deadline => {
                        drop(shared);
                        break;
                    }
                    Err(shared) => {
                        consumer = shared;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            if let Some(closed) = closed {
                let _ = closed.send(());
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread to close the consumer; it stays open until the process ends");
    }
}

/// The consumer of order and payment events.
pub struct SagaConsumer<R, C> {
    consumer: Handle,
    publisher: KafkaPublisher,
    service: InventoryService<R, C>,
    config: KafkaConfig,
    health: Arc<ConsumerHealth>,
    /// When each unknown event type was last logged.
    unknown_types: Mutex<HashMap<String, Instant>>,
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

impl<R: InventoryRepository + 'static, C: Clock + 'static> SagaConsumer<R, C> {
    /// Subscribes to the order and payment topics.
    pub fn new(
        config: &KafkaConfig,
        service: InventoryService<R, C>,
        publisher: KafkaPublisher,
        health: Arc<ConsumerHealth>,
    ) -> Result<Self, KafkaError> {
        let context = SagaContext {
            health: Arc::clone(&health),
        };
        let consumer: StreamConsumer<SagaContext> = config
            .client_config()
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
            .create_with_context(context)?;
        consumer.subscribe(&[&config.order_topic, &config.payment_topic])?;
        Ok(Self {
            consumer: Handle(Some(Arc::new(consumer))),
            publisher,
            service,
            config: config.clone(),
            health,
            unknown_types: Mutex::new(HashMap::new()),
        })
    }

    /// Consumes until `shutdown`; then finishes the batch in hand and commits offsets. `leaving` is
    /// the application's own shutdown: when it is not cancelled this consumer is being recreated,
    /// and its close is not waited for long (see below).
    pub async fn run(self, shutdown: CancellationToken, leaving: CancellationToken) {
        self.health.started(self.config.watchdog.bound);
        // The batch whose save runs while the next one is read and worked out.
        let mut in_flight: Option<InFlight> = None;
        loop {
            if self.health.stalled() {
                // Fault injection: hang as a client that stopped polling would, until stopped.
                shutdown.cancelled().await;
                break;
            }
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.health.stall_injected() => continue,
                saved = saved(&mut in_flight), if in_flight.is_some() => Next::Saved(saved),
                m = self.consumer.recv() => Next::Record(m.map(|m| m.detach())),
            };
            let first = match next {
                Next::Saved(saved) => {
                    let flight = in_flight.take().expect("a save was in flight");
                    if !self.landed(flight, saved, &shutdown).await {
                        break;
                    }
                    continue;
                }
                Next::Record(Ok(m)) => m,
                Next::Record(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let batch = gather(
                Record::new(first),
                self.config.batch_max,
                self.config.batch_linger,
                || async { self.consumer.recv().await.map(|m| Record::new(m.detach())) },
            )
            .await;
            self.health.batch_started();
            // Only a full batch says records are waiting: then the next batch is worked out during
            // this one's save. Otherwise the save is waited for, which keeps the outcomes prompt
            // (overlapping every batch with records waiting behind its first was tried: paced p50
            // 25 ms and p99 67 ms, against 21 and 46 without, `docs/performance.md`).
            let overlap = self.config.batch_overlap && batch.len() >= self.config.batch_max;
            match self.process(batch, in_flight.take(), &shutdown).await {
                Processed::Saving(mut flight) if !overlap => {
                    let saved = (&mut flight.save).await;
                    if !self.landed(flight, saved, &shutdown).await {
                        break;
                    }
                }
                Processed::Saving(flight) => {
                    in_flight = Some(flight);
                    // The health's clock restarts with the save now in flight.
                    self.health.batch_started();
                }
                Processed::Done => self.health.batch_done(),
                Processed::Stopped => break,
            }
        }
        if let Some(flight) = in_flight.take() {
            // A save in flight is a transaction under way: its outcome is waited for, so its
            // offsets are stored when it committed.
            let saved = flight.save.await;
            let _ = self.land(flight.saving, saved, &shutdown).await;
        }
        self.health.stopped("the saga consumer is stopping");
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
            // Nothing stored since the last commit is also reported as an error.
            tracing::debug!(error = %e, "final offset commit");
        }
        // Closing commits what is stored and leaves the group. librdkafka can wait a long time for a
        // group coordinator after a broker hiccup (a synchronous commit here once waited for good),
        // so the close runs on a thread of its own and is awaited for a bounded time: offsets it
        // could not commit are only redelivered, and redelivery changes nothing twice.
        // When the consumer is recreated, its successor must not wait on it: after a broker outage
        // the close can take its whole timeout (seen: 10 s), and the group has no member meanwhile.
        // It goes on closing on its thread; the successor's group join makes the handover.
        let patience = if leaving.is_cancelled() {
            CLOSE_TIMEOUT + Duration::from_secs(5)
        } else {
            RECREATE_CLOSE_PATIENCE
        };
        let outcome = tokio::time::timeout(patience, self.consumer.close()).await.ok();
        match outcome {
            Some(_) => tracing::info!("saga consumer stopped"),
            None => tracing::warn!(
                waited = ?patience,
                "saga consumer did not close in time; it goes on closing apart, and records after its last \
                 committed offsets may be redelivered"
            ),
        }
    }

    /// Handles a batch: decodes it, works it out (while `earlier`, the batch before, is being
    /// saved), lands `earlier`, and starts this batch's save, which the caller lands later. A batch
    /// worked out on a view that did not hold (its predecessor's save failed, or could not be laid
    /// over) is handled again from the start, after its predecessor.
    async fn process(&self, batch: Vec<Record>, earlier: Option<InFlight>, shutdown: &CancellationToken) -> Processed {
        metrics::histogram!("inventory_consumer_batch_size").record(batch.len() as f64);
        let started = Instant::now();
        let span = tracing::info_span!(
            "consume batch",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.batch.message_count = batch.len(),
        );
        let decoded = self.decode(&batch, &span, shutdown).instrument(span.clone()).await;
        let prepared = match &decoded {
            Some((commands, _)) if !commands.is_empty() => {
                let overlay = earlier.as_ref().map(|f| Arc::clone(&f.saving.changes));
                let prepared = self.service.prepare_events(commands, overlay.as_deref());
                let prepared = prepared.instrument(span.clone()).await;
                if overlay.is_some() && matches!(prepared, Ok(Some(_))) {
                    self.health.overlapped();
                }
                Some(prepared)
            }
            _ => None,
        };
        let mut clean = true;
        if let Some(flight) = earlier {
            let saved = flight.save.await;
            match self.land(flight.saving, saved, shutdown).await {
                Landed::Saved => {}
                Landed::Redone => clean = false,
                Landed::Stopped => return Processed::Stopped,
            }
        }
        let Some((commands, origins)) = decoded else {
            return Processed::Stopped;
        };
        let mut saving = Saving {
            batch,
            commands,
            origins,
            outcomes: Vec::new(),
            changes: Arc::default(),
            started,
            span,
        };
        match prepared {
            None => {}
            Some(Ok(Some(prepared))) if clean => {
                saving.outcomes = prepared.outcomes;
                if !prepared.changes.is_empty() {
                    saving.changes = Arc::new(prepared.changes);
                    let (service, changes) = (self.service.clone(), Arc::clone(&saving.changes));
                    let save = tokio::spawn(
                        async move { service.save_prepared(&changes).await }.instrument(saving.span.clone()),
                    );
                    return Processed::Saving(InFlight { save, saving });
                }
                for (origin, outcome) in saving.origins.iter().zip(&saving.outcomes) {
                    answered(origin, *outcome, &saving.batch[origin.index]);
                }
            }
            // Worked out on a view that did not hold, or failed: handled from the start.
            Some(_) => {
                let handled = self.handle(&saving.commands, &saving.origins, &saving.batch, shutdown);
                if !handled.instrument(saving.span.clone()).await {
                    return Processed::Stopped;
                }
            }
        }
        self.done(&saving);
        Processed::Done
    }

    /// Lands a save in flight whose result is in (see [`Self::land`]) and tells the health the
    /// batch is through; false when shutdown interrupted it.
    async fn landed(
        &self,
        flight: InFlight,
        saved: Result<Result<(), ServiceError>, tokio::task::JoinError>,
        shutdown: &CancellationToken,
    ) -> bool {
        if self.land(flight.saving, saved, shutdown).await == Landed::Stopped {
            return false;
        }
        self.health.batch_done();
        true
    }

    /// Given a save's result: answers the saved batch's events and stores its offsets; or, when
    /// its save failed (nothing was written), handles its events again from the start.
    async fn land(
        &self,
        saving: Saving,
        saved: Result<Result<(), ServiceError>, tokio::task::JoinError>,
        shutdown: &CancellationToken,
    ) -> Landed {
        let failure = match saved {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(ErrorChain(&e).to_string()),
            Err(e) => Some(format!("its task ended: {e}")),
        };
        let landed = match failure {
            None => {
                for (origin, outcome) in saving.origins.iter().zip(&saving.outcomes) {
                    answered(origin, *outcome, &saving.batch[origin.index]);
                }
                Landed::Saved
            }
            Some(why) => {
                self.health.retried();
                tracing::warn!(error = %why, size = saving.commands.len(), "a batch's save failed; handling its events again");
                let handled = self.handle(&saving.commands, &saving.origins, &saving.batch, shutdown);
                if !handled.instrument(saving.span.clone()).await {
                    return Landed::Stopped;
                }
                Landed::Redone
            }
        };
        self.done(&saving);
        landed
    }

    /// A batch is through: its offsets are stored and its time recorded.
    fn done(&self, saving: &Saving) {
        for record in &saving.batch {
            let m = &record.message;
            if let Err(e) = self.consumer.store_offset(m.topic(), m.partition(), m.offset()) {
                // The partition was revoked meanwhile; its new owner redelivers, harmlessly.
                tracing::debug!(error = %e, "offset not stored");
            }
        }
        metrics::histogram!("inventory_batch_duration_seconds").record(saving.started.elapsed().as_secs_f64());
    }

    /// Decodes a batch: its commands and where each came from; unreadable records go to the dead
    /// letters. `None` when shutdown interrupted a dead letter.
    async fn decode(
        &self,
        batch: &[Record],
        batch_span: &tracing::Span,
        shutdown: &CancellationToken,
    ) -> Option<(Vec<IncomingEvent>, Vec<Origin>)> {
        // The decoded commands, and for each its type, its record's place in the batch and its span.
        let mut commands: Vec<IncomingEvent> = Vec::new();
        let mut origins: Vec<Origin> = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let raw = RawRecord {
                payload: record.message.payload(),
                headers: &record.headers,
            };
            match decode_with(raw, &self.config.decode) {
                Decoded::Event { mut event, event_type } => {
                    let span = event_span(batch_span, &mut event, event_type, record);
                    commands.push(event);
                    origins.push(Origin {
                        event_type,
                        index,
                        span,
                    });
                }
                Decoded::Skip { event_type } => self.unknown_type(&event_type, record.message.topic()),
                Decoded::Invalid { mut event, error } => {
                    let span = event_span(batch_span, &mut event, "OrderCreatedEvent", record);
                    span.record("outcome", "dead-lettered and rejected");
                    // Dead-lettered for the evidence, and answered so the order does not wait for ever.
                    if !self
                        .dead_letter(record, &error, shutdown)
                        .instrument(span.clone())
                        .await
                    {
                        return None;
                    }
                    commands.push(event);
                    origins.push(Origin {
                        event_type: "OrderCreatedEvent",
                        index,
                        span,
                    });
                }
                Decoded::Poison { error } => {
                    if !self.dead_letter(record, &error, shutdown).await {
                        return None;
                    }
                }
            }
        }
        Some((commands, origins))
    }

    async fn handle(
        &self,
        commands: &[IncomingEvent],
        origins: &[Origin],
        batch: &[Record],
        shutdown: &CancellationToken,
    ) -> bool {
        match self.handle_with_retries(commands, shutdown).await {
            Attempted::Done(outcomes) => {
                for (origin, outcome) in origins.iter().zip(&outcomes) {
                    answered(origin, *outcome, &batch[origin.index]);
                }
                true
            }
            Attempted::Stopped => false,
            Attempted::Failed(e) => {
                tracing::error!(error = %ErrorChain(&e), "batch keeps failing; handling its events one by one");
                self.isolate(commands, origins, batch, shutdown).await
            }
        }
    }

    /// Handles each event on its own; one that still fails goes to the dead letters.
    async fn isolate(
        &self,
        commands: &[IncomingEvent],
        origins: &[Origin],
        batch: &[Record],
        shutdown: &CancellationToken,
    ) -> bool {
        for (event, origin) in commands.iter().zip(origins) {
            match self.handle_with_retries(std::slice::from_ref(event), shutdown).await {
                Attempted::Done(outcomes) => answered(origin, outcomes[0], &batch[origin.index]),
                Attempted::Stopped => return false,
                Attempted::Failed(e) => {
                    let error = format!("processing failed: {}", ErrorChain(&e));
                    origin.span.record("outcome", "dead-lettered");
                    if !self
                        .dead_letter(&batch[origin.index], &error, shutdown)
                        .instrument(origin.span.clone())
                        .await
                    {
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
                // A transient failure (the database down or restarting, a race) is retried for as long as
                // it lasts: it is never the event's fault, so it never isolates or dead-letters one.
                Err(e) if e.is_transient() || attempt < ATTEMPTS_BEFORE_ISOLATING => {
                    self.health.retried();
                    tracing::warn!(error = %ErrorChain(&e), transient = e.is_transient(), attempt, size = events.len(), "handling failed; retrying");
                    if !pause(attempt, shutdown).await {
                        return Attempted::Stopped;
                    }
                }
                Err(e) => return Attempted::Failed(e),
            }
        }
    }

    /// Counts an event type this service does not act on, and logs it at WARN once a minute per type:
    /// the topics carry other services' events, but a misspelt or renamed type would leave orders unanswered.
    fn unknown_type(&self, event_type: &str, topic: &str) {
        let mut seen = self
            .unknown_types
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let known = seen.contains_key(event_type);
        let label = if known || seen.len() < UNKNOWN_TYPES_COUNTED {
            event_type.chars().take(64).collect::<String>()
        } else {
            "other".to_owned()
        };
        metrics::counter!("inventory_events_skipped_total", "type" => label).increment(1);
        let now = Instant::now();
        let due = seen
            .get(event_type)
            .is_none_or(|last| now.duration_since(*last) >= UNKNOWN_TYPE_LOG_EVERY);
        if due && (known || seen.len() < UNKNOWN_TYPES_COUNTED) {
            seen.insert(event_type.to_owned(), now);
            tracing::warn!(
                event_type = %event_type.chars().take(200).collect::<String>(),
                topic,
                "skipping events of a type this service does not handle (logged once a minute per type)"
            );
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
            let headers = dead_letter_headers(record, error, drop_payload, &self.config.group_id);
            let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
            if let Some(key) = m.key() {
                out = out.key(key);
            }
            if !drop_payload && let Some(payload) = m.payload() {
                out = out.payload(payload);
            }
            let producer = self.publisher.producer();
            match producer.send(out, Duration::from_secs(10)).await {
                Ok(_) => {
                    self.publisher.sent();
                    metrics::counter!("inventory_dead_letters_total", "topic" => m.topic().to_owned()).increment(1);
                    return true;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) if !drop_payload => {
                    tracing::warn!(%topic, "record too large for the dead-letter topic; sending it without its value");
                    drop_payload = true;
                }
                Err((e, _)) => {
                    let renewed = self.publisher.renew_if_stuck(&producer, &e);
                    tracing::error!(error = %e, renewed, %topic, "cannot write a dead letter; retrying");
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
fn dead_letter_headers(record: &Record, error: &str, drop_payload: bool, group: &str) -> OwnedHeaders {
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
    // The same facts under the names and encodings Spring's DeadLetterPublishingRecoverer writes
    // (partition a 4-byte and offset and timestamp 8-byte big-endian integers), so Spring's DLT
    // tooling reads our dead letters as its own.
    let (timestamp, timestamp_type) = match m.timestamp() {
        rdkafka::Timestamp::CreateTime(t) => (t, "CreateTime"),
        rdkafka::Timestamp::LogAppendTime(t) => (t, "LogAppendTime"),
        rdkafka::Timestamp::NotAvailable => (-1, "NoTimestampType"),
    };
    let spring: [(&str, Vec<u8>); 8] = [
        ("kafka_dlt-original-topic", m.topic().as_bytes().to_vec()),
        ("kafka_dlt-original-partition", m.partition().to_be_bytes().to_vec()),
        ("kafka_dlt-original-offset", m.offset().to_be_bytes().to_vec()),
        ("kafka_dlt-original-timestamp", timestamp.to_be_bytes().to_vec()),
        ("kafka_dlt-original-timestamp-type", timestamp_type.as_bytes().to_vec()),
        ("kafka_dlt-original-consumer-group", group.as_bytes().to_vec()),
        ("kafka_dlt-exception-fqcn", DLT_EXCEPTION_FQCN.as_bytes().to_vec()),
        ("kafka_dlt-exception-message", error.as_bytes().to_vec()),
    ];
    for (key, value) in &spring {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    headers
}

/// What Spring's `kafka_dlt-exception-fqcn` names for our dead letters: no Java class threw, so a
/// stable name of the service's own.
const DLT_EXCEPTION_FQCN: &str = "inventory.service.UnreadableRecord";

/// Where a decoded command came from.
struct Origin {
    event_type: &'static str,
    /// Its record's place in the batch.
    index: usize,
    /// Its span, from decoding to its outcome's commit.
    span: tracing::Span,
}

/// A span for one consumed event, child of the record's trace context when it carries one (else of
/// its batch); the event's answers will carry this span's context.
fn event_span(
    batch_span: &tracing::Span,
    event: &mut IncomingEvent,
    event_type: &'static str,
    record: &Record,
) -> tracing::Span {
    let m = &record.message;
    let span = tracing::info_span!(
        parent: batch_span,
        "handle event",
        otel.name = %format_args!("handle {event_type}"),
        otel.kind = "consumer",
        messaging.destination.name = m.topic(),
        messaging.kafka.partition = m.partition(),
        messaging.kafka.offset = m.offset(),
        event.r#type = event_type,
        event.id = %event.meta.event_id,
        order.id = %event.command.order_id(),
        correlation.id = event.meta.correlation_id.as_deref().unwrap_or(""),
        outcome = tracing::field::Empty,
    );
    trace::continue_from(&span, &event.meta.echo.headers);
    trace::carry(&span, &mut event.meta.echo.headers);
    // The batch's transaction serves many traces: its span links to each event's.
    batch_span.add_link(span.context().span().span_context().clone());
    span
}

/// Counts an event's outcome, records it on its span and times it from its record's timestamp.
fn answered(origin: &Origin, outcome: Outcome, record: &Record) {
    metrics::counter!("inventory_events_total", "type" => origin.event_type, "outcome" => outcome.as_str())
        .increment(1);
    origin.span.record("outcome", outcome.as_str());
    if let Some(created) = record.message.timestamp().to_millis() {
        let age = (chrono::Utc::now().timestamp_millis() - created).max(0) as f64 / 1000.0;
        metrics::histogram!("inventory_event_duration_seconds", "type" => origin.event_type).record(age);
    }
}

/// Backs off before a retry; false when shutdown came first.
async fn pause(attempt: u32, shutdown: &CancellationToken) -> bool {
    let wait = Duration::from_millis(50 * 2u64.pow(attempt.min(7))).min(Duration::from_secs(5));
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Runs the saga consumer until `shutdown`, with a watchdog beside it: when
/// the consumer stops consuming (see [`crate::watchdog`]) or its loop ends,
/// it is closed and a new one joins the group. `health` tells readiness.
pub async fn run_saga<R, C>(
    config: KafkaConfig,
    service: InventoryService<R, C>,
    publisher: KafkaPublisher,
    health: Arc<ConsumerHealth>,
    shutdown: CancellationToken,
) where
    R: InventoryRepository + 'static,
    C: Clock + 'static,
{
    let mut attempt = 0u32;
    loop {
        let consumer = match SagaConsumer::new(&config, service.clone(), publisher.clone(), Arc::clone(&health)) {
            Ok(c) => c,
            Err(e) => {
                attempt += 1;
                health.stopped(&format!("cannot create the consumer: {e}"));
                tracing::error!(error = %e, "cannot create the saga consumer; retrying");
                if !pause(attempt, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        attempt = 0;
        let admin = match config.client_config().create() {
            Ok(admin) => admin,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the watchdog's client; retrying");
                if !pause(1, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        let stop = shutdown.child_token();
        let watchdog = tokio::spawn(watch(
            consumer.consumer.watch(),
            admin,
            Arc::clone(&health),
            config.watchdog,
            config.group_id.clone(),
            vec![config.order_topic.clone(), config.payment_topic.clone()],
            stop.clone(),
        ));
        let ended = tokio::spawn(consumer.run(stop.clone(), shutdown.clone())).await;
        stop.cancel();
        let _ = watchdog.await;
        if shutdown.is_cancelled() {
            return;
        }
        let cause = match ended {
            Err(e) => {
                tracing::error!(error = %e, "the saga consumer's loop panicked; recreating it");
                "panicked"
            }
            Ok(()) => "watchdog",
        };
        health.restarted(cause);
        health.stopped("recreating the saga consumer");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rdkafka::error::KafkaError;
    use tokio::sync::{Mutex, mpsc};

    use super::gather;

    type Next = std::pin::Pin<Box<dyn Future<Output = Result<u32, KafkaError>> + Send>>;

    /// `gather`'s source over a channel: what was sent is waiting; an empty channel waits.
    fn source(rx: mpsc::UnboundedReceiver<u32>) -> impl FnMut() -> Next {
        let rx = Arc::new(Mutex::new(rx));
        move || {
            let rx = Arc::clone(&rx);
            Box::pin(async move { rx.lock().await.recv().await.ok_or(KafkaError::NoMessageReceived) })
        }
    }

    /// A source with `records` already waiting, and its sender: kept, so that once they are taken
    /// the source waits rather than ends.
    fn waiting(records: std::ops::RangeInclusive<u32>) -> (mpsc::UnboundedSender<u32>, impl FnMut() -> Next) {
        let (tx, rx) = mpsc::unbounded_channel();
        for record in records {
            tx.send(record).unwrap();
        }
        (tx, source(rx))
    }

    #[tokio::test(start_paused = true)]
    async fn records_already_waiting_are_taken_without_a_linger() {
        let (tx, next) = waiting(1..=5);
        let started = tokio::time::Instant::now();
        let batch = gather(0, 100, Duration::from_secs(3600), next).await;
        assert_eq!(batch, vec![0, 1, 2, 3, 4, 5]);
        // The clock is paused and only moves when every task waits on a timer: the linger's.
        assert_eq!(started.elapsed(), Duration::ZERO, "no linger");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_record_lingers_for_those_arriving_within_the_linger() {
        let (tx, rx) = mpsc::unbounded_channel();
        let started = tokio::time::Instant::now();
        let sender = tokio::spawn(async move {
            for (at, record) in [(1, 1), (3, 2), (6, 3)] {
                tokio::time::sleep_until(started + Duration::from_millis(at)).await;
                // The last comes after the batch was gathered and its source dropped.
                let _ = tx.send(record);
            }
        });
        let batch = gather(0, 100, Duration::from_millis(4), source(rx)).await;
        assert_eq!(batch, vec![0, 1, 2], "those sent within 4 ms, not the one after");
        assert_eq!(started.elapsed(), Duration::from_millis(4), "it lingered its 4 ms");
        sender.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_linger_of_zero_takes_a_lone_record_alone() {
        // `KAFKA_BATCH_LINGER_MS=0`: the linger's deadline is the start, and the batch still ends.
        let (tx, rx) = mpsc::unbounded_channel::<u32>();
        let next = source(rx);
        let started = tokio::time::Instant::now();
        let batch = tokio::time::timeout(Duration::from_secs(60), gather(0, 100, Duration::ZERO, next))
            .await
            .expect("the batch ended");
        assert_eq!(batch, vec![0]);
        assert_eq!(started.elapsed(), Duration::ZERO);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_stops_at_its_maximum() {
        let (tx, next) = waiting(1..=9);
        let started = tokio::time::Instant::now();
        let batch = gather(0, 4, Duration::from_secs(1), next).await;
        assert_eq!(batch, vec![0, 1, 2, 3]);
        let batch = gather(0, 1, Duration::from_secs(1), source(mpsc::unbounded_channel().1)).await;
        assert_eq!(batch, vec![0], "a batch of one is full at once");
        assert_eq!(started.elapsed(), Duration::ZERO, "neither lingered");
        drop(tx);
    }
}
