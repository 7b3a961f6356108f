//! The events the service produces on `inventory-events`, as they go on the
//! wire: typed serde structs (the domain's events carry no serde), the
//! translation from the domain, and JSON Schemas generated from the same
//! types, for these and for the consumed events ([`consumed`]), checked into
//! `docs/schemas/` (a test fails when they drift).

pub mod consumed;

use chrono::{DateTime, Utc};
use inventory_domain::{
    AvailabilityCause, AvailabilityChange, AvailabilityKind, FailureReason, InventoryEvent, OutboxEvent, ReleaseReason,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order id as the order's producer wrote it: text, or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OrderId {
    /// Written as a JSON integer by its producer, so answered as one.
    Number(i64),
    /// Text (1 to 128 characters).
    Text(String),
}

// Read by hand rather than as an untagged enum: that buffers the value and, for every id that is
// text, first builds (and formats) the error of reading it as an integer, on every record.
impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = OrderId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<OrderId, E> {
                Ok(OrderId::Number(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<OrderId, E> {
                i64::try_from(n)
                    .map(OrderId::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OrderId, E> {
                Ok(OrderId::Text(s.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<OrderId, E> {
                Ok(OrderId::Text(s))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// What every produced event carries. Readers should ignore fields they do
/// not know: new ones may be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// Unique id of this event (consumers deduplicate by it).
    pub event_id: Uuid,
    /// When the change happened.
    pub occurred_at: DateTime<Utc>,
    /// The consumed event's id, as it was sent; absent for an expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Passed on from the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The order the event is about (also the record key).
    pub order_id: OrderId,
    /// The event itself.
    #[serde(flatten)]
    pub event: T,
}

/// The three events, tagged by `eventType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "eventType")]
pub enum Produced {
    /// Every line is on hold.
    #[serde(rename = "InventoryReservedEvent")]
    Reserved(Reserved),
    /// Nothing was held.
    #[serde(rename = "StockReservationFailedEvent")]
    Failed(Failed),
    /// A hold was given back.
    #[serde(rename = "InventoryReleasedEvent")]
    Released(Released),
}

/// `InventoryReservedEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reserved {
    /// Units held, one line per product.
    pub items: Vec<LineItem>,
}

/// `StockReservationFailedEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failed {
    /// Machine-readable cause.
    pub reason: Failure,
    /// Human-readable cause.
    pub detail: String,
    /// The lines that were short.
    pub items: Vec<ShortLine>,
}

/// `InventoryReleasedEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Released {
    /// Why.
    pub reason: Release,
    /// Units given back.
    pub items: Vec<LineItem>,
}

/// A product and a number of units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineItem {
    /// Product.
    pub product_id: String,
    /// Units.
    pub quantity: u32,
}

/// A line that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShortLine {
    /// Product.
    pub product_id: String,
    /// Units the order asked for (summed over its lines).
    pub requested: u32,
    /// Units free when it was tried (0 for an unknown product).
    pub available: u32,
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Failure {
    /// A line asks for more than is free.
    InsufficientStock,
    /// A line names a product with no stock record.
    UnknownProduct,
    /// The order could not be read or has no lines.
    InvalidOrder,
    /// The order was cancelled before it was reserved.
    OrderCancelled,
}

/// Why a hold was given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Release {
    /// `OrderCancelledEvent`.
    OrderCancelled,
    /// `PaymentFailedEvent`.
    PaymentFailed,
    /// Not committed or released within the hold's time to live.
    Expired,
}

impl From<FailureReason> for Failure {
    fn from(r: FailureReason) -> Self {
        match r {
            FailureReason::InsufficientStock => Self::InsufficientStock,
            FailureReason::UnknownProduct => Self::UnknownProduct,
            FailureReason::InvalidOrder => Self::InvalidOrder,
            FailureReason::OrderCancelled => Self::OrderCancelled,
        }
    }
}

impl From<ReleaseReason> for Release {
    fn from(r: ReleaseReason) -> Self {
        match r {
            ReleaseReason::OrderCancelled => Self::OrderCancelled,
            ReleaseReason::PaymentFailed => Self::PaymentFailed,
            ReleaseReason::Expired => Self::Expired,
        }
    }
}

fn lines(items: &[inventory_domain::LineItem]) -> Vec<LineItem> {
    items
        .iter()
        .map(|i| LineItem {
            product_id: i.product_id.to_string(),
            quantity: i.quantity,
        })
        .collect()
}

/// A product's move to another stock level: `InventoryLowStockEvent`, `InventoryOutOfStockEvent`,
/// `InventoryBackInStockEvent` or `InventoryLowStockClearedEvent` (the `eventType`), keyed by the
/// product. Readers should ignore fields they do not know: new ones may be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// Unique id of this event (consumers deduplicate by it).
    pub event_id: Uuid,
    /// When the change happened.
    pub occurred_at: DateTime<Utc>,
    /// The consumed event's id behind the change, for an order's reservation or release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Passed on from the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The product (also the record key).
    pub product_id: String,
    /// `quantity - reserved` after the change.
    pub available: u32,
    /// Physical units after the change.
    pub quantity: u32,
    /// Units on hold after the change.
    pub reserved: u32,
    /// The low-stock threshold in force (the product's own, or the configured default); absent:
    /// none, so the product is never low.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_stock_threshold: Option<u32>,
    /// What changed it (the last change in its transaction).
    pub cause: Cause,
    /// Who, for a manual change (the token's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The request of a manual change (its `X-Request-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// What changed a product's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cause {
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

impl From<AvailabilityCause> for Cause {
    fn from(c: AvailabilityCause) -> Self {
        match c {
            AvailabilityCause::OrderReserved => Self::OrderReserved,
            AvailabilityCause::OrderReleased => Self::OrderReleased,
            AvailabilityCause::HoldExpired => Self::HoldExpired,
            AvailabilityCause::StockAdded => Self::StockAdded,
            AvailabilityCause::StockAudited => Self::StockAudited,
            AvailabilityCause::ThresholdChanged => Self::ThresholdChanged,
        }
    }
}

/// The availability events, tagged by `eventType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "eventType")]
pub enum AvailabilityEvent {
    /// Crossed from at or above the threshold to below it (not to 0).
    #[serde(rename = "InventoryLowStockEvent")]
    LowStock(Availability),
    /// Reached 0.
    #[serde(rename = "InventoryOutOfStockEvent")]
    OutOfStock(Availability),
    /// Rose from 0.
    #[serde(rename = "InventoryBackInStockEvent")]
    BackInStock(Availability),
    /// Rose from below the threshold to at or above it (not from 0).
    #[serde(rename = "InventoryLowStockClearedEvent")]
    LowStockCleared(Availability),
}

/// The wire form of an availability event.
pub fn availability(event: &OutboxEvent, change: &AvailabilityChange) -> AvailabilityEvent {
    let body = Availability {
        event_id: event.event_id,
        occurred_at: event.occurred_at,
        causation_id: event.causation_id.clone(),
        correlation_id: event.correlation_id.clone(),
        product_id: change.product_id.to_string(),
        available: change.available,
        quantity: change.quantity,
        reserved: change.reserved,
        low_stock_threshold: change.low_stock_threshold,
        cause: change.cause.into(),
        actor: change.actor.clone(),
        request_id: change.request_id.clone(),
    };
    match change.kind {
        AvailabilityKind::LowStock => AvailabilityEvent::LowStock(body),
        AvailabilityKind::OutOfStock => AvailabilityEvent::OutOfStock(body),
        AvailabilityKind::BackInStock => AvailabilityEvent::BackInStock(body),
        AvailabilityKind::LowStockCleared => AvailabilityEvent::LowStockCleared(body),
    }
}

/// The wire form of one of the saga's events (none for an availability event: see
/// [`availability`]).
pub fn produced(event: &OutboxEvent) -> Option<Envelope<Produced>> {
    let order = event.event.order_id()?.as_str();
    let order_id = match order.parse::<i64>() {
        Ok(n) if event.numeric_order_id => OrderId::Number(n),
        _ => OrderId::Text(order.to_owned()),
    };
    let body = match &event.event {
        InventoryEvent::Reserved { items, .. } => Produced::Reserved(Reserved { items: lines(items) }),
        InventoryEvent::ReservationFailed {
            reason, detail, items, ..
        } => Produced::Failed(Failed {
            reason: (*reason).into(),
            detail: detail.clone(),
            items: items
                .iter()
                .map(|s| ShortLine {
                    product_id: s.product_id.to_string(),
                    requested: s.requested,
                    available: s.available,
                })
                .collect(),
        }),
        InventoryEvent::Released { reason, items, .. } => Produced::Released(Released {
            reason: (*reason).into(),
            items: lines(items),
        }),
        InventoryEvent::Availability(_) => return None,
    };
    Some(Envelope {
        event_id: event.event_id,
        occurred_at: event.occurred_at,
        causation_id: event.causation_id.clone(),
        correlation_id: event.correlation_id.clone(),
        order_id,
        event: body,
    })
}

/// The JSON document of a domain event, as published.
pub fn encode(event: &OutboxEvent) -> Result<serde_json::Value, serde_json::Error> {
    match (&event.event, produced(event)) {
        (InventoryEvent::Availability(change), _) => serde_json::to_value(availability(event, change)),
        (_, envelope) => serde_json::to_value(envelope),
    }
}

/// Every consumed event's JSON Schema, by event type: a file each in `docs/schemas/`.
pub fn consumed_schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn schema<T: JsonSchema>(event_type: &str) -> serde_json::Value {
        let mut schema = schemars::schema_for!(T).to_value();
        schema["title"] = event_type.into();
        schema
    }
    vec![
        (
            "OrderCreatedEvent",
            schema::<consumed::OrderCreated>("OrderCreatedEvent"),
        ),
        (
            "OrderCancelledEvent",
            schema::<consumed::OrderEvent>("OrderCancelledEvent"),
        ),
        (
            "PaymentFailedEvent",
            schema::<consumed::OrderEvent>("PaymentFailedEvent"),
        ),
        (
            "PaymentSucceededEvent",
            schema::<consumed::OrderEvent>("PaymentSucceededEvent"),
        ),
    ]
}

/// Every produced event's JSON Schema, by event type: a file each in `docs/schemas/`.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn schema<T: JsonSchema>(event_type: &str) -> serde_json::Value {
        let mut schema = schemars::schema_for!(Envelope<T>).to_value();
        // The `eventType` tag, which the flattened enum adds on the wire.
        if let Some(props) = schema.get_mut("properties").and_then(serde_json::Value::as_object_mut) {
            props.insert("eventType".into(), serde_json::json!({ "const": event_type }));
        }
        if let Some(required) = schema.get_mut("required").and_then(serde_json::Value::as_array_mut) {
            required.push("eventType".into());
        }
        schema["title"] = event_type.into();
        schema
    }
    vec![
        ("InventoryReservedEvent", schema::<Reserved>("InventoryReservedEvent")),
        (
            "StockReservationFailedEvent",
            schema::<Failed>("StockReservationFailedEvent"),
        ),
        ("InventoryReleasedEvent", schema::<Released>("InventoryReleasedEvent")),
        ("InventoryLowStockEvent", product_schema("InventoryLowStockEvent")),
        ("InventoryOutOfStockEvent", product_schema("InventoryOutOfStockEvent")),
        ("InventoryBackInStockEvent", product_schema("InventoryBackInStockEvent")),
        (
            "InventoryLowStockClearedEvent",
            product_schema("InventoryLowStockClearedEvent"),
        ),
    ]
}

/// An availability event's schema: the body, with its `eventType` pinned.
fn product_schema(event_type: &str) -> serde_json::Value {
    let mut schema = schemars::schema_for!(Availability).to_value();
    if let Some(props) = schema.get_mut("properties").and_then(serde_json::Value::as_object_mut) {
        props.insert("eventType".into(), serde_json::json!({ "const": event_type }));
    }
    if let Some(required) = schema.get_mut("required").and_then(serde_json::Value::as_array_mut) {
        required.push("eventType".into());
    }
    schema["title"] = event_type.into();
    schema
}

#[cfg(test)]
mod order_id_tests {
    use super::OrderId;

    #[test]
    fn an_order_id_reads_as_text_or_an_integer_and_nothing_else() {
        let read = |json: &str| serde_json::from_str::<OrderId>(json);
        assert_eq!(read(r#""o-1""#).unwrap(), OrderId::Text("o-1".into()));
        assert_eq!(read("42").unwrap(), OrderId::Number(42));
        assert_eq!(read("-7").unwrap(), OrderId::Number(-7));
        assert_eq!(read(&i64::MAX.to_string()).unwrap(), OrderId::Number(i64::MAX));
        for bad in ["9223372036854775808", "1.5", "true", "null", "[]", "{}"] {
            let e = read(bad).expect_err(bad).to_string();
            assert!(e.contains("a string or an integer"), "{bad}: {e}");
        }
        // From a parsed value too, as the consumer reads: the same answers.
        let value: serde_json::Value = serde_json::from_str(r#"{"a":"o-2","b":9451057838483}"#).unwrap();
        assert_eq!(
            serde_json::from_value::<OrderId>(value["a"].clone()).unwrap(),
            OrderId::Text("o-2".into())
        );
        assert_eq!(
            serde_json::from_value::<OrderId>(value["b"].clone()).unwrap(),
            OrderId::Number(9451057838483)
        );
        // Written back as it was read.
        assert_eq!(serde_json::to_string(&OrderId::Number(42)).unwrap(), "42");
        assert_eq!(serde_json::to_string(&OrderId::Text("o".into())).unwrap(), r#""o""#);
    }
}
