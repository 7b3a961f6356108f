//! Adds are commutative: a burst of them on one product, against one instance or several, is never
//! turned away. Each add is one increment in the store: adds queue on the row's lock and never
//! meet an optimistic conflict.
use futures_util::StreamExt;
use inventory_tests::app::TestApp;
use inventory_tests::db::TestDb;
use inventory_tests::http::token;
use reqwest::StatusCode;
use serde_json::json;

use crate::no_kafka;

/// `n` adds of 1 unit, 100 in flight at a time on one client's connections (as a receiving system's
/// connection pool would send them).
async fn adds(app: &TestApp, product: &str, n: usize) -> Vec<StatusCode> {
    let admin = token(&["ROLE_ADMIN"]);
    let client = inventory_tests::http::client();
    let url = app.url("/api/inventory/add");
    let body = json!({"productId": product, "quantity": 1});
    futures_util::stream::iter(0..n)
        .map(|_| {
            let request = client.post(&url).bearer_auth(&admin).json(&body);
            async move {
                match request.send().await {
                    Ok(response) => response.status(),
                    Err(e) => panic!("an add failed to get an answer: {e:?}"),
                }
            }
        })
        .buffer_unordered(100)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_parallel_adds_on_one_product_all_succeed_without_a_conflict() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    // The product exists first, so every add below is an update of the same row.
    assert_eq!(adds(&app, "burst", 1).await, vec![StatusCode::OK]);
    let conflicts_before = app.service.metrics().conflicts();
    let statuses = adds(&app, "burst", 500).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let stock = crate::call(&app, reqwest::Method::GET, "/api/inventory/burst", None, None).await;
    assert_eq!(stock.body["quantity"], 501, "{:?}", stock.body);
    assert_eq!(
        app.service.metrics().conflicts() - conflicts_before,
        0,
        "one instance's writes to a product take turns: no optimistic conflict"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_adds_on_each_of_two_instances_all_succeed_without_a_conflict() {
    let db = TestDb::new().await;
    let one = TestApp::spawn(&db, no_kafka()).await;
    let two = TestApp::spawn(&db, no_kafka()).await;
    assert_eq!(adds(&one, "shared", 1).await, vec![StatusCode::OK]);
    let before = (one.service.metrics().conflicts(), two.service.metrics().conflicts());
    let (a, b) = tokio::join!(adds(&one, "shared", 200), adds(&two, "shared", 200));
    assert!(a.iter().chain(&b).all(|s| *s == StatusCode::OK), "{a:?} {b:?}");
    assert_eq!((a.len(), b.len()), (200, 200));
    for app in [&one, &two] {
        let stock = crate::call(app, reqwest::Method::GET, "/api/inventory/shared", None, None).await;
        assert_eq!(stock.body["quantity"], 401, "{:?}", stock.body);
        assert_eq!(stock.body["version"], 400, "one version per add: {:?}", stock.body);
    }
    let retries = (
        one.service.metrics().conflicts() - before.0,
        two.service.metrics().conflicts() - before.1,
    );
    eprintln!("contention: 2 x 200 adds, optimistic conflicts per instance: {retries:?}");
    assert_eq!(retries, (0, 0), "adds from two instances never conflict");
    one.stop().await;
    two.stop().await;
}
