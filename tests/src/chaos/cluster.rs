//! The local cluster (`deploy/local/cluster.sh`): three KRaft brokers and PostgreSQL under
//! pg_auto_failover. Started on first use; its fault commands are run from here.

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use crate::{read_env_file, workspace_root};

/// Where the cluster listens, from `.local/cluster.env`.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Multi-host URL of `inventory_db` (`target_session_attrs=read-write`).
    pub database_url: String,
    /// The three brokers.
    pub kafka_bootstrap: String,
    /// Everything `cluster.env` says.
    pub env: HashMap<String, String>,
}

/// The cluster, started (and installed) on first use by `cluster.sh up`.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let root = workspace_root();
        let script = root.join("deploy/local/cluster.sh");
        let status = Command::new("bash").arg(&script).arg("up").status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!(
                "could not start the local cluster with `{} up` ({other:?}).\n\
                 Run `just cluster-up` and look at its output; `just chaos` needs it.",
                script.display()
            ),
        }
        let env = read_env_file(&root.join(".local/cluster.env"));
        let get = |key: &str| {
            env.get(key)
                .cloned()
                .unwrap_or_else(|| panic!("{key} is missing from .local/cluster.env; run `just cluster-up` again"))
        };
        Cluster {
            database_url: get("DATABASE_URL"),
            kafka_bootstrap: get("KAFKA_BOOTSTRAP_SERVERS"),
            env,
        }
    })
}

/// Runs `cluster.sh ARGS` (blocking); its stdout, trimmed, or what it said on failure.
pub fn cluster_sh(args: &[&str]) -> Result<String, String> {
    let script = workspace_root().join("deploy/local/cluster.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("cluster.sh {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "cluster.sh {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// [`cluster_sh`] off the async workers.
pub async fn cluster_op(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster_sh(&args)
    })
    .await
    .map_err(|e| e.to_string())?
}
