//! The service binary stopped mid-stream, by SIGKILL or by SIGTERM, and
//! started again loses no outcome and gives no order a second, different one.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Topics, order_created, producer, send_json};
use inventory_tests::stack;

/// The service process; killed (SIGKILL) when dropped, so a failing test leaves none behind.
struct Service(Child);

impl Service {
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let started = std::time::Instant::now();
        loop {
            if let Some(exit) = self.0.try_wait().expect("wait") {
                assert!(exit.success(), "a graceful stop exits 0, got {exit}");
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Terminate,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(db: &TestDb, topics: &Topics) -> Service {
    let child = Command::new(env!("CARGO_BIN_EXE_inventory-app"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BOOTSTRAP_SERVERS", &stack().kafka_bootstrap)
        .env("KAFKA_GROUP_ID", &topics.group)
        .env("KAFKA_ORDER_TOPIC", &topics.orders)
        .env("KAFKA_PAYMENT_TOPIC", &topics.payments)
        .env("KAFKA_INVENTORY_TOPIC", &topics.inventory)
        .env("KAFKA_BATCH_MAX", "10")
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the inventory-app binary starts");
    Service(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_mid_stream_loses_no_outcome() {
    interrupted_mid_stream(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_mid_stream_finishes_in_flight_work_and_loses_no_outcome() {
    interrupted_mid_stream(Stop::Terminate).await;
}

async fn interrupted_mid_stream(stop: Stop) {
    let db = TestDb::new().await;
    let topics = Topics::new();
    let mut conn = db.conn().await;
    conn.batch_execute("INSERT INTO inventory (id, product_id, quantity) VALUES (gen_random_uuid(), 'p', 1000)")
        .await
        .unwrap();
    let orders = 1500;
    let p = producer();
    for i in 0..orders {
        send_json(&p, &topics.orders, &order_created(&format!("o-{i}"), &[("p", 1)])).await;
    }
    let outcomes = Reader::new(&topics.inventory);

    let mut child = start(&db, &topics);
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    fn record(seen: &mut HashMap<String, (String, String)>, r: inventory_tests::kafka::Received) {
        let order = r.value["orderId"].as_str().unwrap().to_owned();
        let outcome = (
            r.value["eventType"].as_str().unwrap().to_owned(),
            r.value["eventId"].as_str().unwrap().to_owned(),
        );
        if let Some(previous) = seen.get(&order) {
            assert_eq!(previous, &outcome, "order {order} got a second, different outcome");
        }
        seen.insert(order, outcome);
    }
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    // Kill as soon as the first transactions have committed: the rest is still to do.
    let waited = std::time::Instant::now();
    loop {
        let handled: Count = diesel::sql_query("SELECT count(*) AS n FROM reservations")
            .get_result(&mut conn)
            .await
            .unwrap();
        if handled.n >= 20 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the service handled nothing within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    match stop {
        Stop::Kill => child.kill(),
        Stop::Terminate => {
            child.terminate();
            // Everything committed was published before the exit: the outbox was drained.
            let pending: Count = diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
                .get_result(&mut conn)
                .await
                .unwrap();
            assert_eq!(pending.n, 0, "a graceful stop leaves no committed event unpublished");
        }
    }
    let done: Count = diesel::sql_query("SELECT count(*) AS n FROM reservations")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(
        done.n < orders as i64,
        "the stop must land mid-stream ({} of {orders} orders were handled)",
        done.n
    );

    let mut child = start(&db, &topics);
    while seen.len() < orders {
        let r = outcomes
            .next_outcome(
                Duration::from_secs(90),
                &format!("outcomes after the restart ({} of {orders})", seen.len()),
            )
            .await;
        record(&mut seen, r);
    }
    child.kill();

    let reserved = seen.values().filter(|(t, _)| t == "InventoryReservedEvent").count();
    let failed = seen
        .values()
        .filter(|(t, _)| t == "StockReservationFailedEvent")
        .count();
    assert_eq!((reserved, failed), (1000, 500));
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        reserved: i32,
    }
    let row: Row = diesel::sql_query("SELECT reserved FROM inventory WHERE product_id = 'p'")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.reserved, 1000, "each order reserved once");
}
