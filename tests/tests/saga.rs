//! The saga end to end: real Kafka, real PostgreSQL, the service in-process.

use std::collections::HashMap;
use std::time::Duration;

use inventory_domain::{Actor, ProductId, Quantity};
use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Topics, await_group_members, order_created, producer, send, send_json};
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn simple(event_type: &str, order: &str) -> Value {
    json!({"eventId": Uuid::new_v4(), "eventType": event_type, "orderId": order})
}

async fn stock(app: &TestApp, product: &str, quantity: i64) {
    app.service
        .add_stock(
            &ProductId::parse(product).unwrap(),
            Quantity::new(quantity).unwrap(),
            &Actor("test".into()),
        )
        .await
        .unwrap();
}

async fn counts(app: &TestApp, product: &str) -> (u32, u32) {
    let s = app
        .service
        .get_stock(&ProductId::parse(product).unwrap())
        .await
        .unwrap()
        .unwrap();
    (s.quantity(), s.reserved())
}

fn items(v: &Value) -> Vec<(String, u64)> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["productId"].as_str().unwrap().to_owned(),
                i["quantity"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Holds that expire after 1 s, swept every 200 ms.
fn short_holds() -> AppOptions {
    AppOptions {
        hold_ttl_secs: 1,
        sweep_ms: 200,
        ..AppOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_reserves_and_announces_it() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "p-1", 10).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    let order = order_created("o-1", &[("p-1", 3)]);
    send_json(&p, &app.topics.orders, &order).await;

    let out = outcomes.next(WAIT, "the reservation outcome").await;
    assert_eq!(out.value["eventType"], "InventoryReservedEvent");
    assert_eq!(out.value["orderId"], "o-1");
    assert_eq!(out.key.as_deref(), Some("o-1"));
    assert_eq!(items(&out.value), vec![("p-1".to_owned(), 3)]);
    assert_eq!(out.value["causationId"], order["eventId"]);
    assert_eq!(out.value["correlationId"], "corr-o-1");
    assert!(Uuid::parse_str(out.value["eventId"].as_str().unwrap()).is_ok());
    assert_eq!(
        out.headers.get("ce_type").map(String::as_str),
        Some("InventoryReservedEvent")
    );
    assert_eq!(out.headers.get("ce_specversion").map(String::as_str), Some("1.0"));
    assert_eq!(
        out.headers.get("ce_id"),
        out.value["eventId"].as_str().map(str::to_owned).as_ref()
    );
    assert!(out.headers.contains_key("ce_source") && out.headers.contains_key("ce_time"));
    assert_eq!(counts(&app, "p-1").await, (10, 3));
    let metrics = app.metrics().await;
    let counted = metrics
        .lines()
        .any(|l| l.starts_with("inventory_events_total{") && l.contains("OrderCreatedEvent") && l.contains("reserved"));
    assert!(counted, "events are counted by type and outcome:\n{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_order_names_each_short_line_and_holds_nothing() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 1).await;
    stock(&app, "b", 5).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    send_json(&p, &app.topics.orders, &order_created("o-short", &[("a", 2), ("b", 1)])).await;
    send_json(
        &p,
        &app.topics.orders,
        &order_created("o-unknown", &[("b", 1), ("nope", 1)]),
    )
    .await;

    let out = outcomes.take(2, WAIT, "two failures").await;
    let by_order: HashMap<String, Value> = out
        .into_iter()
        .map(|r| (r.value["orderId"].as_str().unwrap().to_owned(), r.value))
        .collect();
    let short = &by_order["o-short"];
    assert_eq!(short["eventType"], "StockReservationFailedEvent");
    assert_eq!(short["reason"], "INSUFFICIENT_STOCK");
    assert_eq!(
        short["items"],
        json!([{"productId": "a", "requested": 2, "available": 1}])
    );
    assert!(
        short["detail"]
            .as_str()
            .unwrap()
            .contains("a: requested 2, available 1")
    );
    let unknown = &by_order["o-unknown"];
    assert_eq!(unknown["reason"], "UNKNOWN_PRODUCT");
    assert_eq!(
        unknown["items"],
        json!([{"productId": "nope", "requested": 1, "available": 0}])
    );
    assert_eq!(counts(&app, "a").await, (1, 0), "all or nothing: a untouched");
    assert_eq!(counts(&app, "b").await, (5, 0), "all or nothing: b untouched");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_product_twice_in_one_order_is_summed() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 3).await;
    let outcomes = Reader::new(&app.topics.inventory);
    send_json(
        &producer(),
        &app.topics.orders,
        &order_created("o-1", &[("a", 1), ("a", 2)]),
    )
    .await;
    let out = outcomes.next(WAIT, "the reservation").await;
    assert_eq!(out.value["eventType"], "InventoryReservedEvent");
    assert_eq!(items(&out.value), vec![("a".to_owned(), 3)]);
    assert_eq!(counts(&app, "a").await, (3, 3));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_delivered_twice_changes_things_once() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 5).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    let create = order_created("o-1", &[("a", 2)]);
    let cancel = simple("OrderCancelledEvent", "o-1");
    for event in [&create, &create] {
        send_json(&p, &app.topics.orders, event).await;
    }
    // A second create for the same order under a new event id is no new outcome either.
    send_json(&p, &app.topics.orders, &order_created("o-1", &[("a", 1)])).await;
    for event in [&cancel, &cancel] {
        send_json(&p, &app.topics.orders, event).await;
    }
    send_json(&p, &app.topics.orders, &order_created("marker", &[("a", 1)])).await;

    let out = outcomes.take(3, WAIT, "reserved, released, marker").await;
    let seen: Vec<(String, String)> = out
        .iter()
        .map(|r| {
            (
                r.value["orderId"].as_str().unwrap().to_owned(),
                r.value["eventType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("o-1".into(), "InventoryReservedEvent".into()),
            ("o-1".into(), "InventoryReleasedEvent".into()),
            ("marker".into(), "InventoryReservedEvent".into()),
        ]
    );
    assert_eq!(counts(&app, "a").await, (5, 1), "only the marker holds stock");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_create_fails_the_late_create() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 5).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    send_json(&p, &app.topics.orders, &simple("OrderCancelledEvent", "o-1")).await;
    send_json(&p, &app.topics.orders, &order_created("o-1", &[("a", 2)])).await;
    let out = outcomes.next(WAIT, "the refusal").await;
    assert_eq!(out.value["eventType"], "StockReservationFailedEvent");
    assert_eq!(out.value["reason"], "ORDER_CANCELLED");
    assert_eq!(counts(&app, "a").await, (5, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_failed_releases_and_payment_succeeded_commits() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 10).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    send_json(&p, &app.topics.orders, &order_created("o-fail", &[("a", 2)])).await;
    send_json(&p, &app.topics.orders, &order_created("o-paid", &[("a", 3)])).await;
    outcomes.take(2, WAIT, "two reservations").await;
    assert_eq!(counts(&app, "a").await, (10, 5));

    let mut failed = simple("PaymentFailedEvent", "o-fail");
    failed["reason"] = json!("card declined");
    send_json(&p, &app.topics.payments, &failed).await;
    let out = outcomes.next(WAIT, "the release").await;
    assert_eq!(out.value["eventType"], "InventoryReleasedEvent");
    assert_eq!(out.value["reason"], "PAYMENT_FAILED");
    assert_eq!(items(&out.value), vec![("a".to_owned(), 2)]);

    send_json(&p, &app.topics.payments, &simple("PaymentSucceededEvent", "o-paid")).await;
    // Cancel after commit must do nothing; the marker shows it was consumed.
    send_json(&p, &app.topics.orders, &simple("OrderCancelledEvent", "o-paid")).await;
    send_json(&p, &app.topics.orders, &order_created("marker", &[("a", 1)])).await;
    let next = outcomes.next(WAIT, "the marker").await;
    assert_eq!(
        next.value["orderId"], "marker",
        "no event for the commit or the late cancel"
    );
    assert_eq!(
        counts(&app, "a").await,
        (7, 1),
        "3 units left the shelf; the marker holds 1"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_overtakes_its_order_makes_the_late_order_deduct_at_once() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, short_holds()).await;
    stock(&app, "a", 10).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    send_json(&p, &app.topics.payments, &simple("PaymentSucceededEvent", "o-1")).await;
    // The payment is remembered (it emits nothing): wait for its record.
    #[derive(diesel::QueryableByName)]
    struct Status {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    use diesel_async::RunQueryDsl;
    let mut conn = db.conn().await;
    let started = std::time::Instant::now();
    loop {
        let found: Vec<Status> = diesel::sql_query("SELECT status FROM reservations WHERE order_id = 'o-1'")
            .load(&mut conn)
            .await
            .unwrap();
        if found.iter().any(|s| s.status == "PAID") {
            break;
        }
        assert!(started.elapsed() < WAIT, "the payment was not recorded within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts(&app, "a").await, (10, 0), "a payment alone moves no stock");

    send_json(&p, &app.topics.orders, &order_created("o-1", &[("a", 4)])).await;
    let out = outcomes.next(WAIT, "the late order's outcome").await;
    assert_eq!(out.value["eventType"], "InventoryReservedEvent");
    assert_eq!(items(&out.value), vec![("a".to_owned(), 4)]);
    assert_eq!(counts(&app, "a").await, (6, 0), "deducted at once: no hold is left");
    // Holds here expire after 1 s; nothing is left to expire, so nothing more comes.
    let more = tokio::time::timeout(Duration::from_secs(3), outcomes.next(WAIT, "nothing")).await;
    assert!(
        more.is_err(),
        "no expiry follows a paid order: {:?}",
        more.map(|r| r.value)
    );
    assert_eq!(counts(&app, "a").await, (6, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_holds_are_released_with_reason_expired() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, short_holds()).await;
    stock(&app, "a", 4).await;
    let outcomes = Reader::new(&app.topics.inventory);
    send_json(&producer(), &app.topics.orders, &order_created("o-1", &[("a", 4)])).await;
    assert_eq!(
        outcomes.next(WAIT, "the reservation").await.value["eventType"],
        "InventoryReservedEvent"
    );
    let out = outcomes.next(WAIT, "the expiry").await;
    assert_eq!(out.value["eventType"], "InventoryReleasedEvent");
    assert_eq!(out.value["reason"], "EXPIRED");
    assert!(out.value.get("causationId").is_none());
    assert_eq!(counts(&app, "a").await, (4, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_stored_state_cannot_take_is_dead_lettered_alone() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 10).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let dead = Reader::new(&format!("{}.DLT", app.topics.orders));
    let p = producer();
    send_json(&p, &app.topics.orders, &order_created("o-1", &[("a", 2)])).await;
    assert_eq!(
        outcomes.next(WAIT, "the reservation").await.value["eventType"],
        "InventoryReservedEvent"
    );
    // A bad manual edit: the hold of o-1 is gone from the stock row, so releasing it cannot be applied.
    use diesel_async::SimpleAsyncConnection;
    db.conn()
        .await
        .batch_execute("UPDATE inventory SET reserved = 0 WHERE product_id = 'a'")
        .await
        .unwrap();
    send_json(&p, &app.topics.orders, &simple("OrderCancelledEvent", "o-1")).await;
    send_json(&p, &app.topics.orders, &order_created("o-2", &[("a", 1)])).await;

    let letter = dead.next(WAIT, "the cancel that cannot be applied").await;
    assert_eq!(letter.key.as_deref(), Some("o-1"));
    assert_eq!(letter.value["eventType"], "OrderCancelledEvent");
    assert!(
        letter.headers["dlt-error"].starts_with("processing failed"),
        "{:?}",
        letter.headers
    );
    let out = outcomes.next(WAIT, "the good order beside it").await;
    assert_eq!(
        (out.value["orderId"].as_str(), out.value["eventType"].as_str()),
        (Some("o-2"), Some("InventoryReservedEvent"))
    );
    // The consumer went on.
    send_json(&p, &app.topics.orders, &order_created("o-3", &[("a", 1)])).await;
    assert_eq!(outcomes.next(WAIT, "a later order").await.value["orderId"], "o-3");
    assert_eq!(
        counts(&app, "a").await,
        (10, 2),
        "o-2 and o-3 hold one each; the bad cancel changed nothing"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let db = TestDb::new().await;
    let topics = Topics::new();
    topics.create_with_large_records().await;
    let app = TestApp::spawn_on(&db, topics, AppOptions::default()).await;
    stock(&app, "a", 5).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let dead = Reader::new(&format!("{}.DLT", app.topics.orders));
    let p = producer();
    let line = json!({"productId": "a", "quantity": 1});
    let big_lines: Vec<Value> = (0..101).map(|_| line.clone()).collect();
    let huge = format!(
        r#"{{"eventType":"OrderCreatedEvent","orderId":"k","pad":"{}"}}"#,
        "x".repeat(1_100_000)
    );
    let poison: Vec<(&str, Vec<u8>)> =
        vec![
        ("not JSON", b"{{{not json".to_vec()),
        ("not a JSON object", b"[1,2]".to_vec()),
        ("orderId", json!({"eventType": "OrderCreatedEvent", "items": [line]}).to_string().into_bytes()),
        ("items: missing", json!({"eventType": "OrderCreatedEvent", "orderId": "k"}).to_string().into_bytes()),
        (
            "items[0].quantity",
            json!({"eventType": "OrderCreatedEvent", "orderId": "k", "items": [{"productId": "a", "quantity": 0}]})
                .to_string()
                .into_bytes(),
        ),
        (
            "items[0].quantity",
            json!({"eventType": "OrderCreatedEvent", "orderId": "k", "items": [{"productId": "a", "quantity": -3}]})
                .to_string()
                .into_bytes(),
        ),
        (
            "at most 100",
            json!({"eventType": "OrderCreatedEvent", "orderId": "k", "items": big_lines}).to_string().into_bytes(),
        ),
        ("eventId", json!({"eventType": "OrderCancelledEvent", "eventId": 5, "orderId": "k"}).to_string().into_bytes()),
        ("byte limit", huge.into_bytes()),
    ];
    // One key: one partition, so the good record after them is behind every poison one.
    for (_, payload) in &poison {
        send(&p, &app.topics.orders, "k", payload, &[("trace", "t-1")]).await;
    }
    let good = order_created("k2", &[("a", 2)]);
    send(&p, &app.topics.orders, "k", good.to_string().as_bytes(), &[]).await;

    // The order the unreadable records name is answered, once, with the first problem found;
    // the records that name no order (or are no order) are only dead-lettered.
    // k and k2 are keys of their own, so their answers may come from two partitions in either order.
    let first = outcomes
        .next(WAIT, "the answers to the unreadable order k and to k2")
        .await;
    let second = outcomes
        .next(WAIT, "the answers to the unreadable order k and to k2")
        .await;
    let (answer, out) = if first.value["orderId"] == "k" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(answer.value["eventType"], "StockReservationFailedEvent");
    assert_eq!(answer.value["orderId"], "k");
    assert_eq!(answer.value["reason"], "INVALID_ORDER");
    assert_eq!(answer.value["detail"], "items: missing");
    assert_eq!(out.value["eventType"], "InventoryReservedEvent", "{}", out.value);
    assert_eq!(out.value["orderId"], "k2");
    assert_eq!(counts(&app, "a").await, (5, 2));

    let letters = dead.take(poison.len(), WAIT, "one dead letter per poison record").await;
    let partition = letters[0].headers["dlt-source-partition"].clone();
    for (i, ((expected, payload), letter)) in poison.iter().zip(&letters).enumerate() {
        let error = &letter.headers["dlt-error"];
        assert!(
            error.contains(expected),
            "record {i}: error {error:?} should mention {expected:?}"
        );
        assert_eq!(letter.headers["dlt-source-topic"], app.topics.orders);
        assert_eq!(letter.headers["dlt-source-partition"], partition);
        assert_eq!(
            letter.headers["dlt-source-offset"],
            i.to_string(),
            "in order, offset {i}"
        );
        assert_eq!(
            letter.headers.get("trace").map(String::as_str),
            Some("t-1"),
            "original headers kept"
        );
        assert_eq!(letter.key.as_deref(), Some("k"));
        assert_eq!(letter.len, payload.len(), "the original value is kept");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_types_are_skipped_and_types_come_from_headers_too() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 5).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let dead = Reader::new(&format!("{}.DLT", app.topics.orders));
    let p = producer();
    send_json(&p, &app.topics.orders, &simple("OrderShippedEvent", "o-x")).await;

    // CloudEvents binary mode: the type is in ce_type only.
    let mut by_ce = order_created("o-ce", &[("a", 1)]);
    by_ce.as_object_mut().unwrap().remove("eventType");
    send(
        &p,
        &app.topics.orders,
        "o-ce",
        by_ce.to_string().as_bytes(),
        &[("ce_type", "OrderCreatedEvent")],
    )
    .await;
    // Spring Kafka: the type is the class name in __TypeId__.
    let mut by_spring = order_created("o-spring", &[("a", 2)]);
    by_spring.as_object_mut().unwrap().remove("eventType");
    let spring = [("__TypeId__", "com.shop.order.events.OrderCreatedEvent")];
    send(
        &p,
        &app.topics.orders,
        "o-spring",
        by_spring.to_string().as_bytes(),
        &spring,
    )
    .await;
    // Payment events follow the reservation in a real saga; topics are not ordered with each other.
    let mut out = outcomes.take(2, WAIT, "two reservations").await;
    let mut failed = simple("PaymentFailedEvent", "o-spring");
    failed.as_object_mut().unwrap().remove("eventType");
    let spring = [("__TypeId__", "com.shop.payment.PaymentFailedEvent")];
    send(
        &p,
        &app.topics.payments,
        "o-spring",
        failed.to_string().as_bytes(),
        &spring,
    )
    .await;

    out.push(outcomes.next(WAIT, "the release").await);
    let mut seen: Vec<(String, String)> = out
        .iter()
        .map(|r| {
            (
                r.value["orderId"].as_str().unwrap().to_owned(),
                r.value["eventType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("o-ce".into(), "InventoryReservedEvent".into()),
            ("o-spring".into(), "InventoryReleasedEvent".into()),
            ("o-spring".into(), "InventoryReservedEvent".into()),
        ]
    );
    assert_eq!(counts(&app, "a").await, (5, 1));
    // The skipped event is no dead letter: a poison record sent now is the first one there.
    send(&p, &app.topics.orders, "o-x", b"poison", &[]).await;
    let letter = dead.next(WAIT, "the poison record").await;
    assert_eq!(letter.key.as_deref(), Some("o-x"));
    assert!(letter.headers["dlt-error"].contains("not JSON"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_orders_race_for_fifty_units_across_partitions_and_instances() {
    let db = TestDb::new().await;
    let topics = Topics::new();
    let options = AppOptions {
        batch_max: 50,
        ..AppOptions::default()
    };
    let first = TestApp::spawn_on(&db, topics.clone(), options.clone()).await;
    let second = TestApp::spawn_on(&db, topics.clone(), options).await;
    stock(&first, "hot", 50).await;
    let outcomes = Reader::new(&topics.inventory);
    let p = producer();
    let sends = (0..500).map(|i| {
        let p = p.clone();
        let topic = topics.orders.clone();
        async move { send_json(&p, &topic, &order_created(&format!("race-{i}"), &[("hot", 1)])).await }
    });
    futures_join_all(sends).await;

    let out = outcomes.take(500, Duration::from_secs(120), "500 outcomes").await;
    let mut by_type: HashMap<String, usize> = HashMap::new();
    let mut orders = std::collections::HashSet::new();
    let mut partitions = std::collections::HashSet::new();
    for r in &out {
        *by_type
            .entry(r.value["eventType"].as_str().unwrap().to_owned())
            .or_default() += 1;
        orders.insert(r.value["orderId"].as_str().unwrap().to_owned());
        partitions.insert(r.partition);
    }
    assert_eq!(orders.len(), 500, "one outcome per order");
    assert_eq!(by_type.get("InventoryReservedEvent"), Some(&50));
    assert_eq!(by_type.get("StockReservationFailedEvent"), Some(&450));
    assert!(partitions.len() > 1, "orders were spread over partitions");
    assert_eq!(counts(&first, "hot").await, (50, 50));
    first.stop().await;
    second.stop().await;
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(futures: impl Iterator<Item = F>) {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_pauses_consumption_and_loses_nothing() {
    let db = TestDb::new().await;
    let proxy = inventory_tests::proxy::Proxy::start(inventory_tests::proxy::authority(&db.url)).await;
    let topics = Topics::new();
    let mut settings = inventory_tests::app::settings(&db, &topics, &AppOptions::default());
    settings.database.database_url = Some(proxy.route(&db.url).into());
    settings.database.db_pool_acquire_timeout_ms = 500;
    // The shortest the broker allows, so the outage below outlasts the poll interval and the
    // consumer, stuck retrying its batch, drops out of its group.
    settings.kafka.kafka_session_timeout_ms = 6_000;
    settings.kafka.kafka_max_poll_interval_ms = 6_000;
    let group = topics.group.clone();
    let app = TestApp::spawn_with(settings, topics).await;
    stock(&app, "a", 10).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let dead = Reader::new(&format!("{}.DLT", app.topics.orders));
    let p = producer();

    proxy.cut();
    for i in 0..5 {
        send_json(&p, &app.topics.orders, &order_created(&format!("o-{i}"), &[("a", 1)])).await;
    }
    let ready = inventory_tests::http::client()
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503, "not ready while the database is down");
    await_group_members(&group, 1, WAIT, "the consumer joins its group").await;
    let early = tokio::time::timeout(Duration::from_secs(9), outcomes.next(WAIT, "nothing during the outage")).await;
    assert!(early.is_err(), "no outcome can be produced while the database is down");
    await_group_members(
        &group,
        0,
        Duration::from_secs(10),
        "an outage longer than the poll interval takes the consumer out of its group",
    )
    .await;

    proxy.restore();
    let out = outcomes.take(5, WAIT, "the outcomes after the outage").await;
    assert!(
        out.iter().all(|r| r.value["eventType"] == "InventoryReservedEvent"),
        "{:?}",
        out.iter().map(|r| &r.value).collect::<Vec<_>>()
    );
    assert_eq!(counts(&app, "a").await, (10, 5));
    assert!(
        app.saga.as_ref().expect("the saga runs").retries() > 0,
        "the instance counted the attempts the outage failed"
    );
    // It rejoined: later orders are handled, and the batch it was redelivered changed nothing twice.
    for i in 5..8 {
        send_json(&p, &app.topics.orders, &order_created(&format!("o-{i}"), &[("a", 1)])).await;
    }
    let later = outcomes
        .take(3, WAIT, "the outcomes of orders sent after the outage")
        .await;
    let mut ids: Vec<&str> = out
        .iter()
        .chain(&later)
        .map(|r| r.value["orderId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["o-0", "o-1", "o-2", "o-3", "o-4", "o-5", "o-6", "o-7"],
        "one outcome per order"
    );
    assert_eq!(counts(&app, "a").await, (10, 8));
    await_group_members(&group, 1, WAIT, "the consumer is back in its group").await;
    #[derive(diesel::QueryableByName, Debug)]
    struct Emitted {
        #[diesel(sql_type = diesel::sql_types::Text)]
        message_key: String,
    }
    use diesel_async::RunQueryDsl;
    let emitted: Vec<Emitted> = diesel::sql_query("SELECT message_key FROM outbox ORDER BY id")
        .load(&mut db.conn().await)
        .await
        .unwrap();
    let mut keys: Vec<&str> = emitted.iter().map(|e| e.message_key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ids, "one outcome per order was ever emitted");
    // Nothing was dead-lettered for the outage: a poison record sent now is the first dead letter.
    send(&p, &app.topics.orders, "after", b"poison", &[]).await;
    assert_eq!(dead.next(WAIT, "the poison record").await.key.as_deref(), Some("after"));
    let ready = inventory_tests::http::client()
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"], json!({"database": "UP", "kafka": "UP"}));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_echo_the_cause_as_it_was_sent_and_dead_letters_read_like_springs() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    stock(&app, "a", 5).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let dead = Reader::new(&format!("{}.DLT", app.topics.orders));
    let p = producer();
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    // A numeric order id, an event id that is no UUID, trace context in headers, Spring's nested type name.
    let order =
        json!({"eventId": "evt-42", "orderId": 9451057838483_i64, "items": [{"productId": "a", "quantity": 1}]});
    let headers = [
        ("__TypeId__", "com.shop.order.event.OrderEvents$OrderCreatedEvent"),
        ("traceparent", trace),
        ("tracestate", "congo=t61rcWkgMzE"),
    ];
    send(
        &p,
        &app.topics.orders,
        "9451057838483",
        order.to_string().as_bytes(),
        &headers,
    )
    .await;
    let out = outcomes.next(WAIT, "the answer").await;
    assert_eq!(out.value["eventType"], "InventoryReservedEvent");
    assert_eq!(
        out.value["orderId"],
        json!(9451057838483_i64),
        "a number stays a number"
    );
    assert_eq!(out.value["causationId"], "evt-42", "the id as sent");
    assert_eq!(out.key.as_deref(), Some("9451057838483"));
    assert_eq!(out.headers["__TypeId__"], "InventoryReservedEvent");
    assert_eq!(out.headers["traceparent"], trace);
    assert_eq!(out.headers["tracestate"], "congo=t61rcWkgMzE");
    // The same id again is the same event.
    send(
        &p,
        &app.topics.orders,
        "9451057838483",
        order.to_string().as_bytes(),
        &headers,
    )
    .await;
    send_json(&p, &app.topics.orders, &order_created("after", &[("a", 1)])).await;
    assert_eq!(
        outcomes.next(WAIT, "the next order's answer").await.value["orderId"],
        "after"
    );
    assert_eq!(counts(&app, "a").await, (5, 2), "the duplicate held nothing");

    send(&p, &app.topics.orders, "k", b"{not json", &[("traceparent", trace)]).await;
    let letter = dead.next(WAIT, "the dead letter").await;
    let raw = &letter.raw_headers;
    assert_eq!(raw["kafka_dlt-original-topic"], app.topics.orders.as_bytes());
    let partition = i32::from_be_bytes(raw["kafka_dlt-original-partition"].as_slice().try_into().unwrap());
    assert_eq!(
        partition.to_string(),
        letter.headers["dlt-source-partition"],
        "a 4-byte partition"
    );
    let offset = i64::from_be_bytes(raw["kafka_dlt-original-offset"].as_slice().try_into().unwrap());
    assert_eq!(
        offset.to_string(),
        letter.headers["dlt-source-offset"],
        "an 8-byte offset"
    );
    assert_eq!(raw["kafka_dlt-original-timestamp"].len(), 8);
    assert_eq!(letter.headers["kafka_dlt-original-timestamp-type"], "CreateTime");
    assert_eq!(letter.headers["kafka_dlt-original-consumer-group"], app.topics.group);
    assert!(letter.headers["kafka_dlt-exception-message"].contains("not JSON"));
    assert!(!letter.headers["kafka_dlt-exception-fqcn"].is_empty());
    assert_eq!(letter.headers["traceparent"], trace, "the original headers are kept");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_structured_mode_and_type_aliases_are_understood() {
    let db = TestDb::new().await;
    let topics = Topics::new();
    let mut s = inventory_tests::app::settings(&db, &topics, &AppOptions::default());
    s.kafka.event_type_aliases =
        inventory_kafka::DecodeOptions::with_aliases("com.shop.order.created=OrderCreatedEvent").unwrap();
    let app = TestApp::spawn_with(s, topics).await;
    stock(&app, "a", 5).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    let envelope = json!({
        "specversion": "1.0", "id": "ce-1", "type": "com.shop.order.created", "source": "/orders",
        "correlationid": "corr-ce", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
        "data": {"orderId": "o-ce", "items": [{"productId": "a", "quantity": 2}]}
    });
    send(
        &p,
        &app.topics.orders,
        "o-ce",
        envelope.to_string().as_bytes(),
        &[("content-type", "application/cloudevents+json; charset=UTF-8")],
    )
    .await;
    let out = outcomes.next(WAIT, "the answer to the structured event").await;
    assert_eq!(out.value["eventType"], "InventoryReservedEvent");
    assert_eq!(out.value["orderId"], "o-ce");
    assert_eq!(out.value["causationId"], "ce-1");
    assert_eq!(out.value["correlationId"], "corr-ce");
    assert_eq!(
        out.headers["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    );
    assert_eq!(counts(&app, "a").await, (5, 2));
    app.stop().await;
}

/// One record per batch, sent back to back: each batch is worked out while the one before is still
/// being saved (the consumer lays that save over what it loads). A cancel then finds the hold
/// the batch before made, the stock row's version is the one that save writes, and a redelivery
/// is known, all without a conflict or a retry. (Two orders on one product; their partitions may
/// be read in any interleaving, so each order's own sequence is checked.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_worked_out_during_the_last_save_builds_on_it() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db,
        AppOptions {
            batch_max: 1,
            ..AppOptions::default()
        },
    )
    .await;
    stock(&app, "a", 10).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    let mut overlapped = 0;
    for round in 0..5 {
        let (first, second) = (format!("o-{round}-1"), format!("o-{round}-2"));
        let created = order_created(&first, &[("a", 3)]);
        for event in [
            created.clone(),
            simple("OrderCancelledEvent", &first),
            order_created(&second, &[("a", 5)]),
            created,
            simple("OrderCancelledEvent", &second),
        ] {
            send_json(&p, &app.topics.orders, &event).await;
        }
        let mut got: HashMap<String, Vec<String>> = HashMap::new();
        for o in outcomes.take(4, WAIT, "the round's outcomes").await {
            got.entry(o.value["orderId"].as_str().unwrap().to_owned())
                .or_default()
                .push(o.value["eventType"].as_str().unwrap().to_owned());
        }
        let held_then_released = vec!["InventoryReservedEvent".to_owned(), "InventoryReleasedEvent".to_owned()];
        assert_eq!(
            got,
            HashMap::from([(first, held_then_released.clone()), (second, held_then_released)]),
            "round {round}: each order held then released; the redelivered order changes nothing"
        );
        assert_eq!(counts(&app, "a").await, (10, 0));
        // This instance's own counts: the metrics endpoint sums every app in the test process.
        let saga = app.saga.as_ref().expect("the saga runs");
        assert_eq!(saga.retries(), 0, "round {round}: no batch was redone");
        assert_eq!(
            app.service.metrics().conflicts(),
            0,
            "round {round}: no save conflicted"
        );
        overlapped = saga.batches_overlapped();
        if overlapped > 0 {
            break;
        }
    }
    assert!(
        overlapped > 0,
        "in 5 rounds of 5 back-to-back records no batch was worked out during a save"
    );
    app.stop().await;
}
