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
async fn an_ops_listener_takes_metrics_off_the_api_port() {
    let db = TestDb::new().await;
    let mut settings = inventory_tests::app::settings(&db, &inventory_tests::kafka::Topics::new(), &no_kafka());
    settings.ops_addr = Some("127.0.0.1:0".parse().unwrap());
    let app = TestApp::spawn_with(settings, inventory_tests::kafka::Topics::new()).await;
    let ops = app.ops_addr.expect("the ops listener is bound");
    assert_ne!(ops, app.addr);
    let http = client();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    let on_api = |path: &str| app.url(path);
    let on_ops = |path: &str| format!("http://{ops}{path}");

    let hidden = http.get(on_api("/metrics")).send().await.unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND, "no metrics on the API port");
    assert_eq!(hidden.headers()["content-type"], "application/problem+json");
    assert_eq!(status(on_api("/health/ready")).await, StatusCode::OK);
    assert_eq!(status(on_api("/api/inventory/none")).await, StatusCode::NOT_FOUND);
    assert_eq!(status(on_api("/api-docs/openapi.json")).await, StatusCode::OK);

    for path in ["/health/live", "/health/ready", "/metrics"] {
        assert_eq!(status(on_ops(path)).await, StatusCode::OK, "{path} on the ops port");
    }
    assert!(app.metrics().await.contains("http_requests_total"));
    for path in ["/api/inventory/p", "/api-docs/openapi.json"] {
        assert_eq!(
            status(on_ops(path)).await,
            StatusCode::NOT_FOUND,
            "{path} is not on the ops port"
        );
    }
    let add = http
        .post(on_ops("/api/inventory/add"))
        .json(&serde_json::json!({"productId": "p", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::NOT_FOUND, "no writes through the ops port");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_503_with_retry_after() {
    let db = TestDb::new().await;
    let mut settings = inventory_tests::app::settings(&db, &inventory_tests::kafka::Topics::new(), &no_kafka());
    settings.database.database_url = Some("postgres://postgres@127.0.0.1:1/none".to_owned().into());
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
