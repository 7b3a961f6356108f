//! Liveness of the saga consumer: what it holds and how far behind it is,
//! the group's life in the log, and a watchdog that recreates a consumer
//! that stopped answering orders and tells readiness so meanwhile.
//!
//! A consumer counts as **not consuming** (readiness DOWN, with the reason)
//! while its consume loop is not running, while it holds no partition and
//! the group has fewer members than partitions (it is not a standby: some
//! partition has nobody, or it never joined), while its partitions have
//! lag and it made no progress for half the bound, and while how far behind
//! it is cannot be read for half the bound. The last three, once they last
//! the whole bound, make the watchdog recreate it (the last only when the
//! broker answers another client meanwhile: recreating would not help).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

/// How the watchdog judges.
#[derive(Debug, Clone, Copy)]
pub struct WatchdogConfig {
    /// Longest a consumer may hold no partition (when the group needs it) or
    /// have lag without progress before it is recreated.
    pub bound: Duration,
    /// How often it looks.
    pub interval: Duration,
}

impl WatchdogConfig {
    /// Default [`WatchdogConfig::bound`], in milliseconds.
    pub const DEFAULT_BOUND_MS: u64 = 30_000;
    /// The shortest bound accepted: below it a consumer still joining its group would be recreated.
    pub const MIN_BOUND_MS: u64 = 1_000;

    /// A watchdog with `bound`, looking about five times per bound (every 0.5 to 2 s).
    pub fn with_bound(bound: Duration) -> Self {
        Self {
            bound,
            interval: (bound / 5).clamp(Duration::from_millis(500), Duration::from_secs(2)),
        }
    }
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self::with_bound(Duration::from_millis(Self::DEFAULT_BOUND_MS))
    }
}

/// What the saga consumer is doing, shared by the consumer, its watchdog and readiness.
#[derive(Debug, Default)]
pub struct ConsumerHealth {
    state: Mutex<State>,
    restarts: AtomicU64,
    /// Batches (or events) handled again after a failed save or attempt.
    retries: AtomicU64,
    /// Batches worked out while the batch before them was being saved.
    overlapped: AtomicU64,
    /// Wakes a consume loop waiting for records when a stall is injected.
    stall_injected: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    assigned: usize,
    /// Since when it has held no partition (while running).
    unassigned_since: Option<Instant>,
    /// A batch is in hand since then (the database may be slow or down).
    handling_since: Option<Instant>,
    last_progress: Option<Instant>,
    /// Why it does not consume, when it does not.
    problem: Option<String>,
    /// Records behind on its partitions at the last look (0 when it could not be read).
    behind: i64,
    /// Since when its lag could not be read, while it holds partitions.
    blind_since: Option<Instant>,
    /// The watchdog's bound.
    bound: Duration,
    /// Fault injection for tests: the loop stops polling until recreated.
    stall: bool,
}

/// What the watchdog decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Consuming, or a standby the group does not need.
    Fine,
    /// Not consuming, for this reason, but not yet for longer than the bound.
    NotReady(String),
    /// Not consuming for longer than the bound: recreate it.
    Restart(&'static str, String),
}

/// What one look at the consumer and its group found.
#[derive(Debug, Default)]
pub(crate) struct Look {
    /// Lag per assigned partition, when it could be read.
    pub lag: Option<BTreeMap<(String, i32), i64>>,
    /// Members of the group and partitions of its topics, when they could be read.
    pub group: Option<(usize, usize)>,
    /// Why something could not be read.
    pub error: Option<String>,
    /// When the look began: progress after it makes its lag stale.
    pub started: Option<Instant>,
    /// The lag could not be read, but the broker answered another client (the watchdog's own).
    pub broker_answers: bool,
}

impl ConsumerHealth {
    /// A fresh record: not running yet.
    pub fn new() -> Arc<Self> {
        let health = Self::default();
        health.lock().problem = Some("the saga consumer has not started".into());
        Arc::new(health)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Ok` while the saga consumes; otherwise why not.
    pub fn status(&self) -> Result<(), String> {
        let state = self.lock();
        match (&state.problem, state.running) {
            (Some(problem), _) => Err(problem.clone()),
            (None, false) => Err("the saga consumer is not running".into()),
            (None, true) => {
                // Between two looks of the watchdog: records known to wait, and nothing moved since.
                let idle = state.last_progress.map_or(Duration::ZERO, |at| at.elapsed());
                if state.behind > 0 && state.handling_since.is_none() && idle >= state.bound / 2 {
                    Err(format!(
                        "{} records behind and no progress for {} s",
                        state.behind,
                        idle.as_secs()
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Consumers recreated by the watchdog (or after their loop ended).
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Batches or events this consumer handled again after a failed save or attempt (the
    /// process-wide sum is `inventory_consumer_retries_total`).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Batches this consumer worked out while the one before was being saved (the process-wide
    /// sum is `inventory_consumer_batches_overlapped_total`).
    pub fn batches_overlapped(&self) -> u64 {
        self.overlapped.load(Ordering::Relaxed)
    }

    /// Partitions held now.
    pub fn assigned(&self) -> usize {
        self.lock().assigned
    }

    /// Fault injection for tests: the consume loop stops polling, as a hung
    /// client would, until the watchdog recreates the consumer.
    pub fn inject_stall(&self) {
        self.lock().stall = true;
        self.stall_injected.notify_waiters();
    }

    pub(crate) fn stalled(&self) -> bool {
        self.lock().stall
    }

    /// Resolves when a stall is injected.
    pub(crate) async fn stall_injected(&self) {
        self.stall_injected.notified().await;
    }

    pub(crate) fn started(&self, bound: Duration) {
        let mut state = self.lock();
        let now = Instant::now();
        *state = State {
            running: true,
            bound,
            unassigned_since: Some(now),
            last_progress: Some(now),
            problem: Some("joining the consumer group".into()),
            ..State::default()
        };
    }

    pub(crate) fn stopped(&self, why: &str) {
        let mut state = self.lock();
        state.running = false;
        state.assigned = 0;
        state.problem = Some(why.to_owned());
        metrics::gauge!("inventory_consumer_assigned_partitions").set(0.0);
    }

    pub(crate) fn restarted(&self, cause: &'static str) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("inventory_consumer_restarts_total", "cause" => cause).increment(1);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("inventory_consumer_retries_total").increment(1);
    }

    pub(crate) fn overlapped(&self) {
        self.overlapped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("inventory_consumer_batches_overlapped_total").increment(1);
    }

    /// The assignment after a rebalance.
    pub(crate) fn set_assignment(&self, partitions: usize) {
        let mut state = self.lock();
        state.assigned = partitions;
        if partitions == 0 {
            state.unassigned_since.get_or_insert_with(Instant::now);
        } else {
            state.unassigned_since = None;
            state.problem = None;
            // A new assignment is a fresh start for the progress clock.
            state.last_progress = Some(Instant::now());
        }
        metrics::gauge!("inventory_consumer_assigned_partitions").set(partitions as f64);
    }

    pub(crate) fn batch_started(&self) {
        self.lock().handling_since = Some(Instant::now());
    }

    pub(crate) fn batch_done(&self) {
        let mut state = self.lock();
        state.handling_since = None;
        state.last_progress = Some(Instant::now());
    }

    /// Judges one look, records the verdict for readiness, and returns it.
    pub(crate) fn judge(&self, look: &Look, bound: Duration) -> Verdict {
        let mut state = self.lock();
        let now = Instant::now();
        let verdict = judge(&mut state, look, bound, now);
        state.problem = match &verdict {
            Verdict::Fine => None,
            Verdict::NotReady(why) | Verdict::Restart(_, why) => Some(why.clone()),
        };
        if let Some(at) = state.last_progress {
            metrics::gauge!("inventory_consumer_seconds_since_progress").set(now.duration_since(at).as_secs_f64());
        }
        verdict
    }
}

fn judge(state: &mut State, look: &Look, bound: Duration, now: Instant) -> Verdict {
    if !state.running {
        return Verdict::NotReady("the saga consumer is not running".into());
    }
    if state.assigned == 0 {
        if look.group.is_none() {
            // The broker does not answer: recreating would not help. The wait for an assignment
            // counts from when it answers again, so a consumer rejoining after an outage gets the
            // whole bound, and is not recreated in the middle of its rejoin.
            state.unassigned_since = Some(now);
            return Verdict::NotReady(format!(
                "no partition assigned and the group cannot be read: {}",
                look.error.as_deref().unwrap_or("unknown error")
            ));
        }
        let since = *state.unassigned_since.get_or_insert(now);
        let waited = now.duration_since(since);
        return match look.group {
            // Every partition has a member already: a standby, as with more instances than partitions.
            Some((members, partitions)) if partitions > 0 && members >= partitions && waited >= bound => Verdict::Fine,
            Some((members, partitions)) if waited >= bound => Verdict::Restart(
                "unassigned",
                format!(
                    "no partition assigned for {} s while the group has {members} members for {partitions} partitions",
                    waited.as_secs()
                ),
            ),
            _ => Verdict::NotReady(format!("joining the consumer group ({} s)", waited.as_secs())),
        };
    }
    let Some(lag) = &look.lag else {
        // Holding partitions, and how far behind cannot be read: not a verdict of "fine" for long.
        // A broker that answers nobody is readiness' broker check's to report, and recreating
        // would not help; one that answers the watchdog's own client while this consumer's
        // committed offsets cannot be read points at the consumer's own connections.
        state.behind = 0;
        let since = *state.blind_since.get_or_insert(now);
        let blind = now.duration_since(since);
        let why = || {
            format!(
                "how far behind it is cannot be read for {} s: {}",
                blind.as_secs(),
                look.error.as_deref().unwrap_or("unknown error")
            )
        };
        return if blind >= bound && look.broker_answers {
            Verdict::Restart("blind", why())
        } else if blind >= bound / 2 {
            Verdict::NotReady(why())
        } else {
            Verdict::Fine
        };
    };
    state.blind_since = None;
    let behind: i64 = lag.values().filter(|l| **l > 0).sum();
    state.behind = behind;
    if behind == 0 {
        state.last_progress = Some(now);
        return Verdict::Fine;
    }
    if state.handling_since.is_some() || look.started.zip(state.last_progress).is_some_and(|(l, p)| p >= l) {
        // A batch is in hand: the database decides its pace (and readiness' database check says so).
        // Or the consumer moved on while the look was under way: its lag is stale.
        return Verdict::Fine;
    }
    let idle = now.duration_since(state.last_progress.unwrap_or(now));
    let why = || {
        format!(
            "{behind} records behind on {} partitions and no progress for {} s",
            lag.values().filter(|l| **l > 0).count(),
            idle.as_secs()
        )
    };
    // Records wait and nothing moves: not ready from half the bound (a poll
    // takes milliseconds, so this is no hiccup), recreated at the bound.
    if idle >= bound {
        Verdict::Restart("stalled", why())
    } else if idle >= bound / 2 {
        Verdict::NotReady(why())
    } else {
        Verdict::Fine
    }
}

/// Reads lag (and, while nothing is assigned, the group's size): blocking
/// broker calls, each bounded by `timeout`. The group and the watermarks are
/// asked through `admin`, a plain client of its own, so a busy consumer
/// handle does not slow the look down.
pub(crate) fn look(
    consumer: &StreamConsumer<SagaContext>,
    admin: &BaseConsumer,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Look {
    let mut look = Look {
        started: Some(Instant::now()),
        ..Look::default()
    };
    match lag(consumer, admin, timeout) {
        Ok(lag) => look.lag = Some(lag),
        Err((asked, e)) => {
            look.error = Some(format!("cannot read the lag: {e}"));
            // The consumer's own handle failed: does the broker answer the watchdog's client?
            look.broker_answers = asked == Asked::Consumer && admin.fetch_metadata(None, timeout).is_ok();
        }
    }
    if look.lag.as_ref().is_some_and(|l| !l.is_empty()) {
        return look;
    }
    let members = admin
        .fetch_group_list(Some(group), timeout)
        .map(|list| list.groups().iter().map(|g| g.members().len()).sum::<usize>());
    let partitions = topics.iter().try_fold(0usize, |sum, topic| {
        let metadata = admin.fetch_metadata(Some(topic), timeout)?;
        Ok::<_, KafkaError>(sum + metadata.topics().iter().map(|t| t.partitions().len()).sum::<usize>())
    });
    match (members, partitions) {
        (Ok(m), Ok(p)) => look.group = Some((m, p)),
        (Err(e), _) | (_, Err(e)) => {
            // The lag's error, when it failed too, says more about a consumer holding partitions.
            look.error.get_or_insert_with(|| format!("cannot read the group: {e}"));
        }
    }
    look
}

/// Which client a failed broker call of a look went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// The saga consumer's own handle (its assignment, its committed offsets).
    Consumer,
    /// The watchdog's client of its own (watermarks).
    Admin,
}

fn lag(
    consumer: &StreamConsumer<SagaContext>,
    admin: &BaseConsumer,
    timeout: Duration,
) -> Result<BTreeMap<(String, i32), i64>, (Asked, KafkaError)> {
    let assignment = consumer.assignment().map_err(|e| (Asked::Consumer, e))?;
    let mut lag = BTreeMap::new();
    if assignment.count() == 0 {
        return Ok(lag);
    }
    let committed = consumer
        .committed_offsets(assignment, timeout)
        .map_err(|e| (Asked::Consumer, e))?;
    for element in committed.elements() {
        let (low, high) = admin
            .fetch_watermarks(element.topic(), element.partition(), timeout)
            .map_err(|e| (Asked::Admin, e))?;
        let done = match element.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        let behind = (high - done).max(0);
        metrics::gauge!(
            "inventory_consumer_lag",
            "topic" => element.topic().to_owned(),
            "partition" => element.partition().to_string()
        )
        .set(behind as f64);
        lag.insert((element.topic().to_owned(), element.partition()), behind);
    }
    Ok(lag)
}

/// Watches one consumer until `restart` or `shutdown`; cancels `restart`
/// when the consumer must be recreated.
pub(crate) async fn watch(
    consumer: std::sync::Weak<StreamConsumer<SagaContext>>,
    admin: BaseConsumer,
    health: Arc<ConsumerHealth>,
    config: WatchdogConfig,
    group: String,
    topics: Vec<String>,
    restart: CancellationToken,
) {
    let admin = Arc::new(admin);
    // Each broker call of a look is bounded by this; a look makes at most a handful.
    let timeout = Duration::from_secs(2);
    // A look that has not returned by then is judged as one that could read nothing (and awaited
    // again at the next turn rather than started anew), so a hung broker call cannot silence the
    // watchdog while readiness repeats its last verdict.
    let look_limit = config.bound / 2;
    let mut pending: Option<(tokio::task::JoinHandle<Look>, Instant)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = restart.cancelled() => return,
        }
        let (mut handle, began) = match pending.take() {
            Some(hung) => hung,
            None => {
                // A strong reference for the look only: the consumer's close must not wait on the watchdog.
                let Some(c) = consumer.upgrade() else {
                    return;
                };
                let (a, g, t) = (Arc::clone(&admin), group.clone(), topics.clone());
                let handle = tokio::task::spawn_blocking(move || look(&c, &a, &g, &t, timeout));
                (handle, Instant::now())
            }
        };
        let left = look_limit.saturating_sub(began.elapsed());
        let look = match tokio::time::timeout(left, &mut handle).await {
            Ok(Ok(look)) => look,
            Ok(Err(_)) => continue,
            Err(_) => {
                pending = Some((handle, began));
                Look {
                    error: Some(format!(
                        "a look at it has not returned for {} s",
                        began.elapsed().as_secs()
                    )),
                    ..Look::default()
                }
            }
        };
        tracing::debug!(took = ?began.elapsed(), lag = ?look.lag, group = ?look.group, error = ?look.error, "watchdog look");
        match health.judge(&look, config.bound) {
            Verdict::Restart(cause, why) => {
                tracing::warn!(%why, cause, "saga consumer is not consuming; recreating it");
                restart.cancel();
                return;
            }
            Verdict::NotReady(why) => tracing::debug!(%why, "saga consumer not consuming yet"),
            Verdict::Fine => {}
        }
    }
}

/// Logs the consumer group's life and keeps [`ConsumerHealth`]'s assignment.
pub struct SagaContext {
    pub(crate) health: Arc<ConsumerHealth>,
}

/// librdkafka's own log, into ours (it goes nowhere otherwise: there is no `log` bridge).
pub(crate) fn route_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

impl ClientContext for SagaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        route_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error");
    }
}

fn names(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConsumerContext for SagaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Their lag is now another member's to report: a frozen last value here would count twice
            // in a sum over instances (an autoscaler's query, say).
            for e in tpl.elements() {
                metrics::gauge!(
                    "inventory_consumer_lag",
                    "topic" => e.topic().to_owned(),
                    "partition" => e.partition().to_string()
                )
                .set(0.0);
            }
        }
        match rebalance {
            Rebalance::Revoke(tpl) if consumer.assignment_lost() => {
                tracing::warn!(partitions = %names(tpl), "partitions lost (the group moved on without this member)")
            }
            Rebalance::Revoke(tpl) => tracing::info!(partitions = %names(tpl), "partitions revoked"),
            Rebalance::Assign(tpl) => tracing::info!(partitions = %names(tpl), "partitions assigned"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        let held = consumer.assignment().map_or(0, |a| a.count());
        tracing::info!(partitions = held, "assignment after rebalance");
        self.health.set_assignment(held);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {}
            // Nothing was stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                metrics::counter!("inventory_consumer_commit_failures_total").increment(1);
                tracing::warn!(error = %e, partitions = %names(offsets), "offset commit failed; records after the last commit will be redelivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(assigned: usize) -> State {
        let now = Instant::now();
        State {
            running: true,
            assigned,
            unassigned_since: (assigned == 0).then_some(now),
            last_progress: Some(now),
            ..State::default()
        }
    }

    fn lag(behind: i64) -> Option<BTreeMap<(String, i32), i64>> {
        Some(BTreeMap::from([
            (("orders".to_owned(), 0), behind),
            (("orders".to_owned(), 1), 0),
        ]))
    }

    const BOUND: Duration = Duration::from_secs(30);

    #[test]
    fn joining_is_not_ready_until_the_bound_then_restarts_if_the_group_needs_it() {
        let mut state = running(0);
        let start = Instant::now();
        let look = Look {
            group: Some((0, 6)),
            ..Look::default()
        };
        assert!(matches!(judge(&mut state, &look, BOUND, start), Verdict::NotReady(_)));
        let later = start + BOUND + Duration::from_secs(1);
        assert!(matches!(
            judge(&mut state, &look, BOUND, later),
            Verdict::Restart("unassigned", _)
        ));
        // As many members as partitions: a standby, fine.
        let full = Look {
            group: Some((6, 6)),
            ..Look::default()
        };
        assert_eq!(judge(&mut state, &full, BOUND, later), Verdict::Fine);
        // The group cannot be read (broker down): not ready, but recreating would not help.
        let unknown = Look::default();
        assert!(matches!(
            judge(&mut state, &unknown, BOUND, later),
            Verdict::NotReady(_)
        ));
        // Once it answers again, the consumer gets the whole bound to rejoin before it is recreated.
        let back = later + Duration::from_secs(1);
        assert!(matches!(judge(&mut state, &look, BOUND, back), Verdict::NotReady(_)));
        assert!(matches!(
            judge(&mut state, &look, BOUND, later + BOUND + Duration::from_secs(1)),
            Verdict::Restart("unassigned", _)
        ));
    }

    #[test]
    fn lag_without_progress_restarts_after_the_bound_unless_a_batch_is_in_hand() {
        let mut state = running(2);
        let start = Instant::now();
        let behind = Look {
            lag: lag(5),
            ..Look::default()
        };
        assert_eq!(judge(&mut state, &behind, BOUND, start), Verdict::Fine);
        assert!(matches!(
            judge(&mut state, &behind, BOUND, start + BOUND / 2),
            Verdict::NotReady(_)
        ));
        let later = start + BOUND + Duration::from_secs(1);
        state.handling_since = Some(start);
        assert_eq!(
            judge(&mut state, &behind, BOUND, later),
            Verdict::Fine,
            "the database sets the pace"
        );
        state.handling_since = None;
        assert!(matches!(
            judge(&mut state, &behind, BOUND, later),
            Verdict::Restart("stalled", _)
        ));
        // Caught up is progress: an idle consumer is never stalled.
        let mut idle = running(2);
        let caught_up = Look {
            lag: lag(0),
            ..Look::default()
        };
        assert_eq!(judge(&mut idle, &caught_up, BOUND, later), Verdict::Fine);
        assert_eq!(idle.last_progress, Some(later));
    }

    #[test]
    fn a_lag_that_cannot_be_read_is_not_fine_for_long_and_restarts_only_if_the_broker_answers() {
        let mut state = running(2);
        let start = Instant::now();
        let behind = Look {
            lag: lag(1),
            ..Look::default()
        };
        assert_eq!(judge(&mut state, &behind, BOUND, start), Verdict::Fine);
        let blind = |broker_answers| Look {
            error: Some("cannot read the lag: OperationTimedOut".into()),
            broker_answers,
            ..Look::default()
        };
        assert_eq!(judge(&mut state, &blind(true), BOUND, start), Verdict::Fine);
        assert_eq!(state.behind, 0, "what the last look read, not an older look's count");
        let half = start + BOUND / 2;
        let Verdict::NotReady(why) = judge(&mut state, &blind(false), BOUND, half) else {
            panic!("blind for half the bound is not ready");
        };
        assert!(
            why.contains("cannot be read for 15 s") && why.contains("OperationTimedOut"),
            "{why}"
        );
        let later = start + BOUND + Duration::from_secs(1);
        assert!(
            matches!(judge(&mut state, &blind(false), BOUND, later), Verdict::NotReady(_)),
            "a broker that answers nobody: recreating would not help"
        );
        assert!(matches!(
            judge(&mut state, &blind(true), BOUND, later),
            Verdict::Restart("blind", _)
        ));
        // Read again: the blind spell is over, and the lag is judged as usual.
        let caught_up = Look {
            lag: lag(0),
            ..Look::default()
        };
        assert_eq!(judge(&mut state, &caught_up, BOUND, later), Verdict::Fine);
        assert_eq!(judge(&mut state, &blind(true), BOUND, later), Verdict::Fine);
    }

    #[test]
    fn a_stopped_loop_is_not_ready_and_readiness_says_why() {
        let health = ConsumerHealth::new();
        assert!(health.status().is_err(), "not ready before it starts");
        health.started(BOUND);
        assert_eq!(health.status().unwrap_err(), "joining the consumer group");
        health.set_assignment(3);
        assert_eq!(health.status(), Ok(()));
        // Records wait and nothing moved for half the bound: down between two looks already.
        health.lock().behind = 4;
        health.lock().last_progress = Some(Instant::now() - BOUND / 2);
        assert!(health.status().unwrap_err().starts_with("4 records behind"));
        health.stopped("recreating the consumer");
        assert_eq!(health.status().unwrap_err(), "recreating the consumer");
    }
}
