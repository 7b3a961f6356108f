//! The stock cache between instances, on a real PostgreSQL: a write on one instance (or an
//! operator's SQL) is read on another within the cache's staleness bound, and a notification
//! channel that hangs or drops sends reads to the database instead of serving stale rows.
//!
//! Each check reads `max_staleness` after the write returned: what the cache promises. How much
//! sooner the change was seen is printed, not asserted.
//!
//! Every test names its own products: the notification channel is the database's, shared by the
//! tests' schemas, and a notice about another schema's product of the same id would evict (never
//! stale, but a hit asserted could miss).

use std::process::Command;
use std::time::{Duration, Instant};

use inventory_domain::{Actor, ProductId, Quantity};
use inventory_postgres::StockCache;
use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::db::TestDb;
use inventory_tests::http::client;

fn no_kafka() -> AppOptions {
    AppOptions {
        kafka: false,
        ..AppOptions::default()
    }
}

fn cache(app: &TestApp) -> &StockCache {
    app.service.repository().cache()
}

async fn quantity(app: &TestApp, product: &str) -> i64 {
    let response = client()
        .get(app.url(&format!("/api/inventory/{product}")))
        .send()
        .await
        .expect("GET answers");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    body["quantity"].as_i64().expect("a quantity")
}

async fn add(app: &TestApp, product: &str, n: i64) {
    app.service
        .add_stock(
            &ProductId::parse(product).unwrap(),
            Quantity::new(n).unwrap(),
            &Actor("test".into()),
        )
        .await
        .expect("the add commits");
}

async fn sql(db: &TestDb, statement: &str) {
    use diesel_async::SimpleAsyncConnection;
    db.conn().await.batch_execute(statement).await.expect(statement);
}

/// Waits until the cache's channel is proven (its listener connected and a ping came back).
async fn until_fresh(app: &TestApp, why: &str) {
    let started = Instant::now();
    while !cache(app).is_fresh() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{why}: the stock cache's listener did not prove its channel within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `product` on `app` until it shows `expected` (how long that took), and then once more
/// `bound` after `written`, where it must.
async fn seen(app: &TestApp, product: &str, expected: i64, written: Instant, bound: Duration, what: &str) -> Duration {
    let mut took = None;
    while took.is_none() && written.elapsed() < bound {
        if quantity(app, product).await == expected {
            took = Some(written.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep_until((written + bound).into()).await;
    assert_eq!(
        quantity(app, product).await,
        expected,
        "{what}: a read {bound:?} after the write must see it"
    );
    took.unwrap_or(bound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_read_on_the_other_within_the_bound() {
    let db = TestDb::new().await;
    let a = TestApp::spawn(&db, no_kafka()).await;
    let b = TestApp::spawn(&db, no_kafka()).await;
    until_fresh(&b, "instance b").await;
    let bound = cache(&b).config().max_staleness;
    add(&a, "two-p", 10).await;
    assert_eq!(quantity(&b, "two-p").await, 10);
    let hits = cache(&b).stats().hits;
    assert_eq!(quantity(&b, "two-p").await, 10);
    assert!(
        cache(&b).stats().hits > hits,
        "the second read on b is answered from its cache"
    );

    let mut delays = Vec::new();
    for i in 1..=20 {
        add(&a, "two-p", 1).await;
        let written = Instant::now();
        delays.push(seen(&b, "two-p", 10 + i, written, bound, &format!("add {i} on a, read on b")).await);
    }
    // An operator's SQL, which no instance made, notifies the caches just the same.
    sql(
        &db,
        "UPDATE inventory SET quantity = 3, version = version + 1 WHERE product_id = 'two-p'",
    )
    .await;
    let written = Instant::now();
    delays.push(seen(&b, "two-p", 3, written, bound, "an UPDATE in SQL, read on b").await);
    sql(
        &db,
        "INSERT INTO inventory (id, product_id, quantity) VALUES (gen_random_uuid(), 'two-q', 4)",
    )
    .await;
    assert_eq!(quantity(&b, "two-q").await, 4, "a product created in SQL");

    delays.sort();
    eprintln!(
        "cache: a change was seen on the other instance after {:?} (median of {}), {:?} at most; bound {bound:?}; \
         b's cache: {:?}",
        delays[delays.len() / 2],
        delays.len(),
        delays.last().unwrap(),
        cache(&b).stats()
    );
    let hits = cache(&b).stats().hits;
    assert_eq!(quantity(&b, "two-p").await, 3);
    assert!(
        cache(&b).stats().hits > hits,
        "b still answers from its cache once it holds the new row"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_read_back_on_its_own_instance_at_once() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    until_fresh(&app, "the instance").await;
    add(&app, "own", 1).await;
    for i in 2..=20 {
        assert_eq!(quantity(&app, "own").await, i - 1);
        add(&app, "own", 1).await;
        assert_eq!(
            quantity(&app, "own").await,
            i,
            "read right after this instance's own add"
        );
    }
    app.stop().await;
}

fn signal(pid: i32, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_or_dropped_channel_sends_reads_to_the_database() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    until_fresh(&app, "the instance").await;
    let bound = cache(&app).config().max_staleness;
    add(&app, "hung-p", 5).await;
    assert_eq!(quantity(&app, "hung-p").await, 5);

    // Hung: the listener's backend stopped. Its connection stays open and says nothing: no notice
    // of the update below arrives, and no ping comes back.
    let pid = cache(&app).listener_pid();
    assert!(pid > 0, "the listener has a backend");
    signal(pid, "STOP");
    sql(
        &db,
        "UPDATE inventory SET quantity = 7, version = version + 1 WHERE product_id = 'hung-p'",
    )
    .await;
    let written = Instant::now();
    tokio::time::sleep_until((written + bound).into()).await;
    let read = quantity(&app, "hung-p").await;
    // Every ping that came back was sent before the stop, more than the bound ago.
    let fresh_while_hung = cache(&app).is_fresh();
    signal(pid, "CONT");
    assert_eq!(
        read, 7,
        "with its channel hung, the cache must not answer past its bound"
    );
    assert!(!fresh_while_hung, "a hung channel proves nothing");

    // The listener gives the hung connection up and comes back on a new one.
    until_fresh(&app, "after the hang").await;
    assert_eq!(quantity(&app, "hung-p").await, 7);
    let hits = cache(&app).stats().hits;
    assert_eq!(quantity(&app, "hung-p").await, 7);
    assert!(cache(&app).stats().hits > hits, "cached again");

    // Dropped: the listener's connection is terminated, and a change is made before it reconnects.
    let pid = cache(&app).listener_pid();
    sql(
        &db,
        &format!(
            "SELECT pg_terminate_backend({pid}); \
             UPDATE inventory SET quantity = 9, version = version + 1 WHERE product_id = 'hung-p'"
        ),
    )
    .await;
    let written = Instant::now();
    let took = seen(
        &app,
        "hung-p",
        9,
        written,
        bound,
        "an update while the listener was cut off",
    )
    .await;
    until_fresh(&app, "after the drop").await;
    assert_ne!(cache(&app).listener_pid(), pid, "a new connection");
    assert_eq!(quantity(&app, "hung-p").await, 9);
    eprintln!(
        "cache: after the drop the change was read in {took:?}; {:?}",
        cache(&app).stats()
    );
    app.stop().await;
}
