//! Harness for the integration and end-to-end tests: finds or starts the
//! local PostgreSQL and Kafka, and gives each test its own schema and topics.
//!
//! Servers come from `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` when set;
//! otherwise the harness runs `deploy/local/stack.sh up` once (which installs
//! and starts them on loopback) and reads `.local/stack.env`. When that fails
//! the test fails with what to run; it never skips.

pub mod app;
pub mod chaos;
pub mod db;
pub mod http;
pub mod kafka;
pub mod process;
pub mod proxy;
pub mod servers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Where the servers for tests listen.
#[derive(Debug, Clone)]
pub struct Stack {
    /// PostgreSQL URL of the database tests create their schemas in.
    pub database_url: String,
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn read_env_file(path: &std::path::Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The servers, started on first use.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let db = std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty());
        let kafka = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|v| !v.is_empty());
        if let (Some(database_url), Some(kafka_bootstrap)) = (db.clone(), kafka.clone()) {
            return Stack {
                database_url,
                kafka_bootstrap,
            };
        }
        let root = workspace_root();
        let script = root.join("deploy/local/stack.sh");
        let status = Command::new("bash").arg(&script).arg("up").status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!(
                "could not start the test servers with `{} up` ({other:?}).\n\
                 Run `just test` (or `bash deploy/local/stack.sh up`), or set DATABASE_URL and \
                 KAFKA_BOOTSTRAP_SERVERS to running servers.",
                script.display()
            ),
        }
        let env = read_env_file(&root.join(".local/stack.env"));
        let pick = |given: Option<String>, key: &str| {
            given.or_else(|| env.get(key).cloned()).unwrap_or_else(|| {
                panic!(
                    "{key} is not set and .local/stack.env has none; run `just test` or `bash deploy/local/stack.sh up`"
                )
            })
        };
        Stack {
            database_url: pick(db, "DATABASE_URL"),
            kafka_bootstrap: pick(kafka, "KAFKA_BOOTSTRAP_SERVERS"),
        }
    })
}

/// A short unique suffix for names of schemas, topics and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Runs `openssl` in `dir` (tests make their keys and certificates with it); panics with its
/// error output when it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
