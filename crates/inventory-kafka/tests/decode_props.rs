//! Property: no record, however malformed, makes decoding panic; the same
//! bytes always decode the same way (so a resent copy keeps its event id);
//! and what is not understood is poison that says why.

use inventory_domain::{OrderCommand, OrderLines};
use inventory_kafka::decode::{Decoded, RawRecord, decode};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The four types this service acts on, then two it does not.
const TYPES: [&str; 6] = [
    "OrderCreatedEvent",
    "OrderCancelledEvent",
    "PaymentFailedEvent",
    "PaymentSucceededEvent",
    "ShipmentCreatedEvent",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-2i64..1_000_002).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,70}".prop_map(Value::String),
        "[a-z0-9-]{1,8}".prop_map(Value::String),
        " [a-z]{1,3} ".prop_map(Value::String),
        Just(json!("3f1c3a52-5d1e-4c3e-9a35-6d6c2f8a9b10")),
        prop::sample::select(TYPES.to_vec()).prop_map(|t| json!(t)),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "eventId",
            "eventType",
            "orderId",
            "items",
            "productId",
            "quantity",
            "correlationId",
            "reason",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,8}",
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Usually a valid value for the field, sometimes anything.
fn mostly(valid: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Value> {
    prop_oneof![4 => valid, 1 => leaf()]
}

/// Mostly well-shaped envelopes, with any field missing or wrong.
fn envelope() -> impl Strategy<Value = Value> {
    let product = mostly("[a-z0-9-]{1,12}".prop_map(Value::String));
    let quantity = mostly((1i64..20).prop_map(|n| json!(n)));
    let line = (product, quantity, prop::option::of(any_json())).prop_map(|(product, quantity, extra)| {
        let mut line = Map::new();
        line.insert("productId".into(), product);
        line.insert("quantity".into(), quantity);
        if let Some(extra) = extra {
            line.insert("extra".into(), extra);
        }
        Value::Object(line)
    });
    let known_type = prop::sample::select(TYPES[..4].to_vec()).prop_map(|t| json!(t));
    let event_id = any::<u128>().prop_map(|n| json!(uuid::Uuid::from_u128(n).to_string()));
    let order_id = "o-[a-z0-9]{1,12}".prop_map(Value::String);
    (
        prop::option::weighted(0.9, mostly(known_type)),
        prop::option::weighted(0.8, mostly(event_id)),
        prop::option::weighted(0.9, mostly(order_id)),
        prop::option::weighted(
            0.9,
            prop_oneof![4 => prop::collection::vec(line, 0..6).prop_map(Value::Array), 1 => any_json()],
        ),
        prop::option::of(leaf()),
    )
        .prop_map(|(event_type, event_id, order_id, items, correlation)| {
            let mut body = Map::new();
            for (k, v) in [
                ("eventType", event_type),
                ("eventId", event_id),
                ("orderId", order_id),
                ("items", items),
                ("correlationId", correlation),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            Value::Object(body)
        })
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["ce_type", "__TypeId__", "ce_id", "correlationId", "other"]),
            prop_oneof![
                prop::sample::select(TYPES.to_vec()).prop_map(|t| t.as_bytes().to_vec()),
                Just(b"com.shop.events.OrderCreatedEvent".to_vec()),
                prop::collection::vec(any::<u8>(), 0..40),
            ],
        )
            .prop_map(|(k, v)| (k.to_owned(), v)),
        0..4,
    )
}

fn check(payload: &[u8], headers: &[(String, Vec<u8>)]) -> Result<(), TestCaseError> {
    let record = RawRecord {
        payload: Some(payload),
        headers,
    };
    let first = decode(record);
    prop_assert_eq!(&first, &decode(record), "the same record decodes the same way");
    match first {
        Decoded::Poison { error } => prop_assert!(!error.trim().is_empty(), "poison says why"),
        Decoded::Invalid { event, error } => {
            prop_assert!(!error.trim().is_empty(), "an invalid order says why");
            prop_assert!(
                matches!(&event.command, OrderCommand::Reject { detail, .. } if *detail == error),
                "an invalid order is answered with its problem"
            );
        }
        Decoded::Skip { event_type } => {
            prop_assert!(
                !TYPES[..4].contains(&event_type.as_str()),
                "a known type is never skipped"
            );
        }
        Decoded::Event { event, event_type } => {
            prop_assert!(TYPES[..4].contains(&event_type));
            if let OrderCommand::Reserve { lines, .. } = &event.command {
                prop_assert_eq!(event_type, "OrderCreatedEvent");
                prop_assert!(lines.lines().len() <= OrderLines::MAX);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(payload in prop::collection::vec(any::<u8>(), 0..300), headers in headers()) {
        check(&payload, &headers)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json(), headers in headers()) {
        check(value.to_string().as_bytes(), &headers)?;
    }

    #[test]
    fn malformed_envelopes_never_panic(value in envelope(), headers in headers()) {
        check(value.to_string().as_bytes(), &headers)?;
    }
}
