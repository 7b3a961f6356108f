//! What the domain needs from the outside world, as traits the adapters implement.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

use crate::availability::{AvailabilityCause, AvailabilityConfig, Caused, StockLevel, change_events, level};
use crate::events::OutboxEvent;
use crate::inventory::Inventory;
use crate::reservation::Reservation;
use crate::values::{Actor, AdjustmentReason, OrderId, ProductId, Quantity};

/// The underlying error of a store failure, kept whole so logs show its chain.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A store failure, as the domain sees it. Which failures are transient is
/// decided once, by the adapter, from typed causes: `Conflict` and
/// `Unavailable` are, `Failure` is not.
#[derive(Debug, Error)]
pub enum RepoError {
    /// Another writer changed a row since it was loaded (optimistic lock), or
    /// created one this change meant to create. Reload and try again.
    #[error("concurrent update")]
    Conflict,
    /// The store cannot be reached or gave up for now; trying later may work.
    #[error("store unavailable")]
    Unavailable(#[source] Cause),
    /// The store refused the change or returned data it should never hold.
    #[error("store failure")]
    Failure(#[source] Cause),
}

impl RepoError {
    /// `Unavailable` with a message as its cause.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into().into())
    }

    /// `Failure` with a message as its cause.
    pub fn failure(message: impl Into<String>) -> Self {
        Self::Failure(message.into().into())
    }
}

/// Displays an error and its sources, `outer: inner: innermost`, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// What a unit of work needs to read before it decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadRequest {
    /// Stock rows to load.
    pub products: Vec<ProductId>,
    /// Reservations to load; the stock rows their lines name are loaded too.
    pub orders: Vec<OrderId>,
    /// Consumed event ids to check against the processed-event record.
    pub events: Vec<Uuid>,
    /// Idempotency key of a manual change, to look up its first result.
    pub idempotency_key: Option<String>,
}

/// What the store held when a unit of work began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Existing stock rows among those asked for (and those the reservations name).
    pub stock: Vec<Inventory>,
    /// Existing reservations among those asked for.
    pub reservations: Vec<Reservation>,
    /// Event ids among those asked for that were already processed.
    pub processed_events: Vec<Uuid>,
    /// The stored result of the idempotency key asked for, if it was used.
    pub idempotency: Option<IdempotencyRecord>,
}

impl Snapshot {
    /// Lays `earlier`, the changes of a save that will have committed before this unit of work is
    /// saved, over what was loaded (which may or may not include them): its stock rows and, among
    /// those `request` asked for, its reservations and processed events replace or join what the
    /// store returned. A row another writer changed meanwhile is caught by the save's version check.
    ///
    /// False when the result would be incomplete: a reservation laid over names a product whose
    /// stock row is in neither (the load fetches those only for the reservations it found). The
    /// caller then loads again once `earlier` is committed.
    pub fn overlay(&mut self, earlier: &ChangeSet, request: &LoadRequest) -> bool {
        use std::collections::{HashMap, HashSet};
        let orders: HashSet<&OrderId> = request.orders.iter().collect();
        let events: HashSet<&Uuid> = request.events.iter().collect();
        let laid: Vec<&Reservation> = earlier
            .reservations
            .iter()
            .map(|w| &w.reservation)
            .filter(|r| orders.contains(r.order_id()))
            .collect();
        let mut stock: HashMap<ProductId, usize> = self
            .stock
            .iter()
            .enumerate()
            .map(|(i, s)| (s.product_id().clone(), i))
            .collect();
        let wanted: HashSet<&ProductId> = request
            .products
            .iter()
            .chain(laid.iter().flat_map(|r| r.lines().iter().map(|l| &l.product_id)))
            .collect();
        for row in earlier.stock.iter().map(|w| &w.inventory) {
            match stock.get(row.product_id()) {
                Some(&i) => self.stock[i] = row.clone(),
                None if wanted.contains(row.product_id()) => {
                    stock.insert(row.product_id().clone(), self.stock.len());
                    self.stock.push(row.clone());
                }
                None => {}
            }
        }
        if laid
            .iter()
            .any(|r| r.lines().iter().any(|l| !stock.contains_key(&l.product_id)))
        {
            return false;
        }
        for reservation in laid {
            match self
                .reservations
                .iter_mut()
                .find(|r| r.order_id() == reservation.order_id())
            {
                Some(r) => *r = reservation.clone(),
                None => self.reservations.push(reservation.clone()),
            }
        }
        let processed: HashSet<Uuid> = self.processed_events.iter().copied().collect();
        for event in &earlier.processed_events {
            if events.contains(&event.event_id) && !processed.contains(&event.event_id) {
                self.processed_events.push(event.event_id);
            }
        }
        true
    }
}

/// A client's idempotency key for a manual change, and what identifies the
/// request it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    /// The client's key (1 to 255 printable characters).
    pub key: String,
    /// The request in a canonical form; a reuse with another one is refused.
    pub fingerprint: String,
}

/// The first result of an idempotent manual change, replayed on a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The key and request.
    pub request: IdempotentRequest,
    /// The record as the change left it (the first line's, for a bulk count).
    pub result: Inventory,
    /// Every line, for a bulk count.
    pub lines: Option<Vec<CountedLine>>,
}

/// One line of a bulk count: a product's counted physical stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountLine {
    /// Product.
    pub product_id: ProductId,
    /// The count.
    pub count: crate::values::StockCount,
    /// The version the count was taken against, if the counter knew it.
    pub expected_version: Option<i64>,
}

/// What a bulk count did (or, in a dry run, would do) to one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedLine {
    /// Product.
    pub product_id: ProductId,
    /// Physical units before.
    pub old_quantity: u32,
    /// Physical units after.
    pub new_quantity: u32,
    /// Units on hold (a count never changes them).
    pub reserved: u32,
    /// The record's version after (in a dry run: as it is).
    pub version: i64,
}

/// A stock row to write: inserted when `expected_version` is `None`, else
/// updated only if the stored version still equals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockWrite {
    /// The row as it must be stored, version included.
    pub inventory: Inventory,
    /// Version the change was computed from.
    pub expected_version: Option<i64>,
}

/// A reservation to write, with the same optimistic rule as [`StockWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationWrite {
    /// The record as it must be stored, version included.
    pub reservation: Reservation,
    /// Version the change was computed from.
    pub expected_version: Option<i64>,
    /// The lines are new with this change (a new hold, or a paid order
    /// reserved late) and are written with it.
    pub lines_added: bool,
}

/// A consumed event to remember, so a redelivery changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// Order it was about.
    pub order_id: OrderId,
    /// What the service did with it.
    pub outcome: &'static str,
    /// When.
    pub processed_at: DateTime<Utc>,
}

/// One manual change of a physical count: the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    /// Product changed.
    pub product_id: ProductId,
    /// Count before.
    pub old_quantity: u32,
    /// Count after.
    pub new_quantity: u32,
    /// Why.
    pub reason: AdjustmentReason,
    /// Who.
    pub actor: Actor,
    /// Free-text note, if any.
    pub note: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl Adjustment {
    /// `new_quantity - old_quantity`.
    pub fn delta(&self) -> i64 {
        i64::from(self.new_quantity) - i64::from(self.old_quantity)
    }
}

/// Everything one unit of work changes; saved in one transaction or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Stock rows, ordered by product id (the store locks in this order).
    pub stock: Vec<StockWrite>,
    /// Reservations.
    pub reservations: Vec<ReservationWrite>,
    /// Consumed events handled.
    pub processed_events: Vec<ProcessedEvent>,
    /// Events to publish (the outbox).
    pub outbox: Vec<OutboxEvent>,
    /// Audit trail rows.
    pub adjustments: Vec<Adjustment>,
    /// Result of an idempotent change, stored under its key (unique).
    pub idempotency: Option<IdempotencyRecord>,
}

impl ChangeSet {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.stock.is_empty()
            && self.reservations.is_empty()
            && self.processed_events.is_empty()
            && self.outbox.is_empty()
            && self.adjustments.is_empty()
            && self.idempotency.is_none()
    }
}

/// Units added to one product's physical count, applied by the store as one
/// atomic increment: adds commute, so concurrent adds (from any number of
/// instances) queue on the row instead of failing its optimistic lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockAddition {
    /// Product; its record is created (version 0) when it has none.
    pub product_id: ProductId,
    /// Units to add.
    pub amount: Quantity,
    /// Who, for the audit trail.
    pub actor: Actor,
    /// When.
    pub at: DateTime<Utc>,
    /// Id of the record if this addition creates it.
    pub new_id: Uuid,
    /// The highest count the record may reach ([`crate::StockCount::MAX`]).
    pub max_quantity: u32,
    /// Key and request, when the client sent an `Idempotency-Key`.
    pub idempotency: Option<IdempotentRequest>,
    /// Whether it emits availability events, and the default threshold.
    pub availability: AvailabilityConfig,
    /// The request it came in, for its availability events.
    pub request_id: Option<String>,
}

impl StockAddition {
    /// The availability events of this addition, once the store made `after` of it (version 0:
    /// the record is new, so the product was out before).
    pub fn availability_events(&self, after: &Inventory) -> Vec<OutboxEvent> {
        let default = self.availability.default_low_stock_threshold;
        let before = if after.version() == 0 {
            StockLevel::Out
        } else {
            level(
                after.available().saturating_sub(self.amount.get()),
                after.low_stock_threshold().or(default),
            )
        };
        let caused = Caused {
            cause: AvailabilityCause::StockAdded,
            meta: None,
            actor: Some(self.actor.clone()),
            request_id: self.request_id.clone(),
        };
        change_events(before, after, self.availability, &caused, self.at)
    }
}

/// What the store did with a [`StockAddition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// Added (the record as it now is, version bumped), with its audit row and,
    /// under a key, its idempotency record, in the same transaction.
    Added(Inventory),
    /// The key was already used: what was stored under it; nothing changed.
    Replayed(IdempotencyRecord),
    /// The count would pass `max_quantity`; nothing changed.
    WouldOverflow,
}

/// A stored audit trail row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRecord {
    /// Row id, increasing with time; the cursor for paging.
    pub id: i64,
    /// The change.
    pub adjustment: Adjustment,
}

/// Which stock rows a listing wants. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockFilter {
    /// `quantity - reserved` below this.
    pub available_below: Option<u32>,
    /// `quantity - reserved` at least this.
    pub available_at_least: Option<u32>,
    /// Product ids that start with this.
    pub product_id_prefix: Option<String>,
    /// Changed at or after this.
    pub updated_since: Option<DateTime<Utc>>,
}

/// One page of a listing: the rows after `after` in product-id order (byte
/// order of the id's UTF-8, whatever the database's collation), at most
/// `limit`, found among at most `scan` rows, so that a page costs the same
/// however few rows match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockListing {
    /// The conditions.
    pub filter: StockFilter,
    /// The last product id of the page before; none for the first page.
    pub after: Option<ProductId>,
    /// Most rows returned.
    pub limit: u32,
    /// Most rows examined (those after `after` with the prefix, in order).
    pub scan: u32,
}

/// What a listing found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StockScan {
    /// The matching rows, in product-id order.
    pub rows: Vec<Inventory>,
    /// Set when fewer than `limit` rows matched and the scan stopped at its
    /// bound: the last id it examined, where the next page goes on.
    pub stopped_at: Option<ProductId>,
}

/// The store of stock, reservations, processed events, outbox and audit trail.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait InventoryRepository: Send + Sync {
    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), RepoError>;

    /// Stock rows of these products; unknown products are left out. One query.
    async fn stock(&self, products: &[ProductId]) -> Result<Vec<Inventory>, RepoError>;

    /// A page of stock rows in product-id order (see [`StockListing`]). Keyset
    /// pagination: a row written between two pages is in the next one when its
    /// id comes after the last one returned, and no row is returned twice.
    async fn list_stock(&self, listing: &StockListing) -> Result<StockScan, RepoError>;

    /// Reads what a unit of work needs, without locking.
    async fn load(&self, request: &LoadRequest) -> Result<Snapshot, RepoError>;

    /// Writes a change set in one transaction, stock rows in product-id
    /// order, each with its optimistic version check; outbox rows in the same
    /// transaction. Any version mismatch or duplicate key is [`RepoError::Conflict`]
    /// and nothing is written.
    async fn save(&self, changes: &ChangeSet) -> Result<(), RepoError>;

    /// Adds units in one transaction: an increment of the stored count that
    /// bumps its version (no optimistic check: adds commute), the audit row,
    /// and the idempotency record under its key. A key stored meanwhile by a
    /// concurrent request is [`RepoError::Conflict`]; the retry replays it.
    async fn add_units(&self, addition: &StockAddition) -> Result<AddOutcome, RepoError>;

    /// Orders whose active hold expired at `now`, oldest first.
    async fn expired_holds(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OrderId>, RepoError>;

    /// A product's audit trail, newest first, rows with an id below `before`.
    async fn adjustments(
        &self,
        product: &ProductId,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AdjustmentRecord>, RepoError>;
}

/// Time, behind a port so tests control it.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Waits `duration` (the retry backoff).
    async fn sleep(&self, duration: Duration);
}

/// An outbox row waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// Outbox row id; publication follows it.
    pub id: i64,
    /// The event's own id.
    pub event_id: Uuid,
    /// Wire type name, e.g. `InventoryReservedEvent`.
    pub event_type: String,
    /// Record key: the order id.
    pub key: String,
    /// The JSON document to publish.
    pub payload: String,
    /// When the change happened.
    pub created_at: DateTime<Utc>,
    /// Transport headers to send with it (trace context of its cause).
    pub headers: Vec<(String, String)>,
}

/// A publication failure; the events stay in the outbox and are tried again.
#[derive(Debug, Error)]
#[error("publish failed: {0}")]
pub struct PublishError(pub String);

/// Where outbox events go (the message broker).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes the events in order and returns once every one is acknowledged.
    async fn publish(&self, events: &[PendingEvent]) -> Result<(), PublishError>;
}

/// How far the outbox is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxBacklog {
    /// Events not yet published.
    pub pending: i64,
    /// Age of the oldest of them, in milliseconds.
    pub oldest_age_ms: i64,
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// This many events were published (0: none was pending).
    Published(usize),
    /// Another relay holds the lock; it publishes what is pending.
    Busy,
}

/// The relay side of the transactional outbox.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` unpublished events in order, hands them to
    /// `publisher` and marks them published once it returns `Ok`, all while
    /// holding a lock that keeps other relays of the same outbox out.
    async fn relay(&self, limit: i64, publisher: &dyn EventPublisher) -> Result<Relayed, RepoError>;

    /// Unpublished events and the age of the oldest.
    async fn backlog(&self) -> Result<OutboxBacklog, RepoError>;

    /// Deletes published outbox rows, processed-event rows and idempotency
    /// keys older than `before`.
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
}
