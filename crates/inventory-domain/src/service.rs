//! Use cases: load, apply the rules, save; on an optimistic-lock conflict,
//! reload and try again with jittered backoff, a bounded number of times.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;

use crate::availability::AvailabilityConfig;
use crate::events::IncomingEvent;
use crate::inventory::{Inventory, StockError};
use crate::ledger::{AdjustError, Inconsistency, Ledger, Outcome};
use crate::ports::{
    AddOutcome, AdjustmentRecord, ChangeSet, Clock, CountLine, CountedLine, IdempotencyRecord, IdempotentRequest,
    InventoryRepository, LoadRequest, RepoError, StockAddition, StockFilter, StockListing, StockScan,
};
use crate::values::{Actor, AdjustmentReason, Caller, ProductId, Quantity, StockCount};

/// How conflicts are retried and how long holds last.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Attempts per use case, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled each time, with jitter.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Time a hold lasts before the sweeper releases it.
    pub hold_ttl: Duration,
    /// Availability events, and the default low-stock threshold.
    pub availability: AvailabilityConfig,
}

impl ServiceConfig {
    /// Default [`ServiceConfig::max_attempts`].
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
    /// Default [`ServiceConfig::hold_ttl`], in seconds.
    pub const DEFAULT_HOLD_TTL_SECS: u64 = 30 * 60;
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(200),
            hold_ttl: Duration::from_secs(Self::DEFAULT_HOLD_TTL_SECS),
            availability: AvailabilityConfig::default(),
        }
    }
}

/// Each counted line as the change set leaves it: the version written, the count before from
/// its audit row (rows are written in line order).
fn stored_lines(lines: &[CountLine], changes: &ChangeSet) -> Vec<CountedLine> {
    lines
        .iter()
        .zip(&changes.adjustments)
        .filter_map(|(line, adjustment)| {
            let written = changes
                .stock
                .iter()
                .find(|w| w.inventory.product_id() == &line.product_id)?;
            Some(CountedLine {
                product_id: line.product_id.clone(),
                old_quantity: adjustment.old_quantity,
                new_quantity: adjustment.new_quantity,
                reserved: written.inventory.reserved(),
                version: written.inventory.version(),
            })
        })
        .collect()
}

/// Most rows one page of a stock listing holds.
pub const MAX_PAGE: u32 = 500;

/// Most rows one page of a stock listing examines.
pub const MAX_SCAN: u32 = 10_000;

/// A page of a stock listing.
#[derive(Debug, Clone, PartialEq)]
pub struct StockPage {
    /// The rows, in product-id order.
    pub items: Vec<Inventory>,
    /// Continue after this id; none on the last page.
    pub next: Option<ProductId>,
}

/// Counters of optimistic-lock behaviour, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    conflicts: AtomicU64,
    retries: AtomicU64,
    exhausted: AtomicU64,
}

impl ServiceMetrics {
    /// Saves refused because a row changed under us.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }
    /// Attempts made after a conflict.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    /// Use cases that gave up after the last attempt.
    pub fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }
}

/// Why a use case failed. [`ServiceError::is_transient`] says which failures
/// go away by themselves.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The product has no stock record.
    #[error("product {0} has no stock record")]
    NotFound(ProductId),
    /// The stock rules refused the change.
    #[error(transparent)]
    Stock(#[from] StockError),
    /// The caller's expected version is stale.
    #[error("expected version {expected}, found {actual}")]
    VersionMismatch {
        /// Version the caller saw.
        expected: i64,
        /// Version stored.
        actual: i64,
    },
    /// Every attempt met a concurrent change.
    #[error("gave up after {attempts} attempts: the rows kept changing")]
    Contention {
        /// Attempts made.
        attempts: u32,
    },
    /// Stored data the rules cannot work from.
    #[error(transparent)]
    Inconsistent(#[from] Inconsistency),
    /// The idempotency key was first used with another request.
    #[error("idempotency key {0} was used with a different request")]
    IdempotencyKeyReused(String),
    /// One line of a bulk change was refused (so nothing changed).
    #[error("line {index}: {source}")]
    Line {
        /// The line's place in the request, from 0.
        index: usize,
        /// Why.
        source: Box<ServiceError>,
    },
    /// The store could not be reached, or a connection-level failure cut
    /// the attempt short: transient, trying again later may work.
    #[error(transparent)]
    Unavailable(RepoError),
    /// The store failed for a reason retrying will not fix.
    #[error(transparent)]
    Store(RepoError),
}

impl From<AdjustError> for ServiceError {
    fn from(e: AdjustError) -> Self {
        match e {
            AdjustError::NotFound(p) => Self::NotFound(p),
            AdjustError::VersionMismatch { expected, actual } => Self::VersionMismatch { expected, actual },
            AdjustError::Stock(s) => Self::Stock(s),
        }
    }
}

impl ServiceError {
    /// A failure that lasts only as long as an outage or a race: the store
    /// was unreachable or every attempt met a concurrent change. Callers
    /// retry these (the consumer for as long as they last; HTTP answers 503
    /// with `Retry-After`) and never treat them as the request's fault.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Contention { .. })
    }
}

impl From<RepoError> for ServiceError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Conflict => Self::Contention { attempts: 1 },
            e @ RepoError::Unavailable(_) => Self::Unavailable(e),
            e @ RepoError::Failure(_) => Self::Store(e),
        }
    }
}

/// Consumed events worked out but not yet saved (see [`InventoryService::prepare_events`]).
#[derive(Debug)]
pub struct Prepared {
    /// One outcome per event, valid once `changes` are saved.
    pub outcomes: Vec<Outcome>,
    /// What to save.
    pub changes: ChangeSet,
}

/// What handling `events` must read: their ids, their orders and the products they reserve.
fn events_request(events: &[IncomingEvent]) -> LoadRequest {
    let mut request = LoadRequest::default();
    for event in events {
        request.events.push(event.meta.event_id);
        request.orders.push(event.command.order_id().clone());
        if let crate::events::OrderCommand::Reserve { lines, .. } = &event.command {
            request
                .products
                .extend(lines.lines().iter().map(|l| l.product_id.clone()));
        }
    }
    request.products.sort();
    request.products.dedup();
    request.orders.sort();
    request.orders.dedup();
    request
}

/// The inventory's use cases over a repository and a clock.
pub struct InventoryService<R, C> {
    repo: Arc<R>,
    clock: Arc<C>,
    config: ServiceConfig,
    metrics: Arc<ServiceMetrics>,
}

impl<R, C> Clone for InventoryService<R, C> {
    fn clone(&self) -> Self {
        Self {
            repo: Arc::clone(&self.repo),
            clock: Arc::clone(&self.clock),
            config: self.config.clone(),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl<R: InventoryRepository, C: Clock> InventoryService<R, C> {
    /// Builds the service.
    pub fn new(repo: Arc<R>, clock: Arc<C>, config: ServiceConfig) -> Self {
        Self {
            repo,
            clock,
            config,
            metrics: Arc::default(),
        }
    }

    /// Conflict and retry counters.
    pub fn metrics(&self) -> &Arc<ServiceMetrics> {
        &self.metrics
    }

    /// The repository, for adapters that read it directly (health checks).
    pub fn repository(&self) -> &Arc<R> {
        &self.repo
    }

    /// Stock of one product, if it has a record.
    pub async fn get_stock(&self, product: &ProductId) -> Result<Option<Inventory>, ServiceError> {
        let mut rows = self.repo.stock(std::slice::from_ref(product)).await?;
        Ok(rows.pop())
    }

    /// Units available per product id (0 for an unknown product), in one read.
    pub async fn availability(&self, products: &[ProductId]) -> Result<HashMap<ProductId, u32>, ServiceError> {
        let mut unique = products.to_vec();
        unique.sort();
        unique.dedup();
        let found = self.repo.stock(&unique).await?;
        let mut map: HashMap<ProductId, u32> = unique.into_iter().map(|p| (p, 0)).collect();
        for inv in found {
            map.insert(inv.product_id().clone(), inv.available());
        }
        Ok(map)
    }

    /// Adds received units; creates the record for a new product. One atomic
    /// increment in the store: concurrent adds never conflict.
    pub async fn add_stock(
        &self,
        product: &ProductId,
        amount: Quantity,
        actor: &Actor,
    ) -> Result<Inventory, ServiceError> {
        self.add_stock_once(product, amount, actor, None).await
    }

    /// [`Self::add_stock`] under an idempotency key: a retry of the same
    /// request returns the first result and changes nothing.
    pub async fn add_stock_once(
        &self,
        product: &ProductId,
        amount: Quantity,
        caller: impl Into<Caller>,
        idempotency: Option<&IdempotentRequest>,
    ) -> Result<Inventory, ServiceError> {
        let caller = caller.into();
        let addition = StockAddition {
            product_id: product.clone(),
            amount,
            actor: caller.actor,
            request_id: caller.request_id,
            at: self.clock.now(),
            new_id: uuid::Uuid::now_v7(),
            max_quantity: StockCount::MAX,
            idempotency: idempotency.cloned(),
            availability: self.config.availability,
        };
        let mut attempt = 1;
        loop {
            match self.repo.add_units(&addition).await {
                Ok(AddOutcome::Added(inventory)) => return Ok(inventory),
                Ok(AddOutcome::Replayed(stored)) => {
                    return match idempotency {
                        Some(i) if stored.request.fingerprint == i.fingerprint => Ok(stored.result),
                        _ => Err(ServiceError::IdempotencyKeyReused(stored.request.key)),
                    };
                }
                Ok(AddOutcome::WouldOverflow) => {
                    return Err(StockError::Overflow { max: StockCount::MAX }.into());
                }
                // Only a concurrent use of the same key: the next attempt replays it.
                Err(RepoError::Conflict) => self.after_conflict(&mut attempt).await?,
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Sets the physical count; refused below what is reserved, or when
    /// `expected_version` is given and stale.
    pub async fn audit_stock(
        &self,
        product: &ProductId,
        count: StockCount,
        reason: AdjustmentReason,
        actor: &Actor,
        expected_version: Option<i64>,
    ) -> Result<Inventory, ServiceError> {
        self.audit_stock_once(product, count, reason, actor, expected_version, None)
            .await
    }

    /// [`Self::audit_stock`] under an idempotency key.
    pub async fn audit_stock_once(
        &self,
        product: &ProductId,
        count: StockCount,
        reason: AdjustmentReason,
        caller: impl Into<Caller>,
        expected_version: Option<i64>,
        idempotency: Option<&IdempotentRequest>,
    ) -> Result<Inventory, ServiceError> {
        let caller = caller.into();
        self.manual_change(product, idempotency, |ledger| {
            ledger.on_request(caller.request_id.clone());
            Ok(ledger.audit_stock(product, count, reason, &caller.actor, expected_version)?)
        })
        .await
    }

    /// Sets (`Some`) or clears (`None`: the configured default applies) a product's low-stock
    /// threshold; in the audit trail, and an availability event when the product's level moves.
    pub async fn set_low_stock_threshold_once(
        &self,
        product: &ProductId,
        threshold: Option<u32>,
        caller: impl Into<Caller>,
        expected_version: Option<i64>,
        idempotency: Option<&IdempotentRequest>,
    ) -> Result<Inventory, ServiceError> {
        let caller = caller.into();
        self.manual_change(product, idempotency, |ledger| {
            ledger.on_request(caller.request_id.clone());
            Ok(ledger.set_low_stock_threshold(product, threshold, &caller.actor, expected_version)?)
        })
        .await
    }

    /// Sets the physical counts of many products in one transaction, all or none (a bulk cycle
    /// count): each line version-checked when it names a version, refused below what is
    /// reserved, and in the audit trail with `reason`. A dry run changes nothing and says what
    /// would change. A failing line is [`ServiceError::Line`].
    pub async fn audit_many(
        &self,
        lines: &[CountLine],
        reason: AdjustmentReason,
        caller: impl Into<Caller>,
        dry_run: bool,
        idempotency: Option<&IdempotentRequest>,
    ) -> Result<Vec<CountedLine>, ServiceError> {
        let caller = caller.into();
        let actor = &caller.actor;
        let request = LoadRequest {
            products: lines.iter().map(|l| l.product_id.clone()).collect(),
            idempotency_key: idempotency.filter(|_| !dry_run).map(|i| i.key.clone()),
            ..LoadRequest::default()
        };
        let count_all = |ledger: &mut Ledger| -> Result<Vec<CountedLine>, ServiceError> {
            ledger.on_request(caller.request_id.clone());
            lines
                .iter()
                .enumerate()
                .map(|(index, line)| {
                    let at_line = |source: ServiceError| ServiceError::Line {
                        index,
                        source: Box::new(source),
                    };
                    let before = ledger
                        .stock(&line.product_id)
                        .cloned()
                        .ok_or_else(|| at_line(ServiceError::NotFound(line.product_id.clone())))?;
                    ledger
                        .audit_stock(&line.product_id, line.count, reason, actor, line.expected_version)
                        .map_err(|e| at_line(e.into()))?;
                    Ok(CountedLine {
                        product_id: line.product_id.clone(),
                        old_quantity: before.quantity(),
                        new_quantity: line.count.get(),
                        reserved: before.reserved(),
                        version: before.version(),
                    })
                })
                .collect()
        };
        if dry_run {
            let ttl = chrono::Duration::from_std(self.config.hold_ttl).unwrap_or(chrono::Duration::minutes(30));
            let snapshot = self.repo.load(&request).await?;
            let mut ledger = Ledger::new(snapshot, self.clock.now(), ttl);
            return count_all(&mut ledger);
        }
        let (outcome, changes) = self
            .execute_then(
                &request,
                |ledger| {
                    if let Some(stored) = ledger.idempotency_record() {
                        return match idempotency {
                            Some(i) if stored.request.fingerprint == i.fingerprint => {
                                Ok(Err(stored.lines.clone().unwrap_or_default()))
                            }
                            _ => Err(ServiceError::IdempotencyKeyReused(stored.request.key.clone())),
                        };
                    }
                    count_all(ledger).map(Ok)
                },
                |changes| {
                    if let Some(i) = idempotency {
                        let counted = stored_lines(lines, changes);
                        changes.idempotency = changes.stock.first().map(|w| IdempotencyRecord {
                            request: i.clone(),
                            result: w.inventory.clone(),
                            lines: Some(counted),
                        });
                    }
                },
            )
            .await?;
        match outcome {
            // Replayed: the first answer.
            Err(stored) => Ok(stored),
            Ok(_) => Ok(stored_lines(lines, &changes)),
        }
    }

    async fn manual_change(
        &self,
        product: &ProductId,
        idempotency: Option<&IdempotentRequest>,
        change: impl Fn(&mut Ledger) -> Result<(), ServiceError>,
    ) -> Result<Inventory, ServiceError> {
        let request = LoadRequest {
            products: vec![product.clone()],
            idempotency_key: idempotency.map(|i| i.key.clone()),
            ..LoadRequest::default()
        };
        let (replayed, changes) = self
            .execute_then(
                &request,
                |ledger| {
                    if let Some(stored) = ledger.idempotency_record() {
                        return match idempotency {
                            Some(i) if stored.request.fingerprint == i.fingerprint => Ok(Some(stored.result.clone())),
                            _ => Err(ServiceError::IdempotencyKeyReused(stored.request.key.clone())),
                        };
                    }
                    change(ledger).map(|()| None)
                },
                |changes| {
                    if let Some(i) = idempotency {
                        let result = changes.stock.iter().find(|w| w.inventory.product_id() == product);
                        changes.idempotency = result.map(|w| IdempotencyRecord {
                            request: i.clone(),
                            result: w.inventory.clone(),
                            lines: None,
                        });
                    }
                },
            )
            .await?;
        match replayed {
            Some(first) => Ok(first),
            None => written(changes, product),
        }
    }
    /// A page of stock rows in product-id order: at most `limit` (clamped to
    /// 1..=[`MAX_PAGE`]) after `after`, and the id to continue after when more
    /// may follow. A page examines at most [`MAX_SCAN`] rows: when a filter
    /// matches few, the page may be short (even empty) and still go on.
    pub async fn list_stock(
        &self,
        filter: StockFilter,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<StockPage, ServiceError> {
        let limit = limit.clamp(1, MAX_PAGE);
        // One row more than asked says whether another page follows.
        let listing = StockListing {
            filter,
            after,
            limit: limit + 1,
            scan: MAX_SCAN,
        };
        let StockScan {
            rows: mut items,
            stopped_at,
        } = self.repo.list_stock(&listing).await?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|i| i.product_id().clone())
        } else {
            stopped_at
        };
        Ok(StockPage { items, next })
    }

    /// A product's audit trail, newest first.
    pub async fn adjustments(
        &self,
        product: &ProductId,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AdjustmentRecord>, ServiceError> {
        Ok(self.repo.adjustments(product, limit, before).await?)
    }

    /// Handles consumed events in one unit of work, in order; each order is
    /// all-or-nothing, and the whole batch is saved in one transaction.
    pub async fn handle_events(&self, events: &[IncomingEvent]) -> Result<Vec<Outcome>, ServiceError> {
        let request = events_request(events);
        let (outcomes, _) = self
            .execute(&request, |ledger| {
                events
                    .iter()
                    .map(|e| ledger.apply(e).map_err(ServiceError::from))
                    .collect()
            })
            .await?;
        Ok(outcomes)
    }

    /// [`Self::handle_events`] in two halves, for a consumer that works out its next batch while
    /// the last one is being saved: loads what `events` need, lays `earlier` over it (the changes
    /// of a save still in flight, which must have committed before these are saved; see
    /// [`Snapshot::overlay`]) and applies the events. `None` when `earlier` cannot be laid over:
    /// prepare again once it is committed.
    pub async fn prepare_events(
        &self,
        events: &[IncomingEvent],
        earlier: Option<&ChangeSet>,
    ) -> Result<Option<Prepared>, ServiceError> {
        let request = events_request(events);
        let mut snapshot = self.repo.load(&request).await?;
        if let Some(earlier) = earlier
            && !snapshot.overlay(earlier, &request)
        {
            return Ok(None);
        }
        let mut ledger =
            Ledger::new(snapshot, self.clock.now(), self.hold_ttl()).with_availability(self.config.availability);
        let outcomes = events
            .iter()
            .map(|e| ledger.apply(e).map_err(ServiceError::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Prepared {
            outcomes,
            changes: ledger.into_changes(),
        }))
    }

    /// Saves what [`Self::prepare_events`] worked out, once. A conflict (a row changed since it
    /// was read) is counted and answered as [`ServiceError::Contention`]: nothing was written, and
    /// the events are handled again from the start with [`Self::handle_events`].
    pub async fn save_prepared(&self, changes: &ChangeSet) -> Result<(), ServiceError> {
        if changes.is_empty() {
            return Ok(());
        }
        match self.repo.save(changes).await {
            Ok(()) => Ok(()),
            Err(RepoError::Conflict) => {
                self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                Err(ServiceError::Contention { attempts: 1 })
            }
            Err(other) => Err(other.into()),
        }
    }

    fn hold_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.hold_ttl).unwrap_or(chrono::Duration::minutes(30))
    }

    /// Releases up to `limit` expired holds; returns how many were released.
    pub async fn expire_holds(&self, limit: i64) -> Result<usize, ServiceError> {
        let orders = self.repo.expired_holds(self.clock.now(), limit).await?;
        if orders.is_empty() {
            return Ok(0);
        }
        let request = LoadRequest {
            orders: orders.clone(),
            ..LoadRequest::default()
        };
        let (outcomes, _) = self
            .execute(&request, |ledger| {
                orders
                    .iter()
                    .map(|o| ledger.expire(o).map_err(ServiceError::from))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(outcomes.iter().filter(|o| **o == Outcome::Released).count())
    }

    async fn execute<T>(
        &self,
        request: &LoadRequest,
        work: impl FnMut(&mut Ledger) -> Result<T, ServiceError>,
    ) -> Result<(T, crate::ports::ChangeSet), ServiceError> {
        self.execute_then(request, work, |_| {}).await
    }

    /// Load, apply `work`, let `finish` complete the change set, save; retry on conflict.
    async fn execute_then<T>(
        &self,
        request: &LoadRequest,
        mut work: impl FnMut(&mut Ledger) -> Result<T, ServiceError>,
        finish: impl Fn(&mut crate::ports::ChangeSet),
    ) -> Result<(T, crate::ports::ChangeSet), ServiceError> {
        let ttl = self.hold_ttl();
        let mut attempt = 1;
        loop {
            let snapshot = self.repo.load(request).await?;
            let mut ledger = Ledger::new(snapshot, self.clock.now(), ttl).with_availability(self.config.availability);
            let result = work(&mut ledger)?;
            let mut changes = ledger.into_changes();
            finish(&mut changes);
            if changes.is_empty() {
                return Ok((result, changes));
            }
            match self.repo.save(&changes).await {
                Ok(()) => return Ok((result, changes)),
                Err(RepoError::Conflict) => self.after_conflict(&mut attempt).await?,
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Counts a conflict, then waits before the next attempt, or gives up after the last.
    async fn after_conflict(&self, attempt: &mut u32) -> Result<(), ServiceError> {
        self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
        if *attempt >= self.config.max_attempts {
            self.metrics.exhausted.fetch_add(1, Ordering::Relaxed);
            return Err(ServiceError::Contention { attempts: *attempt });
        }
        self.metrics.retries.fetch_add(1, Ordering::Relaxed);
        self.clock.sleep(self.backoff(*attempt)).await;
        *attempt += 1;
        Ok(())
    }

    /// Full jitter: a random wait up to `base * 2^(attempt-1)`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.config.max_backoff);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

fn written(changes: crate::ports::ChangeSet, product: &ProductId) -> Result<Inventory, ServiceError> {
    changes
        .stock
        .into_iter()
        .map(|w| w.inventory)
        .find(|inv| inv.product_id() == product)
        .ok_or_else(|| ServiceError::NotFound(product.clone()))
}
