//! The per-order hold and its state machine.

use chrono::{DateTime, Utc};

use crate::events::{FailureReason, LineItem, ReleaseReason};
use crate::values::OrderId;

/// Where an order's hold stands.
///
/// `Reserved` moves to `Committed` or `Released`; `Failed` and `Cancelled`
/// are final states for orders that never held anything. `Paid` waits for an
/// order whose payment was reported before the order itself: its late create
/// reserves and deducts at once (`Committed`), or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    /// Units are on hold.
    Reserved,
    /// Payment succeeded; the units left the shelf.
    Committed,
    /// The hold was given back.
    Released(ReleaseReason),
    /// The order could not be reserved.
    Failed(FailureReason),
    /// A cancel arrived before any reservation; a late create must fail.
    Cancelled,
    /// A payment succeeded before any reservation; a late create deducts at once.
    Paid,
}

impl ReservationStatus {
    /// Stable text of the state, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Committed => "COMMITTED",
            Self::Released(_) => "RELEASED",
            Self::Failed(_) => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Paid => "PAID",
        }
    }

    /// Whether the order holds stock.
    pub fn is_active(self) -> bool {
        self == Self::Reserved
    }
}

/// One order's reservation record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    order_id: OrderId,
    status: ReservationStatus,
    lines: Vec<LineItem>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    version: i64,
}

impl Reservation {
    /// Rebuilds a record from storage.
    pub fn restore(
        order_id: OrderId,
        status: ReservationStatus,
        lines: Vec<LineItem>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        version: i64,
    ) -> Self {
        Self {
            order_id,
            status,
            lines,
            created_at,
            updated_at,
            expires_at,
            version,
        }
    }

    pub(crate) fn reserved(
        order_id: OrderId,
        lines: Vec<LineItem>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self::new(order_id, ReservationStatus::Reserved, lines, now, Some(expires_at))
    }

    pub(crate) fn new(
        order_id: OrderId,
        status: ReservationStatus,
        lines: Vec<LineItem>,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            order_id,
            status,
            lines,
            created_at: now,
            updated_at: now,
            expires_at,
            version: 0,
        }
    }

    pub(crate) fn transition(&mut self, status: ReservationStatus, now: DateTime<Utc>) {
        self.status = status;
        self.updated_at = now;
        if !status.is_active() {
            self.expires_at = None;
        }
    }

    /// A paid order reserved late: its lines are deducted at once.
    pub(crate) fn settle_paid(&mut self, lines: Vec<LineItem>, now: DateTime<Utc>) {
        self.lines = lines;
        self.transition(ReservationStatus::Committed, now);
    }

    pub(crate) fn with_version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }

    /// Order of the record.
    pub fn order_id(&self) -> &OrderId {
        &self.order_id
    }
    /// Current state.
    pub fn status(&self) -> ReservationStatus {
        self.status
    }
    /// Units held (or once held), one line per product, by product id.
    pub fn lines(&self) -> &[LineItem] {
        &self.lines
    }
    /// When the record was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
    /// When an active hold expires.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }
    /// Optimistic-lock version of the stored row.
    pub fn version(&self) -> i64 {
        self.version
    }
}
