//! On the three-broker cluster (`deploy/local/cluster.sh`, started here when needed): what the
//! service does when fewer replicas than `min.insync.replicas` are in sync. With `acks=all`, the
//! brokers refuse its events (NOT_ENOUGH_REPLICAS, or no acknowledgement before the publish
//! timeout); the saga goes on deciding, the outcomes wait in the outbox, and once the replicas
//! are back every one of them is published and none is lost.
//!
//! To take the inventory topic below its minimum without taking the controller quorum (two of
//! three combined nodes) down with it, the test raises that topic's `min.insync.replicas` to 3
//! and SIGKILLs one broker: for that topic this is exactly "two of three replicas up, three
//! required", the condition two lost brokers create under the default of 2.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use inventory_tests::chaos::{cluster, cluster_op};
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Topics, order_created, producer_on, send_json};
use inventory_tests::process::ServiceProcess;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

#[derive(QueryableByName)]
struct Progress {
    #[diesel(sql_type = BigInt)]
    decided: i64,
    #[diesel(sql_type = BigInt)]
    unpublished: i64,
}

async fn progress(db: &TestDb) -> Option<(i64, i64)> {
    let mut conn = AsyncPgConnection::establish(&db.url).await.ok()?;
    let p: Progress = diesel::sql_query(
        "SELECT (SELECT count(*) FROM reservations) AS decided, \
                (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS unpublished",
    )
    .get_result(&mut conn)
    .await
    .ok()?;
    Some((p.decided, p.unpublished))
}

async fn set_min_insync(bootstrap: &str, topic: &str, value: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
    change = change.set("min.insync.replicas", value);
    let results = admin
        .alter_configs(
            &[change],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("alter configs");
    for r in results {
        r.unwrap_or_else(|e| panic!("min.insync.replicas={value} on {topic}: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_wait_in_the_outbox_while_too_few_replicas_are_in_sync_and_none_is_lost() {
    let cluster = cluster();
    let bootstrap = cluster.kafka_bootstrap.clone();
    let db = TestDb::on(&cluster.database_url).await;
    let topics = Topics::new();
    let secret = inventory_tests::app::TEST_JWT_SECRET;
    let mut service = ServiceProcess::start(
        Path::new(env!("CARGO_BIN_EXE_inventory-app")),
        &[
            ("DATABASE_URL", &db.url),
            ("JWT_SECRET", secret),
            ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
            ("KAFKA_GROUP_ID", &topics.group),
            ("KAFKA_ORDER_TOPIC", &topics.orders),
            ("KAFKA_PAYMENT_TOPIC", &topics.payments),
            ("KAFKA_INVENTORY_TOPIC", &topics.inventory),
            ("KAFKA_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_PUBLISH_TIMEOUT_MS", "5000"),
            ("RUST_LOG", "warn,inventory_app=info"),
        ],
    );
    let http = service.http_addr().await;
    let admin = inventory_tests::http::token(&["ADMIN"]);
    let added = reqwest::Client::new()
        .post(format!("http://{http}/api/inventory/add"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"productId": "isr-p", "quantity": 1000}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200);
    let producer = producer_on(&bootstrap);
    let outcomes = Reader::on(&bootstrap, &topics.inventory);
    send_json(&producer, &topics.orders, &order_created("isr-warm", &[("isr-p", 1)])).await;
    outcomes
        .next_outcome(Duration::from_secs(90), "the warm-up order's outcome")
        .await;

    // Three in-sync replicas required, two up.
    set_min_insync(&bootstrap, &topics.inventory, "3").await;
    cluster_op(&["broker-kill", "3"]).await.expect("kill broker 3");
    let orders: Vec<String> = (0..20).map(|i| format!("isr-{i:02}")).collect();
    for o in &orders {
        // The order topic keeps its minimum of 2: the order service can still publish.
        send_json(&producer, &topics.orders, &order_created(o, &[("isr-p", 1)])).await;
    }
    let started = Instant::now();
    let mut last = None;
    let held = loop {
        last = progress(&db).await.or(last);
        if last == Some((21, 20)) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "within 90 s the 20 orders were not all decided with their outcomes held in the outbox: \
             (reservations, unpublished outbox rows) = {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("all 20 decided, 20 outcomes waiting in the outbox after {held:?}");
    // The relay keeps failing while the replicas are missing: the outcomes stay.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (_, unpublished) = progress(&db).await.expect("the database answers");
    assert_eq!(
        unpublished, 20,
        "an outcome left the outbox while the topic could not take it"
    );

    let restarted = Instant::now();
    cluster_op(&["broker-start", "3"]).await.expect("start broker 3");
    let mut answered = HashSet::new();
    let mut event_ids = HashSet::new();
    while answered.len() < orders.len() {
        let left = Duration::from_secs(120).saturating_sub(restarted.elapsed());
        let r = outcomes
            .next_outcome(left, "the held outcomes after the replicas returned")
            .await;
        let order = r.value["orderId"].as_str().unwrap_or_default().to_owned();
        if orders.contains(&order) {
            assert_eq!(r.value["eventType"], "InventoryReservedEvent", "{}", r.value);
            event_ids.insert(r.value["eventId"].as_str().unwrap_or_default().to_owned());
            answered.insert(order);
        }
    }
    println!(
        "20 outcomes published {:?} after the broker restarted",
        restarted.elapsed()
    );
    assert_eq!(event_ids.len(), 20, "one outcome per order (copies share an event id)");
    let started = Instant::now();
    loop {
        let (decided, unpublished) = progress(&db).await.expect("the database answers");
        if unpublished == 0 {
            assert_eq!(decided, 21);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{unpublished} outbox rows left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    set_min_insync(&bootstrap, &topics.inventory, "2").await;
    service.terminate();
}
