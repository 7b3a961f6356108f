//! Moves committed outbox rows to Kafka: woken by each commit that wrote
//! some, and by a short poll for rows other instances wrote.

use std::sync::Arc;
use std::time::Duration;

use inventory_domain::{EventPublisher, OutboxStore};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows published per transaction.
pub const RELAY_BATCH: i64 = 500;

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
            Ok(n) => {
                failures = 0;
                if n as i64 == RELAY_BATCH {
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
    // Drain what the stopped writers left, batch after batch.
    let mut published = 0;
    loop {
        match store.relay(RELAY_BATCH, &*publisher).await {
            Ok(n) => {
                published += n;
                if (n as i64) < RELAY_BATCH {
                    tracing::info!(published, "outbox relay stopped");
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay stopped with events left in the outbox");
                return;
            }
        }
    }
}
