//! A test's own PostgreSQL and Kafka (`deploy/local/instance.sh`), for tests
//! that stop, pause or kill a server: the developer's stack, which `just run`
//! may be serving from, is never touched. Removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace_root;

fn instance(args: &[&str]) -> String {
    let script = workspace_root().join("deploy/local/instance.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "`bash deploy/local/instance.sh {}` failed: {}\n(it installs what is missing as root; see the message above, \
         or run `just test`)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Spreads the ports of one test binary's servers apart: tests run in parallel threads of one
/// process, and a port is only taken once the server binds it, so two starts at once would
/// otherwise pick the same "free" port.
fn spread() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    NEXT.fetch_add(5, std::sync::atomic::Ordering::SeqCst) % 200
}

fn free_port(from: u16) -> u16 {
    instance(&["free-port", &from.to_string()])
        .parse()
        .expect("a port number")
}

fn instance_dir(kind: &str) -> PathBuf {
    let dir = workspace_root().join(".local/instances").join(crate::unique(kind));
    std::fs::create_dir_all(dir.parent().expect("a parent")).expect("create .local/instances");
    dir
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("a UTF-8 path")
}

/// A PostgreSQL cluster of the test's own, migrated.
pub struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    /// Creates, starts and migrates a new cluster on a free port.
    pub async fn start() -> Self {
        let dir = instance_dir("pg");
        // Below 32768: ports in Linux's ephemeral range (32768-60999) may be taken meanwhile by
        // any client connection's local end, and the server's bind then fails (seen in CI).
        let port = free_port(24000 + (std::process::id() % 500) as u16 + spread());
        instance(&["pg-start", path(&dir), &port.to_string()]);
        let pg = Self { dir, port };
        inventory_postgres::run_migrations(&pg.url())
            .await
            .expect("migrations on the test's own PostgreSQL");
        pg
    }

    /// Creates and starts a new cluster that takes TLS connections only, with the server
    /// certificate and key in `certs` (`server.crt`, `server.key`); not migrated.
    pub fn start_tls(certs: &Path) -> Self {
        let dir = instance_dir("pg");
        let port = free_port(25000 + (std::process::id() % 400) as u16 + spread());
        instance(&["pg-start", path(&dir), &port.to_string(), path(certs)]);
        Self { dir, port }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its `inventory_db`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/inventory_db", self.port)
    }

    /// `pg_ctl stop -m <mode>` (`fast` or `immediate`).
    pub fn stop(&self, mode: &str) {
        instance(&["pg-stop", path(&self.dir), mode]);
    }

    /// Starts it again on the same port, with its data.
    pub fn start_again(&self) {
        instance(&["pg-start", path(&self.dir), &self.port.to_string()]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("deploy/local/instance.sh"))
            .args(["pg-remove", path(&self.dir)])
            .status();
    }
}

/// A single-node Kafka broker of the test's own, with a durable log dir.
pub struct OwnKafka {
    dir: PathBuf,
    port: u16,
    controller_port: u16,
}

impl OwnKafka {
    /// Formats and starts a new broker on free ports.
    pub fn start() -> Self {
        Self::start_with("", &[])
    }

    /// Formats and starts a new broker whose configuration ends with `extra` (Java properties:
    /// a later key wins; `@PORT@`, `@CONTROLLER_PORT@`, `@INTERNAL_PORT@` and `@DIR@` are filled in), with SCRAM users
    /// created by Kafka's own tooling (`SCRAM-SHA-512=[name=u,password=p]`).
    pub fn start_with(extra: &str, scram_users: &[&str]) -> Self {
        let dir = instance_dir("kafka");
        let port = free_port(30092 + (std::process::id() % 500) as u16 + spread());
        let controller_port: u16 = instance(&["free-port", &(port + 1).to_string(), &port.to_string()])
            .parse()
            .expect("a port number");
        let internal_port: u16 = instance(&[
            "free-port",
            &(controller_port + 1).to_string(),
            &controller_port.to_string(),
        ])
        .parse()
        .expect("a port number");
        std::fs::create_dir_all(&dir).expect("the broker's folder");
        let extra = extra
            .replace("@PORT@", &port.to_string())
            .replace("@INTERNAL_PORT@", &internal_port.to_string())
            .replace("@CONTROLLER_PORT@", &controller_port.to_string())
            .replace("@DIR@", path(&dir));
        std::fs::write(dir.join("extra.properties"), extra).expect("extra.properties");
        std::fs::write(dir.join("scram-users"), scram_users.join("\n")).expect("scram-users");
        let kafka = Self {
            dir,
            port,
            controller_port,
        };
        kafka.start_again();
        kafka
    }

    /// Its folder (certificates and configuration of a secured broker go there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The last `lines` lines of its log (this start's), for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether its process is alive.
    pub fn running(&self) -> bool {
        std::fs::read_to_string(self.dir.join("broker.pid"))
            .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{}", pid.trim())).exists())
    }

    fn pid(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.pid"))
            .expect("the broker's pid file")
            .trim()
            .to_owned()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Hangs it (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets it run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGKILL, and waits (up to 30 s) until it is gone.
    pub fn kill(&self) {
        let pid = self.pid();
        self.signal("KILL");
        let started = std::time::Instant::now();
        // Gone, or a zombie its parent has not reaped yet: either way it serves no more.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the broker (pid {pid}) did not die within 30 s of SIGKILL"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Starts it (again) on its ports, on the log it had.
    pub fn start_again(&self) {
        instance(&[
            "kafka-start",
            path(&self.dir),
            &self.port.to_string(),
            &self.controller_port.to_string(),
        ]);
    }
}

impl Drop for OwnKafka {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("deploy/local/instance.sh"))
            .args(["kafka-remove", path(&self.dir)])
            .status();
    }
}
