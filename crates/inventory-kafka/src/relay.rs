//! Moves committed outbox rows to Kafka: woken by each commit that wrote
//! some, and by a short poll for rows other instances wrote.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inventory_domain::{ErrorChain, EventPublisher, OutboxStore, Relayed};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows published per transaction.
pub const RELAY_BATCH: i64 = 500;

/// How long the last drain keeps trying: waiting for another instance's relay
/// to let go of the outbox lock, or retrying failures. Below the 20 s the
/// application gives the relay to stop.
const DRAIN_PATIENCE: Duration = Duration::from_secs(15);

/// Runs until `shutdown`, then drains what is left once.
pub async fn run_relay<S: OutboxStore + ?Sized, P: EventPublisher + 'static>(
    store: Arc<S>,
    publisher: Arc<P>,
    wake: Arc<Notify>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        match store.relay(RELAY_BATCH, &*publisher).await {
            Ok(relayed) => {
                failures = 0;
                if relayed == Relayed::Published(RELAY_BATCH as usize) {
                    continue;
                }
            }
            Err(e) => {
                failures += 1;
                metrics::counter!("inventory_outbox_relay_failures_total").increment(1);
                tracing::warn!(error = %ErrorChain(&e), failures, "outbox relay failed; events stay in the outbox");
                let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    drain(&*store, &*publisher).await;
}

/// Drains what the stopped writers left, batch after batch, until the outbox
/// is empty or `DRAIN_PATIENCE` has passed. While another instance's relay
/// holds the lock, waits for it: its pass may have begun before our last
/// commit, so only our own pass proves nothing is left. A failure (a broker
/// or database outage, a connection broken by a restart) is retried with
/// backoff until the time limit, never taken as the end.
async fn drain<S: OutboxStore + ?Sized, P: EventPublisher + 'static>(store: &S, publisher: &P) {
    let deadline = Instant::now() + DRAIN_PATIENCE;
    let mut published = 0;
    let mut failures = 0u32;
    let mut last_error = None;
    while Instant::now() < deadline {
        match store.relay(RELAY_BATCH, publisher).await {
            Ok(Relayed::Published(n)) => {
                published += n;
                if (n as i64) < RELAY_BATCH {
                    tracing::info!(published, "outbox relay stopped; the outbox is empty");
                    return;
                }
            }
            Ok(Relayed::Busy) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                failures += 1;
                metrics::counter!("inventory_outbox_relay_failures_total").increment(1);
                tracing::warn!(error = %ErrorChain(&e), failures, "last outbox drain failed; retrying");
                last_error = Some(e);
                let backoff = Duration::from_millis(50 * 2u64.pow(failures.min(5)));
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
    }
    let remaining = match store.backlog().await {
        Ok(backlog) => backlog.pending.to_string(),
        Err(_) => "an unknown number of".to_owned(),
    };
    tracing::warn!(
        published,
        remaining = %remaining,
        last_error = last_error.as_ref().map(|e| ErrorChain(e).to_string()),
        limit = ?DRAIN_PATIENCE,
        "outbox relay stopped at its time limit with {remaining} events left in the outbox; \
         another instance, or this one's next start, publishes them"
    );
}
