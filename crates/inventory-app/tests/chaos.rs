//! Chaos against a cluster: three service instances in one consumer group on three KRaft brokers
//! and PostgreSQL with automatic failover (`deploy/local/cluster.sh`, started here when needed),
//! while instances are SIGKILLed and SIGTERMed, the broker leading the most partitions is killed,
//! a broker is paused and the PostgreSQL primary is killed (the standby is promoted, the old
//! primary rejoins). Then the invariant checker reads PostgreSQL and the topics from offset 0
//! (`inventory_tests::chaos::check`) and every invariant must hold.
//!
//! This is the bounded form that `just test` and CI run (600 orders over 75 s, 2 SIGKILLs, 1
//! SIGTERM, 1 broker kill, 1 broker pause, 1 failover); `just chaos` runs the long form
//! (`CHAOS_LONG=1`: 5,000 orders over 7 minutes, 8 SIGKILLs, 2 SIGTERMs, 2 broker kills, 2
//! pauses, 2 failovers). `CHAOS_SEED` replays a plan; see `Plan::with_env` for the other knobs.

use std::path::Path;
use std::time::Duration;

use inventory_tests::chaos::{Plan, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_invariant_holds_through_instance_broker_and_database_failures() {
    let plan = if std::env::var("CHAOS_LONG").is_ok_and(|v| v == "1") {
        Plan::long()
    } else {
        Plan::bounded()
    }
    .with_env();
    // The stream, the drain and the cluster's own start-up, with room: a run that hangs fails.
    let limit = plan.stream + plan.drain + Duration::from_secs(600);
    let report = tokio::time::timeout(limit, run(Path::new(env!("CARGO_BIN_EXE_inventory-app")), plan))
        .await
        .unwrap_or_else(|_| panic!("the chaos run did not finish within {limit:?}; its progress is above"));
    let violations = report.violations();
    assert!(
        report.passed(),
        "{} invariant violations (the report above has the figures):\n{}",
        violations.len(),
        violations.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}
