//! The events the service consumes, as their producers write them. The
//! decoder (`inventory-kafka`'s `decode`) deserializes records into these
//! types and then checks their values (quantities, id lengths), naming the
//! field at fault; their JSON Schemas are generated from the same types.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::OrderId;

// The envelope fields repeat `OrderEvent`'s on purpose: through `#[serde(flatten)]`
// the decoder's errors would lose the name of the field at fault (`eventId: ...`).
/// `OrderCreatedEvent`: hold every line, or none.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    /// Any non-empty string up to 200 characters; a UUID is used as it is.
    /// When absent, the CloudEvents id, else one derived from the content.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub event_id: Option<String>,
    /// The type's name, when the record's headers do not give it.
    #[serde(default)]
    pub event_type: Option<String>,
    /// When it happened, in any form (not read).
    #[serde(default)]
    pub occurred_at: Option<serde_json::Value>,
    /// Passed on to the answers.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The order (also the record key).
    pub order_id: OrderId,
    /// 1 to 100 lines.
    #[schemars(length(min = 1, max = 100))]
    pub items: Vec<OrderLine>,
}

/// One line of an order.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// Product (text, or an integer read as text).
    pub product_id: OrderId,
    /// Units, 1 to 1,000,000.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub quantity: i64,
}

/// `OrderCancelledEvent`, `PaymentFailedEvent`, `PaymentSucceededEvent`:
/// an order and the envelope.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// As in [`OrderCreated`].
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub event_id: Option<String>,
    /// The type's name, when the record's headers do not give it.
    #[serde(default)]
    pub event_type: Option<String>,
    /// When it happened, in any form (not read).
    #[serde(default)]
    pub occurred_at: Option<serde_json::Value>,
    /// Passed on to the answers.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The order.
    pub order_id: OrderId,
}

/// Just the order id of an event, to answer an order that cannot be read otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRef {
    /// The order.
    pub order_id: OrderId,
}

/// What decides how a plain JSON record is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// The type, when the body names it.
    #[serde(default)]
    pub event_type: Option<String>,
    /// A CloudEvents envelope's version, when the value is one.
    #[serde(default)]
    pub specversion: Option<serde_json::Value>,
}

/// A CloudEvents structured-mode envelope (`application/cloudevents+json`).
#[derive(Debug, Clone, Deserialize)]
pub struct CloudEvent {
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Its id: the event id.
    #[serde(default)]
    pub id: Option<String>,
    /// The `correlationid` extension.
    #[serde(default)]
    pub correlationid: Option<String>,
    /// The `traceparent` extension (W3C trace context).
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The `tracestate` extension.
    #[serde(default)]
    pub tracestate: Option<String>,
    /// The event, as JSON.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// The event, as base64 of JSON.
    #[serde(default)]
    pub data_base64: Option<String>,
}
