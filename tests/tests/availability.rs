//! Availability events end to end (real Kafka, real PostgreSQL): what each change emits, with its
//! payload, and under concurrency (orders, cancels and admin changes racing on a few products, on
//! two instances) the replay rule: per product, no kind twice in a row, and a reader that keeps
//! the level of the last event ends at the product's level.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use inventory_domain::{Actor, AdjustmentReason, ProductId, Quantity, StockCount};
use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Received, Topics, order_created, producer, record_count, send_json};
use inventory_tests::stack;
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
const THRESHOLD: u32 = 3;

fn options() -> AppOptions {
    AppOptions {
        availability_events: true,
        low_stock_threshold_default: Some(THRESHOLD),
        ..AppOptions::default()
    }
}

fn pid(p: &str) -> ProductId {
    ProductId::parse(p).unwrap()
}

fn admin() -> Actor {
    Actor("admin-1".into())
}

/// The next availability event on the topic (outcomes in between are skipped).
async fn next_availability(reader: &Reader, what: &str) -> Received {
    loop {
        let r = reader.next(WAIT, what).await;
        if r.value["productId"].is_string() {
            return r;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_level_change_emits_its_event_with_the_state_and_cause() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, options()).await;
    let reader = Reader::new(&app.topics.inventory);
    let p = producer();

    // A new product with 5 units: out -> in stock.
    app.service
        .add_stock(&pid("sku"), Quantity::new(5).unwrap(), &admin())
        .await
        .unwrap();
    let e = next_availability(&reader, "back in stock on the first add").await;
    assert_eq!(e.value["eventType"], "InventoryBackInStockEvent");
    assert_eq!(e.key.as_deref(), Some("sku"), "keyed by product");
    assert_eq!(
        (e.value["available"].as_u64(), e.value["quantity"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(e.value["cause"], "STOCK_ADDED");
    assert_eq!(e.value["actor"], "admin-1");
    assert_eq!(e.value["lowStockThreshold"], THRESHOLD);
    assert!(e.value["orderId"].is_null());

    // An order for 3: 2 left, below the threshold.
    let order = order_created("o-1", &[("sku", 3)]);
    send_json(&p, &app.topics.orders, &order).await;
    let e = next_availability(&reader, "low stock after the reservation").await;
    assert_eq!(e.value["eventType"], "InventoryLowStockEvent");
    assert_eq!(e.value["cause"], "ORDER_RESERVED");
    assert_eq!(e.value["causationId"], order["eventId"]);
    assert_eq!(e.value["correlationId"], "corr-o-1");
    assert_eq!(
        (e.value["available"].as_u64(), e.value["reserved"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(
        e.headers.iter().all(|(k, _)| k != "kafka_correlationId"),
        "no reply headers: {:?}",
        e.headers
    );

    // An order for the last 2: out.
    send_json(&p, &app.topics.orders, &order_created("o-2", &[("sku", 2)])).await;
    let e = next_availability(&reader, "out of stock").await;
    assert_eq!(e.value["eventType"], "InventoryOutOfStockEvent");
    assert_eq!(e.value["available"], 0);

    // o-1 cancelled: 3 back, at the threshold: out -> in stock.
    let cancel = json!({"eventId": Uuid::new_v4(), "eventType": "OrderCancelledEvent", "orderId": "o-1"});
    send_json(&p, &app.topics.orders, &cancel).await;
    let e = next_availability(&reader, "back in stock after the cancel").await;
    assert_eq!(e.value["eventType"], "InventoryBackInStockEvent");
    assert_eq!(e.value["cause"], "ORDER_RELEASED");
    assert_eq!(e.value["causationId"], cancel["eventId"]);

    // The product's own threshold 10: in stock -> low, caused by the threshold.
    app.service
        .set_low_stock_threshold_once(&pid("sku"), Some(10), &admin(), None, None)
        .await
        .unwrap();
    let e = next_availability(&reader, "low stock under the product's own threshold").await;
    assert_eq!(e.value["eventType"], "InventoryLowStockEvent");
    assert_eq!(e.value["cause"], "THRESHOLD_CHANGED");
    assert_eq!(e.value["lowStockThreshold"], 10);

    // An audit to 20 (2 reserved): low -> in stock.
    app.service
        .audit_stock(
            &pid("sku"),
            StockCount::new(20).unwrap(),
            AdjustmentReason::CycleCount,
            &admin(),
            None,
        )
        .await
        .unwrap();
    let e = next_availability(&reader, "low stock cleared by the audit").await;
    assert_eq!(e.value["eventType"], "InventoryLowStockClearedEvent");
    assert_eq!(e.value["cause"], "STOCK_AUDITED");
    assert_eq!(e.value["available"], 18);

    // Audit to 2 (all reserved) then add 1 within separate requests: out, then back in and low.
    app.service
        .audit_stock(
            &pid("sku"),
            StockCount::new(2).unwrap(),
            AdjustmentReason::Damaged,
            &admin(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        next_availability(&reader, "out after the audit").await.value["eventType"],
        "InventoryOutOfStockEvent"
    );
    app.service
        .add_stock(&pid("sku"), Quantity::new(1).unwrap(), &admin())
        .await
        .unwrap();
    let back = next_availability(&reader, "back in stock").await;
    let low = next_availability(&reader, "and low").await;
    assert_eq!(
        (back.value["eventType"].as_str(), low.value["eventType"].as_str()),
        (Some("InventoryBackInStockEvent"), Some("InventoryLowStockEvent")),
        "out -> low is two events, in that order"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_leaves_the_level_as_it_was_emits_nothing() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, options()).await;
    let reader = Reader::new(&app.topics.inventory);
    app.service
        .add_stock(&pid("a"), Quantity::new(10).unwrap(), &admin())
        .await
        .unwrap();
    assert_eq!(
        next_availability(&reader, "the first add").await.value["eventType"],
        "InventoryBackInStockEvent"
    );
    // 10 -> 5 -> 9: in stock throughout; then the marker's add creates "z".
    let p = producer();
    send_json(&p, &app.topics.orders, &order_created("o-1", &[("a", 5)])).await;
    let cancel = json!({"eventId": Uuid::new_v4(), "eventType": "OrderCancelledEvent", "orderId": "o-1"});
    send_json(&p, &app.topics.orders, &cancel).await;
    app.service
        .add_stock(&pid("a"), Quantity::new(4).unwrap(), &admin())
        .await
        .unwrap();
    // Wait for the cancel's release, then mark the end.
    loop {
        let r = reader.next(WAIT, "the release").await;
        assert!(
            r.value["productId"].is_null(),
            "no availability event expected, got {}",
            r.value
        );
        if r.value["eventType"] == "InventoryReleasedEvent" {
            break;
        }
    }
    app.service
        .add_stock(&pid("z"), Quantity::new(1).unwrap(), &admin())
        .await
        .unwrap();
    let e = next_availability(&reader, "the marker").await;
    assert_eq!(e.value["productId"], "z", "nothing for a in between: {}", e.value);
    app.stop().await;
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(&mut db.conn().await)
        .await
        .unwrap()
        .n
}

fn level(available: i64, threshold: i64) -> &'static str {
    match available {
        0 => "out",
        a if a < threshold => "low",
        _ => "in stock",
    }
}

fn level_after(event_type: &str) -> &'static str {
    match event_type {
        "InventoryOutOfStockEvent" => "out",
        "InventoryLowStockEvent" => "low",
        "InventoryBackInStockEvent" | "InventoryLowStockClearedEvent" => "in stock",
        other => panic!("not an availability event: {other}"),
    }
}

/// Adds, audits and threshold changes at random, as operators would make them.
async fn admin_work(service: &inventory_app::Service, products: [&str; 3], seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..40 {
        let p = pid(products[rng.usize(0..3)]);
        match i % 4 {
            0 | 1 => {
                service
                    .add_stock(&p, Quantity::new(rng.i64(1..=4)).unwrap(), &admin())
                    .await
                    .unwrap();
            }
            // Refused below what is reserved, or after the retries of a conflict: fine here.
            2 => {
                let count = StockCount::new(rng.i64(0..=10)).unwrap();
                let _ = service
                    .audit_stock(&p, count, AdjustmentReason::CycleCount, &admin(), None)
                    .await;
            }
            _ => {
                let t = [None, Some(2), Some(5)][rng.usize(0..3)];
                let _ = service.set_low_stock_threshold_once(&p, t, &admin(), None, None).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(1..=15))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_racing_orders_and_admin_changes_the_events_replay_to_each_products_level() {
    let db = TestDb::new().await;
    let topics = Topics::new();
    let one = TestApp::spawn_on(&db, topics.clone(), options()).await;
    let two = TestApp::spawn_on(&db, topics.clone(), options()).await;
    let products = ["r-a", "r-b", "r-c"];
    for p in products {
        one.service
            .add_stock(&pid(p), Quantity::new(8).unwrap(), &admin())
            .await
            .unwrap();
    }
    let orders = 150;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut events = Vec::new();
    for i in 0..orders {
        let lines: Vec<(&str, i64)> = (0..rng.usize(1..=2))
            .map(|l| (products[(i + l) % 3], rng.i64(1..=3)))
            .collect();
        events.push(order_created(&format!("ro-{i}"), &lines));
        if rng.bool() {
            events.push(
                json!({"eventId": Uuid::new_v4(), "eventType": "OrderCancelledEvent", "orderId": format!("ro-{i}")}),
            );
        }
    }
    let sent = events.len() as i64;
    let sender = {
        let topic = topics.orders.clone();
        tokio::spawn(async move {
            let p = producer();
            for e in events {
                send_json(&p, &topic, &e).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Admin changes racing the saga, on both instances.
    let (sent_all, (), ()) = tokio::join!(
        sender,
        admin_work(&one.service, products, 11),
        admin_work(&two.service, products, 12)
    );
    sent_all.unwrap();
    // Every consumed event processed, and the outbox empty.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let processed = count(&db, "SELECT count(*) AS n FROM processed_events").await;
        if processed >= sent && db.unpublished().await == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{processed} of {sent} events processed, {} outbox rows unpublished",
            db.unpublished().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = record_count(&stack().kafka_bootstrap, &topics.inventory).await;
    let all = Reader::new(&topics.inventory)
        .take(n as usize, Duration::from_secs(60), "every produced record")
        .await;
    let mut by_product: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for r in &all {
        let v: &Value = &r.value;
        if !v["productId"].is_string() || !ids.insert(v["eventId"].as_str().unwrap().to_owned()) {
            continue;
        }
        assert_eq!(r.key.as_deref(), v["productId"].as_str(), "keyed by product");
        by_product
            .entry(v["productId"].as_str().unwrap().to_owned())
            .or_default()
            .push(v["eventType"].as_str().unwrap().to_owned());
    }
    for p in products {
        let stock = one.service.get_stock(&pid(p)).await.unwrap().unwrap();
        let kinds = by_product.get(p).cloned().unwrap_or_default();
        assert!(
            kinds.len() >= 2,
            "{p}: the race should move the level more than once: {kinds:?}"
        );
        assert_eq!(kinds[0], "InventoryBackInStockEvent", "{p}: from out, at its first add");
        if let Some(w) = kinds.windows(2).find(|w| w[0] == w[1]) {
            panic!("{p}: {} twice in a row: {kinds:?}", w[0]);
        }
        let threshold = i64::from(stock.low_stock_threshold().unwrap_or(THRESHOLD));
        assert_eq!(
            level_after(kinds.last().unwrap()),
            level(i64::from(stock.available()), threshold),
            "{p}: {} available, threshold {threshold}, events {kinds:?}",
            stock.available()
        );
        eprintln!(
            "{p}: {} events, ends {} ({} available)",
            kinds.len(),
            level_after(kinds.last().unwrap()),
            stock.available()
        );
    }
    one.stop().await;
    two.stop().await;
}
