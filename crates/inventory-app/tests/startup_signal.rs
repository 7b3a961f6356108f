//! SIGTERM or SIGINT during start-up stops the process cleanly (exit 0),
//! here while it waits to create its topics on a broker that never answers.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A "broker" that takes connections and never says a word, as a hung one does.
fn silent_broker() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().flatten() {
            open.push(stream);
        }
    });
    addr
}

fn stopped_during_start_up(signal: &str) {
    let broker = silent_broker();
    let mut child = Command::new(env!("CARGO_BIN_EXE_inventory-app"))
        .arg("serve")
        // Never reached: the pool connects lazily and start-up hangs on the topics first.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/inventory_db")
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker)
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the inventory-app binary starts");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "still starting: the topics cannot be created"
    );
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("no exit within 10 s of SIG{signal} during start-up");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    if let Some(mut out) = child.stderr.take() {
        let _ = out.read_to_string(&mut log);
    }
    assert!(
        exit.success(),
        "SIG{signal} during start-up exits 0, not {exit}; log:\n{log}"
    );
    assert!(
        log.contains("stopped during start-up"),
        "it says why it stopped:\n{log}"
    );
    assert!(!log.contains("HTTP API listening"), "it was still starting:\n{log}");
}

#[test]
fn sigterm_during_start_up_exits_cleanly() {
    stopped_during_start_up("TERM");
}

#[test]
fn sigint_during_start_up_exits_cleanly() {
    stopped_during_start_up("INT");
}
