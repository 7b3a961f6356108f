//! The events the service consumes, as their producers write them: the types
//! their JSON Schemas are generated from. The decoder (`inventory-kafka`'s
//! `decode`) reads the same shape and names the field at fault; a test keeps
//! the two in step on accepted and refused examples.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::OrderId;

/// What every consumed event may carry besides its own fields.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// Any non-empty string up to 200 characters; a UUID is used as it is.
    /// When absent, the CloudEvents id, else one derived from the content.
    #[schemars(length(min = 1, max = 200))]
    pub event_id: Option<String>,
    /// The type's name, when the record's headers do not give it.
    pub event_type: Option<String>,
    /// When it happened (not read).
    pub occurred_at: Option<String>,
    /// Passed on to the answers.
    pub correlation_id: Option<String>,
    /// The order (also the record key).
    pub order_id: OrderId,
    /// The event's own fields.
    #[serde(flatten)]
    pub event: T,
}

/// `OrderCreatedEvent`: hold every line, or none.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct OrderCreated {
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
/// nothing beyond the envelope.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct OrderOnly {}
