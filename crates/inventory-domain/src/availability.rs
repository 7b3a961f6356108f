//! Availability transitions: what the catalog and merchandising hear when a
//! product runs low, runs out or comes back.
//!
//! A product is at one of three levels, by `available = quantity - reserved`
//! and its low-stock threshold `t` (its own, or the configured default):
//! **out** (`available == 0`, or no stock record), **low** (`0 < available < t`)
//! or **in stock** (otherwise; with no threshold, never low).
//!
//! Events are emitted per transaction, from the level before it to the level
//! after it, never per change inside it: a batch that takes a product to 0 and
//! back up emits nothing. Each level has the event that enters it, so a reader
//! that keeps the level of the last event it read ends at the product's level,
//! and never reads the same kind twice in a row:
//!
//! | before → after | events |
//! |---|---|
//! | in stock or low → out | `InventoryOutOfStockEvent` |
//! | in stock → low | `InventoryLowStockEvent` |
//! | out → in stock | `InventoryBackInStockEvent` |
//! | out → low | `InventoryBackInStockEvent`, then `InventoryLowStockEvent` |
//! | low → in stock | `InventoryLowStockClearedEvent` |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::events::{AvailabilityChange, EventMeta, InventoryEvent, OutboxEvent};
use crate::inventory::Inventory;
use crate::values::Actor;

/// A product's stock level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StockLevel {
    /// Nothing available (or no stock record).
    Out,
    /// Fewer available than the low-stock threshold.
    Low,
    /// Otherwise.
    InStock,
}

/// The level of `available` units under `threshold`.
pub fn level(available: u32, threshold: Option<u32>) -> StockLevel {
    match threshold {
        _ if available == 0 => StockLevel::Out,
        Some(t) if available < t => StockLevel::Low,
        _ => StockLevel::InStock,
    }
}

/// The level of a stock record (none: out), with `default` for a record without a threshold.
pub fn level_of(stock: Option<&Inventory>, default: Option<u32>) -> StockLevel {
    stock.map_or(StockLevel::Out, |s| {
        level(s.available(), s.low_stock_threshold().or(default))
    })
}

/// An availability event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvailabilityKind {
    /// Crossed from at or above the threshold to below it (not to 0).
    LowStock,
    /// Reached 0.
    OutOfStock,
    /// Rose from 0.
    BackInStock,
    /// Rose from below the threshold to at or above it (not from 0).
    LowStockCleared,
}

impl AvailabilityKind {
    /// The event type on the wire.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::LowStock => "InventoryLowStockEvent",
            Self::OutOfStock => "InventoryOutOfStockEvent",
            Self::BackInStock => "InventoryBackInStockEvent",
            Self::LowStockCleared => "InventoryLowStockClearedEvent",
        }
    }

    /// The level a reader is at after this event.
    pub fn level_after(self) -> StockLevel {
        match self {
            Self::LowStock => StockLevel::Low,
            Self::OutOfStock => StockLevel::Out,
            Self::BackInStock | Self::LowStockCleared => StockLevel::InStock,
        }
    }
}

/// The events that take a reader from `before` to `after`, in order.
pub fn transitions(before: StockLevel, after: StockLevel) -> Vec<AvailabilityKind> {
    use AvailabilityKind::*;
    use StockLevel::*;
    match (before, after) {
        (Out, Out) | (Low, Low) | (InStock, InStock) => vec![],
        (_, Out) => vec![OutOfStock],
        (InStock, Low) => vec![LowStock],
        (Out, InStock) => vec![BackInStock],
        (Out, Low) => vec![BackInStock, LowStock],
        (Low, InStock) => vec![LowStockCleared],
    }
}

/// What changed a product's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvailabilityCause {
    /// An order's reservation.
    OrderReserved,
    /// A hold given back (cancel, payment failure).
    OrderReleased,
    /// A hold given back when it expired.
    HoldExpired,
    /// Units added.
    StockAdded,
    /// A count set by an audit.
    StockAudited,
    /// The low-stock threshold changed.
    ThresholdChanged,
}

impl AvailabilityCause {
    /// Stable text form, as published.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderReserved => "ORDER_RESERVED",
            Self::OrderReleased => "ORDER_RELEASED",
            Self::HoldExpired => "HOLD_EXPIRED",
            Self::StockAdded => "STOCK_ADDED",
            Self::StockAudited => "STOCK_AUDITED",
            Self::ThresholdChanged => "THRESHOLD_CHANGED",
        }
    }
}

/// Whether availability events are emitted, and the threshold of products without their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AvailabilityConfig {
    /// Emit availability events.
    pub enabled: bool,
    /// Threshold for products without their own; none: such products are never low.
    pub default_low_stock_threshold: Option<u32>,
}

/// What caused a product's last change, for its availability events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caused {
    /// The kind of change.
    pub cause: AvailabilityCause,
    /// The consumed event behind it, for the saga's changes.
    pub meta: Option<EventMeta>,
    /// Who, for a manual change.
    pub actor: Option<Actor>,
    /// The request behind a manual change, when it had an id.
    pub request_id: Option<String>,
}

/// The outbox events that take a reader from `before` to the level of `after`.
pub fn change_events(
    before: StockLevel,
    after: &Inventory,
    config: AvailabilityConfig,
    caused: &Caused,
    now: DateTime<Utc>,
) -> Vec<OutboxEvent> {
    if !config.enabled {
        return Vec::new();
    }
    let default = config.default_low_stock_threshold;
    let meta = caused.meta.as_ref();
    transitions(before, level_of(Some(after), default))
        .into_iter()
        .map(|kind| OutboxEvent {
            event_id: Uuid::now_v7(),
            occurred_at: now,
            // The cause's ids, not its transport headers: those address the order's reply.
            causation_id: meta.map(|m| m.echo.event_id.clone().unwrap_or_else(|| m.event_id.to_string())),
            correlation_id: meta.and_then(|m| m.correlation_id.clone()),
            event: InventoryEvent::Availability(AvailabilityChange {
                kind,
                product_id: after.product_id().clone(),
                available: after.available(),
                quantity: after.quantity(),
                reserved: after.reserved(),
                low_stock_threshold: after.low_stock_threshold().or(default),
                cause: caused.cause,
                actor: caused.actor.as_ref().map(|a| a.0.clone()),
                request_id: caused.request_id.clone(),
            }),
            numeric_order_id: false,
            headers: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AvailabilityKind::*;
    use StockLevel::*;

    #[test]
    fn levels_follow_available_and_the_threshold() {
        assert_eq!(level(0, Some(5)), Out);
        assert_eq!(level(0, None), Out);
        assert_eq!(level(4, Some(5)), Low);
        assert_eq!(level(5, Some(5)), InStock);
        assert_eq!(level(1, None), InStock, "no threshold: never low");
        assert_eq!(level(1, Some(0)), InStock, "threshold 0: never low");
    }

    #[test]
    fn every_transition_ends_a_reader_at_the_new_level_without_repeating_a_kind() {
        let levels = [Out, Low, InStock];
        for before in levels {
            for after in levels {
                let events = transitions(before, after);
                if before == after {
                    assert!(events.is_empty(), "{before:?} -> {after:?}");
                    continue;
                }
                assert_eq!(events.last().unwrap().level_after(), after, "{before:?} -> {after:?}");
                assert!(events.windows(2).all(|w| w[0] != w[1]));
            }
        }
        assert_eq!(transitions(Out, Low), [BackInStock, LowStock]);
        assert_eq!(transitions(Low, Out), [OutOfStock]);
        assert_eq!(transitions(Low, InStock), [LowStockCleared]);
    }

    #[test]
    fn a_walk_through_levels_never_emits_the_same_kind_twice_in_a_row() {
        // Every sequence of levels of length 6 from Out: the events, concatenated.
        let levels = [Out, Low, InStock];
        let mut walks = vec![vec![Out]];
        for _ in 0..5 {
            walks = walks
                .into_iter()
                .flat_map(|w| levels.iter().map(move |l| [w.clone(), vec![*l]].concat()))
                .collect();
        }
        for walk in walks {
            let events: Vec<AvailabilityKind> = walk.windows(2).flat_map(|w| transitions(w[0], w[1])).collect();
            assert!(events.windows(2).all(|w| w[0] != w[1]), "{walk:?}: {events:?}");
            let end = events.last().map_or(Out, |e| e.level_after());
            assert_eq!(end, *walk.last().unwrap(), "{walk:?}");
        }
    }
}
