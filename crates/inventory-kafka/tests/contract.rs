//! The decoder and the consumed events' JSON Schemas (`docs/schemas/`) agree:
//! what one accepts the other accepts, what one refuses the other refuses.

use inventory_kafka::decode::{Decoded, RawRecord, decode};
use serde_json::{Value, json};

fn decoder_accepts(event: &Value) -> bool {
    let bytes = event.to_string();
    matches!(
        decode(RawRecord {
            payload: Some(bytes.as_bytes()),
            headers: &[],
        }),
        Decoded::Event { .. }
    )
}

#[test]
fn decoder_and_schemas_agree() {
    let schemas = inventory_contract::consumed_schemas();
    let line = json!({"productId": "p", "quantity": 1});
    let cases: Vec<(&str, Value)> = vec![
        ("OrderCreatedEvent", json!({"orderId": "o-1", "items": [line]})),
        (
            "OrderCreatedEvent",
            json!({"eventId": "evt-42", "orderId": 94510578, "correlationId": "c", "items": [{"productId": 7, "quantity": 1_000_000}]}),
        ),
        ("OrderCreatedEvent", json!({"items": [line]})),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "items": [{"productId": "p", "quantity": 0}]}),
        ),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "items": [{"productId": "p", "quantity": 1_000_001}]}),
        ),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "items": [{"productId": "p", "quantity": 1.5}]}),
        ),
        ("OrderCreatedEvent", json!({"orderId": "o"})),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "items": (0..101).map(|_| line.clone()).collect::<Vec<_>>()}),
        ),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "eventId": "", "items": [line]}),
        ),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "eventId": "x".repeat(201), "items": [line]}),
        ),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "eventId": 5, "items": [line]}),
        ),
        (
            "OrderCreatedEvent",
            json!({"orderId": "o", "correlationId": 5, "items": [line]}),
        ),
        ("OrderCancelledEvent", json!({"orderId": "o"})),
        ("OrderCancelledEvent", json!({"orderId": 12})),
        ("OrderCancelledEvent", json!({"orderId": true})),
        ("PaymentFailedEvent", json!({"orderId": "o", "eventId": "pay-1"})),
        ("PaymentSucceededEvent", json!({})),
    ];
    for (event_type, mut event) in cases {
        let (_, schema) = schemas.iter().find(|(n, _)| *n == event_type).unwrap();
        let valid = jsonschema::validator_for(schema).unwrap().is_valid(&event);
        event["eventType"] = event_type.into();
        assert_eq!(decoder_accepts(&event), valid, "decoder and schema disagree on {event}");
    }
}
