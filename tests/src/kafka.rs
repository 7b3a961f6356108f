//! Topics per test, a producer for consumed events, and readers of what the
//! service produced.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::{stack, unique};

/// A test's own topics and consumer group.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Order events.
    pub orders: String,
    /// Payment events.
    pub payments: String,
    /// The service's events.
    pub inventory: String,
    /// The service's consumer group.
    pub group: String,
}

impl Topics {
    /// Fresh names.
    pub fn new() -> Self {
        let id = unique("t");
        Self {
            orders: format!("{id}.order-events"),
            payments: format!("{id}.payment-events"),
            inventory: format!("{id}.inventory-events"),
            group: format!("{id}.inventory-service"),
        }
    }

    /// Creates the consumed topics (and their dead letters) with a larger
    /// record limit, so an oversized record reaches the service.
    pub async fn create_with_large_records(&self) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &stack().kafka_bootstrap)
            .create()
            .expect("admin client");
        let names = [
            self.orders.clone(),
            self.payments.clone(),
            format!("{}.DLT", self.orders),
            format!("{}.DLT", self.payments),
        ];
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| NewTopic::new(n, 3, TopicReplication::Fixed(1)).set("max.message.bytes", "4194304"))
            .collect();
        for result in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self::new()
    }
}

/// An `OrderCreatedEvent` with a fresh event id and the full envelope.
pub fn order_created(order: &str, items: &[(&str, i64)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q)| serde_json::json!({"productId": p, "quantity": q}))
        .collect();
    serde_json::json!({
        "eventId": uuid::Uuid::new_v4(),
        "eventType": "OrderCreatedEvent",
        "occurredAt": chrono::Utc::now().to_rfc3339(),
        "correlationId": format!("corr-{order}"),
        "orderId": order,
        "items": items,
    })
}

/// Waits until the consumer group `group` has `expected` members, as the broker sees it.
pub async fn await_group_members(group: &str, expected: usize, within: Duration, why: &str) {
    let started = std::time::Instant::now();
    loop {
        let members = group_members(group).await;
        if members == expected {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{why}: group {group} has {members} members, not {expected}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many members the consumer group `group` has now, as the broker sees it.
pub async fn group_members(group: &str) -> usize {
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &stack().kafka_bootstrap)
            .create()
            .expect("client");
        let list = client
            .fetch_group_list(Some(&group), Duration::from_secs(10))
            .expect("the broker describes the group");
        list.groups().iter().map(|g| g.members().len()).sum()
    })
    .await
    .expect("group lookup")
}

/// A producer for test input.
pub fn producer() -> FutureProducer {
    producer_on(&stack().kafka_bootstrap)
}

/// A producer for test input to the broker at `bootstrap` (a test's own).
pub fn producer_on(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "4000000")
        .set("linger.ms", "0")
        // A send the broker never acknowledges fails the test within a minute instead of hanging it.
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// A producer for test input with these client properties too (a secured broker's, say).
pub fn producer_with(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Publishes a record and waits for the broker's acknowledgement.
pub async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8], headers: &[(&str, &str)]) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload).headers(h),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("cannot publish to {topic}: {e}"));
}

/// Publishes a JSON event keyed by its `orderId`.
pub async fn send_json(producer: &FutureProducer, topic: &str, event: &Value) {
    let key = event["orderId"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| event["orderId"].to_string());
    send(producer, topic, &key, event.to_string().as_bytes(), &[]).await;
}

/// A record the service produced.
#[derive(Debug, Clone)]
pub struct Received {
    /// Record key.
    pub key: Option<String>,
    /// Value parsed as JSON (`Null` if it is not JSON).
    pub value: Value,
    /// Raw value length.
    pub len: usize,
    /// Headers (values as text).
    pub headers: HashMap<String, String>,
    /// Headers as sent (binary ones, such as Spring's dead-letter offsets).
    pub raw_headers: HashMap<String, Vec<u8>>,
    /// Partition.
    pub partition: i32,
}

/// Reads a topic from its beginning.
pub struct Reader {
    consumer: StreamConsumer,
    topic: String,
}

impl Reader {
    /// Subscribes to `topic` with a private group.
    pub fn new(topic: &str) -> Self {
        Self::on(&stack().kafka_bootstrap, topic)
    }

    /// Subscribes to `topic` on the broker at `bootstrap` (a test's own).
    pub fn on(bootstrap: &str, topic: &str) -> Self {
        Self::with(bootstrap, topic, &[])
    }

    /// For a broker that will be paused for long: the broker's shortest session, since after a pause
    /// the group waits out the old member's session before it lets this reader back in, and the
    /// default 45 s would read as a late answer. The reader then starts over from the beginning
    /// (it commits nothing), so it may see a record twice.
    pub fn across_outages(bootstrap: &str, topic: &str) -> Self {
        Self::with(bootstrap, topic, &[("session.timeout.ms", "6000")])
    }

    /// Subscribes to `topic` with these client properties too (a secured broker's, say).
    pub fn with(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> Self {
        let mut config = ClientConfig::new();
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let consumer: StreamConsumer = config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "true")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        Self {
            consumer,
            topic: topic.to_owned(),
        }
    }

    /// The next record, or a panic naming what was awaited after `timeout`.
    /// Errors the broker reports while a topic is being created, and lost connections (librdkafka
    /// reconnects by itself), are waited out.
    pub async fn next(&self, timeout: Duration, what: &str) -> Received {
        let deadline = tokio::time::Instant::now() + timeout;
        let message = loop {
            let next = tokio::time::timeout_at(deadline, self.consumer.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no record on {} within {timeout:?} while waiting for {what}",
                        self.topic
                    )
                });
            match next {
                Ok(message) => break message,
                // A topic being created, a broker that is down or restarting, a coordinator that moved:
                // librdkafka recovers by itself, and the deadline bounds the wait.
                Err(rdkafka::error::KafkaError::MessageConsumption(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("consuming {}: {e}", self.topic),
            }
        };
        let payload = message.payload().unwrap_or_default();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let raw_headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        if self.topic.ends_with("inventory-events") {
            check_against_schema(&self.topic, payload);
        }
        Received {
            raw_headers,
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: serde_json::from_slice(payload).unwrap_or(Value::Null),
            len: payload.len(),
            headers,
            partition: message.partition(),
        }
    }

    /// The next record about an order (an outcome or a release), skipping the availability
    /// events keyed by product that come between them.
    pub async fn next_outcome(&self, timeout: Duration, what: &str) -> Received {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = self.next(left, what).await;
            if !r.value["orderId"].is_null() || r.value["productId"].is_null() {
                return r;
            }
        }
    }

    /// The next `n` records.
    pub async fn take(&self, n: usize, timeout: Duration, what: &str) -> Vec<Received> {
        let mut out = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            out.push(self.next(left, &format!("{what} ({} of {n} so far)", out.len())).await);
        }
        out
    }
}

/// Records ever written to `topic` on the broker at `bootstrap` (0 when it does not exist).
pub async fn record_count(bootstrap: &str, topic: &str) -> i64 {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("client");
        let metadata = client
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("the broker answers a metadata request");
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return 0;
        };
        t.partitions()
            .iter()
            .map(|p| {
                client
                    .fetch_watermarks(&topic, p.id(), Duration::from_secs(10))
                    .map_or(0, |(low, high)| high - low)
            })
            .sum()
    })
    .await
    .expect("watermark lookup")
}

/// Every record the service produces must match its event type's JSON Schema
/// (`docs/schemas/`, generated from the wire contract's types).
fn check_against_schema(topic: &str, payload: &[u8]) {
    use std::sync::OnceLock;
    static VALIDATORS: OnceLock<Vec<(&'static str, jsonschema::Validator)>> = OnceLock::new();
    let validators = VALIDATORS.get_or_init(|| {
        inventory_contract::schemas()
            .into_iter()
            .map(|(name, schema)| (name, jsonschema::validator_for(&schema).expect("a valid schema")))
            .collect()
    });
    let value: Value =
        serde_json::from_slice(payload).unwrap_or_else(|e| panic!("a record on {topic} is not JSON: {e}"));
    let event_type = value["eventType"].as_str().unwrap_or_default();
    let (_, validator) = validators
        .iter()
        .find(|(name, _)| *name == event_type)
        .unwrap_or_else(|| panic!("a record on {topic} has no known eventType: {value}"));
    let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "a {event_type} on {topic} breaks its schema: {errors:?}\n{value}"
    );
}
