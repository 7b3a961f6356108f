//! `just bench`: the service against baselines on the same database, in the
//! same run, repeated; prints medians and ratios. `BENCH_PROFILE` names the
//! database's settings in the report (`just bench` runs `durable`, a cluster
//! with fsync, synchronous_commit and full_page_writes on, and `fast`, the
//! development stack with them off).
//!
//! - Reservation path: pgbench running the saga's reservation transaction
//!   (deploy/bench/reserve.sql; reserve3.sql for 3-line orders) vs orders
//!   through Kafka, the service and back out through the outbox, spread over
//!   the products; timed from the first order published to the last outcome
//!   consumed, after a warm-up order has shown the consumer owns its partitions.
//! - Hot product: pgbench's optimistic read-then-update of one row
//!   (deploy/bench/hot.sql, counted by committed version bumps) vs orders all
//!   for that one product through the service.
//! - Outcome latency: one order at a time; and orders paced at half the
//!   measured throughput, each timed from its send to its outcome.
//! - Reads: wrk on GET /api/inventory/{id} and on POST /check with 100 ids
//!   (requests/s and p99) vs pgbench on the same SELECT and `= ANY` (prepared),
//!   at the same concurrency; and wrk on /health/live of the same binary, the
//!   HTTP ceiling no read can pass.
//! - Growth: the spread reservation run again over BENCH_GROWTH_PRODUCTS.
//! - Peak RSS (VmHWM) of the service after its Kafka runs.
//!
//! The baselines run with the `inventory` trigger that feeds the service's
//! read cache turned off: a service without that cache would not have it.
//!
//! Where `pg_stat_statements` is loaded (clusters created by `deploy/local/lib.sh`), the report
//! also splits PostgreSQL's execution time per 3-line order by statement, pgbench's against the
//! service's.
//!
//! With BENCH_PERF set, `perf record` samples the service during each phase; flat profiles go to
//! `.local/bench/perf/<profile>-<phase>.txt`, whole stacks to `<phase>.folded` and flame graphs to
//! `<phase>.svg` (the figures of such a run are not comparable).
//!
//! Every run starts from a fresh database: the products, and BENCH_HISTORY (100,000) settled
//! orders with their lines and events, analysed.
//!
//! Settings (environment): BENCH_PROFILE (fast), BENCH_REPS (3), BENCH_ORDERS (20000),
//! BENCH_PRODUCTS (10000), BENCH_GROWTH_PRODUCTS (1000000; 0 skips),
//! BENCH_PACED_FRACTION (0.5: the paced run's rate as a share of the 1-line rate), BENCH_PACED_WARMUP
//! (1.0: seconds paced at that rate before the measured 5 s, not counted), BENCH_CLIENTS (8),
//! BENCH_READ_CONNS (64), BENCH_SECONDS (10), BENCH_APP (target/release/inventory-app),
//! BENCH_KAFKA_GC_LOG (the broker's GC log, `-Xlog:gc:file=<path>:time`: the report gives its pauses
//! inside each paced window), DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use inventory_tests::kafka::order_created;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Config {
    profile: String,
    reps: usize,
    growth_products: usize,
    paced_fraction: f64,
    /// Seconds of paced orders sent before the measured window, not counted.
    paced_warmup: f64,
    history: usize,
    orders: usize,
    products: usize,
    clients: usize,
    read_conns: usize,
    seconds: u64,
    app: PathBuf,
    admin_url: String,
    bench_url: String,
    kafka: String,
    root: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn database_url_for(admin: &str, db: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

async fn reset_database(config: &Config, products: usize) -> Result<(), Error> {
    let mut admin = AsyncPgConnection::establish(&config.admin_url).await?;
    admin
        .batch_execute("DROP DATABASE IF EXISTS inventory_bench WITH (FORCE)")
        .await?;
    admin.batch_execute("CREATE DATABASE inventory_bench").await?;
    inventory_postgres::run_migrations(&config.bench_url).await?;
    let mut conn = AsyncPgConnection::establish(&config.bench_url).await?;
    // No service listens yet: the seed need not notify a million times.
    conn.batch_execute("ALTER TABLE inventory DISABLE TRIGGER USER").await?;
    conn.batch_execute(&format!(
        "INSERT INTO inventory (id, product_id, quantity) \
         SELECT gen_random_uuid(), 'p' || g, 1000000 FROM generate_series(0, {}) g; \
         INSERT INTO inventory (id, product_id, quantity) VALUES (gen_random_uuid(), 'hot', 1000000000);",
        products - 1
    ))
    .await?;
    // History, as a running shop has (settled orders are kept for days): planned against empty
    // tables, PostgreSQL's foreign-key checks would scan them, and each run would slow down as
    // they fill. Both sides start from this same state.
    conn.batch_execute(&format!(
        "INSERT INTO reservations (order_id, status, created_at, updated_at, version) \
         SELECT 'history-' || g, 'COMMITTED', now(), now(), 1 FROM generate_series(1, {history}) g; \
         INSERT INTO reservation_lines (order_id, product_id, quantity) \
         SELECT 'history-' || g, 'p' || (g % {products}), 1 FROM generate_series(1, {history}) g; \
         INSERT INTO processed_events (event_id, order_id, outcome) \
         SELECT gen_random_uuid(), 'history-' || g, 'reserved' FROM generate_series(1, {history}) g;",
        history = config.history,
    ))
    .await?;
    conn.batch_execute("ALTER TABLE inventory ENABLE TRIGGER USER").await?;
    conn.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

async fn vacuum(config: &Config) -> Result<(), Error> {
    let mut conn = AsyncPgConnection::establish(&config.bench_url).await?;
    conn.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// The service's tables that autovacuum finished vacuuming or analysing since `since` (ms of
/// wall-clock time): on these 2 cores its worker takes one of them for up to a second.
async fn autovacuumed_since(config: &Config, since: f64) -> Result<Vec<String>, Error> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let mut conn = AsyncPgConnection::establish(&config.bench_url).await?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT relname || CASE WHEN last_autovacuum >= to_timestamp($1 / 1000) THEN ' (vacuum)' \
                                ELSE ' (analyze)' END AS name \
         FROM pg_stat_user_tables \
         WHERE greatest(last_autovacuum, last_autoanalyze) >= to_timestamp($1 / 1000) ORDER BY relname",
    )
    .bind::<diesel::sql_types::Double, _>(since)
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The broker's GC pauses (ms) logged between `from` and `to` (ms of wall-clock time), from a
/// JDK unified log with the `time` decorator
/// (`[2026-11-28T08:29:04.884+0000] GC(16) Pause Young (Normal) (G1 Evacuation Pause) 231M->161M(277M) 11.191ms`).
/// None when BENCH_KAFKA_GC_LOG is not set or cannot be read.
fn broker_gc_pauses(from: f64, to: f64) -> Option<Vec<f64>> {
    let path = std::env::var("BENCH_KAFKA_GC_LOG").ok()?;
    let log = std::fs::read_to_string(&path)
        .map_err(|e| eprintln!("[bench] cannot read the broker's GC log {path}: {e}"))
        .ok()?;
    Some(gc_pauses_in(&log, from, to))
}

fn gc_pauses_in(log: &str, from: f64, to: f64) -> Vec<f64> {
    log.lines()
        .filter(|line| line.contains(" Pause "))
        .filter_map(|line| {
            let stamp = line.strip_prefix('[')?.split(']').next()?;
            let at = chrono::DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.3f%z").ok()?;
            let ms = line.rsplit(' ').next()?.strip_suffix("ms")?.parse::<f64>().ok()?;
            let at = at.timestamp_millis() as f64;
            (from..=to).contains(&at).then_some(ms)
        })
        .collect()
}

async fn hot_version(config: &Config) -> Result<i64, Error> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        version: i64,
    }
    let mut conn = AsyncPgConnection::establish(&config.bench_url).await?;
    let row: Row = diesel::sql_query("SELECT version FROM inventory WHERE product_id = 'hot'")
        .get_result(&mut conn)
        .await?;
    Ok(row.version)
}

/// One statement's PostgreSQL execution time in the benchmark's database, from `pg_stat_statements`.
#[derive(diesel::QueryableByName)]
struct Statement {
    #[diesel(sql_type = diesel::sql_types::Text)]
    query: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    calls: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    ms: f64,
}

/// Clears `pg_stat_statements` before a timed phase; false when the cluster does not load it (a
/// development cluster created before `deploy/local/lib.sh` preloaded it), and the breakdown is
/// then left out of the report.
async fn statements_reset(config: &Config) -> Result<bool, Error> {
    #[derive(diesel::QueryableByName)]
    struct Loaded {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        loaded: bool,
    }
    let mut conn = AsyncPgConnection::establish(&config.admin_url).await?;
    let row: Loaded =
        diesel::sql_query("SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%' AS loaded")
            .get_result(&mut conn)
            .await?;
    if row.loaded {
        conn.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
            .await?;
    }
    Ok(row.loaded)
}

/// What each statement cost in the benchmark's database since [`statements_reset`], dearest first.
async fn statements(config: &Config) -> Result<Vec<Statement>, Error> {
    let mut conn = AsyncPgConnection::establish(&config.admin_url).await?;
    Ok(diesel::sql_query(
        "SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls, rows, total_exec_time AS ms \
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'inventory_bench') \
         AND calls > 0 ORDER BY total_exec_time DESC",
    )
    .load(&mut conn)
    .await?)
}

/// PostgreSQL's execution time per order, µs, in total and by statement (dearest first): orders are
/// the rows the `reservations` insert wrote (one per order on both sides).
struct PerOrder {
    total_us: f64,
    /// Statement (its first 90 characters), µs per order, calls per order.
    statements: Vec<(String, f64, f64)>,
}

fn per_order(statements: &[Statement]) -> Option<PerOrder> {
    let orders = statements
        .iter()
        .find(|s| s.query.starts_with("INSERT INTO reservations "))
        .map(|s| s.rows as f64)
        .filter(|n| *n > 0.0)?;
    Some(PerOrder {
        total_us: statements.iter().map(|s| s.ms).sum::<f64>() * 1000.0 / orders,
        statements: statements
            .iter()
            .map(|s| {
                let short: String = s.query.chars().take(90).collect();
                (short, s.ms * 1000.0 / orders, s.calls as f64 / orders)
            })
            .collect(),
    })
}

/// Turns the trigger that feeds the service's read cache off (for the baselines) or on.
async fn cache_trigger(config: &Config, on: bool) -> Result<(), Error> {
    let mut conn = AsyncPgConnection::establish(&config.bench_url).await?;
    let verb = if on { "ENABLE" } else { "DISABLE" };
    conn.batch_execute(&format!("ALTER TABLE inventory {verb} TRIGGER USER"))
        .await?;
    Ok(())
}

fn pgbench(config: &Config, script: &str, clients: usize) -> Result<f64, Error> {
    let script = config.root.join("deploy/bench").join(script);
    let output = Command::new("pgbench")
        .args([
            "-n",
            // The extended protocol with prepared statements, as a competent hand-written
            // service would use: the fair baseline (the simple protocol parses every statement).
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &config.seconds.to_string(),
        ])
        .args(["-D", &format!("products={}", config.products)])
        .arg("-f")
        .arg(&script)
        .arg(&config.bench_url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench output: {text}").into())
}

struct Service {
    child: Child,
    addr: String,
}

impl Service {
    /// Peak resident memory so far (VmHWM), in MB.
    fn peak_rss_mb(&self) -> Result<f64, Error> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or("no VmHWM in /proc/<pid>/status")?;
        Ok(kb / 1024.0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service(config: &Config, run: &str, port: u16) -> Result<Service, Error> {
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(&config.app)
        .arg("serve")
        .env("DATABASE_URL", &config.bench_url)
        .env("KAFKA_BOOTSTRAP_SERVERS", &config.kafka)
        .env("KAFKA_GROUP_ID", format!("{run}.inventory"))
        .env("KAFKA_ORDER_TOPIC", format!("{run}.order-events"))
        .env("KAFKA_PAYMENT_TOPIC", format!("{run}.payment-events"))
        .env("KAFKA_INVENTORY_TOPIC", format!("{run}.inventory-events"))
        .env("HTTP_ADDR", &addr)
        .env("DB_POOL_MAX_SIZE", "16")
        .env("JWT_SECRET", inventory_tests::app::TEST_JWT_SECRET)
        .env(
            "STOCK_CACHE_ENABLED",
            std::env::var("BENCH_CACHE").map_or("true", |v| if v == "off" { "false" } else { "true" }),
        )
        .env("RUST_LOG", "warn")
        // BENCH_SVC_<NAME>=v sets the service's <NAME> (e.g. BENCH_SVC_KAFKA_BATCH_MAX=50), for A/B runs.
        .envs(std::env::vars().filter_map(|(k, v)| k.strip_prefix("BENCH_SVC_").map(|k| (k.to_owned(), v))))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it with cargo build --release)",
                config.app.display()
            )
        })?;
    Ok(Service { child, addr })
}

fn producer(config: &Config) -> Result<FutureProducer, Error> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &config.kafka)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

fn outcome_reader(config: &Config, run: &str) -> Result<StreamConsumer, Error> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka)
        .set("group.id", format!("{run}.bench-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "true")
        .create()?;
    consumer.subscribe(&[&format!("{run}.inventory-events")])?;
    Ok(consumer)
}

/// Publishes `orders` orders with ids `{prefix}-o{i}` to `run`'s order topic.
async fn publish_orders(
    producer: &FutureProducer,
    run: &str,
    prefix: &str,
    orders: usize,
    lines: impl Fn(usize) -> Vec<String>,
) -> Result<(), Error> {
    let topic = format!("{run}.order-events");
    let mut pending = Vec::with_capacity(orders);
    for i in 0..orders {
        let order_id = format!("{prefix}-o{i}");
        let products = lines(i);
        let items: Vec<(&str, i64)> = products.iter().map(|p| (p.as_str(), 1)).collect();
        let payload = order_created(&order_id, &items).to_string();
        let record = FutureRecord::to(&topic).key(&order_id).payload(&payload);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for delivery in pending {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Publishes one single-unit order and waits for the broker's acknowledgement.
async fn send_order(producer: &FutureProducer, topic: &str, order_id: &str, product: &str) -> Result<(), Error> {
    let payload = order_created(order_id, &[(product, 1)]).to_string();
    producer
        .send(
            FutureRecord::to(topic).key(order_id).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// Waits for `n` outcomes of this run's orders (keys start with `run`).
async fn drain(consumer: &StreamConsumer, run: &str, n: usize) -> Result<(), Error> {
    let mut seen = 0;
    while seen < n {
        let message = tokio::time::timeout(Duration::from_secs(120), consumer.recv())
            .await
            .map_err(|_| format!("only {seen} of {n} outcomes within 120 s"))??;
        if message.key().is_some_and(|k| k.starts_with(run.as_bytes())) {
            seen += 1;
        }
    }
    Ok(())
}

/// One order through, so the consumer has joined its group and partitions
/// before anything is timed.
async fn warm_up(producer: &FutureProducer, consumer: &StreamConsumer, run: &str, product: &str) -> Result<(), Error> {
    let topic = format!("{run}.order-events");
    let order_id = format!("{run}-warm-up");
    send_order(producer, &topic, &order_id, product).await?;
    drain(consumer, run, 1).await
}

/// Orders per second from the first publish to the last outcome.
async fn timed_run(
    config: &Config,
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    run: &str,
    prefix: &str,
    orders: usize,
    lines: impl Fn(usize) -> Vec<String>,
) -> Result<f64, Error> {
    let (started, began) = (Instant::now(), wall_ms());
    publish_orders(producer, run, prefix, orders, lines).await?;
    let published = started.elapsed().as_secs_f64();
    drain(consumer, prefix, orders).await?;
    let elapsed = started.elapsed().as_secs_f64();
    timeline(config, prefix, began, published, elapsed).await;
    Ok(orders as f64 / elapsed)
}

/// Where a timed run's seconds went, printed: the orders' publication acknowledged, the saga's
/// commits (its outbox rows' `created_at`) and the relay's claims (`published_at`), each with its
/// longest gap, and the last outcome read. A run far below its usual rate shows here whether the
/// bench's producer, the saga, the relay or the outcomes' way back stalled.
async fn timeline(config: &Config, prefix: &str, began: f64, published: f64, elapsed: f64) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Double)]
        created: f64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        published: f64,
    }
    let rows: Result<Vec<Row>, Error> = async {
        let mut conn = AsyncPgConnection::establish(&config.bench_url).await?;
        Ok(diesel::sql_query(
            "SELECT extract(epoch FROM created_at)::float8 * 1000 AS created, \
                    extract(epoch FROM published_at)::float8 * 1000 AS published \
             FROM outbox WHERE message_key LIKE $1 || '-o%' AND published_at IS NOT NULL",
        )
        .bind::<diesel::sql_types::Text, _>(prefix)
        .load(&mut conn)
        .await?)
    }
    .await;
    let rows = match rows {
        Ok(rows) if !rows.is_empty() => rows,
        Ok(_) => return eprintln!("[bench] {prefix}: no outbox rows to place in time"),
        Err(e) => return eprintln!("[bench] {prefix}: cannot read the outbox's times: {e}"),
    };
    let span = |mut at: Vec<f64>| {
        at.sort_by(f64::total_cmp);
        let gap = at.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        let (first, last) = (at[0] - began, at[at.len() - 1] - began);
        format!(
            "{:.2}-{:.2} s (longest gap {:.0} ms)",
            first / 1000.0,
            last / 1000.0,
            gap
        )
    };
    eprintln!(
        "[bench] {prefix}: published by {published:.2} s; saga commits {}; relay claims {}; last outcome read at {elapsed:.2} s",
        span(rows.iter().map(|r| r.created).collect()),
        span(rows.iter().map(|r| r.published).collect()),
    );
}

/// One paced order's moments, in milliseconds of wall-clock time.
#[derive(Clone, Copy)]
struct Paced {
    /// Handed to the bench's producer.
    sent: f64,
    /// Its outcome record's timestamp: when the service's relay queued it to its producer.
    queued: f64,
    /// Its outcome read by the bench.
    received: f64,
}

fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Where paced outcomes' time went, from each one's outbox row: (name, p50, p99) per stage, over
/// the orders from index `counted` on (those before are the warm-up). Each order's stages also go
/// to `<name>.csv` in `.local/bench` (ms since the first send, warm-up included, then the
/// stages), to see whether the slow ones come together.
async fn paced_stages(
    config: &Config,
    prefix: &str,
    paced: &[Paced],
    counted: usize,
    name: &str,
) -> Result<Vec<(&'static str, f64, f64)>, Error> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        key: String,
        #[diesel(sql_type = diesel::sql_types::Double)]
        created: f64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        published: f64,
    }
    let mut conn = AsyncPgConnection::establish(&config.bench_url).await?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT message_key AS key, extract(epoch FROM created_at)::float8 * 1000 AS created, \
                extract(epoch FROM published_at)::float8 * 1000 AS published \
         FROM outbox WHERE message_key LIKE $1 || '%' AND published_at IS NOT NULL",
    )
    .bind::<diesel::sql_types::Text, _>(prefix)
    .load(&mut conn)
    .await?;
    let mut stages: [Vec<f64>; 4] = Default::default();
    let first = paced.iter().map(|p| p.sent).fold(f64::INFINITY, f64::min);
    let mut csv = String::from("sent_ms,total_ms,to_save_ms,to_relay_ms,to_queued_ms,to_read_ms\n");
    for row in rows {
        let Some((i, p)) = row
            .key
            .strip_prefix(prefix)
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| paced.get(i).map(|p| (i, p)))
        else {
            continue;
        };
        if i >= counted {
            stages[0].push(row.created - p.sent);
            stages[1].push(row.published - row.created);
            stages[2].push(p.queued - row.published);
            stages[3].push(p.received - p.queued);
        }
        csv.push_str(&format!(
            "{:.1},{:.1},{:.1},{:.1},{:.1},{:.1}\n",
            p.sent - first,
            p.received - p.sent,
            row.created - p.sent,
            row.published - row.created,
            p.queued - row.published,
            p.received - p.queued
        ));
    }
    let path = config.root.join(".local/bench").join(format!("{name}.csv"));
    let began = chrono::DateTime::from_timestamp_millis(first as i64).map(|t| t.to_rfc3339());
    eprintln!(
        "[bench] paced orders from {}: {}",
        began.unwrap_or_default(),
        path.display()
    );
    if let Err(e) = std::fs::write(&path, csv) {
        eprintln!("[bench] cannot write {}: {e}", path.display());
    }
    let names = [
        "sent → the saga's transaction began",
        "→ claimed by the relay (saga commit, relay wake-up)",
        "→ queued to the service's producer",
        "→ read by the bench (producer linger, broker, reader's fetch)",
    ];
    Ok(names
        .into_iter()
        .zip(stages.iter_mut())
        .map(|(name, values)| (name, percentile(values, 0.5), percentile(values, 0.99)))
        .collect())
}

/// Orders paced at `rate` per second for `seconds`, each timed from its send to its outcome (ms).
async fn paced_latencies(
    config: &Config,
    consumer: &StreamConsumer,
    run: &str,
    rate: f64,
    seconds: f64,
) -> Result<(Vec<f64>, Vec<Paced>), Error> {
    // librdkafka's default linger (5 ms), as an Order service would send: it is in the figure.
    // (With none, one produce request per order loads the shared broker more than the service.)
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka)
        .set("linger.ms", "5")
        .create()?;
    let n = ((rate * seconds) as usize).max(1);
    let topic = format!("{run}.order-events");
    // Connected before the clock starts: the first orders must not wait for the bench's own new
    // producer to find the broker.
    let (warm, warm_topic) = (producer.clone(), topic.clone());
    tokio::task::spawn_blocking(move || warm.client().fetch_metadata(Some(&warm_topic), Duration::from_secs(10)))
        .await??;
    let prefix = format!("{run}-pace");
    let products = config.products;
    let sender = {
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut sent = Vec::with_capacity(n);
            let mut deliveries = Vec::with_capacity(n);
            for i in 0..n {
                tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate)).await;
                let order_id = format!("{prefix}{i}");
                let product = format!("p{}", (i * 7919) % products);
                let payload = order_created(&order_id, &[(&product, 1)]).to_string();
                sent.push((Instant::now(), wall_ms()));
                let record = FutureRecord::to(&topic).key(&order_id).payload(&payload);
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e.to_string())?);
            }
            for d in deliveries {
                d.await.map_err(|e| e.to_string())?.map_err(|(e, _)| e.to_string())?;
            }
            Ok::<_, String>(sent)
        })
    };
    let mut received = vec![None; n];
    let mut seen = 0;
    while seen < n {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .map_err(|_| format!("only {seen} of {n} paced outcomes within 60 s"))??;
        let at = (Instant::now(), wall_ms());
        let queued = message.timestamp().to_millis().map_or(f64::NAN, |t| t as f64);
        let index = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.strip_prefix(prefix.as_str()))
            .and_then(|i| i.parse::<usize>().ok());
        if let Some(i) = index
            && i < n
            && received[i].is_none()
        {
            received[i] = Some((at, queued));
            seen += 1;
        }
    }
    let sent = sender.await??;
    Ok(sent
        .iter()
        .zip(received)
        .filter_map(|(&(sent, sent_wall), r)| {
            r.map(|((at, at_wall), queued)| {
                let moments = Paced {
                    sent: sent_wall,
                    queued,
                    received: at_wall,
                };
                (at.duration_since(sent).as_secs_f64() * 1000.0, moments)
            })
        })
        .unzip())
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let i = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
    values[i]
}

/// Keeps the service's `/metrics` (batch sizes and durations, relay figures) beside the report, to
/// read where an outcome's time went.
async fn save_metrics(config: &Config, addr: &str, name: &str) {
    let dir = config.root.join(".local/bench");
    let text = match reqwest::get(format!("http://{addr}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => format!("# /metrics unavailable: {e}\n"),
    };
    let path = dir.join(format!("{name}-metrics.txt"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
        eprintln!("[bench] cannot write {}: {e}", path.display());
    }
}

async fn wait_ready(addr: &str) -> Result<(), Error> {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("http://{addr}/health/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the service did not become ready".into())
}

/// wrk's requests/s and p99 latency (ms) for `path` (a Lua script's requests when `script`).
fn wrk(config: &Config, addr: &str, path: &str, script: Option<&str>) -> Result<(f64, f64), Error> {
    let mut command = Command::new("wrk");
    command
        .args(["--latency", "-t", "2", "-c", &config.read_conns.to_string()])
        .args(["-d", &format!("{}s", config.seconds)]);
    if let Some(script) = script {
        command.arg("-s").arg(config.root.join("deploy/bench").join(script));
    }
    let output = command
        .arg(format!("http://{addr}{path}"))
        .env("BENCH_PRODUCTS", config.products.to_string())
        .env("BENCH_TOKEN", inventory_tests::http::token(&["ROLE_SYSTEM"]))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") {
        return Err(format!("wrk saw errors: {text}").into());
    }
    let rate = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output: {text}"))?;
    // "     99%   21.60ms" (or us, s) in the latency distribution.
    let p99 = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| {
            let (number, factor) = if let Some(n) = v.strip_suffix("ms") {
                (n, 1.0)
            } else if let Some(n) = v.strip_suffix("us") {
                (n, 0.001)
            } else {
                (v.strip_suffix('s')?, 1000.0)
            };
            number.parse::<f64>().ok().map(|n| n * factor)
        })
        .ok_or_else(|| format!("no 99% latency in wrk output: {text}"))?;
    Ok((rate, p99))
}

/// `perf record` of the service during one phase, when BENCH_PERF is set; its report on `stop`.
struct Profile(Option<(Child, PathBuf)>);

impl Profile {
    fn attach(config: &Config, service: &Service, phase: &str) -> Result<Self, Error> {
        if std::env::var_os("BENCH_PERF").is_none() {
            return Ok(Self(None));
        }
        let dir = config.root.join(".local/bench/perf");
        std::fs::create_dir_all(&dir)?;
        let data = dir.join(format!("{}-{phase}.data", config.profile));
        let child = Command::new("perf")
            // DWARF unwinding: the release build keeps no frame pointers, so `-g` alone gives the
            // leaf function and little above it.
            .args([
                "record",
                "-F",
                "499",
                "--call-graph",
                "dwarf,32768",
                "-p",
                &service.child.id().to_string(),
                "-o",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("perf record: {e} (apt-get install linux-perf)"))?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self(Some((child, data))))
    }

    /// Stops recording and writes the flat profile next to the data (`<phase>.txt`).
    fn stop(self) -> Result<(), Error> {
        let Some((mut child, data)) = self.0 else { return Ok(()) };
        Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
        child.wait()?;
        let report = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "1",
                "--sort",
                "dso,symbol",
                "-i",
            ])
            .arg(&data)
            .output()?;
        std::fs::write(data.with_extension("txt"), &report.stdout)?;
        eprintln!("[bench] profile: {}", data.with_extension("txt").display());
        // The whole stacks too (`<phase>.folded`, one line per stack with its samples) and their
        // flame graph (`<phase>.svg`), with inferno (`just bench-profile` installs it).
        let (folded, svg) = (data.with_extension("folded"), data.with_extension("svg"));
        let script = format!(
            "perf script -i '{}' 2>/dev/null | inferno-collapse-perf > '{}' && inferno-flamegraph --title '{}' < '{}' > '{}'",
            data.display(),
            folded.display(),
            data.file_stem().unwrap_or_default().to_string_lossy(),
            folded.display(),
            svg.display()
        );
        match Command::new("sh").args(["-c", &script]).status() {
            Ok(status) if status.success() => eprintln!("[bench] flame graph: {}", svg.display()),
            _ => eprintln!("[bench] no flame graph (is inferno installed? cargo install inferno)"),
        }
        Ok(())
    }
}

#[derive(Default)]
struct Samples {
    pg_reserve: Vec<f64>,
    svc_reserve: Vec<f64>,
    pg_reserve3: Vec<f64>,
    svc_reserve3: Vec<f64>,
    pg_hot: Vec<f64>,
    svc_hot: Vec<f64>,
    latency_ms: Vec<f64>,
    paced_p50: Vec<f64>,
    /// Per rep: (stage, p50, p99) of the paced outcomes.
    paced_stages: Vec<Vec<(&'static str, f64, f64)>>,
    /// Per rep: the paced p99, and the tables autovacuum worked on during the window.
    paced_reps: Vec<(f64, Vec<String>)>,
    /// Per rep: the broker's GC pauses (ms) inside the window, when its GC log is known.
    paced_gc: Vec<Option<Vec<f64>>>,
    /// Per rep: the p99 of the paced warm-up (not counted).
    paced_warmup_p99: Vec<f64>,
    pg_read: Vec<f64>,
    http_read: Vec<f64>,
    http_read_p99: Vec<f64>,
    pg_check: Vec<f64>,
    http_check: Vec<f64>,
    http_check_p99: Vec<f64>,
    http_ceiling: Vec<f64>,
    growth_reserve: Vec<f64>,
    peak_rss_mb: Vec<f64>,
    /// Per rep, 3-line orders: PostgreSQL's execution time for pgbench's and for the service's.
    statements: Vec<(Vec<Statement>, Vec<Statement>)>,
    /// Per rep, the service's 1-line orders: over the products, and over the growth run's.
    growth_statements: Vec<(Vec<Statement>, Vec<Statement>)>,
}

/// One order's product ids: `lines` distinct products spread over `products`.
fn spread(products: usize, lines: usize) -> impl Fn(usize) -> Vec<String> {
    move |i| {
        (0..lines)
            .map(|l| format!("p{}", (i * 7919 + l * (products / lines.max(1))) % products))
            .collect()
    }
}

async fn baselines(config: &Config, rep: usize, samples: &mut Samples) -> Result<(), Error> {
    cache_trigger(config, false).await?;
    eprintln!(
        "[bench] rep {rep}: pgbench reservation transaction, {} clients",
        config.clients
    );
    samples.pg_reserve.push(pgbench(config, "reserve.sql", config.clients)?);
    eprintln!("[bench] rep {rep}: pgbench 3-line reservation transaction");
    let counted = statements_reset(config).await?;
    samples
        .pg_reserve3
        .push(pgbench(config, "reserve3.sql", config.clients)?);
    let counts = if counted { statements(config).await? } else { Vec::new() };
    samples.statements.push((counts, Vec::new()));
    eprintln!("[bench] rep {rep}: pgbench optimistic hot row");
    let before = hot_version(config).await?;
    pgbench(config, "hot.sql", config.clients)?;
    samples
        .pg_hot
        .push((hot_version(config).await? - before) as f64 / config.seconds as f64);
    eprintln!("[bench] rep {rep}: pgbench read and = ANY of 100");
    samples.pg_read.push(pgbench(config, "read.sql", config.read_conns)?);
    samples.pg_check.push(pgbench(config, "check.sql", config.read_conns)?);
    eprintln!(
        "[bench] rep {rep}: pgbench: reserve {:.0}, 3-line {:.0}, hot {:.0}, read {:.0}, = ANY {:.0}",
        samples.pg_reserve[rep - 1],
        samples.pg_reserve3[rep - 1],
        samples.pg_hot[rep - 1],
        samples.pg_read[rep - 1],
        samples.pg_check[rep - 1]
    );
    // The service starts from the state pgbench started from.
    reset_database(config, config.products).await?;
    // BENCH_CACHE=off: the service without its read cache and the trigger that feeds it (to see
    // what the trigger costs the writes).
    let cache_on = std::env::var("BENCH_CACHE").map_or(true, |v| v != "off");
    cache_trigger(config, cache_on).await
}

async fn one_rep(config: &Config, rep: usize, samples: &mut Samples) -> Result<(), Error> {
    let run = format!("bench{}{}r{rep}", config.profile, std::process::id());
    eprintln!("[bench] rep {rep}: reset database ({} products)", config.products);
    reset_database(config, config.products).await?;
    baselines(config, rep, samples).await?;

    let producer = producer(config)?;
    let spread_run = format!("{run}s");
    eprintln!(
        "[bench] rep {rep}: {} orders over {} products through the service",
        config.orders, config.products
    );
    let products = config.products;
    let service = start_service(config, &spread_run, 18_900 + rep as u16)?;
    wait_ready(&service.addr).await?;
    let reader = outcome_reader(config, &spread_run)?;
    warm_up(&producer, &reader, &spread_run, "p0").await?;
    let counted = statements_reset(config).await?;
    let profile = Profile::attach(config, &service, "reserve-1-line")?;
    let rate = timed_run(
        config,
        &producer,
        &reader,
        &spread_run,
        &format!("{spread_run}-1"),
        config.orders,
        spread(products, 1),
    )
    .await?;
    profile.stop()?;
    let one_line = if counted { statements(config).await? } else { Vec::new() };
    samples.growth_statements.push((one_line, Vec::new()));
    save_metrics(
        config,
        &service.addr,
        &format!("{}-r{rep}-after-1-line", config.profile),
    )
    .await;
    samples.svc_reserve.push(rate);
    eprintln!("[bench] rep {rep}: {} 3-line orders", config.orders);
    let counted = statements_reset(config).await?;
    let profile = Profile::attach(config, &service, "reserve-3-line")?;
    let three = format!("{spread_run}-3");
    let rate3 = timed_run(
        config,
        &producer,
        &reader,
        &spread_run,
        &three,
        config.orders,
        spread(products, 3),
    )
    .await?;
    profile.stop()?;
    if counted && let Some(rep_counts) = samples.statements.last_mut() {
        rep_counts.1 = statements(config).await?;
    }
    samples.svc_reserve3.push(rate3);
    eprintln!("[bench] rep {rep}: service: 1-line {rate:.0}/s, 3-line {rate3:.0}/s");

    eprintln!("[bench] rep {rep}: outcome latency at low load");
    for i in 0..30 {
        let order_id = format!("{spread_run}-lat{i}");
        send_order(&producer, &format!("{spread_run}.order-events"), &order_id, "p1").await?;
        let sent = Instant::now();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
                .await
                .map_err(|_| "no outcome in 30 s")??;
            if m.key() == Some(order_id.as_bytes()) {
                break;
            }
        }
        samples.latency_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "[bench] rep {rep}: outcome latency at {} of the throughput ({:.0} orders/s)",
        config.paced_fraction,
        rate * config.paced_fraction
    );
    // The bursts before left dead rows that autovacuum cleans up within its minute, on one of the
    // two cores the whole pipeline shares; a vacuum inside the 5 s window sets its p99 (seen: the
    // mean outcome from 35 to 110 ms for the second it ran). Like each rep, the window starts from
    // a vacuumed database.
    vacuum(config).await?;
    save_metrics(
        config,
        &service.addr,
        &format!("{}-r{rep}-before-paced", config.profile),
    )
    .await;
    let profile = Profile::attach(config, &service, "paced")?;
    let window = wall_ms();
    // The window is steady load: it begins after `paced_warmup` seconds at the same rate, whose
    // orders are sent and awaited alike but not counted. From a standing start (an idle service,
    // plans just invalidated by the ANALYZE above), the first batches queue up, and draining that
    // queue took 0.3-0.6 s in the runs that found it; the warm-up's own p99 is reported beside.
    let paced_rate = rate * config.paced_fraction;
    let warm = (paced_rate * config.paced_warmup) as usize;
    let seconds = config.paced_warmup + 5.0;
    let (mut paced, moments) = paced_latencies(config, &reader, &spread_run, paced_rate, seconds).await?;
    profile.stop()?;
    let mut warmup: Vec<f64> = paced.drain(..warm.min(paced.len())).collect();
    samples.paced_p50.push(percentile(&mut paced, 0.5));
    let vacuumed = autovacuumed_since(config, window).await?;
    samples.paced_reps.push((percentile(&mut paced, 0.99), vacuumed));
    let counted = moments.get(warm..).unwrap_or_default();
    let from = counted.iter().map(|p| p.sent).fold(f64::INFINITY, f64::min);
    let to = counted.iter().map(|p| p.received).fold(f64::NEG_INFINITY, f64::max);
    samples.paced_gc.push(broker_gc_pauses(from, to));
    samples.paced_warmup_p99.push(percentile(&mut warmup, 0.99));
    let stages = paced_stages(
        config,
        &format!("{spread_run}-pace"),
        &moments,
        warm,
        &format!("{}-r{rep}-paced", config.profile),
    )
    .await?;
    for (name, p50, p99) in &stages {
        eprintln!("[bench] rep {rep}: paced stage p50 {p50:.1} ms, p99 {p99:.1} ms: {name}");
    }
    samples.paced_stages.push(stages);
    save_metrics(config, &service.addr, &format!("{}-r{rep}-after-paced", config.profile)).await;
    samples.peak_rss_mb.push(service.peak_rss_mb()?);

    eprintln!("[bench] rep {rep}: wrk GET /api/inventory/{{id}}");
    let profile = Profile::attach(config, &service, "get")?;
    let (rate, p99) = wrk(config, &service.addr, "/", Some("read.lua"))?;
    profile.stop()?;
    samples.http_read.push(rate);
    samples.http_read_p99.push(p99);
    eprintln!("[bench] rep {rep}: wrk POST /api/inventory/check, 100 ids");
    let profile = Profile::attach(config, &service, "check")?;
    let (rate, p99) = wrk(config, &service.addr, "/", Some("check.lua"))?;
    profile.stop()?;
    samples.http_check.push(rate);
    samples.http_check_p99.push(p99);
    eprintln!("[bench] rep {rep}: wrk GET /health/live (the HTTP ceiling of the same binary)");
    samples
        .http_ceiling
        .push(wrk(config, &service.addr, "/health/live", None)?.0);
    drop(service);

    let hot = format!("{run}h");
    eprintln!(
        "[bench] rep {rep}: {} orders for one hot product through the service",
        config.orders
    );
    let service = start_service(config, &hot, 18_950 + rep as u16)?;
    wait_ready(&service.addr).await?;
    let reader = outcome_reader(config, &hot)?;
    warm_up(&producer, &reader, &hot, "hot").await?;
    let profile = Profile::attach(config, &service, "hot")?;
    let rate = timed_run(config, &producer, &reader, &hot, &hot, config.orders, |_| {
        vec!["hot".to_owned()]
    })
    .await?;
    profile.stop()?;
    samples.svc_hot.push(rate);
    drop(service);

    if config.growth_products > 0 {
        eprintln!(
            "[bench] rep {rep}: reset database ({} products)",
            config.growth_products
        );
        reset_database(config, config.growth_products).await?;
        let grown = format!("{run}g");
        eprintln!(
            "[bench] rep {rep}: {} orders over {} products through the service",
            config.orders, config.growth_products
        );
        let service = start_service(config, &grown, 18_980 + rep as u16)?;
        wait_ready(&service.addr).await?;
        let reader = outcome_reader(config, &grown)?;
        warm_up(&producer, &reader, &grown, "p0").await?;
        let counted = statements_reset(config).await?;
        let profile = Profile::attach(config, &service, "growth")?;
        let rate = timed_run(
            config,
            &producer,
            &reader,
            &grown,
            &grown,
            config.orders,
            spread(config.growth_products, 1),
        )
        .await?;
        profile.stop()?;
        if counted && let Some(rep_counts) = samples.growth_statements.last_mut() {
            rep_counts.1 = statements(config).await?;
        }
        save_metrics(
            config,
            &service.addr,
            &format!("{}-r{rep}-after-growth", config.profile),
        )
        .await;
        samples.growth_reserve.push(rate);
        drop(service);
    }
    Ok(())
}

/// PostgreSQL's execution time per order on two sides (pgbench's and the service's 3-line orders;
/// the service's 1-line orders over the products and over the growth run's): the medians of the
/// reps' totals, then the last rep's dearest statements on each side.
fn statement_report(what: &str, names: [&str; 2], reps: &[(Vec<Statement>, Vec<Statement>)], note: &str) -> String {
    let sides: Vec<_> = reps.iter().map(|(a, b)| (per_order(a), per_order(b))).collect();
    let mut totals: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for (a, b) in &sides {
        for (i, side) in [a, b].into_iter().enumerate() {
            totals[i].extend(side.as_ref().map(|p| p.total_us));
        }
    }
    if totals.iter().any(Vec::is_empty) {
        return format!(
            "\nNo statement breakdown for {what}s: this PostgreSQL does not load pg_stat_statements \
             (clusters created by deploy/local/lib.sh do; recreate an older one).\n"
        );
    }
    let [mut first, mut second] = totals;
    let mut out = format!(
        "\nPostgreSQL's execution time per {what} (pg_stat_statements; median of reps): {} {:.1} µs, \
         {} {:.1} µs. {note}\n",
        names[0],
        median(&mut first),
        names[1],
        median(&mut second),
    );
    if let Some((Some(a), Some(b))) = sides.last() {
        for (side, last) in [(names[0], a), (names[1], b)] {
            out.push_str(&format!(
                "\nLast rep, {side}: {:.1} µs per order\n\n| statement | µs per order | calls per order |\n|---|---|---|\n",
                last.total_us
            ));
            for (query, us, calls) in last.statements.iter().take(10) {
                out.push_str(&format!("| `{}` | {us:.1} | {calls:.3} |\n", query.replace('|', "\\|")));
            }
        }
    }
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let root = root();
    let admin_url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set; run `just bench`")?;
    let config = Config {
        profile: std::env::var("BENCH_PROFILE").unwrap_or_else(|_| "fast".to_owned()),
        reps: env_or("BENCH_REPS", 3),
        growth_products: env_or("BENCH_GROWTH_PRODUCTS", 1_000_000),
        paced_fraction: env_or("BENCH_PACED_FRACTION", 0.5),
        paced_warmup: env_or("BENCH_PACED_WARMUP", 1.0),
        history: env_or("BENCH_HISTORY", 100_000),
        orders: env_or("BENCH_ORDERS", 20_000),
        products: env_or("BENCH_PRODUCTS", 10_000),
        clients: env_or("BENCH_CLIENTS", 8),
        read_conns: env_or("BENCH_READ_CONNS", 64),
        seconds: env_or("BENCH_SECONDS", 10),
        app: std::env::var("BENCH_APP")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target/release/inventory-app")),
        bench_url: database_url_for(&admin_url, "inventory_bench"),
        admin_url,
        kafka: std::env::var("KAFKA_BOOTSTRAP_SERVERS")
            .map_err(|_| "KAFKA_BOOTSTRAP_SERVERS is not set; run `just bench`")?,
        root,
    };
    let mut samples = Samples::default();
    for rep in 1..=config.reps {
        one_rep(&config, rep, &mut samples).await?;
    }
    let mut latencies = samples.latency_ms.clone();
    let p90 = percentile(&mut latencies, 0.9);
    let s = &mut samples;
    let m = median;
    let (pg_reserve, svc_reserve) = (m(&mut s.pg_reserve), m(&mut s.svc_reserve));
    let (pg_reserve3, svc_reserve3) = (m(&mut s.pg_reserve3), m(&mut s.svc_reserve3));
    let (pg_hot, svc_hot) = (m(&mut s.pg_hot), m(&mut s.svc_hot));
    let (pg_read, http_read, read_p99) = (m(&mut s.pg_read), m(&mut s.http_read), m(&mut s.http_read_p99));
    let (pg_check, http_check, check_p99) = (m(&mut s.pg_check), m(&mut s.http_check), m(&mut s.http_check_p99));
    let ceiling = m(&mut s.http_ceiling);
    let mut paced_p99s: Vec<f64> = s.paced_reps.iter().map(|(p99, _)| *p99).collect();
    let (paced_p50, paced_p99) = (m(&mut s.paced_p50), m(&mut paced_p99s));
    let growth = m(&mut s.growth_reserve);
    let peak_rss = s.peak_rss_mb.iter().copied().fold(f64::NAN, f64::max);
    let latency = m(&mut s.latency_ms);
    let conns = config.read_conns;
    let (products, growth_products) = (config.products, config.growth_products);
    let growth_row = if growth_products == 0 {
        String::new()
    } else {
        format!(
            "| growth: reservations/s over {growth_products} products vs {products} | {growth:.0} | {svc_reserve:.0} | {:.2} | >= 0.8 |\n",
            growth / svc_reserve
        )
    };
    let report = format!(
        "# inventory bench, profile `{profile}` ({reps} reps, medians; {orders} orders, {products} products, \
         {clients} pgbench clients, {secs} s runs, {cores} cores)\n\n\
         | measure | service | baseline | ratio | target |\n|---|---|---|---|---|\n\
         | reservations/s, 1-line orders over {products} products (Kafka in → outbox → Kafka out) | {svc_reserve:.0} | {pg_reserve:.0} (pgbench reserve.sql) | {:.2} | >= 3 (durable) |\n\
         | reservations/s, 3-line orders | {svc_reserve3:.0} | {pg_reserve3:.0} (pgbench reserve3.sql) | {:.2} | >= 3 (durable) |\n\
         | reservations/s, one hot product | {svc_hot:.0} | {pg_hot:.0} (pgbench hot.sql, committed) | {:.2} | >= 5 |\n\
         | GET /api/inventory/{{id}} req/s (wrk, {conns} conns; p99 {read_p99:.1} ms) | {http_read:.0} | {pg_read:.0} (pgbench read.sql, {conns} clients) | {:.2} | >= 1.0, p99 <= 5 ms |\n\
         | POST /check, 100 ids, req/s (wrk, {conns} conns; p99 {check_p99:.1} ms) | {http_check:.0} | {pg_check:.0} (pgbench check.sql, {conns} clients) | {:.2} | >= 1.5 |\n\
         | HTTP ceiling: GET /health/live req/s (wrk, {conns} conns) | {ceiling:.0} | – | – | – |\n\
         | outcome latency at low load, ms (median / p90 of {} orders) | {latency:.1} / {p90:.1} | – | – | – |\n\
         | outcome latency at {paced_fraction} of the 1-line throughput, ms (median of reps' p50 / p99; 5 s after a {warmup} s warm-up) | {paced_p50:.1} / {paced_p99:.1} | – | – | p99 <= 50 (fast, at 0.5) |\n\
         {growth_row}\
         | peak RSS of the service after its Kafka runs, MB (max of reps) | {peak_rss:.0} | – | – | < 100 |\n",
        svc_reserve / pg_reserve,
        svc_reserve3 / pg_reserve3,
        svc_hot / pg_hot,
        http_read / pg_read,
        http_check / pg_check,
        samples.latency_ms.len(),
        profile = config.profile,
        reps = config.reps,
        orders = config.orders,
        clients = config.clients,
        secs = config.seconds,
        paced_fraction = config.paced_fraction,
        warmup = config.paced_warmup,
        cores = std::thread::available_parallelism().map_or(0, usize::from),
    );
    let mut report = report;
    if let Some(first) = <[_]>::first(&samples.paced_stages) {
        report.push_str(
            "\nWhere the paced outcomes' time went (ms, median of reps' p50 / p99; from each order's outbox row):\n\n\
             | stage | p50 | p99 |\n|---|---|---|\n",
        );
        for (i, (name, _, _)) in first.iter().enumerate() {
            let mut p50: Vec<f64> = samples
                .paced_stages
                .iter()
                .filter_map(|r| r.get(i).map(|s| s.1))
                .collect();
            let mut p99: Vec<f64> = samples
                .paced_stages
                .iter()
                .filter_map(|r| r.get(i).map(|s| s.2))
                .collect();
            report.push_str(&format!(
                "| {name} | {:.1} | {:.1} |\n",
                median(&mut p50),
                median(&mut p99)
            ));
        }
    }
    if !samples.paced_reps.is_empty() {
        report.push_str(&format!(
            "\nPaced p99 per rep, what autovacuum and the broker's GC did during its window, and the p99 of the {} s warm-up \
             before it (from a standing start, not counted):\n\n",
            config.paced_warmup
        ));
        for (rep, ((p99, vacuumed), warmup)) in samples.paced_reps.iter().zip(&samples.paced_warmup_p99).enumerate() {
            let vacuumed = if vacuumed.is_empty() {
                "nothing".to_owned()
            } else {
                vacuumed.join(", ")
            };
            let gc = match samples.paced_gc.get(rep) {
                Some(Some(pauses)) if pauses.is_empty() => "no pauses".to_owned(),
                Some(Some(pauses)) => format!(
                    "{} pauses, {:.1} ms in all, the longest {:.1} ms",
                    pauses.len(),
                    pauses.iter().sum::<f64>(),
                    pauses.iter().copied().fold(0.0, f64::max)
                ),
                _ => "not logged".to_owned(),
            };
            report.push_str(&format!(
                "- rep {}: {p99:.1} ms; autovacuum: {vacuumed}; the broker's GC: {gc}; warm-up p99 {warmup:.1} ms\n",
                rep + 1
            ));
        }
    }
    report.push_str(&statement_report(
        "3-line order",
        ["pgbench", "the service"],
        &samples.statements,
        &format!(
            "The service's relay's and loads' statements are included. It is time inside the executor, \
             waits for a lock or a core included: pgbench's {} backends share the machine's cores.",
            config.clients
        ),
    ));
    if config.growth_products > 0 {
        report.push_str(&statement_report(
            "1-line order",
            [
                &format!("the service over {} products", config.products),
                &format!("over {}", config.growth_products),
            ],
            &samples.growth_statements,
            "Where the growth run's time goes in the database.",
        ));
    }
    println!("{report}");
    let dir = config.root.join(".local/bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!(
        "{}-{}.md",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        config.profile
    ));
    std::fs::write(&file, &report)?;
    eprintln!("[bench] written to {}", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::gc_pauses_in;

    #[test]
    fn the_broker_gc_pauses_inside_a_window_are_read_from_its_log() {
        let log = "\
[2026-11-28T08:29:04.884+0000] GC(16) Pause Young (Concurrent Start) (G1 Evacuation Pause) 231M->161M(277M) 11.191ms
[2026-11-28T08:29:04.926+0000] GC(17) Pause Remark 164M->164M(279M) 8.570ms
[2026-11-28T08:29:04.927+0000] GC(17) Concurrent Mark Cycle 2.123ms
[2026-11-28T08:29:06.195+0000] GC(18) Pause Young (Normal) (G1 Evacuation Pause) 232M->163M(279M) 12.785ms
[2026-11-28T08:29:06.300+0000] Using G1
";
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as f64;
        let from = at("2026-11-28T08:29:04.900Z");
        assert_eq!(gc_pauses_in(log, from, at("2026-11-28T08:29:07Z")), vec![8.57, 12.785]);
        assert_eq!(gc_pauses_in(log, from, at("2026-11-28T08:29:05Z")), vec![8.57]);
        assert!(gc_pauses_in(log, at("2026-11-28T08:29:07Z"), at("2026-11-28T08:29:08Z")).is_empty());
    }
}
