//! `just chaos`: several service instances in one consumer group, on a three-broker Kafka cluster
//! and PostgreSQL with automatic failover, under a stream of orders, payments, cancels and admin
//! requests, while instances, brokers and the database primary are killed, paused and restarted.
//! When the stream has drained, [`check`] reads PostgreSQL and every topic from offset 0 and
//! checks the service's promises.
//!
//! Seeded: the seed is printed, and `CHAOS_SEED=<n>` replays the same plan (the same orders,
//! fates and fault schedule; the timing of a real cluster still varies). Every fault is logged
//! with the time since the start.

pub mod check;
pub mod cluster;
mod load;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::TestDb;
use crate::kafka::Topics;
use crate::process::ServiceProcess;
pub use check::Report;
pub use cluster::{Cluster, cluster, cluster_op};

/// How big a run is and what is injected.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Replays a run.
    pub seed: u64,
    /// Service instances in the consumer group.
    pub instances: usize,
    /// Partitions of the service's topics.
    pub partitions: i32,
    /// Products, each starting with `initial_stock` units (scarce on purpose).
    pub products: usize,
    /// Units each product starts with.
    pub initial_stock: i64,
    /// `OrderCreatedEvent`s sent.
    pub orders: usize,
    /// How long the orders take to send (the faults fall inside it).
    pub stream: Duration,
    /// SIGKILLs of a service instance (each restarted).
    pub instance_kills: usize,
    /// SIGTERMs of a service instance (each restarted).
    pub instance_terms: usize,
    /// SIGKILLs of the broker leading the most partitions (each restarted).
    pub broker_kills: usize,
    /// SIGSTOPs of a broker.
    pub broker_pauses: usize,
    /// Longest broker pause.
    pub max_pause: Duration,
    /// Kills of the PostgreSQL primary (the standby is promoted; the old one rejoins).
    pub pg_failovers: usize,
    /// Malformed records sent among the orders (they belong in the dead-letter topic).
    pub malformed: usize,
    /// HTTP clients running during the stream.
    pub http_workers: usize,
    /// Longest wait for the stream to drain after the last fault.
    pub drain: Duration,
    /// The services' LOW_STOCK_THRESHOLD_DEFAULT: products below it (and above 0) are low.
    pub low_stock_threshold: u32,
}

impl Plan {
    /// The bounded form CI runs (a few minutes).
    pub fn bounded() -> Self {
        Self {
            seed: fastrand::u64(..),
            instances: 3,
            partitions: 6,
            products: 12,
            initial_stock: 12,
            orders: 600,
            stream: Duration::from_secs(75),
            instance_kills: 2,
            instance_terms: 1,
            broker_kills: 1,
            broker_pauses: 1,
            max_pause: Duration::from_secs(8),
            pg_failovers: 1,
            malformed: 4,
            http_workers: 2,
            drain: Duration::from_secs(240),
            low_stock_threshold: 4,
        }
    }

    /// The long form (`just chaos`).
    pub fn long() -> Self {
        Self {
            products: 30,
            initial_stock: 20,
            orders: 5_000,
            stream: Duration::from_secs(420),
            instance_kills: 8,
            instance_terms: 2,
            broker_kills: 2,
            broker_pauses: 2,
            max_pause: Duration::from_secs(20),
            pg_failovers: 2,
            malformed: 10,
            http_workers: 3,
            drain: Duration::from_secs(600),
            ..Self::bounded()
        }
    }

    /// `self` with what the environment overrides (`CHAOS_SEED`, `CHAOS_ORDERS`, `CHAOS_STREAM_S`,
    /// `CHAOS_INSTANCES`, `CHAOS_PRODUCTS`, `CHAOS_KILLS`, `CHAOS_TERMS`, `CHAOS_BROKER_KILLS`,
    /// `CHAOS_BROKER_PAUSES`, `CHAOS_PG_FAILOVERS`, `CHAOS_DRAIN_S`).
    pub fn with_env(mut self) -> Self {
        fn knob<T: std::str::FromStr>(name: &str, into: &mut T) {
            if let Some(v) = std::env::var(name).ok().and_then(|v| v.parse().ok()) {
                *into = v;
            }
        }
        knob("CHAOS_SEED", &mut self.seed);
        knob("CHAOS_ORDERS", &mut self.orders);
        knob("CHAOS_INSTANCES", &mut self.instances);
        knob("CHAOS_PRODUCTS", &mut self.products);
        knob("CHAOS_KILLS", &mut self.instance_kills);
        knob("CHAOS_TERMS", &mut self.instance_terms);
        knob("CHAOS_BROKER_KILLS", &mut self.broker_kills);
        knob("CHAOS_BROKER_PAUSES", &mut self.broker_pauses);
        knob("CHAOS_PG_FAILOVERS", &mut self.pg_failovers);
        let mut secs = self.stream.as_secs();
        knob("CHAOS_STREAM_S", &mut secs);
        self.stream = Duration::from_secs(secs);
        let mut secs = self.drain.as_secs();
        knob("CHAOS_DRAIN_S", &mut secs);
        self.drain = Duration::from_secs(secs);
        self
    }
}

/// What becomes of an order after it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Paid once reserved (`PaymentSucceededEvent`): the hold is committed.
    Pay,
    /// Cancelled once reserved (`OrderCancelledEvent`): released as ORDER_CANCELLED.
    Cancel,
    /// Payment fails once reserved (`PaymentFailedEvent`): released as PAYMENT_FAILED.
    PaymentFails,
    /// Cancelled before it was created (the cancel overtakes the order): answered ORDER_CANCELLED.
    CancelFirst,
    /// Nothing follows: a reserved order keeps its hold.
    Open,
}

/// An order the load sent.
#[derive(Debug, Clone)]
pub struct SentOrder {
    /// `OrderCreatedEvent` id.
    pub event_id: uuid::Uuid,
    /// Lines (distinct products).
    pub lines: Vec<(String, i64)>,
    /// What follows it.
    pub fate: Fate,
    /// Whether the broker acknowledged the create (at least one copy).
    pub delivered: bool,
    /// Copies of the create sent with the same event id.
    pub copies: u32,
    /// The follow-up's event id, once sent and acknowledged.
    pub follow_up: Option<uuid::Uuid>,
}

/// What the load did and saw, for the checker.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Orders by id.
    pub orders: HashMap<String, SentOrder>,
    /// Marker of each malformed record sent (found in its payload).
    pub malformed: Vec<String>,
    /// Adds answered 200, by Idempotency-Key: (product, units).
    pub adds: HashMap<String, (String, i64)>,
    /// Adds never answered (the last try failed in transit or with 503): they may or may not
    /// have been applied.
    pub adds_unknown: HashMap<String, (String, i64)>,
    /// Audits answered 200, by key: (product, count).
    pub audits: HashMap<String, (String, i64)>,
    /// Audits never answered.
    pub audits_unknown: HashMap<String, (String, i64)>,
    /// Replays of a key answered 200 with a different body than the first answer.
    pub replay_mismatches: Vec<String>,
    /// Replays sent.
    pub replays: u64,
    /// HTTP answers by route and status.
    pub http_status: HashMap<(String, u16), u64>,
    /// Requests that failed in transit (instance down, connection reset, timeout).
    pub http_transport_errors: u64,
    /// Requests answered 408 (head not read in time, not processed; retried): when, where.
    pub http_unread: Vec<String>,
    /// GETs whose body showed impossible stock.
    pub impossible_reads: Vec<String>,
    /// Exit statuses of SIGTERMed instances that were not 0 (or no exit in time).
    pub unclean_stops: Vec<String>,
    /// Lines of the fault log.
    pub faults: Vec<String>,
    /// Panics found in the instances' logs.
    pub panics: Vec<String>,
}

/// The run's clock and log.
#[derive(Clone)]
pub(crate) struct Log {
    started: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            lines: Arc::default(),
        }
    }

    /// Seconds since the start.
    pub(crate) fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Prints and keeps a fault-log line, stamped with the time since the start and the wall clock.
    pub(crate) fn fault(&self, what: impl AsRef<str>) {
        let line = format!(
            "+{:7.1}s {} {}",
            self.at(),
            chrono::Utc::now().format("%H:%M:%S%.3f"),
            what.as_ref()
        );
        println!("[chaos] {line}");
        self.lines.lock().expect("log").push(line);
    }

    pub(crate) fn say(&self, what: impl AsRef<str>) {
        println!("[chaos] +{:7.1}s {}", self.at(), what.as_ref());
    }
}

/// The service instances, by slot; a slot is empty while its instance is down.
pub(crate) struct Instances {
    binary: PathBuf,
    env: Vec<(String, String)>,
    slots: Vec<Mutex<Option<ServiceProcess>>>,
    addrs: Mutex<Vec<Option<String>>>,
    /// Log lines of instances that are gone (for the panic scan).
    gone: Mutex<Vec<Vec<serde_json::Value>>>,
}

impl Instances {
    fn new(binary: &Path, env: Vec<(String, String)>, n: usize) -> Self {
        Self {
            binary: binary.to_owned(),
            env,
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            addrs: Mutex::new(vec![None; n]),
            gone: Mutex::default(),
        }
    }

    /// Starts slot `i` and waits until it listens.
    pub(crate) async fn start(&self, i: usize) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut process = ServiceProcess::start(&self.binary, &env);
        let addr = process.http_addr().await;
        *self.slots[i].lock().expect("slot") = Some(process);
        self.addrs.lock().expect("addrs")[i] = Some(addr);
    }

    /// Stops slot `i` with `signal`; the exit status (None: it did not exit within 60 s).
    pub(crate) async fn stop(&self, i: usize, signal: &'static str) -> Option<Option<std::process::ExitStatus>> {
        self.addrs.lock().expect("addrs")[i] = None;
        let process = self.slots[i].lock().expect("slot").take()?;
        let (process, exit) = tokio::task::spawn_blocking(move || {
            let mut process = process;
            let exit = process.signal_and_wait(signal, Duration::from_secs(60));
            (process, exit)
        })
        .await
        .expect("stop");
        self.gone.lock().expect("gone").push(process.lines_lossy());
        Some(exit)
    }

    /// The addresses of the instances that are up.
    pub(crate) fn live(&self) -> Vec<String> {
        self.addrs.lock().expect("addrs").iter().flatten().cloned().collect()
    }

    /// Slots whose instance is up.
    pub(crate) fn up(&self) -> Vec<usize> {
        self.addrs
            .lock()
            .expect("addrs")
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.as_ref().map(|_| i))
            .collect()
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Every log line of every instance that ran, parsed where it is JSON.
    fn all_lines(&self) -> Vec<serde_json::Value> {
        let mut lines: Vec<serde_json::Value> = self.gone.lock().expect("gone").iter().flatten().cloned().collect();
        for slot in &self.slots {
            if let Some(p) = slot.lock().expect("slot").as_ref() {
                lines.extend(p.lines_lossy());
            }
        }
        lines
    }
}

/// Runs the plan against the cluster with `binary` (`inventory-app`); the checker's report.
pub async fn run(binary: &Path, plan: Plan) -> Report {
    let log = Log::new();
    println!("[chaos] plan: {plan:?}");
    println!("[chaos] replay with CHAOS_SEED={}", plan.seed);
    let cluster = cluster();
    log.say(format!(
        "cluster: PostgreSQL {} | Kafka {}",
        cluster.database_url, cluster.kafka_bootstrap
    ));
    let db = TestDb::on(&cluster.database_url).await;
    let topics = Topics::new();
    let env = service_env(cluster, &db, &topics, &plan);
    let instances = Arc::new(Instances::new(binary, env, plan.instances));
    // The first instance creates the topics (replication factor 3, min.insync.replicas 2), then the others join.
    instances.start(0).await;
    for i in 1..instances.len() {
        instances.start(i).await;
    }
    log.say(format!("{} instances up: {:?}", instances.len(), instances.live()));

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let load = load::Load::new(
        cluster,
        &topics,
        &plan,
        Arc::clone(&instances),
        Arc::clone(&ledger),
        log.clone(),
    );
    load.stock_up(plan.initial_stock).await;

    let faults = load::schedule(&plan, &mut rng.clone());
    let fault_task = tokio::spawn(load::inject(
        faults,
        Arc::clone(&instances),
        topics.clone(),
        cluster.kafka_bootstrap.clone(),
        Arc::clone(&ledger),
        log.clone(),
        plan.max_pause,
    ));
    let stream = load.stream(&plan, rng.u64(..)).await;
    fault_task.await.expect("the fault injector");
    log.say("stream sent and every fault injected; every instance up again");
    for i in 0..instances.len() {
        if !instances.up().contains(&i) {
            instances.start(i).await;
        }
    }
    let drained = load.drain(&db, plan.drain).await;
    stream.stop().await;
    for i in 0..instances.len() {
        match instances.stop(i, "TERM").await {
            Some(Some(exit)) if exit.success() => {}
            Some(exit) => ledger
                .lock()
                .expect("ledger")
                .unclean_stops
                .push(format!("instance {i} at the end: {exit:?}")),
            None => {}
        }
    }
    {
        let mut ledger = ledger.lock().expect("ledger");
        ledger.faults = log.lines.lock().expect("log").clone();
        ledger.panics = instances
            .all_lines()
            .iter()
            .filter(|l| l.to_string().contains("panicked"))
            .map(|l| l.to_string())
            .collect();
    }
    let ledger = Arc::try_unwrap(ledger)
        .map(|m| m.into_inner().expect("ledger"))
        .unwrap_or_else(|arc| std::mem::take(&mut *arc.lock().expect("ledger")));
    let report = check::check(cluster, &db, &topics, &plan, &ledger, drained).await;
    report.print();
    let out = crate::workspace_root().join(".local/chaos");
    if std::fs::create_dir_all(&out).is_ok() {
        let file = out.join(format!("report-{}.txt", plan.seed));
        if std::fs::write(&file, report.render(&plan)).is_ok() {
            println!("[chaos] report written to {}", file.display());
        }
    }
    report
}

fn service_env(cluster: &Cluster, db: &TestDb, topics: &Topics, plan: &Plan) -> Vec<(String, String)> {
    let get = |k: &str, default: &str| cluster.env.get(k).cloned().unwrap_or_else(|| default.to_owned());
    [
        ("DATABASE_URL", db.url.clone()),
        ("KAFKA_BOOTSTRAP_SERVERS", cluster.kafka_bootstrap.clone()),
        ("KAFKA_GROUP_ID", topics.group.clone()),
        ("KAFKA_ORDER_TOPIC", topics.orders.clone()),
        ("KAFKA_PAYMENT_TOPIC", topics.payments.clone()),
        ("KAFKA_INVENTORY_TOPIC", topics.inventory.clone()),
        ("KAFKA_TOPIC_PARTITIONS", plan.partitions.to_string()),
        ("AVAILABILITY_EVENTS_ENABLED", "true".to_owned()),
        ("LOW_STOCK_THRESHOLD_DEFAULT", plan.low_stock_threshold.to_string()),
        (
            "KAFKA_TOPIC_REPLICATION_FACTOR",
            get("KAFKA_TOPIC_REPLICATION_FACTOR", "3"),
        ),
        (
            "KAFKA_TOPIC_MIN_INSYNC_REPLICAS",
            get("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", "2"),
        ),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("KAFKA_MAX_POLL_INTERVAL_MS", "60000".to_owned()),
        ("KAFKA_WATCHDOG_BOUND_MS", "15000".to_owned()),
        ("JWT_SECRET", crate::app::TEST_JWT_SECRET.to_owned()),
        ("RUST_LOG", "warn,inventory_app=info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Orders answered, releases seen: what the live reader of `inventory-events` has seen so far.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) answered: HashSet<String>,
    pub(crate) reserved: HashSet<String>,
    pub(crate) released: HashSet<String>,
}
