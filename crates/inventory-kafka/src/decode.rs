//! Consumed records to domain commands. Pure: no broker, so every rule is
//! unit-tested here.
//!
//! The event type comes from the JSON `eventType`, else a CloudEvents
//! structured-mode envelope (`content-type: application/cloudevents+json`),
//! else the binary-mode `ce_type` header, else Spring Kafka's `__TypeId__`
//! header (after its last `.` and `$`); configured aliases map other names to
//! the known types. Unknown types are skipped: the topics carry other
//! services' events. A record that cannot be understood is poison and goes to
//! the dead letters.

use std::collections::HashMap;

use inventory_contract::consumed;
use inventory_domain::{
    Echo, EventMeta, IncomingEvent, OrderCommand, OrderId, OrderLine, OrderLines, ProductId, Quantity, ReleaseReason,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
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

/// The event types this service acts on.
pub const KNOWN: [&str; 4] = [
    "OrderCreatedEvent",
    "OrderCancelledEvent",
    "PaymentFailedEvent",
    "PaymentSucceededEvent",
];

/// Longest event id accepted (any string, not only a UUID).
pub const MAX_EVENT_ID_LEN: usize = 200;

/// Headers carried from a consumed record to its answers: W3C trace context.
pub const CARRIED_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// How records are read beyond the fixed rules.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// Other names for the known types (`EVENT_TYPE_ALIASES`): a Spring type
    /// alias, a reverse-DNS CloudEvents type.
    pub aliases: HashMap<String, &'static str>,
}

impl DecodeOptions {
    /// Parses `alias=Type,alias=Type`; every target must be a known type.
    pub fn with_aliases(spec: &str) -> Result<Self, String> {
        let mut aliases = HashMap::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (alias, target) = pair
                .split_once('=')
                .ok_or_else(|| format!("event type alias {pair:?}: expected alias=Type"))?;
            let known = KNOWN
                .iter()
                .copied()
                .find(|k| *k == target.trim())
                .ok_or_else(|| format!("event type alias {pair:?}: {target:?} is not one of {KNOWN:?}"))?;
            aliases.insert(alias.trim().to_owned(), known);
        }
        Ok(Self { aliases })
    }
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn poison(error: impl Into<String>) -> Decoded {
    Decoded::Poison { error: error.into() }
}

/// Decodes one record with no aliases.
pub fn decode(record: RawRecord<'_>) -> Decoded {
    decode_with(record, &DecodeOptions::default())
}

/// An event as found in a record: its body and what its envelope said.
struct Found {
    event_type: String,
    body: Value,
    /// Id from the envelope (CloudEvents `id`, or the `ce_id` header).
    envelope_id: Option<String>,
    /// Correlation id from the envelope or a header (the body's comes first).
    correlation_id: Option<String>,
    carried: Vec<(String, String)>,
}

/// Deserializes `value` into a contract type; an error names the field.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        match inner.strip_prefix("missing field `").and_then(|f| f.strip_suffix('`')) {
            Some(field) if path == "." => format!("{field}: missing"),
            Some(field) => format!("{path}.{field}: missing"),
            None if path == "." => inner,
            None if inner.ends_with("expected i64") => format!("{path}: must be an integer ({inner})"),
            None => format!("{path}: {inner}"),
        }
    })
}

/// Decodes one record.
pub fn decode_with(record: RawRecord<'_>, options: &DecodeOptions) -> Decoded {
    let Some(payload) = record.payload else {
        return poison("record has no value");
    };
    if payload.len() > MAX_RECORD_BYTES {
        return poison(format!(
            "record value is {} bytes, over the {MAX_RECORD_BYTES} byte limit",
            payload.len()
        ));
    }
    let body: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return poison(format!("value is not JSON: {e}")),
    };
    if !body.is_object() {
        return poison("value is not a JSON object");
    }
    let probe: consumed::Probe = match typed(&body) {
        Ok(p) => p,
        // Only the type can be of the wrong kind here (`specversion` is read as any JSON).
        Err(_) => return poison("eventType: must be a string"),
    };
    let structured = header(record.headers, "content-type").is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/cloudevents+json")
    }) || (probe.event_type.is_none() && probe.specversion.as_ref().is_some_and(Value::is_string));
    let found = if structured {
        structured_event(&body)
    } else {
        binary_event(body, probe.event_type, record.headers)
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => return poison(e),
    };
    let known = KNOWN
        .iter()
        .copied()
        .find(|k| *k == found.event_type)
        .or_else(|| options.aliases.get(&found.event_type).copied());
    let Some(known) = known else {
        return Decoded::Skip {
            event_type: found.event_type,
        };
    };
    match command(known, &found, payload) {
        Ok(event) => Decoded::Event {
            event,
            event_type: known,
        },
        Err(error) if known == "OrderCreatedEvent" => match typed::<consumed::OrderRef>(&found.body)
            .map_err(|_| ())
            .and_then(|r| order_id(r.order_id).map_err(|_| ()))
        {
            Ok((order_id, numeric)) => {
                // Its own id when that much is readable; else one derived from the bytes, so a
                // redelivered copy is still recognised and answered once.
                let envelope = typed::<consumed::OrderEvent>(&found.body).ok();
                let correlation_id = envelope
                    .as_ref()
                    .and_then(|e| e.correlation_id.clone())
                    .or_else(|| found.correlation_id.clone());
                let id = envelope.and_then(|e| event_id(e.event_id, &found, known, payload).ok());
                let (key, raw) = id.unwrap_or_else(|| {
                    (
                        Uuid::new_v5(&Uuid::NAMESPACE_OID, &[b"invalid:".as_slice(), payload].concat()),
                        None,
                    )
                });
                Decoded::Invalid {
                    event: IncomingEvent {
                        meta: EventMeta {
                            event_id: key,
                            correlation_id,
                            echo: Echo {
                                event_id: raw,
                                numeric_order_id: numeric,
                                headers: found.carried.clone(),
                            },
                        },
                        command: OrderCommand::Reject {
                            order_id,
                            detail: error.clone(),
                        },
                    },
                    error,
                }
            }
            Err(()) => poison(error),
        },
        Err(error) => poison(error),
    }
}

/// A plain JSON event: the type from `eventType`, else the CloudEvents
/// binary-mode `ce_type` header, else Spring's `__TypeId__` (the name after
/// the last `.` and `$`, so nested classes work).
fn binary_event(body: Value, event_type: Option<String>, headers: &[(String, Vec<u8>)]) -> Result<Found, String> {
    let event_type = match event_type {
        Some(t) => t,
        None => header(headers, "ce_type")
            .or_else(|| header(headers, "__TypeId__").map(|t| t.rsplit(['.', '$']).next().unwrap_or(t)))
            .map(str::to_owned)
            .ok_or("eventType: missing, and no ce_type or __TypeId__ header")?,
    };
    let carried = CARRIED_HEADERS
        .iter()
        .filter_map(|name| {
            header(headers, name)
                .or_else(|| header(headers, &format!("ce_{name}")))
                .map(|v| ((*name).to_owned(), v.to_owned()))
        })
        .collect();
    Ok(Found {
        event_type,
        body,
        envelope_id: header(headers, "ce_id").map(str::to_owned),
        correlation_id: header(headers, "correlationId")
            .or_else(|| header(headers, "ce_correlationid"))
            .map(str::to_owned),
        carried,
    })
}

/// A CloudEvents structured-mode event: `type`, `id` and extensions from the
/// envelope, the event from `data` (or `data_base64`).
fn structured_event(envelope: &Value) -> Result<Found, String> {
    let ce: consumed::CloudEvent = typed(envelope).map_err(|e| format!("{e} (in the CloudEvents envelope)"))?;
    let event_type = ce.event_type.ok_or("type: missing in the CloudEvents envelope")?;
    let body = match (ce.data, ce.data_base64) {
        (Some(Value::Object(data)), _) => Value::Object(data),
        (Some(Value::String(s)), _) => match serde_json::from_str(&s) {
            Ok(Value::Object(data)) => Value::Object(data),
            _ => return Err("data: must be a JSON object (or JSON text of one)".into()),
        },
        (Some(_), _) => return Err("data: must be a JSON object".into()),
        (None, Some(b64)) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("data_base64: not base64: {e}"))?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(data)) => Value::Object(data),
                _ => return Err("data_base64: must hold a JSON object".into()),
            }
        }
        (None, None) => return Err("data: missing in the CloudEvents envelope".into()),
    };
    let carried = [("traceparent", ce.traceparent), ("tracestate", ce.tracestate)]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
        .collect();
    Ok(Found {
        event_type,
        body,
        envelope_id: ce.id,
        correlation_id: ce.correlationid,
        carried,
    })
}

fn command(event_type: &'static str, found: &Found, payload: &[u8]) -> Result<IncomingEvent, String> {
    let (envelope, command) = if event_type == "OrderCreatedEvent" {
        let event: consumed::OrderCreated = typed(&found.body)?;
        let (order_id, numeric) = order_id(event.order_id)?;
        let lines = lines(event.items)?;
        let envelope = (event.event_id, event.correlation_id, numeric);
        (envelope, OrderCommand::Reserve { order_id, lines })
    } else {
        let event: consumed::OrderEvent = typed(&found.body)?;
        let (order_id, numeric) = order_id(event.order_id)?;
        let command = match event_type {
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
        ((event.event_id, event.correlation_id, numeric), command)
    };
    let (event_id_sent, correlation_id, numeric) = envelope;
    let (event_id, raw_id) = event_id(event_id_sent, found, event_type, payload)?;
    Ok(IncomingEvent {
        meta: EventMeta {
            event_id,
            correlation_id: correlation_id.or_else(|| found.correlation_id.clone()),
            echo: Echo {
                event_id: raw_id,
                numeric_order_id: numeric,
                headers: found.carried.clone(),
            },
        },
        command,
    })
}

/// The dedupe key and the id as sent: the body's `eventId`, else the
/// envelope's id; a UUID is its own key, any other string keys by a UUIDv5 of
/// it. With no id at all, the key comes from the content, so a resent copy is
/// still recognised.
fn event_id(
    sent: Option<String>,
    found: &Found,
    event_type: &str,
    payload: &[u8],
) -> Result<(Uuid, Option<String>), String> {
    match sent.or_else(|| found.envelope_id.clone()) {
        Some(id) if id.trim().is_empty() => Err("eventId: must not be empty".into()),
        Some(id) if id.chars().count() > MAX_EVENT_ID_LEN => {
            Err(format!("eventId: longer than {MAX_EVENT_ID_LEN} characters"))
        }
        Some(id) => {
            let key = Uuid::parse_str(&id)
                .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("event-id:{id}").as_bytes()));
            Ok((key, Some(id)))
        }
        None => Ok((
            Uuid::new_v5(&Uuid::NAMESPACE_OID, &[event_type.as_bytes(), payload].concat()),
            None,
        )),
    }
}

/// The text of an id, and whether it came as a JSON number.
fn id_text(id: inventory_contract::OrderId) -> (String, bool) {
    match id {
        inventory_contract::OrderId::Number(n) => (n.to_string(), true),
        inventory_contract::OrderId::Text(s) => (s, false),
    }
}

fn order_id(id: inventory_contract::OrderId) -> Result<(OrderId, bool), String> {
    let (raw, numeric) = id_text(id);
    OrderId::parse(raw)
        .map(|id| (id, numeric))
        .map_err(|e| format!("orderId: {e}"))
}

fn lines(items: Vec<consumed::OrderLine>) -> Result<OrderLines, String> {
    if items.len() > OrderLines::MAX {
        return Err(format!("items: at most {} lines, got {}", OrderLines::MAX, items.len()));
    }
    let lines = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let product_id =
                ProductId::parse(id_text(item.product_id).0).map_err(|e| format!("items[{i}].productId: {e}"))?;
            let quantity = Quantity::new(item.quantity).map_err(|e| format!("items[{i}].quantity: {e}"))?;
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
        let json = format!(
            r#"{{"eventType":"OrderCreatedEvent","eventId":"{}","orderId":"o-8",
            "items":[{{"productId":"p-1","quantity":1}}]}}"#,
            "x".repeat(MAX_EVENT_ID_LEN + 1)
        );
        let (Decoded::Invalid { event: a, error }, Decoded::Invalid { event: b, .. }) =
            (decode_json(&json, &[]), decode_json(&json, &[]))
        else {
            panic!("not answered as invalid")
        };
        assert!(error.starts_with("eventId:"), "{error}");
        assert_eq!(a.meta.event_id, b.meta.event_id);
        // No readable order id, or another type: poison only.
        let no_order = r#"{"eventType":"OrderCreatedEvent","items":[]}"#;
        assert!(matches!(decode_json(no_order, &[]), Decoded::Poison { .. }));
        let cancel = r#"{"eventType":"OrderCancelledEvent","eventId":7,"orderId":"o-1"}"#;
        assert!(matches!(decode_json(cancel, &[]), Decoded::Poison { .. }));
    }

    fn event_of(d: Decoded) -> (IncomingEvent, &'static str) {
        match d {
            Decoded::Event { event, event_type } => (event, event_type),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn h(name: &str, value: &str) -> (String, Vec<u8>) {
        (name.to_owned(), value.as_bytes().to_vec())
    }

    #[test]
    fn spring_nested_class_names_and_aliases_name_the_type() {
        let json = r#"{"orderId":"o-1","items":[{"productId":"p","quantity":1}]}"#;
        let nested = [h("__TypeId__", "com.shop.order.event.OrderEvents$OrderCreatedEvent")];
        assert_eq!(event_of(decode_json(json, &nested)).1, "OrderCreatedEvent");
        let options =
            DecodeOptions::with_aliases("orderCreated=OrderCreatedEvent, com.shop.order.created=OrderCreatedEvent")
                .unwrap();
        for headers in [
            [h("__TypeId__", "orderCreated")],
            [h("ce_type", "com.shop.order.created")],
        ] {
            let raw = RawRecord {
                payload: Some(json.as_bytes()),
                headers: &headers,
            };
            assert_eq!(event_of(decode_with(raw, &options)).1, "OrderCreatedEvent");
            assert!(matches!(decode(raw), Decoded::Skip { .. }), "no alias, no match");
        }
        assert!(DecodeOptions::with_aliases("x=NoSuchEvent").is_err());
        assert!(DecodeOptions::with_aliases("nonsense").is_err());
    }

    #[test]
    fn any_event_id_string_is_kept_for_the_answer_and_keys_duplicates() {
        let json = r#"{"eventType":"OrderCancelledEvent","eventId":"evt-42","orderId":9451057838483}"#;
        let (a, _) = event_of(decode_json(json, &[]));
        let (b, _) = event_of(decode_json(json, &[]));
        assert_eq!(a.meta.event_id, b.meta.event_id, "one key per id");
        assert_eq!(a.meta.event_id, Uuid::new_v5(&Uuid::NAMESPACE_OID, b"event-id:evt-42"));
        assert_eq!(a.meta.echo.event_id.as_deref(), Some("evt-42"));
        assert!(a.meta.echo.numeric_order_id, "the order id came as a number");
        assert_eq!(a.command.order_id().as_str(), "9451057838483");
        let uuid = "0b9d2c2e-4c1a-4f0e-9d67-3a3b8f1f9a10";
        let json = format!(r#"{{"eventType":"OrderCancelledEvent","eventId":"{uuid}","orderId":"o"}}"#);
        let (c, _) = event_of(decode_json(&json, &[]));
        assert_eq!(c.meta.event_id.to_string(), uuid, "a UUID is its own key");
        assert!(!c.meta.echo.numeric_order_id);
        let empty = r#"{"eventType":"OrderCancelledEvent","eventId":" ","orderId":"o"}"#;
        assert!(error_of(decode_json(empty, &[])).starts_with("eventId:"));
    }

    #[test]
    fn cloudevents_structured_mode_reads_the_envelope() {
        let envelope = r#"{"specversion":"1.0","id":"ce-1","type":"OrderCreatedEvent","source":"/orders",
            "time":"2026-01-01T00:00:00Z","correlationid":"corr-9","traceparent":"00-abc-def-01",
            "data":{"orderId":"o-5","items":[{"productId":"p","quantity":2}]}}"#;
        let ct = [h("content-type", "application/cloudevents+json; charset=UTF-8")];
        let (event, event_type) = event_of(decode_json(envelope, &ct));
        assert_eq!(event_type, "OrderCreatedEvent");
        assert_eq!(event.meta.echo.event_id.as_deref(), Some("ce-1"));
        assert_eq!(event.meta.correlation_id.as_deref(), Some("corr-9"));
        assert_eq!(
            event.meta.echo.headers,
            vec![("traceparent".to_owned(), "00-abc-def-01".to_owned())]
        );
        assert_eq!(event.command.order_id().as_str(), "o-5");
        // data_base64, and no content-type header: the envelope's specversion says it.
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(r#"{"orderId":"o-6"}"#);
        let b64 =
            format!(r#"{{"specversion":"1.0","id":"ce-2","type":"PaymentSucceededEvent","data_base64":"{data}"}}"#);
        let (event, event_type) = event_of(decode_json(&b64, &[]));
        assert_eq!(event_type, "PaymentSucceededEvent");
        assert_eq!(event.command.order_id().as_str(), "o-6");
        let no_data = r#"{"specversion":"1.0","id":"x","type":"OrderCreatedEvent"}"#;
        assert!(error_of(decode_json(no_data, &ct)).starts_with("data:"));
        let no_type = r#"{"specversion":"1.0","id":"x","data":{}}"#;
        assert!(error_of(decode_json(no_type, &ct)).starts_with("type:"));
    }

    #[test]
    fn binary_mode_ids_correlation_and_trace_context_come_from_headers() {
        let json = r#"{"orderId":"o-1"}"#;
        let headers = [
            h("ce_type", "OrderCancelledEvent"),
            h("ce_id", "ce-77"),
            h("ce_correlationid", "corr-1"),
            h("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            h("tracestate", "congo=t61rcWkgMzE"),
        ];
        let (event, _) = event_of(decode_json(json, &headers));
        assert_eq!(event.meta.echo.event_id.as_deref(), Some("ce-77"));
        assert_eq!(event.meta.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(event.meta.echo.headers.len(), 2);
        assert_eq!(event.meta.echo.headers[1].0, "tracestate");
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
        let bad_id = r#"{"eventType":"OrderCreatedEvent","eventId":"","orderId":"o","items":[]}"#;
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
