//! A unit of work in memory: the rows a change needs, the rules applied to
//! them, and the change set that results. Pure; the service loads and saves.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use thiserror::Error;
use uuid::Uuid;

use crate::availability::{AvailabilityCause, AvailabilityConfig, Caused, change_events, level_of};
use crate::events::{
    EventMeta, FailureReason, IncomingEvent, InventoryEvent, LineItem, OrderCommand, OrderLines, OutboxEvent,
    ReleaseReason, ShortLine,
};
use crate::inventory::{Inventory, StockError};
use crate::ports::{Adjustment, ChangeSet, ProcessedEvent, ReservationWrite, Snapshot, StockWrite};
use crate::reservation::{Reservation, ReservationStatus};
use crate::values::{Actor, AdjustmentReason, OrderId, ProductId, Quantity, StockCount};

/// What handling one consumed event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The event id was processed before; nothing changed.
    Duplicate,
    /// Every line is on hold.
    Reserved,
    /// Nothing was held, for this reason.
    Failed(FailureReason),
    /// The hold was given back.
    Released,
    /// The hold became a deduction.
    Committed,
    /// A cancel arrived first; it is remembered.
    CancelRecorded,
    /// A payment arrived before the order; it is remembered.
    PaymentRecorded,
    /// The order's state makes the event meaningless (e.g. cancel after commit).
    NoChange,
}

impl Outcome {
    /// Stable name, for metrics and the processed-event record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::Reserved => "reserved",
            Self::Failed(_) => "failed",
            Self::Released => "released",
            Self::Committed => "committed",
            Self::CancelRecorded => "cancel_recorded",
            Self::PaymentRecorded => "payment_recorded",
            Self::NoChange => "no_change",
        }
    }
}

/// A stored state the rules cannot work from; points at a bug or a bad manual edit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("order {order_id} holds {product_id}, but its stock cannot take the change: {source}")]
pub struct Inconsistency {
    /// Order.
    pub order_id: OrderId,
    /// Product.
    pub product_id: ProductId,
    /// What the aggregate refused.
    pub source: StockError,
}

/// Why a manual change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdjustError {
    /// The product has no stock record.
    #[error("product {0} has no stock record")]
    NotFound(ProductId),
    /// The caller's view is stale.
    #[error("expected version {expected}, found {actual}")]
    VersionMismatch {
        /// Version the caller saw.
        expected: i64,
        /// Version stored.
        actual: i64,
    },
    /// The aggregate refused the change.
    #[error(transparent)]
    Stock(#[from] StockError),
}

#[derive(Debug, Clone)]
struct Slot<T> {
    value: T,
    stored_version: Option<i64>,
    dirty: bool,
}

impl<T> Slot<T> {
    fn stored(value: T, version: i64) -> Self {
        Self {
            value,
            stored_version: Some(version),
            dirty: false,
        }
    }
    fn fresh(value: T) -> Self {
        Self {
            value,
            stored_version: None,
            dirty: true,
        }
    }
}

/// The unit of work.
#[derive(Debug)]
pub struct Ledger {
    now: DateTime<Utc>,
    hold_ttl: Duration,
    stock: BTreeMap<ProductId, Slot<Inventory>>,
    reservations: HashMap<OrderId, Slot<Reservation>>,
    /// Stored reservations whose lines this change adds (paid orders reserved late).
    lines_added: HashSet<OrderId>,
    seen_events: HashSet<Uuid>,
    processed: Vec<ProcessedEvent>,
    outbox: Vec<OutboxEvent>,
    adjustments: Vec<Adjustment>,
    idempotency: Option<crate::ports::IdempotencyRecord>,
    availability: AvailabilityConfig,
    /// Stock as loaded, to tell each product's level before this unit of work.
    loaded: HashMap<ProductId, Inventory>,
    /// The last change of each product's available units, and who or what made it.
    causes: HashMap<ProductId, Caused>,
    /// The request the manual changes of this unit of work came in.
    request_id: Option<String>,
}

impl Ledger {
    /// Starts a unit of work from what the store held.
    pub fn new(snapshot: Snapshot, now: DateTime<Utc>, hold_ttl: Duration) -> Self {
        // Stores keep microseconds; the answer to a change must equal a later read.
        let now = now.trunc_subsecs(6);
        let loaded = snapshot
            .stock
            .iter()
            .map(|inv| (inv.product_id().clone(), inv.clone()))
            .collect();
        Self {
            now,
            hold_ttl,
            availability: AvailabilityConfig::default(),
            loaded,
            causes: HashMap::new(),
            request_id: None,
            stock: snapshot
                .stock
                .into_iter()
                .map(|inv| {
                    let version = inv.version();
                    (inv.product_id().clone(), Slot::stored(inv, version))
                })
                .collect(),
            reservations: snapshot
                .reservations
                .into_iter()
                .map(|r| {
                    let version = r.version();
                    (r.order_id().clone(), Slot::stored(r, version))
                })
                .collect(),
            lines_added: HashSet::new(),
            seen_events: snapshot.processed_events.into_iter().collect(),
            processed: Vec::new(),
            outbox: Vec::new(),
            adjustments: Vec::new(),
            idempotency: snapshot.idempotency,
        }
    }

    /// Emits availability events (off unless asked for) with this default threshold.
    pub fn with_availability(mut self, config: AvailabilityConfig) -> Self {
        self.availability = config;
        self
    }

    /// The manual changes that follow came in this request (its id goes on their availability
    /// events).
    pub fn on_request(&mut self, request_id: Option<String>) {
        self.request_id = request_id;
    }

    fn caused(
        &mut self,
        product: &ProductId,
        kind: AvailabilityCause,
        meta: Option<&EventMeta>,
        actor: Option<&Actor>,
    ) {
        let request_id = actor.and(self.request_id.clone());
        self.causes.insert(
            product.clone(),
            Caused {
                cause: kind,
                meta: meta.cloned(),
                actor: actor.cloned(),
                request_id,
            },
        );
    }

    /// The stored first result of the idempotency key that was loaded, if any.
    pub fn idempotency_record(&self) -> Option<&crate::ports::IdempotencyRecord> {
        self.idempotency.as_ref()
    }

    /// Stock of a product as the unit of work sees it now.
    pub fn stock(&self, product: &ProductId) -> Option<&Inventory> {
        self.stock.get(product).map(|s| &s.value)
    }

    /// Reservation of an order as the unit of work sees it now.
    pub fn reservation(&self, order: &OrderId) -> Option<&Reservation> {
        self.reservations.get(order).map(|s| &s.value)
    }

    /// Adds received units, creating the record for a new product.
    pub fn add_stock(&mut self, product: &ProductId, amount: Quantity, actor: &Actor) -> Result<(), StockError> {
        let now = self.now;
        let slot = self
            .stock
            .entry(product.clone())
            .or_insert_with(|| Slot::fresh(Inventory::new(Uuid::now_v7(), product.clone(), now)));
        let old = slot.value.quantity();
        slot.value.add(amount, now)?;
        slot.dirty = true;
        self.adjustments.push(Adjustment {
            product_id: product.clone(),
            old_quantity: old,
            new_quantity: slot.value.quantity(),
            reason: AdjustmentReason::Add,
            actor: actor.clone(),
            note: None,
            at: now,
        });
        self.caused(product, AvailabilityCause::StockAdded, None, Some(actor));
        Ok(())
    }

    /// A product's slot for a manual change, checked against the version the caller saw.
    fn stock_at(
        &mut self,
        product: &ProductId,
        expected_version: Option<i64>,
    ) -> Result<&mut Slot<Inventory>, AdjustError> {
        let slot = self
            .stock
            .get_mut(product)
            .ok_or_else(|| AdjustError::NotFound(product.clone()))?;
        if let Some(expected) = expected_version {
            let actual = slot.value.version();
            if expected != actual {
                return Err(AdjustError::VersionMismatch { expected, actual });
            }
        }
        Ok(slot)
    }

    /// Sets a product's physical count after a count or a correction.
    pub fn audit_stock(
        &mut self,
        product: &ProductId,
        count: StockCount,
        reason: AdjustmentReason,
        actor: &Actor,
        expected_version: Option<i64>,
    ) -> Result<(), AdjustError> {
        let now = self.now;
        let slot = self.stock_at(product, expected_version)?;
        let old = slot.value.quantity();
        slot.value.audit(count, now)?;
        slot.dirty = true;
        self.adjustments.push(Adjustment {
            product_id: product.clone(),
            old_quantity: old,
            new_quantity: count.get(),
            reason,
            actor: actor.clone(),
            note: None,
            at: now,
        });
        self.caused(product, AvailabilityCause::StockAudited, None, Some(actor));
        Ok(())
    }

    /// Sets (or clears, for the default) a product's low-stock threshold; the change is in the
    /// audit trail with the count unchanged.
    pub fn set_low_stock_threshold(
        &mut self,
        product: &ProductId,
        threshold: Option<u32>,
        actor: &Actor,
        expected_version: Option<i64>,
    ) -> Result<(), AdjustError> {
        let now = self.now;
        let slot = self.stock_at(product, expected_version)?;
        let show = |t: Option<u32>| t.map_or_else(|| "default".to_owned(), |t| t.to_string());
        let note = format!(
            "lowStockThreshold {} -> {}",
            show(slot.value.low_stock_threshold()),
            show(threshold)
        );
        slot.value.set_low_stock_threshold(threshold, now);
        slot.dirty = true;
        let quantity = slot.value.quantity();
        self.adjustments.push(Adjustment {
            product_id: product.clone(),
            old_quantity: quantity,
            new_quantity: quantity,
            reason: AdjustmentReason::Threshold,
            actor: actor.clone(),
            note: Some(note),
            at: now,
        });
        self.caused(product, AvailabilityCause::ThresholdChanged, None, Some(actor));
        Ok(())
    }

    /// Applies one consumed event; a redelivered event id changes nothing.
    pub fn apply(&mut self, event: &IncomingEvent) -> Result<Outcome, Inconsistency> {
        if !self.seen_events.insert(event.meta.event_id) {
            return Ok(Outcome::Duplicate);
        }
        let outcome = match &event.command {
            OrderCommand::Reserve { order_id, lines } => self.reserve(&event.meta, order_id, lines)?,
            OrderCommand::Release { order_id, reason } => self.release(Some(&event.meta), order_id, *reason)?,
            OrderCommand::Commit { order_id } => self.commit(order_id)?,
            OrderCommand::Reject { order_id, detail } => self.reject(&event.meta, order_id, detail),
        };
        self.processed.push(ProcessedEvent {
            event_id: event.meta.event_id,
            order_id: event.command.order_id().clone(),
            outcome: outcome.as_str(),
            processed_at: self.now,
        });
        Ok(outcome)
    }

    /// Releases an order's hold if it is still active and expired.
    pub fn expire(&mut self, order: &OrderId) -> Result<Outcome, Inconsistency> {
        let expired = self
            .reservation(order)
            .is_some_and(|r| r.status().is_active() && r.expires_at().is_some_and(|at| at <= self.now));
        if !expired {
            return Ok(Outcome::NoChange);
        }
        self.release(None, order, ReleaseReason::Expired)
    }

    fn reserve(&mut self, meta: &EventMeta, order_id: &OrderId, lines: &OrderLines) -> Result<Outcome, Inconsistency> {
        let paid = match self.reservations.get(order_id).map(|r| r.value.status()) {
            None => false,
            Some(ReservationStatus::Paid) => true,
            Some(ReservationStatus::Cancelled) => {
                let detail = format!("order {order_id} was cancelled before it could be reserved");
                return Ok(self.fail(meta, order_id, FailureReason::OrderCancelled, detail, Vec::new()));
            }
            Some(_) => return Ok(Outcome::NoChange),
        };
        let wanted = lines.merged();
        if wanted.is_empty() {
            return Ok(self.fail(
                meta,
                order_id,
                FailureReason::InvalidOrder,
                "the order has no lines".into(),
                Vec::new(),
            ));
        }
        let mut short = Vec::new();
        let mut unknown = false;
        for line in &wanted {
            match self.stock(&line.product_id) {
                None => {
                    unknown = true;
                    short.push(ShortLine {
                        product_id: line.product_id.clone(),
                        requested: line.quantity,
                        available: 0,
                    });
                }
                Some(inv) if inv.available() < line.quantity => short.push(ShortLine {
                    product_id: line.product_id.clone(),
                    requested: line.quantity,
                    available: inv.available(),
                }),
                Some(_) => {}
            }
        }
        if !short.is_empty() {
            let reason = if unknown {
                FailureReason::UnknownProduct
            } else {
                FailureReason::InsufficientStock
            };
            let detail = short
                .iter()
                .map(|s| format!("{}: requested {}, available {}", s.product_id, s.requested, s.available))
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(self.fail(meta, order_id, reason, detail, short));
        }
        for line in &wanted {
            if let Some(slot) = self.stock.get_mut(&line.product_id) {
                // Checked above against the same state: cannot fail.
                if slot.value.reserve(line.quantity, self.now).is_ok() {
                    slot.dirty = true;
                }
            }
            self.caused(&line.product_id, AvailabilityCause::OrderReserved, Some(meta), None);
        }
        match self.reservations.get_mut(order_id) {
            // The payment came first: the hold becomes a deduction at once.
            Some(slot) if paid => {
                slot.value.settle_paid(wanted.clone(), self.now);
                slot.dirty = true;
                self.lines_added.insert(order_id.clone());
                self.change_stock(order_id, &wanted, |inv, n, now| inv.commit(n, now))?;
            }
            _ => {
                let expires_at = self.now + self.hold_ttl;
                let reservation = Reservation::reserved(order_id.clone(), wanted.clone(), self.now, expires_at);
                self.reservations.insert(order_id.clone(), Slot::fresh(reservation));
            }
        }
        self.emit(
            Some(meta),
            InventoryEvent::Reserved {
                order_id: order_id.clone(),
                items: wanted,
            },
        );
        Ok(Outcome::Reserved)
    }

    /// An unreadable order fails as invalid, unless the order already has an
    /// answer (a readable copy came first): then nothing changes.
    fn reject(&mut self, meta: &EventMeta, order_id: &OrderId, detail: &str) -> Outcome {
        match self.reservations.get(order_id).map(|r| r.value.status()) {
            None | Some(ReservationStatus::Paid) => self.fail(
                meta,
                order_id,
                FailureReason::InvalidOrder,
                detail.to_owned(),
                Vec::new(),
            ),
            Some(ReservationStatus::Cancelled) => {
                let detail = format!("order {order_id} was cancelled before it could be reserved");
                self.fail(meta, order_id, FailureReason::OrderCancelled, detail, Vec::new())
            }
            Some(_) => Outcome::NoChange,
        }
    }

    fn fail(
        &mut self,
        meta: &EventMeta,
        order_id: &OrderId,
        reason: FailureReason,
        detail: String,
        items: Vec<ShortLine>,
    ) -> Outcome {
        let status = ReservationStatus::Failed(reason);
        match self.reservations.get_mut(order_id) {
            Some(slot) => {
                slot.value.transition(status, self.now);
                slot.dirty = true;
            }
            None => {
                let record = Reservation::new(order_id.clone(), status, Vec::new(), self.now, None);
                self.reservations.insert(order_id.clone(), Slot::fresh(record));
            }
        }
        self.emit(
            Some(meta),
            InventoryEvent::ReservationFailed {
                order_id: order_id.clone(),
                reason,
                detail,
                items,
            },
        );
        Outcome::Failed(reason)
    }

    fn release(
        &mut self,
        meta: Option<&EventMeta>,
        order_id: &OrderId,
        reason: ReleaseReason,
    ) -> Result<Outcome, Inconsistency> {
        let now = self.now;
        let Some(slot) = self.reservations.get_mut(order_id) else {
            if reason == ReleaseReason::Expired {
                return Ok(Outcome::NoChange);
            }
            let record = Reservation::new(order_id.clone(), ReservationStatus::Cancelled, Vec::new(), now, None);
            self.reservations.insert(order_id.clone(), Slot::fresh(record));
            return Ok(Outcome::CancelRecorded);
        };
        if !slot.value.status().is_active() {
            return Ok(Outcome::NoChange);
        }
        let items = slot.value.lines().to_vec();
        slot.value.transition(ReservationStatus::Released(reason), now);
        slot.dirty = true;
        self.change_stock(order_id, &items, |inv, n, now| inv.release(n, now))?;
        let cause = if reason == ReleaseReason::Expired {
            AvailabilityCause::HoldExpired
        } else {
            AvailabilityCause::OrderReleased
        };
        for item in &items {
            self.caused(&item.product_id, cause, meta, None);
        }
        self.emit(
            meta,
            InventoryEvent::Released {
                order_id: order_id.clone(),
                reason,
                items,
            },
        );
        Ok(Outcome::Released)
    }

    fn commit(&mut self, order_id: &OrderId) -> Result<Outcome, Inconsistency> {
        let now = self.now;
        let Some(slot) = self.reservations.get_mut(order_id) else {
            // Paid before this service saw the order: remember it for the late create.
            let record = Reservation::new(order_id.clone(), ReservationStatus::Paid, Vec::new(), now, None);
            self.reservations.insert(order_id.clone(), Slot::fresh(record));
            return Ok(Outcome::PaymentRecorded);
        };
        if !slot.value.status().is_active() {
            return Ok(Outcome::NoChange);
        }
        let items = slot.value.lines().to_vec();
        slot.value.transition(ReservationStatus::Committed, now);
        slot.dirty = true;
        self.change_stock(order_id, &items, |inv, n, now| inv.commit(n, now))?;
        Ok(Outcome::Committed)
    }

    fn change_stock(
        &mut self,
        order_id: &OrderId,
        items: &[LineItem],
        change: impl Fn(&mut Inventory, u32, DateTime<Utc>) -> Result<(), StockError>,
    ) -> Result<(), Inconsistency> {
        for item in items {
            let inconsistency = |source| Inconsistency {
                order_id: order_id.clone(),
                product_id: item.product_id.clone(),
                source,
            };
            let slot = self.stock.get_mut(&item.product_id).ok_or_else(|| {
                inconsistency(StockError::NotReserved {
                    requested: item.quantity,
                    reserved: 0,
                })
            })?;
            change(&mut slot.value, item.quantity, self.now).map_err(inconsistency)?;
            slot.dirty = true;
        }
        Ok(())
    }

    fn emit(&mut self, cause: Option<&EventMeta>, event: InventoryEvent) {
        self.outbox.push(OutboxEvent {
            event_id: Uuid::now_v7(),
            occurred_at: self.now,
            causation_id: cause.map(|m| m.echo.event_id.clone().unwrap_or_else(|| m.event_id.to_string())),
            correlation_id: cause.and_then(|m| m.correlation_id.clone()),
            event,
            numeric_order_id: cause.is_some_and(|m| m.echo.numeric_order_id),
            headers: cause.map(|m| m.echo.headers.clone()).unwrap_or_default(),
        });
    }

    /// The events this unit of work produced so far.
    pub fn outbox(&self) -> &[OutboxEvent] {
        &self.outbox
    }

    /// Each changed product's move to another level over the whole unit of work: from the
    /// level as loaded to the level now, never one per change (see [`crate::availability`]).
    fn availability_events(&mut self) {
        let config = self.availability;
        if !config.enabled {
            return;
        }
        let default = config.default_low_stock_threshold;
        let mut events = Vec::new();
        for (product, slot) in self.stock.iter().filter(|(_, s)| s.dirty) {
            let before = level_of(self.loaded.get(product), default);
            let caused = self.causes.get(product).cloned().unwrap_or(Caused {
                cause: AvailabilityCause::StockAudited,
                meta: None,
                actor: None,
                request_id: None,
            });
            events.extend(change_events(before, &slot.value, config, &caused, self.now));
        }
        self.outbox.extend(events);
    }

    /// What must be saved: changed rows with their next versions.
    pub fn into_changes(mut self) -> ChangeSet {
        self.availability_events();
        let stock = self
            .stock
            .into_values()
            .filter(|s| s.dirty)
            .map(|s| StockWrite {
                expected_version: s.stored_version,
                inventory: s.value.with_version(s.stored_version.map_or(0, |v| v + 1)),
            })
            .collect();
        let mut reservations: Vec<ReservationWrite> = self
            .reservations
            .into_values()
            .filter(|s| s.dirty)
            .map(|s| ReservationWrite {
                lines_added: s.stored_version.is_none() || self.lines_added.contains(s.value.order_id()),
                expected_version: s.stored_version,
                reservation: s.value.with_version(s.stored_version.map_or(0, |v| v + 1)),
            })
            .collect();
        reservations.sort_by(|a, b| a.reservation.order_id().cmp(b.reservation.order_id()));
        ChangeSet {
            stock,
            reservations,
            processed_events: self.processed,
            outbox: self.outbox,
            adjustments: self.adjustments,
            idempotency: None,
        }
    }
}
