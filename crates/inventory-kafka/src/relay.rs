//! Moves committed outbox rows to Kafka: woken by each commit that wrote
//! some, and by a short poll for rows other instances wrote.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inventory_domain::{EventPublisher, OutboxStore, Relayed};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows published per transaction.
pub const RELAY_BATCH: i64 = 500;

/// How long the last drain waits for another instance's relay to let go of
/// the outbox lock.
const DRAIN_PATIENCE: Duration = Duration::from_secs(10);

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
                tracing::warn!(error = %e, failures, "outbox relay failed; events stay in the outbox");
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
    // Drain what the stopped writers left, batch after batch. While another
    // instance's relay holds the lock, wait for it: its pass may have begun
    // before our last commit, so only our own pass proves nothing is left.
    let deadline = Instant::now() + DRAIN_PATIENCE;
    let mut published = 0;
    loop {
        match store.relay(RELAY_BATCH, &*publisher).await {
            Ok(Relayed::Published(n)) => {
                published += n;
                if (n as i64) < RELAY_BATCH {
                    tracing::info!(published, "outbox relay stopped");
                    return;
                }
            }
            Ok(Relayed::Busy) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(Relayed::Busy) => {
                tracing::warn!(
                    published,
                    "outbox relay stopped; another instance's relay publishes the rest"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay stopped with events left in the outbox");
                return;
            }
        }
    }
}
