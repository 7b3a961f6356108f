//! What the service hears (order and payment events, as commands) and what it says.

use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

use crate::availability::{AvailabilityCause, AvailabilityKind};
use crate::values::{OrderId, ProductId, Quantity};

/// Identity and tracing data of a consumed event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventMeta {
    /// The key duplicates are recognised by: the producer's id when it is a
    /// UUID, else one derived from it (or from the content when it has none).
    pub event_id: Uuid,
    /// Id shared by every event of one business flow, passed on unchanged.
    pub correlation_id: Option<String>,
    /// How the cause looked on the wire, for its answers to echo.
    pub echo: Echo,
}

/// What the answers to an event repeat of it as it was sent. The rules never
/// read it; they pass it from a cause to the events it causes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Echo {
    /// The event's id exactly as sent (any string, not only a UUID): the
    /// answers' `causationId`.
    pub event_id: Option<String>,
    /// The order id came as a JSON number, so answers write it as one.
    pub numeric_order_id: bool,
    /// Transport headers carried from the cause to its answers (W3C trace context).
    pub headers: Vec<(String, String)>,
}

/// One line of an order as the Order Service sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// Product ordered.
    pub product_id: ProductId,
    /// Units ordered.
    pub quantity: Quantity,
}

/// The lines of one order: at most [`OrderLines::MAX`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(Vec<OrderLine>);

/// An order with more lines than allowed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("an order may have at most {max} lines, got {got}")]
pub struct TooManyLines {
    /// Lines allowed.
    pub max: usize,
    /// Lines given.
    pub got: usize,
}

impl OrderLines {
    /// Most lines one order may have.
    pub const MAX: usize = 100;

    /// Validates the line count. An empty order is accepted here and refused
    /// by the reservation rules with `INVALID_ORDER`, so the sender hears why.
    pub fn new(lines: Vec<OrderLine>) -> Result<Self, TooManyLines> {
        if lines.len() > Self::MAX {
            return Err(TooManyLines {
                max: Self::MAX,
                got: lines.len(),
            });
        }
        Ok(Self(lines))
    }

    /// The lines as sent.
    pub fn lines(&self) -> &[OrderLine] {
        &self.0
    }

    /// The lines with each product once and its quantities summed, by product id.
    pub fn merged(&self) -> Vec<LineItem> {
        let mut sums = std::collections::BTreeMap::<&ProductId, u32>::new();
        for line in &self.0 {
            *sums.entry(&line.product_id).or_default() += line.quantity.get();
        }
        sums.into_iter()
            .map(|(p, q)| LineItem {
                product_id: p.clone(),
                quantity: q,
            })
            .collect()
    }
}

/// Why held stock went back to the free pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseReason {
    /// The Order Service cancelled the order.
    OrderCancelled,
    /// The Payment Service could not charge.
    PaymentFailed,
    /// The hold outlived its time to live.
    Expired,
}

impl ReleaseReason {
    /// Stable text, as on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderCancelled => "ORDER_CANCELLED",
            Self::PaymentFailed => "PAYMENT_FAILED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Parses the stable text.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::OrderCancelled, Self::PaymentFailed, Self::Expired]
            .into_iter()
            .find(|r| r.as_str() == raw)
    }
}

/// Why an order could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// At least one line asks for more than is free.
    InsufficientStock,
    /// At least one line names a product with no stock record.
    UnknownProduct,
    /// The order has no lines.
    InvalidOrder,
    /// The order was cancelled before it was reserved.
    OrderCancelled,
}

impl FailureReason {
    /// Stable text, as on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientStock => "INSUFFICIENT_STOCK",
            Self::UnknownProduct => "UNKNOWN_PRODUCT",
            Self::InvalidOrder => "INVALID_ORDER",
            Self::OrderCancelled => "ORDER_CANCELLED",
        }
    }

    /// Parses the stable text.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::InsufficientStock,
            Self::UnknownProduct,
            Self::InvalidOrder,
            Self::OrderCancelled,
        ]
        .into_iter()
        .find(|r| r.as_str() == raw)
    }
}

/// What a consumed event asks the inventory to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// `OrderCreatedEvent`: hold every line, or none.
    Reserve {
        /// Order to reserve for.
        order_id: OrderId,
        /// Its lines.
        lines: OrderLines,
    },
    /// `OrderCancelledEvent` or `PaymentFailedEvent`: give back what the order holds.
    Release {
        /// Order to release.
        order_id: OrderId,
        /// Why.
        reason: ReleaseReason,
    },
    /// `PaymentSucceededEvent`: the held units leave the shelf.
    Commit {
        /// Order to commit.
        order_id: OrderId,
    },
    /// An `OrderCreatedEvent` that names its order but cannot be read (a bad
    /// line, quantity or event id): answered as failed with `INVALID_ORDER`,
    /// so the order service can compensate instead of waiting for ever.
    Reject {
        /// Order that asked.
        order_id: OrderId,
        /// What is wrong with it, naming the field.
        detail: String,
    },
}

impl OrderCommand {
    /// The order the command is about.
    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Reserve { order_id, .. }
            | Self::Release { order_id, .. }
            | Self::Commit { order_id }
            | Self::Reject { order_id, .. } => order_id,
        }
    }
}

/// A decoded, valid consumed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    /// Identity of the event.
    pub meta: EventMeta,
    /// What it asks for.
    pub command: OrderCommand,
}

/// A product and a number of units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    /// Product.
    pub product_id: ProductId,
    /// Units.
    pub quantity: u32,
}

/// A line that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortLine {
    /// Product.
    pub product_id: ProductId,
    /// Units the order asked for (summed over its lines).
    pub requested: u32,
    /// Units free when it was tried (0 for an unknown product).
    pub available: u32,
}

/// What the inventory tells the other services (their wire form is
/// `inventory-contract`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryEvent {
    /// Every line is on hold.
    Reserved {
        /// Order reserved.
        order_id: OrderId,
        /// Units held, one line per product.
        items: Vec<LineItem>,
    },
    /// Nothing was held.
    ReservationFailed {
        /// Order refused.
        order_id: OrderId,
        /// Machine-readable cause.
        reason: FailureReason,
        /// Human-readable cause.
        detail: String,
        /// The lines that were short.
        items: Vec<ShortLine>,
    },
    /// A hold was given back.
    Released {
        /// Order released.
        order_id: OrderId,
        /// Why.
        reason: ReleaseReason,
        /// Units given back.
        items: Vec<LineItem>,
    },
    /// A product's stock level changed (see [`crate::availability`]).
    Availability(AvailabilityChange),
}

/// A product's move to another stock level, with its state after the move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityChange {
    /// The event.
    pub kind: AvailabilityKind,
    /// Product (also the record key).
    pub product_id: ProductId,
    /// `quantity - reserved` after.
    pub available: u32,
    /// Physical units after.
    pub quantity: u32,
    /// Units on hold after.
    pub reserved: u32,
    /// The threshold in force (the product's own, or the default).
    pub low_stock_threshold: Option<u32>,
    /// What changed it (the last change in the transaction).
    pub cause: AvailabilityCause,
    /// Who, for a manual change.
    pub actor: Option<String>,
    /// The request behind a manual change, when it had an id.
    pub request_id: Option<String>,
}

impl InventoryEvent {
    /// The event type name on the wire.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Reserved { .. } => "InventoryReservedEvent",
            Self::ReservationFailed { .. } => "StockReservationFailedEvent",
            Self::Released { .. } => "InventoryReleasedEvent",
            Self::Availability(change) => change.kind.event_type(),
        }
    }

    /// The order the event is about, for the saga's events.
    pub fn order_id(&self) -> Option<&OrderId> {
        match self {
            Self::Reserved { order_id, .. }
            | Self::ReservationFailed { order_id, .. }
            | Self::Released { order_id, .. } => Some(order_id),
            Self::Availability(_) => None,
        }
    }

    /// The record key: the order for the saga's events, the product for availability events, so
    /// that each one's events stay in order on one partition.
    pub fn key(&self) -> &str {
        match self {
            Self::Availability(change) => change.product_id.as_str(),
            other => other.order_id().map_or("", OrderId::as_str),
        }
    }
}

/// An event to publish, with its envelope; stored in the outbox in the same
/// transaction as the change that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// When the change happened.
    pub occurred_at: DateTime<Utc>,
    /// Id of the consumed event that caused it, as that event carried it.
    pub causation_id: Option<String>,
    /// Correlation id received with the cause, passed on.
    pub correlation_id: Option<String>,
    /// The event.
    pub event: InventoryEvent,
    /// The order id is written as a JSON number (it came as one).
    pub numeric_order_id: bool,
    /// Transport headers to send with it, from its cause.
    pub headers: Vec<(String, String)>,
}
