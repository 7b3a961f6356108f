//! Consumed records to domain commands. Pure: no broker, so every rule is
//! unit-tested here.
//!
//! The event type comes from the JSON `eventType`, else the CloudEvents
//! `ce_type` header, else Spring Kafka's `__TypeId__` header (after its last
//! dot). Unknown types are skipped: the topics carry other services' events.
//! A record that cannot be understood is poison and goes to the dead letters.

use inventory_domain::{
    EventMeta, IncomingEvent, OrderCommand, OrderId, OrderLine, OrderLines, ProductId, Quantity, ReleaseReason,
};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest record value accepted.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// A consumed record, as far as decoding needs it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Record value.
    pub payload: Option<&'a [u8]>,
    /// Headers as (name, value) pairs.
    pub headers: &'a [(String, Vec<u8>)],
}

/// What a record turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// An event this service acts on.
    Event {
        /// The command.
        event: IncomingEvent,
        /// Its wire type name.
        event_type: &'static str,
    },
    /// Another service's event; not ours.
    Skip {
        /// The type name found.
        event_type: String,
    },
    /// An `OrderCreatedEvent` that names its order but cannot be read
    /// otherwise: dead-letter it, and answer the order with the `Reject`
    /// command it carries, so the order service hears `INVALID_ORDER`.
    Invalid {
        /// A `Reject` for the order named.
        event: IncomingEvent,
        /// What is wrong, naming the field.
        error: String,
    },
    /// Cannot be understood; dead-letter it.
    Poison {
        /// What is wrong, naming the field.
        error: String,
    },
}

const KNOWN: [&str; 4] = [
    "OrderCreatedEvent",
    "OrderCancelledEvent",
    "PaymentFailedEvent",
    "PaymentSucceededEvent",
];

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn poison(error: impl Into<String>) -> Decoded {
    Decoded::Poison { error: error.into() }
}

/// Decodes one record.
pub fn decode(record: RawRecord<'_>) -> Decoded {
    let Some(payload) = record.payload else {
        return poison("record has no value");
    };
    if payload.len() > MAX_RECORD_BYTES {
        return poison(format!(
            "record value is {} bytes, over the {MAX_RECORD_BYTES} byte limit",
            payload.len()
        ));
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return poison(format!("value is not JSON: {e}")),
    };
    let Value::Object(body) = value else {
        return poison("value is not a JSON object");
    };
    let event_type = match body.get("eventType") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return poison("eventType: must be a string"),
        None => match header(record.headers, "ce_type")
            .or_else(|| header(record.headers, "__TypeId__").map(|t| t.rsplit('.').next().unwrap_or(t)))
        {
            Some(t) => t.to_owned(),
            None => return poison("eventType: missing, and no ce_type or __TypeId__ header"),
        },
    };
    let Some(known) = KNOWN.iter().copied().find(|k| *k == event_type) else {
        return Decoded::Skip { event_type };
    };
    match command(known, &body, payload, record.headers) {
        Ok(event) => Decoded::Event {
            event,
            event_type: known,
        },
        Err(error) if known == "OrderCreatedEvent" => match order_id(&body) {
            Ok(order_id) => Decoded::Invalid {
                event: IncomingEvent {
                    meta: EventMeta {
                        // Its own id when that much is readable; else one derived from the bytes, so a
                        // redelivered copy is still recognised and answered once.
                        event_id: event_id(&body, known, payload, record.headers).unwrap_or_else(|_| {
                            Uuid::new_v5(&Uuid::NAMESPACE_OID, &[b"invalid:".as_slice(), payload].concat())
                        }),
                        correlation_id: correlation_id(&body, record.headers).ok().flatten(),
                    },
                    command: OrderCommand::Reject {
                        order_id,
                        detail: error.clone(),
                    },
                },
                error,
            },
            Err(_) => poison(error),
        },
        Err(error) => poison(error),
    }
}

fn command(
    event_type: &'static str,
    body: &Map<String, Value>,
    payload: &[u8],
    headers: &[(String, Vec<u8>)],
) -> Result<IncomingEvent, String> {
    let order_id = order_id(body)?;
    let command = match event_type {
        "OrderCreatedEvent" => OrderCommand::Reserve {
            order_id,
            lines: lines(body)?,
        },
        "OrderCancelledEvent" => OrderCommand::Release {
            order_id,
            reason: ReleaseReason::OrderCancelled,
        },
        "PaymentFailedEvent" => OrderCommand::Release {
            order_id,
            reason: ReleaseReason::PaymentFailed,
        },
        _ => OrderCommand::Commit { order_id },
    };
    Ok(IncomingEvent {
        meta: EventMeta {
            event_id: event_id(body, event_type, payload, headers)?,
            correlation_id: correlation_id(body, headers)?,
        },
        command,
    })
}

fn event_id(
    body: &Map<String, Value>,
    event_type: &str,
    payload: &[u8],
    headers: &[(String, Vec<u8>)],
) -> Result<Uuid, String> {
    match body.get("eventId") {
        Some(Value::String(s)) => Uuid::parse_str(s).map_err(|e| format!("eventId: not a UUID: {e}")),
        Some(_) => Err("eventId: must be a string".into()),
        // No id: derive one from the content, so a resent copy is still recognised.
        None => Ok(match header(headers, "ce_id").and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => id,
            None => Uuid::new_v5(&Uuid::NAMESPACE_OID, &[event_type.as_bytes(), payload].concat()),
        }),
    }
}

fn correlation_id(body: &Map<String, Value>, headers: &[(String, Vec<u8>)]) -> Result<Option<String>, String> {
    match body.get("correlationId") {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Null) | None => Ok(header(headers, "correlationId").map(str::to_owned)),
        Some(_) => Err("correlationId: must be a string".into()),
    }
}

/// Ids may arrive as strings or, from some producers, as numbers.
fn id_text(value: Option<&Value>, field: &str) -> Result<String, String> {
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("{field}: must be a string")),
        None => Err(format!("{field}: missing")),
    }
}

fn order_id(body: &Map<String, Value>) -> Result<OrderId, String> {
    let raw = id_text(body.get("orderId"), "orderId")?;
    OrderId::parse(raw).map_err(|e| format!("orderId: {e}"))
}

fn lines(body: &Map<String, Value>) -> Result<OrderLines, String> {
    let items = match body.get("items") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err("items: must be an array".into()),
        None => return Err("items: missing".into()),
    };
    if items.len() > OrderLines::MAX {
        return Err(format!("items: at most {} lines, got {}", OrderLines::MAX, items.len()));
    }
    let lines = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(item) = item else {
                return Err(format!("items[{i}]: must be an object"));
            };
            let product = id_text(item.get("productId"), &format!("items[{i}].productId"))?;
            let product_id = ProductId::parse(product).map_err(|e| format!("items[{i}].productId: {e}"))?;
            let quantity = match item.get("quantity") {
                Some(Value::Number(n)) => n
                    .as_i64()
                    .ok_or_else(|| format!("items[{i}].quantity: must be an integer"))
                    .and_then(|q| Quantity::new(q).map_err(|e| format!("items[{i}].quantity: {e}")))?,
                Some(_) => return Err(format!("items[{i}].quantity: must be an integer")),
                None => return Err(format!("items[{i}].quantity: missing")),
            };
            Ok(OrderLine { product_id, quantity })
        })
        .collect::<Result<Vec<_>, String>>()?;
    OrderLines::new(lines).map_err(|e| format!("items: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_json(json: &str, headers: &[(String, Vec<u8>)]) -> Decoded {
        decode(RawRecord {
            payload: Some(json.as_bytes()),
            headers,
        })
    }

    /// The problem named, whether the record is poison or an order answered as invalid.
    fn error_of(d: Decoded) -> String {
        match d {
            Decoded::Poison { error } | Decoded::Invalid { error, .. } => error,
            other => panic!("expected poison, got {other:?}"),
        }
    }

    #[test]
    fn order_created_with_envelope() {
        let json = r#"{"eventId":"0b9d2c2e-4c1a-4f0e-9d67-3a3b8f1f9a10","eventType":"OrderCreatedEvent",
            "occurredAt":"2026-01-01T00:00:00Z","correlationId":"c-1","orderId":"o-1",
            "items":[{"productId":"p-1","quantity":2},{"productId":"p-2","quantity":1}]}"#;
        let Decoded::Event { event, event_type } = decode_json(json, &[]) else {
            panic!("not an event")
        };
        assert_eq!(event_type, "OrderCreatedEvent");
        assert_eq!(event.meta.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(event.meta.event_id.to_string(), "0b9d2c2e-4c1a-4f0e-9d67-3a3b8f1f9a10");
        let OrderCommand::Reserve { order_id, lines } = event.command else {
            panic!("not a reserve")
        };
        assert_eq!(order_id.as_str(), "o-1");
        assert_eq!(lines.lines().len(), 2);
    }

    #[test]
    fn type_from_ce_type_then_spring_type_id() {
        let json = r#"{"orderId":"o-1"}"#;
        let ce = [("ce_type".to_owned(), b"OrderCancelledEvent".to_vec())];
        assert!(matches!(
            decode_json(json, &ce),
            Decoded::Event {
                event_type: "OrderCancelledEvent",
                ..
            }
        ));
        let spring = [(
            "__TypeId__".to_owned(),
            b"com.shop.payment.events.PaymentFailedEvent".to_vec(),
        )];
        assert!(matches!(
            decode_json(json, &spring),
            Decoded::Event {
                event_type: "PaymentFailedEvent",
                ..
            }
        ));
    }

    #[test]
    fn an_unreadable_order_that_names_its_order_is_answered() {
        let json = r#"{"eventType":"OrderCreatedEvent","eventId":"0b9d2c2e-4c1a-4f0e-9d67-3a3b8f1f9a10",
            "correlationId":"c-9","orderId":"o-7","items":[{"productId":"p-1","quantity":0}]}"#;
        let Decoded::Invalid { event, error } = decode_json(json, &[]) else {
            panic!("not answered as invalid")
        };
        assert!(error.starts_with("items[0].quantity:"), "{error}");
        assert_eq!(event.meta.event_id.to_string(), "0b9d2c2e-4c1a-4f0e-9d67-3a3b8f1f9a10");
        assert_eq!(event.meta.correlation_id.as_deref(), Some("c-9"));
        assert_eq!(
            event.command,
            OrderCommand::Reject {
                order_id: OrderId::parse("o-7").unwrap(),
                detail: error
            }
        );
        // A malformed event id: the answer's id comes from the bytes, the same for a redelivery.
        let json = r#"{"eventType":"OrderCreatedEvent","eventId":"not-a-uuid","orderId":"o-8",
            "items":[{"productId":"p-1","quantity":1}]}"#;
        let (Decoded::Invalid { event: a, error }, Decoded::Invalid { event: b, .. }) =
            (decode_json(json, &[]), decode_json(json, &[]))
        else {
            panic!("not answered as invalid")
        };
        assert!(error.starts_with("eventId:"), "{error}");
        assert_eq!(a.meta.event_id, b.meta.event_id);
        // No readable order id, or another type: poison only.
        let no_order = r#"{"eventType":"OrderCreatedEvent","items":[]}"#;
        assert!(matches!(decode_json(no_order, &[]), Decoded::Poison { .. }));
        let cancel = r#"{"eventType":"OrderCancelledEvent","eventId":"x","orderId":"o-1"}"#;
        assert!(matches!(decode_json(cancel, &[]), Decoded::Poison { .. }));
    }

    #[test]
    fn missing_event_id_is_derived_from_content() {
        let json = r#"{"eventType":"PaymentSucceededEvent","orderId":42}"#;
        let a = decode_json(json, &[]);
        let b = decode_json(json, &[]);
        assert_eq!(a, b, "the same record must get the same id");
        let Decoded::Event { event, .. } = a else {
            panic!("not an event")
        };
        assert_eq!(event.command.order_id().as_str(), "42");
    }

    #[test]
    fn unknown_types_are_skipped() {
        let d = decode_json(r#"{"eventType":"OrderShippedEvent","orderId":"o"}"#, &[]);
        assert_eq!(
            d,
            Decoded::Skip {
                event_type: "OrderShippedEvent".into()
            }
        );
    }

    #[test]
    fn poison_records_name_the_problem() {
        assert!(
            error_of(decode(RawRecord {
                payload: None,
                headers: &[]
            }))
            .contains("no value")
        );
        assert!(error_of(decode_json("not json", &[])).contains("not JSON"));
        assert!(error_of(decode_json("[1]", &[])).contains("not a JSON object"));
        assert!(error_of(decode_json(r#"{"orderId":"o"}"#, &[])).contains("eventType"));
        assert!(error_of(decode_json(r#"{"eventType":"OrderCreatedEvent","items":[]}"#, &[])).contains("orderId"));
        let no_items = r#"{"eventType":"OrderCreatedEvent","orderId":"o"}"#;
        assert!(error_of(decode_json(no_items, &[])).contains("items: missing"));
        let zero = r#"{"eventType":"OrderCreatedEvent","orderId":"o","items":[{"productId":"p","quantity":0}]}"#;
        assert!(error_of(decode_json(zero, &[])).contains("items[0].quantity"));
        let neg = r#"{"eventType":"OrderCreatedEvent","orderId":"o","items":[{"productId":"p","quantity":-2}]}"#;
        assert!(error_of(decode_json(neg, &[])).contains("items[0].quantity"));
        let frac = r#"{"eventType":"OrderCreatedEvent","orderId":"o","items":[{"productId":"p","quantity":1.5}]}"#;
        assert!(error_of(decode_json(frac, &[])).contains("must be an integer"));
        let bad_id = r#"{"eventType":"OrderCreatedEvent","eventId":"nope","orderId":"o","items":[]}"#;
        assert!(error_of(decode_json(bad_id, &[])).contains("eventId"));
        let item = r#"{"productId":"p","quantity":1}"#;
        let many = format!(
            r#"{{"eventType":"OrderCreatedEvent","orderId":"o","items":[{}]}}"#,
            vec![item; 101].join(",")
        );
        assert!(error_of(decode_json(&many, &[])).contains("at most 100"));
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert!(
            error_of(decode(RawRecord {
                payload: Some(&big),
                headers: &[]
            }))
            .contains("limit")
        );
    }

    #[test]
    fn empty_order_is_an_event_the_rules_refuse() {
        let d = decode_json(r#"{"eventType":"OrderCreatedEvent","orderId":"o","items":[]}"#, &[]);
        assert!(matches!(d, Decoded::Event { .. }));
    }
}
