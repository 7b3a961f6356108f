//! The service binary as a process of its own, its JSON log collected, for tests that need the
//! real executable (its environment, its exit, its log lines). Killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `inventory-app serve`.
pub struct ServiceProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServiceProcess {
    /// Starts `binary serve` with JSON logs on stderr, `HTTP_ADDR=127.0.0.1:0` and `env`.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(["--log-format", "json", "serve"])
            .env("HTTP_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the inventory-app binary starts");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let lines = Arc::clone(&log);
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("log").push(line);
            }
        });
        Self { child, log }
    }

    /// Its log lines so far, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
            .collect()
    }

    /// Its log lines so far, parsed where they are JSON (as text where not).
    pub fn lines_lossy(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::Value::String(l.clone())))
            .collect()
    }

    /// The HTTP address, from the log line that announces it (waits up to 60 s).
    pub async fn http_addr(&mut self) -> String {
        let started = Instant::now();
        loop {
            if let Some(addr) = self
                .lines()
                .iter()
                .find(|l| l["message"] == "HTTP API listening")
                .and_then(|l| l["http_addr"].as_str().map(str::to_owned))
            {
                return addr;
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("the service exited ({exit}) before listening: {:#?}", self.lines());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the service did not say where it listens within 60 s: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "KILL", "TERM") and waits up to `within` for the exit; its status, or
    /// `None` if it did not exit in time (then it is SIGKILLed and reaped).
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// SIGTERM, then waits (up to 60 s) for a clean exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                assert!(
                    exit.success(),
                    "a graceful stop exits 0, got {exit}: {:#?}",
                    self.lines()
                );
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no exit within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
