//! Request ids, health, metrics, and the answer when the database is down.

use std::time::Duration;

use inventory_tests::app::TestApp;
use inventory_tests::db::TestDb;
use reqwest::{Method, StatusCode};

use crate::{call, no_kafka};
use inventory_tests::http::client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_health_and_metrics() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let http = client();
    let reply = http
        .get(app.url("/health/live"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["x-request-id"], "abc-123");
    let reply = http.get(app.url("/api/inventory/none")).send().await.unwrap();
    let generated = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let ready = call(&app, Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["checks"]["database"], "UP");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains(r#"route="/api/inventory/{productId}""#), "{metrics}");
    assert!(metrics.contains("http_request_duration_seconds_bucket"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_503_with_retry_after() {
    let db = TestDb::new().await;
    let mut settings = inventory_tests::app::settings(&db, &inventory_tests::kafka::Topics::new(), &no_kafka());
    settings.database.database_url = "postgres://postgres@127.0.0.1:1/none".into();
    settings.database.db_pool_acquire_timeout_ms = 300;
    let app = inventory_app::Application::build(settings).await.unwrap();
    let url = format!("http://{}", app.http_addr());
    let stop = app.shutdown_token();
    let task = tokio::spawn(app.run());
    let reply = client().get(format!("{url}/api/inventory/p")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.headers().contains_key("retry-after"));
    assert_eq!(reply.headers()["content-type"], "application/problem+json");
    let ready = client().get(format!("{url}/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    stop.cancel();
    let _ = task.await;
}
