//! The read cache of stock rows: `GET /api/inventory/{id}` and `/check` read here, not from
//! PostgreSQL, while the cache can prove it is fresh.
//!
//! **What it promises.** A read answered from the cache reflects every change committed at least
//! `max_staleness` before it, whichever instance (or SQL session) made it, and every change this
//! instance made, as soon as the write returned. Otherwise the read goes to the database.
//!
//! **How.** A trigger on `inventory` sends `pg_notify('inventory_stock', …)` with the changed rows'
//! `<version> <product>` (once per statement, up to 25 a notice) in the writing transaction, so the notice is delivered after the commit, in commit order (see
//! `listen`). The listener applies notices in the order it receives them and, every
//! `heartbeat`, sends a ping of its own on the same channel. When its ping comes back, every
//! change committed before the ping was sent has been applied: the cache serves only while the
//! last ping that came back was sent at most `max_staleness` ago. A lost connection, a listener
//! that lags or hangs, a database that stops answering: the pings stop coming back and reads go
//! to the database within `max_staleness`, until the listener has reconnected (with an empty
//! cache) and its pings return again.
//!
//! **Races.** A read that fills the cache may have been answered before a change whose notice
//! arrives before the fill is stored. Every fill carries a ticket (the count of notices applied
//! when its read began); a notice applied after the ticket with a higher version than the row read
//! refuses the fill. The notices remembered for this are bounded; a fill older than what is
//! remembered is refused too. This instance's own writes fill the cache the same way, with the
//! ticket taken before the write began.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use inventory_domain::{Inventory, ProductId};

/// Version of a product with no row: any row is newer.
const ABSENT: i64 = -1;
/// Version a deleted row is notified with: newer than any row.
pub(crate) const DELETED: i64 = i64::MAX;

/// Cache sizes and its freshness bound.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Whether reads use the cache at all.
    pub enabled: bool,
    /// Products kept; past it the cache starts again empty.
    pub capacity: usize,
    /// Oldest change a cached read may miss (see the module's documentation).
    pub max_staleness: Duration,
    /// How often the listener checks the channel with a ping.
    pub heartbeat: Duration,
}

impl CacheConfig {
    /// Default [`CacheConfig::capacity`].
    pub const DEFAULT_CAPACITY: usize = 200_000;
    /// Default [`CacheConfig::max_staleness`], in milliseconds.
    pub const DEFAULT_MAX_STALENESS_MS: u64 = 500;
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: Self::DEFAULT_CAPACITY,
            max_staleness: Duration::from_millis(Self::DEFAULT_MAX_STALENESS_MS),
            heartbeat: Duration::from_millis(Self::DEFAULT_MAX_STALENESS_MS / 5),
        }
    }
}

/// Where the notices stood when a read or a write began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    seq: u64,
}

/// Counters, read by the metrics endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Products answered from the cache.
    pub hits: u64,
    /// Products read from the database (absent, or the cache not fresh).
    pub misses: u64,
    /// Fills refused because a newer change was notified meanwhile.
    pub refused: u64,
    /// Notices applied.
    pub notices: u64,
    /// Products cached now.
    pub size: u64,
}

#[derive(Default)]
struct State {
    /// Bumped when notices may have been lost (the listener reconnects): older tickets are void.
    epoch: u64,
    /// Notices applied in this epoch.
    seq: u64,
    rows: HashMap<ProductId, (i64, Option<Inventory>)>,
    /// Newest notice per product: (seq, highest version notified), for the fills' race check.
    recent: HashMap<ProductId, (u64, i64)>,
    order: VecDeque<(u64, ProductId)>,
    /// Every notice up to this seq is forgotten.
    forgotten_upto: u64,
    /// When the last ping that came back was sent; `None` while the channel is not proven.
    fresh_since: Option<Instant>,
    stats: CacheStats,
}

/// The cache; shared by the repository (reads, fills) and the listener (notices, pings).
pub struct StockCache {
    config: CacheConfig,
    state: Mutex<State>,
    /// The listener's backend process id (0 while it has none), for operators and tests.
    listener_pid: AtomicI32,
}

impl StockCache {
    /// Notices remembered for the fills' race check.
    const REMEMBERED: usize = 16_384;

    /// An empty cache that serves nothing until its listener proves the channel.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            state: Mutex::default(),
            listener_pid: AtomicI32::new(0),
        }
    }

    /// The process id of the listener's PostgreSQL backend; 0 while it is not connected.
    pub fn listener_pid(&self) -> i32 {
        self.listener_pid.load(Ordering::Relaxed)
    }

    pub(crate) fn set_listener_pid(&self, pid: i32) {
        self.listener_pid.store(pid, Ordering::Relaxed);
    }

    /// Its configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh(&self, state: &State, now: Instant) -> bool {
        self.config.enabled
            && state
                .fresh_since
                .is_some_and(|sent| now.saturating_duration_since(sent) <= self.config.max_staleness)
    }

    /// Whether reads are answered from the cache now.
    pub fn is_fresh(&self) -> bool {
        self.fresh(&self.state(), Instant::now())
    }

    /// The cached rows among `products` (`None` inside: known to have no row), and the products to
    /// read from the database, with the ticket to fill them with. Nothing is cached while the
    /// cache is not fresh.
    pub fn lookup(&self, products: &[ProductId]) -> (Vec<Inventory>, Vec<ProductId>, Ticket) {
        let now = Instant::now();
        let mut state = self.state();
        let ticket = Ticket {
            epoch: state.epoch,
            seq: state.seq,
        };
        if !self.fresh(&state, now) {
            state.stats.misses += products.len() as u64;
            return (Vec::new(), products.to_vec(), ticket);
        }
        let mut found = Vec::with_capacity(products.len());
        let mut missing = Vec::new();
        for p in products {
            match state.rows.get(p) {
                Some((_, row)) => {
                    found.extend(row.iter().cloned());
                }
                None => missing.push(p.clone()),
            }
        }
        state.stats.hits += (products.len() - missing.len()) as u64;
        state.stats.misses += missing.len() as u64;
        (found, missing, ticket)
    }

    /// A ticket for a write about to begin.
    pub fn ticket(&self) -> Ticket {
        let state = self.state();
        Ticket {
            epoch: state.epoch,
            seq: state.seq,
        }
    }

    /// Stores what a read (or this instance's committed write) found for `products`, each as
    /// `rows` has it or as absent, unless a notice applied after `ticket` says it is already old.
    pub fn fill(&self, ticket: Ticket, products: &[ProductId], rows: &[Inventory]) {
        if !self.config.enabled {
            return;
        }
        let mut state = self.state();
        if ticket.epoch != state.epoch || ticket.seq < state.forgotten_upto {
            state.stats.refused += products.len() as u64;
            return;
        }
        if state.rows.len() + products.len() > self.config.capacity {
            state.rows.clear();
        }
        let by_id: HashMap<&ProductId, &Inventory> = rows.iter().map(|r| (r.product_id(), r)).collect();
        for p in products {
            let row = by_id.get(p).map(|r| (*r).clone());
            let version = row.as_ref().map_or(ABSENT, Inventory::version);
            if let Some(&(seq, notified)) = state.recent.get(p)
                && seq > ticket.seq
                && notified > version
            {
                state.stats.refused += 1;
                continue;
            }
            match state.rows.get(p) {
                Some((cached, _)) if *cached >= version => {}
                _ => {
                    state.rows.insert(p.clone(), (version, row));
                }
            }
        }
        state.stats.size = state.rows.len() as u64;
    }

    /// Applies a notice: `product` changed, and is now at `version`.
    pub fn notice(&self, product: ProductId, version: i64) {
        let mut state = self.state();
        state.seq += 1;
        state.stats.notices += 1;
        let seq = state.seq;
        if state.rows.get(&product).is_some_and(|(cached, _)| *cached < version) {
            state.rows.remove(&product);
        }
        let highest = match state.recent.get(&product) {
            Some(&(_, v)) => v.max(version),
            None => version,
        };
        state.recent.insert(product.clone(), (seq, highest));
        state.order.push_back((seq, product));
        while state.order.len() > Self::REMEMBERED {
            let Some((old_seq, old)) = state.order.pop_front() else {
                break;
            };
            if state.recent.get(&old).is_some_and(|(s, _)| *s == old_seq) {
                state.recent.remove(&old);
            }
            state.forgotten_upto = old_seq;
        }
        state.stats.size = state.rows.len() as u64;
    }

    /// A ping sent at `sent` came back: every change committed before it has been applied.
    pub fn confirmed(&self, epoch: u64, sent: Instant) {
        let mut state = self.state();
        if state.epoch == epoch && state.fresh_since.is_none_or(|s| s < sent) {
            state.fresh_since = Some(sent);
        }
    }

    /// The listener (re)connected or lost its connection: notices may have been lost, so the
    /// cache starts again empty, serves nothing until a ping of the new epoch comes back, and
    /// refuses fills begun before. Returns the new epoch.
    pub fn restart(&self) -> u64 {
        let mut state = self.state();
        let epoch = state.epoch + 1;
        let stats = state.stats;
        *state = State {
            epoch,
            stats: CacheStats { size: 0, ..stats },
            ..State::default()
        };
        epoch
    }

    /// Its counters.
    pub fn stats(&self) -> CacheStats {
        self.state().stats
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;

    pub(crate) fn pid(s: &str) -> ProductId {
        ProductId::parse(s).unwrap()
    }

    /// A stock row of `p` (nothing reserved).
    pub(crate) fn row(p: &str, quantity: i64, version: i64) -> Inventory {
        Inventory::restore(Uuid::nil(), pid(p), quantity, 0, version, DateTime::UNIX_EPOCH).unwrap()
    }

    fn fresh_cache() -> (StockCache, u64) {
        let cache = StockCache::new(CacheConfig::default());
        let epoch = cache.restart();
        cache.confirmed(epoch, Instant::now());
        (cache, epoch)
    }

    fn cached(cache: &StockCache, p: &str) -> Option<Vec<Inventory>> {
        let (found, missing, _) = cache.lookup(&[pid(p)]);
        missing.is_empty().then_some(found)
    }

    #[test]
    fn serves_nothing_until_a_ping_of_its_epoch_comes_back() {
        let cache = StockCache::new(CacheConfig::default());
        let epoch = cache.restart();
        let t = cache.ticket();
        cache.fill(t, &[pid("a")], &[row("a", 5, 1)]);
        assert_eq!(cached(&cache, "a"), None, "no ping yet");
        cache.confirmed(epoch - 1, Instant::now());
        assert_eq!(
            cached(&cache, "a"),
            None,
            "a ping of an older connection proves nothing"
        );
        cache.confirmed(epoch, Instant::now());
        assert_eq!(cached(&cache, "a"), Some(vec![row("a", 5, 1)]));
    }

    #[test]
    fn stops_serving_when_the_last_ping_is_older_than_the_bound() {
        let cache = StockCache::new(CacheConfig {
            max_staleness: Duration::from_millis(100),
            ..CacheConfig::default()
        });
        let epoch = cache.restart();
        cache.confirmed(epoch, Instant::now() - Duration::from_millis(150));
        assert!(!cache.is_fresh());
        cache.confirmed(epoch, Instant::now());
        assert!(cache.is_fresh());
    }

    #[test]
    fn a_notice_of_a_newer_version_evicts_and_an_older_one_does_not() {
        let (cache, _) = fresh_cache();
        cache.fill(cache.ticket(), &[pid("a")], &[row("a", 5, 3)]);
        cache.notice(pid("a"), 3);
        assert_eq!(cached(&cache, "a"), Some(vec![row("a", 5, 3)]), "its own version");
        cache.notice(pid("a"), 4);
        assert_eq!(cached(&cache, "a"), None);
    }

    #[test]
    fn a_fill_read_before_a_newer_notice_is_refused() {
        let (cache, _) = fresh_cache();
        let ticket = cache.ticket();
        // The read saw version 3; meanwhile version 4 was committed and notified.
        cache.notice(pid("a"), 4);
        cache.fill(ticket, &[pid("a")], &[row("a", 5, 3)]);
        assert_eq!(cached(&cache, "a"), None);
        assert_eq!(cache.stats().refused, 1);
        // A read that saw version 4 (or its own write's notice) is kept.
        cache.fill(ticket, &[pid("a")], &[row("a", 6, 4)]);
        assert_eq!(cached(&cache, "a"), Some(vec![row("a", 6, 4)]));
    }

    #[test]
    fn absence_is_cached_until_the_row_is_created() {
        let (cache, _) = fresh_cache();
        cache.fill(cache.ticket(), &[pid("new")], &[]);
        assert_eq!(cached(&cache, "new"), Some(vec![]), "known to have no row");
        cache.notice(pid("new"), 0);
        assert_eq!(cached(&cache, "new"), None);
    }

    #[test]
    fn a_fill_older_than_what_is_remembered_or_than_a_restart_is_refused() {
        let (cache, epoch) = fresh_cache();
        let old = cache.ticket();
        for i in 0..=StockCache::REMEMBERED {
            cache.notice(pid(&format!("p{i}")), 1);
        }
        cache.fill(old, &[pid("a")], &[row("a", 1, 1)]);
        assert_eq!(cached(&cache, "a"), None, "notices since the ticket were forgotten");
        let before = cache.ticket();
        let next = cache.restart();
        assert_eq!(next, epoch + 1);
        cache.confirmed(next, Instant::now());
        cache.fill(before, &[pid("b")], &[row("b", 1, 1)]);
        assert_eq!(cached(&cache, "b"), None, "begun before the restart");
    }

    #[test]
    fn a_newer_cached_row_is_not_replaced_by_an_older_fill() {
        let (cache, _) = fresh_cache();
        let t = cache.ticket();
        cache.fill(t, &[pid("a")], &[row("a", 9, 7)]);
        cache.fill(t, &[pid("a")], &[row("a", 5, 6)]);
        assert_eq!(cached(&cache, "a"), Some(vec![row("a", 9, 7)]));
    }

    #[test]
    fn past_its_capacity_it_starts_again_empty() {
        let cache = StockCache::new(CacheConfig {
            capacity: 2,
            ..CacheConfig::default()
        });
        let epoch = cache.restart();
        cache.confirmed(epoch, Instant::now());
        cache.fill(cache.ticket(), &[pid("a"), pid("b")], &[row("a", 1, 1), row("b", 1, 1)]);
        cache.fill(cache.ticket(), &[pid("c")], &[row("c", 1, 1)]);
        assert_eq!(cached(&cache, "a"), None);
        assert_eq!(cached(&cache, "c"), Some(vec![row("c", 1, 1)]));
        assert_eq!(cache.stats().size, 1);
    }
}
