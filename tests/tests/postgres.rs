//! The PostgreSQL adapter against a real server: optimistic locking under
//! concurrency, constraints, atomic change sets, migrations.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel_async::SimpleAsyncConnection;
use inventory_app::SystemClock;
use inventory_domain::*;
use inventory_postgres::{PgRepository, PoolConfig, pool};
use inventory_tests::db::TestDb;
use uuid::Uuid;

fn repo(db: &TestDb, max_size: u32) -> PgRepository {
    db.repository(max_size)
}

fn service(repo: PgRepository, max_attempts: u32) -> InventoryService<PgRepository, SystemClock> {
    let config = ServiceConfig {
        max_attempts,
        ..ServiceConfig::default()
    };
    InventoryService::new(Arc::new(repo), Arc::new(SystemClock), config)
}

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).unwrap()
}

fn qty(n: i64) -> Quantity {
    Quantity::new(n).unwrap()
}

fn admin() -> Actor {
    Actor("test-admin".into())
}

fn reserve(order: &str, lines: &[(&str, i64)]) -> IncomingEvent {
    let lines = lines
        .iter()
        .map(|(p, q)| OrderLine {
            product_id: pid(p),
            quantity: qty(*q),
        })
        .collect();
    IncomingEvent {
        meta: EventMeta {
            event_id: Uuid::new_v4(),
            correlation_id: None,
            echo: Default::default(),
        },
        command: OrderCommand::Reserve {
            order_id: OrderId::parse(order).unwrap(),
            lines: OrderLines::new(lines).unwrap(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_row_never_lose_an_update() {
    let db = TestDb::new().await;
    let svc = service(repo(&db, 16), 1_000);
    svc.add_stock(&pid("hot"), qty(1), &admin()).await.unwrap();
    let writers = 32;
    let per_writer = 5;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                svc.add_stock(&pid("hot"), qty(1), &admin())
                    .await
                    .expect("add succeeds after retries");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stock = svc.get_stock(&pid("hot")).await.unwrap().unwrap();
    assert_eq!(stock.quantity(), 1 + writers * per_writer);
    assert_eq!(
        stock.version(),
        i64::from(writers * per_writer),
        "one version per committed change"
    );
    let trail = svc.adjustments(&pid("hot"), 1_000, None).await.unwrap();
    assert_eq!(
        trail.len() as u32,
        1 + writers * per_writer,
        "one audit row per committed change"
    );
    assert_eq!(
        svc.metrics().conflicts(),
        0,
        "adds are one increment each: they queue on the row's lock and never conflict"
    );
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_writes_nothing() {
    let db = TestDb::new().await;
    let repo = repo(&db, 4);
    let svc = service(repo.clone(), 3);
    svc.add_stock(&pid("a"), qty(10), &admin()).await.unwrap();
    svc.add_stock(&pid("b"), qty(10), &admin()).await.unwrap();

    // Two stock rows in one change set; the second was loaded before another writer changed it.
    let request = LoadRequest {
        products: vec![pid("a"), pid("b")],
        ..LoadRequest::default()
    };
    let snapshot = repo.load(&request).await.unwrap();
    svc.add_stock(&pid("b"), qty(1), &admin()).await.unwrap();
    let mut ledger = Ledger::new(snapshot, Utc::now(), chrono::Duration::minutes(30));
    assert_eq!(
        ledger.apply(&reserve("o-1", &[("a", 3), ("b", 3)])).unwrap(),
        Outcome::Reserved
    );
    let changes = ledger.into_changes();
    assert_eq!(changes.stock.len(), 2);
    assert!(matches!(repo.save(&changes).await, Err(RepoError::Conflict)));

    let a = svc.get_stock(&pid("a")).await.unwrap().unwrap();
    let b = svc.get_stock(&pid("b")).await.unwrap().unwrap();
    assert_eq!(
        (a.quantity(), a.reserved(), a.version()),
        (10, 0, 0),
        "row a must be untouched"
    );
    assert_eq!((b.quantity(), b.reserved()), (11, 0));
    let request = LoadRequest {
        orders: vec![OrderId::parse("o-1").unwrap()],
        ..LoadRequest::default()
    };
    let again = repo.load(&request).await.unwrap();
    assert!(
        again.reservations.is_empty(),
        "the reservation must not be written either"
    );
}

#[tokio::test]
async fn creating_the_same_product_twice_is_a_conflict() {
    let db = TestDb::new().await;
    let repo = repo(&db, 4);
    let first = Ledger::new(Snapshot::default(), Utc::now(), chrono::Duration::minutes(1));
    let second = Ledger::new(Snapshot::default(), Utc::now(), chrono::Duration::minutes(1));
    let mut changes = Vec::new();
    for mut l in [first, second] {
        l.add_stock(&pid("new"), qty(2), &admin()).unwrap();
        changes.push(l.into_changes());
    }
    repo.save(&changes[0]).await.unwrap();
    assert!(matches!(repo.save(&changes[1]).await, Err(RepoError::Conflict)));
}

#[tokio::test]
async fn a_connection_that_answers_read_only_is_dropped_not_reused() {
    // A standby, or a primary demoted after the connection was opened, answers writes with
    // 25006. Here every session of this URL is read-only, as on a standby.
    let db = TestDb::new().await;
    let read_only_url = format!("{}%20-c%20default_transaction_read_only%3Don", db.url);
    let config = PoolConfig {
        max_size: 1,
        min_idle: 1,
        acquire_timeout: Duration::from_secs(10),
    };
    let repo = PgRepository::new(pool(&read_only_url, &config), &config);
    let before = repo.pool().state().statistics.connections_closed_broken;
    let mut ledger = Ledger::new(Snapshot::default(), Utc::now(), chrono::Duration::minutes(1));
    ledger.add_stock(&pid("ro"), qty(2), &admin()).unwrap();
    let changes = ledger.into_changes();
    for attempt in 1..=2u64 {
        let err = repo.save(&changes).await.expect_err("a read-only node takes no write");
        assert!(
            matches!(err, RepoError::Unavailable(_)),
            "read-only is transient (another node is primary), got {err:?}"
        );
        // Dropped when handed back (has_broken), so the next checkout connects anew.
        let closed = repo.pool().state().statistics.connections_closed_broken - before;
        assert_eq!(closed, attempt, "the read-only connection was put back into the pool");
    }
    // A conflict is no reason to drop a connection.
    let repo = self::repo(&db, 1);
    let mut first = Ledger::new(Snapshot::default(), Utc::now(), chrono::Duration::minutes(1));
    first.add_stock(&pid("rw"), qty(2), &admin()).unwrap();
    repo.save(&first.into_changes()).await.unwrap();
    let mut second = Ledger::new(Snapshot::default(), Utc::now(), chrono::Duration::minutes(1));
    second.add_stock(&pid("rw"), qty(2), &admin()).unwrap();
    assert!(matches!(
        repo.save(&second.into_changes()).await,
        Err(RepoError::Conflict)
    ));
    assert_eq!(repo.pool().state().statistics.connections_closed_broken, 0);
}

#[tokio::test]
async fn check_constraints_refuse_bad_rows_written_with_raw_sql() {
    let db = TestDb::new().await;
    let svc = service(repo(&db, 2), 3);
    svc.add_stock(&pid("a"), qty(5), &admin()).await.unwrap();
    let mut conn = db.conn().await;
    for (sql, constraint) in [
        (
            "UPDATE inventory SET reserved = 6 WHERE product_id = 'a'",
            "inventory_available_non_negative",
        ),
        (
            "UPDATE inventory SET reserved = -1 WHERE product_id = 'a'",
            "inventory_reserved_check",
        ),
        (
            "INSERT INTO inventory (id, product_id, quantity) VALUES (gen_random_uuid(), 'b', -1)",
            // Either check may fire first; both refuse the row.
            "violates check constraint",
        ),
    ] {
        let err = conn.batch_execute(sql).await.expect_err(sql);
        assert!(err.to_string().contains(constraint), "{sql}: {err}");
    }
    let a = svc.get_stock(&pid("a")).await.unwrap().unwrap();
    assert_eq!((a.quantity(), a.reserved()), (5, 0));
}

#[tokio::test]
async fn reservations_round_trip_and_release_exactly_what_they_hold() {
    let db = TestDb::new().await;
    let svc = service(repo(&db, 4), 5);
    svc.add_stock(&pid("a"), qty(10), &admin()).await.unwrap();
    svc.add_stock(&pid("b"), qty(4), &admin()).await.unwrap();

    let create = reserve("o-1", &[("a", 2), ("b", 4), ("a", 1)]);
    assert_eq!(
        svc.handle_events(std::slice::from_ref(&create)).await.unwrap(),
        vec![Outcome::Reserved]
    );
    assert_eq!(svc.handle_events(&[create]).await.unwrap(), vec![Outcome::Duplicate]);
    let short = reserve("o-2", &[("a", 1), ("b", 1)]);
    assert_eq!(
        svc.handle_events(&[short]).await.unwrap(),
        vec![Outcome::Failed(FailureReason::InsufficientStock)]
    );
    let avail = svc.availability(&[pid("a"), pid("b"), pid("zz")]).await.unwrap();
    assert_eq!((avail[&pid("a")], avail[&pid("b")], avail[&pid("zz")]), (7, 0, 0));

    let cancel = IncomingEvent {
        meta: EventMeta {
            event_id: Uuid::new_v4(),
            correlation_id: None,
            echo: Default::default(),
        },
        command: OrderCommand::Release {
            order_id: OrderId::parse("o-1").unwrap(),
            reason: ReleaseReason::OrderCancelled,
        },
    };
    assert_eq!(svc.handle_events(&[cancel]).await.unwrap(), vec![Outcome::Released]);
    let a = svc.get_stock(&pid("a")).await.unwrap().unwrap();
    let b = svc.get_stock(&pid("b")).await.unwrap().unwrap();
    assert_eq!((a.quantity(), a.reserved(), b.quantity(), b.reserved()), (10, 0, 4, 0));

    let mut conn = db.conn().await;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let outbox: Count = diesel::sql_query("SELECT count(*) AS n FROM outbox")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(outbox.n, 3, "reserved, failed, released");
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_per_order_and_saved_together() {
    let db = TestDb::new().await;
    let svc = service(repo(&db, 4), 5);
    svc.add_stock(&pid("a"), qty(3), &admin()).await.unwrap();
    let batch: Vec<_> = (0..5).map(|i| reserve(&format!("o-{i}"), &[("a", 1)])).collect();
    let outcomes = svc.handle_events(&batch).await.unwrap();
    let reserved = outcomes.iter().filter(|o| **o == Outcome::Reserved).count();
    let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed(_))).count();
    assert_eq!((reserved, failed), (3, 2));
    let a = svc.get_stock(&pid("a")).await.unwrap().unwrap();
    assert_eq!(
        (a.quantity(), a.reserved(), a.version()),
        (3, 3, 1),
        "one write for the whole batch"
    );
}

/// Real time plus an offset the test moves forward.
#[derive(Default)]
struct ShiftedClock(std::sync::atomic::AtomicI64);

#[async_trait::async_trait]
impl Clock for ShiftedClock {
    fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test]
async fn expired_holds_are_released() {
    let db = TestDb::new().await;
    let clock = Arc::new(ShiftedClock::default());
    let config = ServiceConfig::default();
    assert_eq!(
        config.hold_ttl,
        Duration::from_secs(30 * 60),
        "holds last 30 minutes by default"
    );
    let svc = InventoryService::new(Arc::new(repo(&db, 4)), clock.clone(), config);
    svc.add_stock(&pid("a"), qty(3), &admin()).await.unwrap();
    svc.handle_events(&[reserve("o-1", &[("a", 2)])]).await.unwrap();
    clock.0.store(29 * 60, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(svc.expire_holds(100).await.unwrap(), 0, "not expired after 29 minutes");
    clock.0.store(31 * 60, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(svc.expire_holds(100).await.unwrap(), 1, "expired after 31 minutes");
    assert_eq!(svc.get_stock(&pid("a")).await.unwrap().unwrap().reserved(), 0);
    assert_eq!(svc.expire_holds(100).await.unwrap(), 0, "released once");
}

#[tokio::test]
async fn audit_trail_pages_newest_first() {
    let db = TestDb::new().await;
    let svc = service(repo(&db, 2), 3);
    svc.add_stock(&pid("a"), qty(3), &admin()).await.unwrap();
    svc.audit_stock(
        &pid("a"),
        StockCount::new(1).unwrap(),
        AdjustmentReason::Damaged,
        &Actor("bob".into()),
        None,
    )
    .await
    .unwrap();
    svc.add_stock(&pid("a"), qty(4), &admin()).await.unwrap();
    let page = svc.adjustments(&pid("a"), 2, None).await.unwrap();
    let summary: Vec<_> = page
        .iter()
        .map(|r| (r.adjustment.reason, r.adjustment.delta()))
        .collect();
    assert_eq!(
        summary,
        vec![(AdjustmentReason::Add, 4), (AdjustmentReason::Damaged, -2)]
    );
    assert_eq!(page[1].adjustment.actor, Actor("bob".into()));
    let next = svc.adjustments(&pid("a"), 2, Some(page[1].id)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].adjustment.new_quantity, 3);
}

#[tokio::test]
async fn migrations_run_up_down_and_up_again() {
    let db = TestDb::empty().await;
    let up = inventory_postgres::run_migrations(&db.url).await.unwrap();
    assert!(!up.is_empty());
    assert!(
        inventory_postgres::run_migrations(&db.url).await.unwrap().is_empty(),
        "nothing pending"
    );
    let down = inventory_postgres::revert_all_migrations(&db.url).await.unwrap();
    assert_eq!(down.len(), up.len());
    let mut conn = db.conn().await;
    let gone = conn.batch_execute("SELECT 1 FROM inventory").await;
    assert!(gone.is_err(), "tables must be gone after down");
    assert_eq!(inventory_postgres::run_migrations(&db.url).await.unwrap(), up);
    conn.batch_execute("SELECT 1 FROM inventory").await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_a_hang() {
    let config = PoolConfig {
        max_size: 1,
        min_idle: 0,
        acquire_timeout: Duration::from_millis(500),
    };
    let repo = PgRepository::new(pool("postgres://postgres@127.0.0.1:1/nothing", &config), &config);
    let started = std::time::Instant::now();
    let err = repo.ping().await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The `text` column of every row `sql` returns, sorted.
async fn texts(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        text: String,
    }
    let mut texts: Vec<String> = diesel::sql_query(sql)
        .load::<Row>(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.text)
        .collect();
    texts.sort();
    texts
}

#[tokio::test]
async fn purge_removes_only_old_processed_events_published_outbox_rows_and_keys() {
    let db = TestDb::new().await;
    let repo = repo(&db, 2);
    let mut conn = db.conn().await;
    conn.batch_execute(
        "INSERT INTO processed_events (event_id, order_id, outcome, processed_at) VALUES
           (gen_random_uuid(), 'old', 'reserved', now() - interval '10 days'),
           (gen_random_uuid(), 'new', 'reserved', now());
         INSERT INTO outbox (event_id, event_type, message_key, payload, created_at, published_at) VALUES
           (gen_random_uuid(), 'E', 'old-published', '{}', now() - interval '10 days', now() - interval '10 days'),
           (gen_random_uuid(), 'E', 'old-unpublished', '{}', now() - interval '10 days', NULL),
           (gen_random_uuid(), 'E', 'new-published', '{}', now(), now());
         INSERT INTO idempotency_keys (idempotency_key, fingerprint, inventory_id, product_id, quantity, reserved,
                                       version, updated_at, created_at) VALUES
           ('old', 'f', gen_random_uuid(), 'p', 1, 0, 0, now(), now() - interval '10 days'),
           ('new', 'f', gen_random_uuid(), 'p', 1, 0, 0, now(), now());",
    )
    .await
    .unwrap();
    let deleted = OutboxStore::purge(&repo, Utc::now() - chrono::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    let left = texts(
        &mut conn,
        "SELECT order_id AS text FROM processed_events UNION ALL SELECT message_key FROM outbox \
         UNION ALL SELECT 'key-' || idempotency_key FROM idempotency_keys",
    )
    .await;
    assert_eq!(
        left,
        vec!["key-new", "new", "new-published", "old-unpublished"],
        "unpublished events are never purged"
    );
    let backlog = OutboxStore::backlog(&repo).await.unwrap();
    assert_eq!(backlog.pending, 1);
    assert!(backlog.oldest_age_ms >= 9 * 24 * 3600 * 1000);
}

/// Records what it publishes; while `gate` is closed it holds the relay (and its lock) inside `publish`.
struct GatedPublisher {
    entered: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
    published: std::sync::Mutex<Vec<String>>,
}

impl GatedPublisher {
    fn new(open: bool) -> Self {
        Self {
            entered: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(if open { tokio::sync::Semaphore::MAX_PERMITS } else { 0 }),
            published: std::sync::Mutex::new(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl EventPublisher for GatedPublisher {
    async fn publish(&self, events: &[PendingEvent]) -> Result<(), PublishError> {
        self.entered.notify_one();
        let _permit = self.gate.acquire().await.expect("gate");
        self.published
            .lock()
            .unwrap()
            .extend(events.iter().map(|e| e.key.clone()));
        Ok(())
    }
}

/// Opens the gate when dropped, so a failing assertion does not leave the held relay's transaction open.
struct OpenOnDrop(Arc<GatedPublisher>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.gate.add_permits(1);
    }
}

struct FailingPublisher;

#[async_trait::async_trait]
impl EventPublisher for FailingPublisher {
    async fn publish(&self, _: &[PendingEvent]) -> Result<(), PublishError> {
        Err(PublishError("broker unreachable".into()))
    }
}

async fn pending_outbox(db: &TestDb, keys: &[&str]) {
    let values: Vec<String> = keys
        .iter()
        .map(|k| format!("(gen_random_uuid(), 'E', '{k}', '{{}}')"))
        .collect();
    db.conn()
        .await
        .batch_execute(&format!(
            "INSERT INTO outbox (event_id, event_type, message_key, payload) VALUES {}",
            values.join(",")
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_at_a_time_per_outbox_and_other_schemas_never_wait() {
    let (db_a, db_b) = (TestDb::new().await, TestDb::new().await);
    pending_outbox(&db_a, &["a1", "a2"]).await;
    pending_outbox(&db_b, &["b1", "b2"]).await;
    let (first, second, other) = (repo(&db_a, 2), repo(&db_a, 2), repo(&db_b, 2));

    // A publish that fails leaves every event in the outbox.
    let failed = OutboxStore::relay(&first, 100, &FailingPublisher).await;
    assert!(failed.is_err(), "a failed publish is an error, got {failed:?}");
    assert_eq!(OutboxStore::backlog(&first).await.unwrap().pending, 2);

    let held = Arc::new(GatedPublisher::new(false));
    let holder = {
        let held = held.clone();
        tokio::spawn(async move { OutboxStore::relay(&first, 100, &*held).await })
    };
    let release = OpenOnDrop(held.clone());
    tokio::time::timeout(Duration::from_secs(10), held.entered.notified())
        .await
        .expect("the first relay reaches publish");

    let open = GatedPublisher::new(true);
    assert_eq!(
        OutboxStore::relay(&second, 100, &open).await.unwrap(),
        Relayed::Busy,
        "a second relay of the same outbox keeps out"
    );
    assert_eq!(
        OutboxStore::relay(&other, 100, &open).await.unwrap(),
        Relayed::Published(2),
        "a relay of another schema's outbox does not wait"
    );
    assert_eq!(*open.published.lock().unwrap(), ["b1", "b2"]);

    drop(release);
    assert_eq!(holder.await.unwrap().unwrap(), Relayed::Published(2));
    assert_eq!(*held.published.lock().unwrap(), ["a1", "a2"], "in outbox order");
    assert_eq!(
        OutboxStore::relay(&second, 100, &open).await.unwrap(),
        Relayed::Published(0)
    );
    assert_eq!(OutboxStore::backlog(&second).await.unwrap().pending, 0);
}

/// A pass does not make rows committed meanwhile wait for its acknowledgements: woken by the
/// repository's commit notice, it claims them and hands them on behind the ones before, then
/// commits every mark once all are acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_hands_on_rows_committed_while_it_waits_for_acknowledgements() {
    let db = TestDb::new().await;
    pending_outbox(&db, &["a1", "a2"]).await;
    let relay = repo(&db, 2);
    let held = Arc::new(GatedPublisher::new(false));
    let pass = {
        let (relay, held) = (relay.clone(), held.clone());
        tokio::spawn(async move { OutboxStore::relay(&relay, 100, &*held).await })
    };
    let release = OpenOnDrop(held.clone());
    let entered = || tokio::time::timeout(Duration::from_secs(10), held.entered.notified());
    entered().await.expect("the pass hands on the first rows");

    // What a save does: commit outbox rows, then notify.
    pending_outbox(&db, &["b1"]).await;
    relay.outbox_notifier().notify_one();
    entered()
        .await
        .expect("the row committed meanwhile is handed on before the first rows are acknowledged");
    assert_eq!(
        OutboxStore::backlog(&repo(&db, 1)).await.unwrap().pending,
        3,
        "no mark is committed before every event is acknowledged"
    );

    held.gate.add_permits(2);
    assert_eq!(pass.await.unwrap().unwrap(), Relayed::Published(3));
    assert_eq!(*held.published.lock().unwrap(), ["a1", "a2", "b1"], "in outbox order");
    assert_eq!(OutboxStore::backlog(&relay).await.unwrap().pending, 0);
    drop(release);
}

/// The plan of `sql` as text, one line per row.
async fn plan(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> String {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let rows: Vec<Row> = diesel::sql_query(format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"))
        .load(conn)
        .await
        .unwrap();
    rows.into_iter().map(|r| r.line).collect::<Vec<_>>().join("\n")
}

/// Opens a transaction the way a relay pass does: its settings (no bitmap or sequential scans), and
/// the relay lock.
async fn begin_as_the_relay(conn: &mut diesel_async::AsyncPgConnection) {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    conn.batch_execute("BEGIN").await.unwrap();
    let lock: Locked = diesel::sql_query(inventory_postgres::RELAY_BEGIN)
        .bind::<diesel::sql_types::Integer, _>(inventory_postgres::RELAY_LOCK_CLASS)
        .get_result(conn)
        .await
        .unwrap();
    assert!(lock.locked);
}

/// Published rows keep their entries in `outbox_unpublished` until a vacuum. Without statistics
/// (a new or emptied outbox, as after the benchmark's reset), the planner's own choice for the
/// relay's query is a bitmap scan, which reads all of them and their heap pages on every pass and
/// then sorts; the relay's settings make it walk the index in `id` order and stop at its limit.
#[tokio::test]
async fn the_relay_walks_the_unpublished_index_in_order_past_published_rows() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    conn.batch_execute(
        "ALTER TABLE outbox SET (autovacuum_enabled = false); \
         INSERT INTO outbox (event_id, event_type, message_key, payload) \
           SELECT gen_random_uuid(), 'E', 'old' || g, '{}' FROM generate_series(1, 20000) g; \
         UPDATE outbox SET published_at = now(); \
         INSERT INTO outbox (event_id, event_type, message_key, payload) \
           SELECT gen_random_uuid(), 'E', 'new' || g, '{}' FROM generate_series(1, 30) g;",
    )
    .await
    .unwrap();
    let pending = inventory_postgres::RELAY_CLAIM.replace("$1", "500");

    // Each plan in a transaction rolled back: EXPLAIN ANALYZE takes the rows' locks.
    conn.batch_execute("BEGIN").await.unwrap();
    let default = plan(&mut conn, &pending).await;
    conn.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        default.contains("Bitmap Index Scan on outbox_unpublished"),
        "the case this test is about: left to itself, the planner reads the index as a bitmap; got\n{default}"
    );

    begin_as_the_relay(&mut conn).await;
    let relay = plan(&mut conn, &pending).await;
    conn.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        relay.contains("Index Scan using outbox_unpublished") && !relay.contains("Bitmap") && !relay.contains("Sort"),
        "the relay's pass walks the index in order; got\n{relay}"
    );

    let open = GatedPublisher::new(true);
    assert_eq!(
        OutboxStore::relay(&repo(&db, 2), 500, &open).await.unwrap(),
        Relayed::Published(30)
    );
    let expected: Vec<String> = (1..=30).map(|g| format!("new{g}")).collect();
    assert_eq!(
        *open.published.lock().unwrap(),
        expected,
        "the unpublished rows, in outbox order"
    );
}

/// A new database's outbox, or one the retention sweep emptied, is analysed while empty. As a join,
/// the relay's claim was then planned as a nested loop over every outbox row that ran the claim's
/// subquery again for each; the relay's connection kept that plan (a prepared statement's generic
/// plan) as the outbox filled, and 500-row passes took seconds. The claim takes its ids once and
/// updates by key, whatever the statistics say.
#[tokio::test]
async fn the_relay_claim_takes_its_ids_once_even_on_an_outbox_analysed_empty() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    async fn explain(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> String {
        let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN (COSTS OFF) {sql}"))
            .load(conn)
            .await
            .unwrap();
        lines.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")
    }
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    conn.batch_execute("ALTER TABLE outbox SET (autovacuum_enabled = false); ANALYZE outbox;")
        .await
        .unwrap();
    begin_as_the_relay(&mut conn).await;
    let custom = explain(&mut conn, &inventory_postgres::RELAY_CLAIM.replace("$1", "500")).await;
    conn.batch_execute(&format!(
        "PREPARE claim(bigint) AS {}; SET LOCAL plan_cache_mode = force_generic_plan;",
        inventory_postgres::RELAY_CLAIM
    ))
    .await
    .unwrap();
    let generic = explain(&mut conn, "EXECUTE claim(500)").await;
    conn.batch_execute("ROLLBACK; DEALLOCATE claim").await.unwrap();
    for (name, plan) in [("custom", custom), ("generic", generic)] {
        assert!(
            !plan.contains("Nested Loop") && plan.contains("InitPlan") && plan.contains("Index Cond: (id = ANY"),
            "the {name} plan takes the ids once, then updates by key; got\n{plan}"
        );
    }

    // And it claims what it should: the unpublished rows, in order, once.
    conn.batch_execute(
        "INSERT INTO outbox (event_id, event_type, message_key, payload, published_at) \
           SELECT gen_random_uuid(), 'E', 'old' || g, '{}', now() FROM generate_series(1, 2000) g; \
         INSERT INTO outbox (event_id, event_type, message_key, payload) \
           SELECT gen_random_uuid(), 'E', 'new' || g, '{}' FROM generate_series(1, 30) g;",
    )
    .await
    .unwrap();
    let open = GatedPublisher::new(true);
    let repo = repo(&db, 2);
    assert_eq!(
        OutboxStore::relay(&repo, 20, &open).await.unwrap(),
        Relayed::Published(20)
    );
    assert_eq!(
        OutboxStore::relay(&repo, 20, &open).await.unwrap(),
        Relayed::Published(10)
    );
    assert_eq!(
        OutboxStore::relay(&repo, 20, &open).await.unwrap(),
        Relayed::Published(0)
    );
    let expected: Vec<String> = (1..=30).map(|g| format!("new{g}")).collect();
    assert_eq!(
        *open.published.lock().unwrap(),
        expected,
        "the unpublished rows, in outbox order"
    );
}

#[tokio::test]
async fn settled_reservations_are_purged_with_their_lines_and_holds_never() {
    let db = TestDb::new().await;
    let repo = repo(&db, 2);
    let mut conn = db.conn().await;
    conn.batch_execute(
        "INSERT INTO inventory (id, product_id, quantity, reserved) VALUES (gen_random_uuid(), 'a', 10, 1);
         INSERT INTO reservations (order_id, status, updated_at, expires_at) VALUES
           ('old-committed', 'COMMITTED', now() - interval '40 days', NULL),
           ('old-failed', 'FAILED', now() - interval '40 days', NULL),
           ('old-held', 'RESERVED', now() - interval '40 days', now() - interval '39 days'),
           ('new-released', 'RELEASED', now() - interval '1 day', NULL);
         INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES
           ('old-committed', 'a', 2), ('old-held', 'a', 1), ('new-released', 'a', 3);",
    )
    .await
    .unwrap();
    let deleted = repo
        .purge_settled_reservations(Utc::now() - chrono::Duration::days(30))
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let left = texts(
        &mut conn,
        "SELECT 'reservation ' || order_id AS text FROM reservations \
         UNION ALL SELECT 'line ' || order_id FROM reservation_lines",
    )
    .await;
    assert_eq!(
        left,
        [
            "line new-released",
            "line old-held",
            "reservation new-released",
            "reservation old-held"
        ],
        "only old settled reservations go, with their lines; a hold is never purged, however old"
    );
}

#[tokio::test]
async fn a_payment_stored_before_its_order_is_settled_by_the_late_create() {
    let db = TestDb::new().await;
    let svc = service(repo(&db, 2), 3);
    svc.add_stock(&pid("a"), qty(10), &admin()).await.unwrap();
    let paid = IncomingEvent {
        meta: EventMeta {
            event_id: Uuid::new_v4(),
            correlation_id: None,
            echo: Default::default(),
        },
        command: OrderCommand::Commit {
            order_id: OrderId::parse("o-1").unwrap(),
        },
    };
    assert_eq!(svc.handle_events(&[paid]).await.unwrap(), [Outcome::PaymentRecorded]);
    let mut conn = db.conn().await;
    let state = "SELECT 'reservation ' || status AS text FROM reservations \
                 UNION ALL SELECT 'line ' || product_id || ' ' || quantity FROM reservation_lines";
    assert_eq!(texts(&mut conn, state).await, ["reservation PAID"]);

    // The create comes in a later batch: the stored row is updated and its lines written.
    let outcomes = svc.handle_events(&[reserve("o-1", &[("a", 4)])]).await.unwrap();
    assert_eq!(outcomes, [Outcome::Reserved]);
    assert_eq!(texts(&mut conn, state).await, ["line a 4", "reservation COMMITTED"]);
    let stock = svc.get_stock(&pid("a")).await.unwrap().unwrap();
    assert_eq!((stock.quantity(), stock.reserved()), (6, 0));
}

/// What `reservation_lines`' foreign keys guaranteed, checked per statement since migration
/// 000011: a line names a reservation and a product that exist; a product with lines cannot be
/// deleted or renamed, nor a reservation's order id changed; a reservation deleted takes its lines.
#[tokio::test]
async fn reservation_lines_keep_their_references_checked_per_statement() {
    use diesel::result::{DatabaseErrorKind, Error};
    #[track_caller]
    fn refused(result: Result<(), Error>, naming: &str) {
        match result {
            Err(Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)) => {
                assert!(info.message().contains(naming), "{}", info.message())
            }
            other => panic!("expected a foreign-key violation naming {naming}, got {other:?}"),
        }
    }
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    conn.batch_execute(
        "INSERT INTO inventory (id, product_id, quantity) VALUES \
           (gen_random_uuid(), 'held', 10), (gen_random_uuid(), 'free', 10), (gen_random_uuid(), 'other', 10); \
         INSERT INTO reservations (order_id, status) VALUES ('o1', 'FAILED'), ('o2', 'FAILED'); \
         INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES ('o1', 'held', 1), ('o2', 'held', 2);",
    )
    .await
    .unwrap();

    // One bad line among good ones refuses the whole statement.
    refused(
        conn.batch_execute("INSERT INTO reservation_lines VALUES ('o1', 'other', 1), ('nobody', 'other', 1)")
            .await,
        "order nobody",
    );
    refused(
        conn.batch_execute("INSERT INTO reservation_lines VALUES ('o2', 'other', 1), ('o2', 'ghost', 1)")
            .await,
        "product ghost",
    );
    refused(
        conn.batch_execute("UPDATE reservation_lines SET product_id = 'ghost' WHERE order_id = 'o1'")
            .await,
        "product ghost",
    );
    refused(
        conn.batch_execute("DELETE FROM inventory WHERE product_id = 'held'")
            .await,
        "product held",
    );
    refused(
        conn.batch_execute("UPDATE inventory SET product_id = 'renamed' WHERE product_id = 'held'")
            .await,
        "product held",
    );
    refused(
        conn.batch_execute("UPDATE reservations SET order_id = 'o1b' WHERE order_id = 'o1'")
            .await,
        "order o1",
    );
    // Nothing of the refused statements stayed.
    assert_eq!(
        texts(
            &mut conn,
            "SELECT order_id || ' ' || product_id || ' ' || quantity AS text FROM reservation_lines"
        )
        .await,
        ["o1 held 1", "o2 held 2"]
    );

    // What the rules allow: a product without lines goes; a stock change of a held product, and
    // a good line, are written; a reservation deleted takes its lines, and no other's.
    conn.batch_execute(
        "DELETE FROM inventory WHERE product_id = 'free'; \
         UPDATE inventory SET quantity = quantity + 1, version = version + 1 WHERE product_id = 'held'; \
         INSERT INTO reservation_lines VALUES ('o2', 'other', 1); \
         DELETE FROM reservations WHERE order_id = 'o1';",
    )
    .await
    .unwrap();
    assert_eq!(
        texts(
            &mut conn,
            "SELECT order_id || ' ' || product_id || ' ' || quantity AS text FROM reservation_lines"
        )
        .await,
        ["o2 held 2", "o2 other 1"]
    );
    assert_eq!(
        texts(&mut conn, "SELECT product_id AS text FROM inventory").await,
        ["held", "other"]
    );
}

/// Migration 000012: pages of `inventory` keep room, so the saga's update of a row written by a
/// bulk insert stays in its page (a HOT update, no new index entries) rather than moving out of a
/// full one. Rows are located by `ctid` (page, slot) before and after. One product in ten is
/// updated, each once, as orders spread over many products do; pruning the versions left behind
/// is not needed for these to fit (and is not guaranteed: any open transaction on the server
/// holds it back).
#[tokio::test]
async fn stock_rows_filled_in_bulk_are_updated_in_place() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let products = 2_000;
    conn.batch_execute(&format!(
        "INSERT INTO inventory (id, product_id, quantity) \
         SELECT gen_random_uuid(), 'p' || g, 10 FROM generate_series(0, {products} - 1) g"
    ))
    .await
    .unwrap();
    let pages = "SELECT product_id || ' ' || (ctid::text::point)[0] AS text FROM inventory";
    let before = texts(&mut conn, pages).await;
    let used = texts(
        &mut conn,
        "SELECT count(DISTINCT (ctid::text::point)[0])::text AS text FROM inventory",
    )
    .await;
    assert!(
        used[0].parse::<usize>().unwrap() > 10,
        "the rows span many pages: {used:?}"
    );

    let svc = service(repo(&db, 2), 3);
    let updated: Vec<usize> = (0..products).step_by(10).collect();
    for batch in updated.chunks(50) {
        let orders: Vec<_> = batch
            .iter()
            .map(|i| reserve(&format!("o-{i}"), &[(&format!("p{i}"), 1)]))
            .collect();
        let outcomes = svc.handle_events(&orders).await.unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Reserved), "{outcomes:?}");
    }
    let reserved = texts(&mut conn, "SELECT sum(reserved)::text AS text FROM inventory").await;
    assert_eq!(reserved, [updated.len().to_string()], "the rows were updated");
    let after = texts(&mut conn, pages).await;
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(
        moved.is_empty(),
        "{} of {} updated rows moved page, e.g. {:?}",
        moved.len(),
        updated.len(),
        moved.first()
    );
}

/// Migration 000013: `ANALYZE outbox` (autovacuum's, once a minute under load) builds no
/// statistics for the payload and the other columns no query selects on, and still builds those
/// of the columns the relay and the retention sweep select on.
#[tokio::test]
async fn analysing_the_outbox_skips_the_columns_no_query_selects_on() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    conn.batch_execute(
        "INSERT INTO outbox (event_id, event_type, message_key, payload, headers, published_at) \
         SELECT gen_random_uuid(), 'InventoryReservedEvent', 'order-' || g, jsonb_build_object('orderId', g), \
                '{\"source\": \"inventory\"}', CASE WHEN g % 2 = 0 THEN now() END \
         FROM generate_series(1, 500) g; \
         ANALYZE outbox",
    )
    .await
    .unwrap();
    let analysed = texts(
        &mut conn,
        "SELECT attname::text AS text FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'outbox'",
    )
    .await;
    assert_eq!(analysed, ["created_at", "event_id", "id", "published_at"]);
}

/// A save locks the stock rows it changes in `id` order, as every save does, so two never
/// deadlock. A row held by another session stops a save there: it then holds exactly the rows
/// of the batch before that one (read with `pgrowlocks`), and goes on once the row is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_locks_its_stock_rows_in_id_order() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    conn.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pgrowlocks; \
         INSERT INTO inventory (id, product_id, quantity) \
         SELECT gen_random_uuid(), 'p' || g, 10 FROM generate_series(0, 19) g",
    )
    .await
    .unwrap();
    // A uuid's text sorts as the uuid does.
    let ids = texts(&mut conn, "SELECT id::text AS text FROM inventory").await;
    let held = &ids[10];
    let mut holder = db.conn().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM inventory WHERE id = '{held}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let holder_pid = texts(&mut holder, "SELECT pg_backend_pid()::text AS text").await;

    let svc = Arc::new(service(repo(&db, 2), 3));
    let batch: Vec<_> = (0..20)
        .rev()
        .map(|i| reserve(&format!("o-{i}"), &[(&format!("p{i}"), 1)]))
        .collect();
    let saving = tokio::spawn({
        let svc = svc.clone();
        async move { svc.handle_events(&batch).await }
    });
    let waiting = "SELECT count(*)::text AS text FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let started = std::time::Instant::now();
    while texts(&mut conn, waiting).await != ["1"] {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the save never waited for the held row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let saver_holds = texts(
        &mut conn,
        &format!(
            "SELECT i.id::text AS text FROM inventory i JOIN pgrowlocks('inventory') l ON l.locked_row = i.ctid \
             WHERE NOT ({} = ANY(l.pids))",
            holder_pid[0]
        ),
    )
    .await;
    assert_eq!(
        saver_holds,
        ids[..10],
        "the save holds the rows before the held one, and only those"
    );

    holder.batch_execute("ROLLBACK").await.unwrap();
    let outcomes = saving.await.unwrap().unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Reserved), "{outcomes:?}");
    let reserved = texts(&mut conn, "SELECT sum(reserved)::text AS text FROM inventory").await;
    assert_eq!(reserved, ["20"]);
}

/// Plans are cached per connection from a statement's sixth run, and kept until the table is
/// analysed again. Made on a table of a few rows, as in a new database, a plan that scans the
/// table stays in use as the table grows: the saga's reads and writes must keep to their rows
/// anyway. Found: the reservation `UPDATE`, run in a batch that changes no stock (a create after
/// its order's cancel), and the load of the orders' reservations, each read every page of
/// 100,000 rows (944 and 935 blocks) to find one row. What each statement read is taken from
/// `pg_stat_statements` (the local clusters load it), in a database of the test's own.
#[tokio::test]
async fn the_saga_keeps_to_its_rows_after_its_tables_grow_past_the_plans_it_cached() {
    let own = inventory_tests::db::OwnDatabase::new().await;
    let db = &own.db;
    let mut conn = db.conn().await;
    let loaded = texts(&mut conn, "SELECT current_setting('shared_preload_libraries') AS text").await;
    assert!(
        loaded[0].contains("pg_stat_statements"),
        "this test reads pg_stat_statements, which the server does not load ({loaded:?}): run it \
         against the local stack (`bash deploy/local/stack.sh up`), whose clusters load it"
    );
    conn.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public; \
         ALTER TABLE reservations SET (autovacuum_enabled = false); \
         ALTER TABLE reservation_lines SET (autovacuum_enabled = false); \
         ALTER TABLE processed_events SET (autovacuum_enabled = false); \
         ALTER TABLE inventory SET (autovacuum_enabled = false); \
         ANALYZE reservations; ANALYZE reservation_lines; ANALYZE processed_events; ANALYZE inventory;",
    )
    .await
    .unwrap();
    // One connection, so the statements' runs share one plan cache.
    let svc = service(repo(db, 1), 3);
    svc.add_stock(&pid("a"), qty(1_000), &admin()).await.unwrap();
    let event = |command| IncomingEvent {
        meta: EventMeta {
            event_id: Uuid::new_v4(),
            correlation_id: None,
            echo: Default::default(),
        },
        command,
    };
    let release = |order: &str| {
        event(OrderCommand::Release {
            order_id: OrderId::parse(order).unwrap(),
            reason: ReleaseReason::OrderCancelled,
        })
    };
    // Each round: a cancel before its create (a reservation failed, no stock changed), and an
    // order reserved and cancelled (stock held and given back).
    let round = async |i: usize| {
        let late = format!("late-{i}");
        assert_eq!(
            svc.handle_events(&[release(&late)]).await.unwrap(),
            [Outcome::CancelRecorded]
        );
        let outcomes = svc.handle_events(&[reserve(&late, &[("a", 1)])]).await.unwrap();
        assert!(matches!(outcomes[..], [Outcome::Failed(_)]), "{outcomes:?}");
        let order = format!("o-{i}");
        let outcomes = svc.handle_events(&[reserve(&order, &[("a", 1)])]).await.unwrap();
        assert_eq!(outcomes, [Outcome::Reserved]);
        assert_eq!(
            svc.handle_events(&[release(&order)]).await.unwrap(),
            [Outcome::Released]
        );
        // And the reads of the API (the stock cache's misses).
        assert_eq!(svc.get_stock(&pid("a")).await.unwrap().map(|s| s.reserved()), Some(0));
        assert_eq!(svc.availability(&[pid("a")]).await.unwrap()[&pid("a")], 1_000);
    };
    for i in 0..8 {
        round(i).await;
    }
    conn.batch_execute(
        "INSERT INTO reservations (order_id, status, created_at, updated_at, version) \
         SELECT 'old-' || g, 'RELEASED', now(), now(), 1 FROM generate_series(1, 100000) g; \
         INSERT INTO reservation_lines (order_id, product_id, quantity) \
         SELECT 'old-' || g, 'a', 1 FROM generate_series(1, 100000) g; \
         INSERT INTO processed_events (event_id, order_id, outcome, processed_at) \
         SELECT gen_random_uuid(), 'old-' || g, 'released', now() FROM generate_series(1, 100000) g; \
         INSERT INTO inventory (id, product_id, quantity) \
         SELECT gen_random_uuid(), 'bulk-' || g, 1 FROM generate_series(1, 100000) g; \
         SELECT public.pg_stat_statements_reset(0::oid, \
                (SELECT oid FROM pg_database WHERE datname = current_database()), 0::bigint);",
    )
    .await
    .unwrap();
    round(8).await;
    let read = texts(
        &mut conn,
        "SELECT (shared_blks_hit + shared_blks_read) / calls || ' blocks per run (' || calls || ' runs): ' \
                || left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS text \
         FROM public.pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query NOT LIKE '%pg_stat_statements%'",
    )
    .await;
    assert!(read.len() >= 8, "the round's statements were counted: {read:#?}");
    // A probe reads a few index pages and the row's page; each table is about 900 pages or more.
    let scans: Vec<_> = read
        .iter()
        .filter(|r| r.split(' ').next().unwrap().parse::<u64>().unwrap() >= 50)
        .collect();
    assert!(
        scans.is_empty(),
        "statements that read their whole table: {scans:#?}\nall: {read:#?}"
    );
}
