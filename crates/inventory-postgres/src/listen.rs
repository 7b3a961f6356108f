//! The cache's listener: one connection of its own (not the pool's) that `LISTEN`s on
//! `inventory_stock`, applies every notice to the cache in the order PostgreSQL delivers them
//! (commit order), and proves the channel with pings (see `cache`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inventory_domain::ProductId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cache::{DELETED, StockCache};

/// The channel the `inventory` trigger notifies.
pub const CHANNEL: &str = "inventory_stock";
/// `application_name` of the listener's connection (to find it in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "inventory-cache-listener";

/// Keeps the cache's listener connected until `shutdown`: on a lost connection the cache restarts
/// empty and the listener reconnects, backing off up to 5 s.
pub async fn run_listener(database_url: String, cache: Arc<StockCache>, shutdown: CancellationToken) {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = tokio::select! {
            () = shutdown.cancelled() => return,
            ended = listen_once(&database_url, &cache, &token) => ended,
        };
        cache.restart();
        cache.set_listener_pid(0);
        metrics::gauge!("stock_cache_listening").set(0.0);
        match ended {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "stock cache listener: reads go to the database until it reconnects"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(database_url: &str, cache: &StockCache, token: &str) -> Result<(), String> {
    let (client, mut notices) = crate::tls::connect_listener(database_url, APPLICATION_NAME).await?;
    let epoch = cache.restart();
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| format!("LISTEN: {e}"))?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| format!("pg_backend_pid: {e}"))?
        .get(0);
    cache.set_listener_pid(pid);
    metrics::gauge!("stock_cache_listening").set(1.0);
    tracing::info!("stock cache listener connected");
    let heartbeat = cache.config().heartbeat.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut next_ping = 0u64;
    let ping_prefix = format!("ping {token} ");
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                next_ping += 1;
                pending.insert(next_ping, Instant::now());
                // Pings that never came back are forgotten after a while.
                pending.retain(|n, _| next_ping - *n < 1_000);
                let payload = format!("{ping_prefix}{next_ping}");
                // NOTIFY is sent when this statement's transaction commits; it comes back after
                // every notice committed before it.
                let sent = tokio::time::timeout(
                    cache.config().max_staleness.max(Duration::from_secs(1)),
                    client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]),
                )
                .await;
                match sent {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("ping: {e}")),
                    Err(_) => return Err("ping: the database did not answer".to_owned()),
                }
            }
            notice = notices.recv() => {
                let Some(payload) = notice else {
                    return Err("connection closed".to_owned());
                };
                if let Some(n) = payload.strip_prefix(&ping_prefix) {
                    if let Some(sent) = n.parse().ok().and_then(|n: u64| pending.remove(&n)) {
                        cache.confirmed(epoch, sent);
                    }
                } else if !payload.starts_with("ping ") {
                    apply(cache, &payload);
                }
            }
        }
    }
}

/// One change per line, as the trigger writes them: `<version> <product id>`, or
/// `deleted <product id>` for a deleted row.
fn apply(cache: &StockCache, payload: &str) {
    for change in payload.split('\n') {
        let parsed = change.split_once(' ').and_then(|(version, product)| {
            let version = if version == "deleted" {
                Some(DELETED)
            } else {
                version.parse().ok()
            }?;
            Some((version, ProductId::parse(product).ok()?))
        });
        match parsed {
            Some((version, product)) => cache.notice(product, version),
            // A product id the API cannot name (written in SQL) is never served from the cache.
            None => tracing::warn!(change, "stock cache: a notice it cannot read"),
        }
    }
}

/// Forwards the notices a connection receives; ends (closing the channel) with the connection.
pub(crate) async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notices: mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                if notices.send(n.payload().to_owned()).is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "stock cache listener connection ended");
                return;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;
    use crate::cache::tests::{pid, row};

    #[test]
    fn a_notice_carries_one_change_per_line() {
        let cache = StockCache::new(CacheConfig::default());
        let epoch = cache.restart();
        cache.confirmed(epoch, Instant::now());
        let products = [pid("a"), pid("b c"), pid("d")];
        let rows = [row("a", 1, 1), row("b c", 1, 1), row("d", 1, 1)];
        cache.fill(cache.ticket(), &products, &rows);
        apply(&cache, "2 a\n2 b c\nnot-a-version x");
        let (found, missing, _) = cache.lookup(&products);
        assert_eq!(found, vec![row("d", 1, 1)], "d was not in the notice");
        assert_eq!(missing, vec![pid("a"), pid("b c")], "a product id may hold a space");
        apply(&cache, "deleted d");
        assert_eq!(cache.lookup(&[pid("d")]).1, vec![pid("d")]);
    }
}
