//! OpenTelemetry end to end, with the real binary, Kafka and PostgreSQL, and a small OTLP/HTTP
//! receiver of our own: one order is one trace from the consumed record to the published outcome,
//! an HTTP request joins its caller's trace and says so in its answer, and JSON log lines carry
//! the trace and span ids.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use diesel_async::SimpleAsyncConnection;
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Topics, order_created, producer, send};
use inventory_tests::process::ServiceProcess;
use inventory_tests::stack;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A received span, with the resource it came from.
#[derive(Debug, Clone)]
struct Received {
    span: Span,
    service: String,
}

impl Received {
    fn trace(&self) -> String {
        hex(&self.span.trace_id)
    }
    fn id(&self) -> String {
        hex(&self.span.span_id)
    }
    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
            .map(|v| match v {
                AnyValue::StringValue(s) => s,
                AnyValue::IntValue(i) => i.to_string(),
                other => format!("{other:?}"),
            })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// Takes OTLP/HTTP protobuf exports on `/v1/traces`; returns its base URL and what it received.
fn otlp_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let store = Arc::clone(&spans);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = HttpServer::new(move || {
        let store = Arc::clone(&store);
        App::new().app_data(web::PayloadConfig::new(64 << 20)).route(
            "/v1/traces",
            web::post().to(move |body: web::Bytes| {
                let store = Arc::clone(&store);
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return HttpResponse::BadRequest().finish();
                    };
                    let mut store = store.lock().expect("spans");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                                AnyValue::StringValue(s) => Some(s.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                store.push(Received {
                                    span,
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                    HttpResponse::Ok().content_type("application/x-protobuf").finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (url, spans)
}

/// The spans received so far that match `pick`, waiting up to 20 s for at least one.
async fn wait_for_span(spans: &Spans, what: &str, pick: impl Fn(&Received) -> bool) -> Received {
    for _ in 0..200 {
        if let Some(span) = spans.lock().expect("spans").iter().find(|s| pick(s)) {
            return span.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<(String, String)> = spans
        .lock()
        .expect("spans")
        .iter()
        .map(|s| (s.span.name.clone(), s.trace()))
        .collect();
    panic!("no span for {what} within 20 s; received (name, trace): {names:#?}");
}

fn trace_parent(header: &str) -> (String, String) {
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {header}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_from_consumed_record_to_published_outcome() {
    let (otlp, spans) = otlp_receiver();
    let db = TestDb::new().await;
    db.conn()
        .await
        .batch_execute("INSERT INTO inventory (id, product_id, quantity) VALUES (gen_random_uuid(), 'traced', 10)")
        .await
        .expect("stock");
    let topics = Topics::new();
    let bootstrap = stack().kafka_bootstrap.clone();
    let mut service = ServiceProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_inventory-app")),
        &[
            ("DATABASE_URL", &db.url),
            ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
            ("KAFKA_GROUP_ID", &topics.group),
            ("KAFKA_ORDER_TOPIC", &topics.orders),
            ("KAFKA_PAYMENT_TOPIC", &topics.payments),
            ("KAFKA_INVENTORY_TOPIC", &topics.inventory),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", ""),
            ("RUST_LOG", "info,inventory_http=debug"),
        ],
    );
    let http = service.http_addr().await;

    // The order service's span, as its record names it.
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let order = format!("traced-{}", uuid::Uuid::new_v4().simple());
    let event = order_created(&order, &[("traced", 2)]);
    let traceparent = format!("00-{trace}-{caller}-01");
    let payload = serde_json::to_vec(&event).expect("json");
    send(
        &producer(),
        &topics.orders,
        &order,
        &payload,
        &[("traceparent", &traceparent)],
    )
    .await;

    let outcome = Reader::new(&topics.inventory)
        .next_outcome(Duration::from_secs(60), "the order's outcome")
        .await;
    assert_eq!(
        outcome.value["eventType"], "InventoryReservedEvent",
        "{:?}",
        outcome.value
    );
    let (published_trace, published_parent) = trace_parent(
        outcome
            .headers
            .get("traceparent")
            .expect("the outcome carries a traceparent"),
    );
    assert_eq!(published_trace, trace, "the outcome continues the order's trace");

    // consumed record -> handling the event ...
    let handling = wait_for_span(&spans, "handling the order", |s| {
        s.span.name == "handle OrderCreatedEvent" && s.trace() == trace
    })
    .await;
    assert_eq!(
        handling.parent(),
        caller,
        "the record's span is the parent of its handling"
    );
    assert_eq!(handling.service, "inventory-service");
    assert_eq!(handling.attribute("order.id").as_deref(), Some(order.as_str()));
    assert_eq!(handling.attribute("event.type").as_deref(), Some("OrderCreatedEvent"));
    assert_eq!(
        handling.attribute("event.id").as_deref(),
        event["eventId"].as_str(),
        "{:?}",
        handling.span.attributes
    );
    assert_eq!(handling.attribute("outcome").as_deref(), Some("reserved"));
    // ... -> the outbox row -> publishing it -> the published record.
    let publishing = wait_for_span(&spans, "publishing the outcome", |s| {
        s.span.name == "publish InventoryReservedEvent" && s.trace() == trace
    })
    .await;
    assert_eq!(
        publishing.parent(),
        handling.id(),
        "the outbox row carried the handling span"
    );
    assert_eq!(
        published_parent,
        publishing.id(),
        "the published record names the publishing span"
    );

    // The batch's transaction has a span of its own, under the batch that links to the event.
    let batch = wait_for_span(&spans, "the consumed batch", |s| {
        s.span.name == "consume batch" && s.span.links.iter().any(|l| hex(&l.span_id) == handling.id())
    })
    .await;
    wait_for_span(&spans, "the batch's database transaction", |s| {
        s.span.name == "db transaction" && s.parent() == batch.id()
    })
    .await;

    // HTTP: the caller's context is honoured and returned.
    let (http_trace, http_caller) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let response = reqwest::Client::new()
        .get(format!("http://{http}/api/inventory/traced"))
        .header("traceparent", format!("00-{http_trace}-{http_caller}-01"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let answered = response
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("the answer carries a traceparent")
        .to_owned();
    let (answered_trace, answered_span) = trace_parent(&answered);
    assert_eq!(answered_trace, http_trace);
    let request = wait_for_span(&spans, "the HTTP request", |s| {
        s.span.name == "GET /api/inventory/{productId}" && s.trace() == http_trace
    })
    .await;
    assert_eq!(request.parent(), http_caller);
    assert_eq!(request.id(), answered_span);
    assert_eq!(request.attribute("http.response.status_code").as_deref(), Some("200"));

    // JSON log lines written inside a traced span carry its ids.
    let logged = service
        .lines()
        .into_iter()
        .find(|l| l["message"] == "request done" && l["trace_id"] == http_trace)
        .unwrap_or_else(|| panic!("no log line with trace_id {http_trace}: {:#?}", service.lines()));
    assert_eq!(logged["span_id"], answered_span.as_str());
}
