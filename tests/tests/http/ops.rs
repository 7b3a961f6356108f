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

/// Sends `GET /health/live` on `conn` and reads the answer: its status and its header lines
/// (lower case), or `None` when the service has closed the connection.
async fn exchange(conn: &mut tokio::net::TcpStream) -> Option<(u16, String)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: inventory\r\n\r\n")
        .await
        .ok()?;
    let mut reader = BufReader::new(conn);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a numeric content-length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((status, head))
}

/// Waits up to `within` for the service to close `conn`; true when it did.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0; 1];
    matches!(
        tokio::time::timeout(within, conn.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A load balancer keeps its idle connections to the service open for a while (60 s is common)
/// and sends the next request on one of them. If the service closes idle connections sooner
/// (actix-web's default is 5 s), a request can cross the close, and the balancer answers 502. So
/// an idle connection must outlive 5 s by default; the setting must apply (a short keep-alive
/// closes, zero closes after each answer); and a graceful stop must not wait for idle connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_outlive_a_balancers_timeout_and_close_at_a_graceful_stop() {
    use inventory_tests::app::settings;
    use inventory_tests::kafka::Topics;
    use tokio::net::TcpStream;
    let db = TestDb::new().await;

    let app = TestApp::spawn(&db, no_kafka()).await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(exchange(&mut conn).await.map(|a| a.0), Some(200));
    tokio::time::sleep(Duration::from_secs(7)).await;
    let again = exchange(&mut conn).await;
    assert_eq!(
        again.map(|a| a.0),
        Some(200),
        "the connection is still open after 7 s idle"
    );
    let stopping = tokio::spawn(app.stop());
    assert!(
        closed_within(&mut conn, Duration::from_secs(5)).await,
        "a graceful stop closes an idle connection at once, not at the end of its keep-alive"
    );
    tokio::time::timeout(Duration::from_secs(8), stopping)
        .await
        .expect("the stop does not wait for the idle connection")
        .unwrap();

    // An app with HTTP_KEEP_ALIVE_SECS=secs, a connection to it, and its first answer's head.
    let first_answer = |secs: u64| {
        let topics = Topics::new();
        let mut with = settings(&db, &topics, &no_kafka());
        with.http_keep_alive_secs = secs;
        async move {
            let app = TestApp::spawn_with(with, topics).await;
            let mut conn = TcpStream::connect(app.addr).await.unwrap();
            let (status, head) = exchange(&mut conn).await.expect("an answer");
            assert_eq!(status, 200);
            (app, conn, head)
        }
    };

    let (app, mut conn, head) = first_answer(1).await;
    assert!(!head.contains("connection: close"), "{head}");
    assert!(
        closed_within(&mut conn, Duration::from_secs(4)).await,
        "HTTP_KEEP_ALIVE_SECS=1 closes an idle connection after about a second"
    );
    app.stop().await;

    let (app, mut conn, head) = first_answer(0).await;
    assert!(
        head.contains("connection: close"),
        "keep-alive off announces the close: {head}"
    );
    assert!(
        closed_within(&mut conn, Duration::from_secs(2)).await,
        "closed after the answer"
    );
    app.stop().await;
}
