//! The produced events' wire form, and their JSON Schemas in `docs/schemas/`:
//! generated from the same types, checked in, and never allowed to drift.

use chrono::{TimeZone, Utc};
use inventory_domain::{FailureReason, InventoryEvent, LineItem, OrderId, OutboxEvent, ProductId, ShortLine};
use uuid::Uuid;

fn schemas_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas")
}

fn outbox(event: InventoryEvent, numeric_order_id: bool) -> OutboxEvent {
    OutboxEvent {
        event_id: Uuid::from_u128(9),
        occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        causation_id: Some("evt-42".into()),
        correlation_id: Some("corr-1".into()),
        event,
        numeric_order_id,
        headers: Vec::new(),
    }
}

fn samples() -> Vec<OutboxEvent> {
    let p = ProductId::parse("a").unwrap();
    vec![
        outbox(
            InventoryEvent::Reserved {
                order_id: OrderId::parse("o-7").unwrap(),
                items: vec![LineItem {
                    product_id: p.clone(),
                    quantity: 2,
                }],
            },
            false,
        ),
        outbox(
            InventoryEvent::ReservationFailed {
                order_id: OrderId::parse("9451057838483").unwrap(),
                reason: FailureReason::InsufficientStock,
                detail: "a: requested 5, available 1".into(),
                items: vec![ShortLine {
                    product_id: p.clone(),
                    requested: 5,
                    available: 1,
                }],
            },
            true,
        ),
        outbox(
            InventoryEvent::Released {
                order_id: OrderId::parse("o-8").unwrap(),
                reason: inventory_domain::ReleaseReason::Expired,
                items: vec![LineItem {
                    product_id: p,
                    quantity: 1,
                }],
            },
            false,
        ),
    ]
}

#[test]
fn the_wire_form_of_each_event() {
    let [reserved, failed, released]: [OutboxEvent; 3] = samples().try_into().unwrap();
    let json = inventory_contract::encode(&reserved).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "eventId": "00000000-0000-0000-0000-000000000009",
            "eventType": "InventoryReservedEvent",
            "occurredAt": "2026-01-01T00:00:00Z",
            "causationId": "evt-42",
            "correlationId": "corr-1",
            "orderId": "o-7",
            "items": [{"productId": "a", "quantity": 2}]
        })
    );
    let json = inventory_contract::encode(&failed).unwrap();
    assert_eq!(
        json["orderId"],
        serde_json::json!(9451057838483_i64),
        "a number stays a number"
    );
    assert_eq!(json["reason"], "INSUFFICIENT_STOCK");
    assert_eq!(
        json["items"][0],
        serde_json::json!({"productId": "a", "requested": 5, "available": 1})
    );
    let json = inventory_contract::encode(&released).unwrap();
    assert_eq!(json["eventType"], "InventoryReleasedEvent");
    assert_eq!(json["reason"], "EXPIRED");
}

/// Run with `UPDATE_SCHEMAS=1` to rewrite `docs/schemas/` after changing the contract on purpose.
#[test]
fn the_checked_in_schemas_are_the_generated_ones() {
    let dir = schemas_dir();
    for (name, schema) in inventory_contract::schemas()
        .into_iter()
        .chain(inventory_contract::consumed_schemas())
    {
        let path = dir.join(format!("{name}.json"));
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run UPDATE_SCHEMAS=1 cargo test -p inventory-contract",
                path.display()
            )
        });
        assert_eq!(
            checked_in,
            generated,
            "{} differs from the contract's types; run UPDATE_SCHEMAS=1 cargo test -p inventory-contract",
            path.display()
        );
    }
}

#[test]
fn every_event_validates_against_its_schema_and_a_broken_one_does_not() {
    let schemas = inventory_contract::schemas();
    for event in samples() {
        let json = inventory_contract::encode(&event).unwrap();
        let name = json["eventType"].as_str().unwrap().to_owned();
        let (_, schema) = schemas.iter().find(|(n, _)| *n == name).unwrap();
        let validator = jsonschema::validator_for(schema).unwrap();
        assert!(validator.is_valid(&json), "{name}: {json}");
        let mut broken = json.clone();
        broken["items"] = serde_json::json!("not a list");
        assert!(!validator.is_valid(&broken), "{name}: the schema must refuse {broken}");
        let mut other = json.clone();
        other["eventType"] = "SomethingElse".into();
        assert!(!validator.is_valid(&other), "{name}: the schema pins its event type");
    }
}

#[test]
fn consumed_schemas_accept_good_orders_and_refuse_bad_ones() {
    let schemas = inventory_contract::consumed_schemas();
    let validator = |name: &str| {
        let (_, schema) = schemas.iter().find(|(n, _)| *n == name).unwrap();
        jsonschema::validator_for(schema).unwrap()
    };
    let created = validator("OrderCreatedEvent");
    let good = [
        serde_json::json!({"orderId": "o-1", "items": [{"productId": "p", "quantity": 1}]}),
        serde_json::json!({"eventId": "evt-42", "eventType": "OrderCreatedEvent", "orderId": 9451057838483_i64,
            "correlationId": "c", "items": [{"productId": 7, "quantity": 1000000}]}),
    ];
    for event in &good {
        assert!(created.is_valid(event), "{event}");
    }
    let bad = [
        serde_json::json!({"items": [{"productId": "p", "quantity": 1}]}),
        serde_json::json!({"orderId": "o", "items": [{"productId": "p", "quantity": 0}]}),
        serde_json::json!({"orderId": "o", "items": [{"productId": "p", "quantity": 1.5}]}),
        serde_json::json!({"orderId": "o"}),
        serde_json::json!({"orderId": "o", "eventId": "", "items": [{"productId": "p", "quantity": 1}]}),
        serde_json::json!({"orderId": "o", "eventId": 5, "items": [{"productId": "p", "quantity": 1}]}),
    ];
    for event in &bad {
        assert!(!created.is_valid(event), "the schema must refuse {event}");
    }
    let cancelled = validator("OrderCancelledEvent");
    assert!(cancelled.is_valid(&serde_json::json!({"orderId": "o"})));
    assert!(!cancelled.is_valid(&serde_json::json!({"orderId": true})));
}

#[test]
fn availability_events_are_keyed_by_product_and_match_their_schemas() {
    use inventory_domain::{AvailabilityCause, AvailabilityChange, AvailabilityKind};
    let schemas = inventory_contract::schemas();
    let kinds = [
        AvailabilityKind::LowStock,
        AvailabilityKind::OutOfStock,
        AvailabilityKind::BackInStock,
        AvailabilityKind::LowStockCleared,
    ];
    for kind in kinds {
        let event = outbox(
            InventoryEvent::Availability(AvailabilityChange {
                kind,
                product_id: ProductId::parse("sku-1").unwrap(),
                available: 2,
                quantity: 5,
                reserved: 3,
                low_stock_threshold: Some(4),
                cause: AvailabilityCause::OrderReserved,
                actor: None,
                request_id: None,
            }),
            false,
        );
        assert_eq!(event.event.key(), "sku-1");
        let json = inventory_contract::encode(&event).unwrap();
        assert_eq!(json["eventType"], kind.event_type());
        assert_eq!(json["productId"], "sku-1");
        assert_eq!(json["cause"], "ORDER_RESERVED");
        assert_eq!(json["causationId"], "evt-42");
        assert_eq!(
            (json["available"].as_u64(), json["lowStockThreshold"].as_u64()),
            (Some(2), Some(4))
        );
        assert!(json.get("orderId").is_none() && json.get("actor").is_none(), "{json}");
        let (_, schema) = schemas.iter().find(|(n, _)| *n == kind.event_type()).unwrap();
        let validator = jsonschema::validator_for(schema).unwrap();
        assert!(validator.is_valid(&json), "{json}");
        let mut broken = json.clone();
        broken["available"] = (-1).into();
        assert!(!validator.is_valid(&broken), "the schema must refuse {broken}");
        let mut other = json.clone();
        other["eventType"] = "InventoryReservedEvent".into();
        assert!(!validator.is_valid(&other), "the schema pins its event type");
    }
}
