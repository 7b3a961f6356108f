//! A log reader that stops draining stderr (a stuck sidecar, a paused `kubectl logs`, a full pipe)
//! must not stall the service: log lines are written by a thread of their own, dropped past a
//! bound, and counted in `inventory_log_lines_dropped_total`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_stderr_nobody_reads_never_stalls_the_service() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("address").port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_inventory-app"))
        .args(["--log-format", "json", "serve"])
        // Never reached: /health/live and /metrics need neither store nor broker. The pool's and the
        // cache listener's failed connections only add log lines.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/inventory_db")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("OPS_ADDR")
        // Every request writes dozens of lines at trace level: the 64 KiB pipe fills within a few.
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        // Piped, and never read.
        .stderr(Stdio::piped())
        .spawn()
        .expect("the inventory-app binary starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let live = format!("http://127.0.0.1:{port}/health/live");
    let started = Instant::now();
    while http.get(&live).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the service never listened on {port} (with its stderr undrained)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Requests until lines have been dropped (so the pipe and the queue behind it were full), each
    // answered in time; then as many again, all past that point.
    let dropped = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("inventory_log_lines_dropped_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut sent = 0;
    let mut full_at = None;
    while full_at.is_none_or(|at| sent < 2 * at) {
        assert!(
            sent < 40_000,
            "no log line dropped after {sent} requests at trace level"
        );
        for _ in 0..500 {
            let answer = http.get(&live).send().await;
            assert!(
                answer.as_ref().is_ok_and(|r| r.status() == 200),
                "request {sent} was not answered within 3 s while nobody read the log: {answer:?}"
            );
            sent += 1;
        }
        if full_at.is_none() {
            // The count reaches the metric once a second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let metrics = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .expect("metrics answered")
                .text()
                .await
                .expect("metrics text");
            if dropped(&metrics) > 0.0 {
                println!("lines dropped after {sent} requests: {}", dropped(&metrics));
                full_at = Some(sent);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
