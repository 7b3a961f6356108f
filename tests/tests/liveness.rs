//! Liveness: a consumer that stops consuming is noticed, recreated and
//! reported by readiness; an idle one stays in its group; database restarts
//! cost no 500, no dead letter and no unpublished event.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use inventory_domain::{Actor, ProductId, Quantity};
use inventory_tests::app::{AppOptions, TestApp, settings};
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Topics, group_members, order_created, producer, record_count, send_json};
use inventory_tests::servers::OwnPostgres;

const WAIT: Duration = Duration::from_secs(30);

async fn stock(app: &TestApp, product: &str, n: i64) {
    app.service
        .add_stock(
            &ProductId::parse(product).unwrap(),
            Quantity::new(n).unwrap(),
            &Actor("test".into()),
        )
        .await
        .unwrap();
}

/// Polls readiness until `until` is done; returns the DOWN answers seen.
async fn watch_readiness<F: std::future::Future>(app: &TestApp, until: F) -> (F::Output, Vec<serde_json::Value>) {
    tokio::pin!(until);
    let mut down = Vec::new();
    loop {
        tokio::select! {
            out = &mut until => return (out, down),
            _ = tokio::time::sleep(Duration::from_millis(150)) => {
                let (status, body) = app.readiness().await;
                if status != 200 {
                    down.push(body);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_is_recreated_and_readiness_says_so_meanwhile() {
    let db = TestDb::new().await;
    let topics = Topics::new();
    let mut s = settings(&db, &topics, &AppOptions::default());
    s.kafka.kafka_watchdog_bound_ms = 4_000;
    let app = TestApp::spawn_with(s, topics).await;
    let health = app.saga.clone().expect("the saga runs");
    stock(&app, "a", 10).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let p = producer();
    send_json(&p, &app.topics.orders, &order_created("o-1", &[("a", 1)])).await;
    assert_eq!(outcomes.next(WAIT, "o-1's outcome").await.value["orderId"], "o-1");

    // The loop stops polling after the batch in hand, as a hung client would.
    health.inject_stall();
    send_json(&p, &app.topics.orders, &order_created("o-2", &[("a", 1)])).await;
    let started = Instant::now();
    let (answer, down) = watch_readiness(&app, outcomes.next(WAIT, "o-2's outcome after the watchdog")).await;
    assert_eq!(answer.value["orderId"], "o-2");
    assert_eq!(answer.value["eventType"], "InventoryReservedEvent");
    assert!(
        started.elapsed() < Duration::from_secs(4 + 15),
        "answered {:?} after the stall: within the bound and a rejoin",
        started.elapsed()
    );
    assert_eq!(health.restarts(), 1, "recreated once");
    assert!(
        down.iter()
            .any(|b| b["checks"]["kafka"] == "DOWN"
                && b["reasons"]["kafka"].as_str().is_some_and(|r| r.contains("behind"))),
        "readiness said kafka DOWN, with why, while the consumer stalled: {down:?}"
    );
    app.wait_ready(WAIT).await;
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("inventory_consumer_restarts_total{cause=\"watchdog\"} 1")),
        "the restart is counted:\n{metrics}"
    );
    assert_eq!(
        health.assigned(),
        6,
        "the new consumer holds all six partitions (three per topic)"
    );
    assert!(
        metrics.contains("inventory_consumer_lag{"),
        "lag per partition:\n{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_stays_in_its_group_past_the_poll_interval() {
    let db = TestDb::new().await;
    let topics = Topics::new();
    let mut s = settings(&db, &topics, &AppOptions::default());
    // The shortest the broker allows: an idle client that does not count as polling would be
    // evicted three times over in the wait below.
    s.kafka.kafka_session_timeout_ms = 6_000;
    s.kafka.kafka_max_poll_interval_ms = 6_000;
    let app = TestApp::spawn_with(s, topics).await;
    stock(&app, "a", 10).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        group_members(&app.topics.group).await,
        1,
        "still a member after 20 s idle"
    );
    let (status, body) = app.readiness().await;
    assert_eq!(status, 200, "{body}");
    let outcomes = Reader::new(&app.topics.inventory);
    let sent = Instant::now();
    send_json(&producer(), &app.topics.orders, &order_created("o-idle", &[("a", 1)])).await;
    assert_eq!(
        outcomes.next(WAIT, "the order after the idle time").await.value["orderId"],
        "o-idle"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "answered without a rejoin: {:?}",
        sent.elapsed()
    );
    assert_eq!(
        app.saga.as_ref().unwrap().restarts(),
        0,
        "no watchdog restart was needed"
    );
    app.stop().await;
}

/// Statuses of GETs made while the database restarts.
#[derive(Default)]
struct Gets {
    by_status: std::sync::Mutex<HashMap<u16, u64>>,
    other_errors: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarts_cost_no_500_no_dead_letter_and_leave_nothing_unpublished() {
    let pg = OwnPostgres::start().await;
    let db = TestDb::on(&pg.url()).await;
    let topics = Topics::new();
    let mut s = settings(&db, &topics, &AppOptions::default());
    s.database.db_pool_acquire_timeout_ms = 1_000;
    let app = TestApp::spawn_with(s, topics).await;
    stock(&app, "a", 1_000).await;
    let outcomes = Reader::new(&app.topics.inventory);
    let orders_topic = app.topics.orders.clone();
    let p = producer();

    // A stream of GETs all along.
    let gets = Arc::new(Gets::default());
    let stop_gets = Arc::new(AtomicBool::new(false));
    let getter = {
        let (gets, stop, url) = (Arc::clone(&gets), Arc::clone(&stop_gets), app.url("/api/inventory/a"));
        tokio::spawn(async move {
            let client = inventory_tests::http::client();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).timeout(Duration::from_secs(10)).send().await {
                    Ok(r) => *gets.by_status.lock().unwrap().entry(r.status().as_u16()).or_default() += 1,
                    Err(_) => {
                        gets.other_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut sent = 0;
    let mut order = |label: &str| {
        sent += 1;
        order_created(&format!("o-{label}-{sent}"), &[("a", 1)])
    };
    for mode in ["fast", "immediate"] {
        for _ in 0..5 {
            send_json(&p, &app.topics.orders, &order(mode)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        pg.stop(mode);
        // Orders sent while the database is down wait in the consumer, which retries.
        for _ in 0..5 {
            send_json(&p, &app.topics.orders, &order(mode)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        pg.start_again();
        // The first request after the restart is served: the pool skips the closed connections.
        let first = inventory_tests::http::client()
            .get(app.url("/api/inventory/a"))
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), 200, "first GET after the {mode} restart");
        for _ in 0..5 {
            send_json(&p, &app.topics.orders, &order(mode)).await;
        }
    }

    let mut answered = HashMap::new();
    while answered.len() < sent {
        let r = outcomes.next(WAIT, "every order's outcome").await;
        answered.insert(
            r.value["orderId"].as_str().unwrap().to_owned(),
            r.value["eventType"].clone(),
        );
    }
    assert!(
        answered.values().all(|t| t == "InventoryReservedEvent"),
        "every order reserved: {answered:?}"
    );
    stop_gets.store(true, Ordering::Relaxed);
    getter.await.unwrap();
    let by_status = gets.by_status.lock().unwrap().clone();
    assert!(
        !by_status.contains_key(&500),
        "no 500 during the restarts: {by_status:?}"
    );
    assert!(
        by_status.keys().all(|s| *s == 200 || *s == 503),
        "only 200, and 503 while down: {by_status:?}"
    );
    assert!(
        by_status.get(&503).is_some_and(|n| *n > 0),
        "503 while down: {by_status:?}"
    );
    assert_eq!(gets.other_errors.load(Ordering::Relaxed), 0, "every GET was answered");
    assert_eq!(
        app.service
            .get_stock(&ProductId::parse("a").unwrap())
            .await
            .unwrap()
            .unwrap()
            .reserved(),
        sent as u32
    );

    // Shutdown right after a restart: the last drain publishes everything.
    pg.stop("fast");
    pg.start_again();
    app.stop().await;
    assert_eq!(db.unpublished().await, 0, "nothing left in the outbox");
    assert_eq!(
        record_count(
            &inventory_tests::stack().kafka_bootstrap,
            &format!("{}.DLT", orders_topic)
        )
        .await,
        0,
        "no valid order is dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_database_restart_the_pool_hands_out_no_closed_connection() {
    use inventory_domain::InventoryRepository;
    let pg = OwnPostgres::start().await;
    let db = TestDb::on(&pg.url()).await;
    let config = inventory_postgres::PoolConfig {
        max_size: 4,
        min_idle: 4,
        acquire_timeout: Duration::from_secs(5),
    };
    let repo = inventory_postgres::PgRepository::new(inventory_postgres::pool(&db.url, &config), &config);
    // Four connections open and idle in the pool (bb8 opens the `min_idle` ones in the background).
    repo.ping().await.unwrap();
    let started = Instant::now();
    while repo.pool().state().idle_connections < 4 {
        assert!(started.elapsed() < WAIT, "the pool did not open its four connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for mode in ["fast", "immediate"] {
        pg.stop(mode);
        pg.start_again();
        // The server closed every one of them; no request may be the one that finds out.
        for i in 0..6 {
            repo.ping().await.unwrap_or_else(|e| {
                panic!(
                    "request {i} after the {mode} restart: {}",
                    inventory_domain::ErrorChain(&e)
                )
            });
        }
    }
}
