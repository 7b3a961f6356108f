//! A hung broker: the test's own, paused with SIGSTOP. The service keeps what
//! it commits meanwhile in its outbox, says it is not ready, and publishes
//! everything once the broker answers again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use inventory_domain::{Actor, ProductId, Quantity};
use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Topics, order_created, producer_on, send_json};
use inventory_tests::servers::OwnKafka;

const WAIT: Duration = Duration::from_secs(30);

/// `inventory_outbox_relay_failures_total` from /metrics.
async fn relay_failures(app: &TestApp) -> f64 {
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("inventory_outbox_relay_failures_total "))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_broker_delays_events_and_loses_none() {
    let db = TestDb::new().await;
    let kafka = OwnKafka::start();
    let options = AppOptions {
        hold_ttl_secs: 2,
        sweep_ms: 200,
        kafka_bootstrap: Some(kafka.bootstrap()),
        ..AppOptions::default()
    };
    let topics = Topics::new();
    let mut settings = inventory_tests::app::settings(&db, &topics, &options);
    // Sends fail after 2 s, so the pause below makes the relay fail, roll back and try again.
    settings.kafka.kafka_publish_timeout_ms = 2_000;
    let app = TestApp::spawn_with(settings, topics).await;
    let a = ProductId::parse("a").unwrap();
    app.service
        .add_stock(&a, Quantity::new(5).unwrap(), &Actor("test".into()))
        .await
        .unwrap();
    let outcomes = Reader::on(&kafka.bootstrap(), &app.topics.inventory);
    let p = producer_on(&kafka.bootstrap());
    send_json(&p, &app.topics.orders, &order_created("o-1", &[("a", 2)])).await;
    assert_eq!(
        outcomes.next(WAIT, "the reservation").await.value["eventType"],
        "InventoryReservedEvent"
    );

    kafka.pause();
    let paused = Instant::now();
    // The sweeper needs only the database: it releases the expired hold and commits the
    // event, which cannot leave while the broker hangs.
    let started = Instant::now();
    while db.unpublished().await == 0 {
        assert!(started.elapsed() < WAIT, "the expiry was not committed within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.service.get_stock(&a).await.unwrap().unwrap().reserved(), 0);
    let (status, body) = app.readiness().await;
    assert_eq!(status, 503, "not ready while the broker hangs: {body}");
    assert_eq!(body["checks"]["kafka"], "DOWN");
    assert_eq!(body["checks"]["database"], "UP");
    // An order sent now waits in the test's producer until the broker is back.
    let late = {
        let (p, topic) = (p.clone(), app.topics.orders.clone());
        tokio::spawn(async move { send_json(&p, &topic, &order_created("o-2", &[("a", 3)])).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(db.unpublished().await >= 1, "the expiry is still in the outbox");
    assert!(
        relay_failures(&app).await > 0.0,
        "the relay's sends timed out while the broker hung"
    );
    kafka.resume();
    let resumed = Instant::now();
    eprintln!("the broker hung for {:?}", paused.elapsed());

    late.await.unwrap();
    // A send that timed out may still reach the broker once it wakes: the same event twice, with one
    // eventId (delivery is at least once; consumers dedupe by eventId). Never two different events.
    let mut events: HashMap<String, (String, String, String)> = HashMap::new();
    let expected = [
        (
            "o-1".to_owned(),
            "InventoryReleasedEvent".to_owned(),
            "EXPIRED".to_owned(),
        ),
        ("o-2".to_owned(), "InventoryReservedEvent".to_owned(), String::new()),
    ];
    while !expected.iter().all(|e| events.values().any(|v| v == e)) {
        let Ok(r) = tokio::time::timeout(WAIT, outcomes.next(WAIT * 2, "the outcomes")).await else {
            // Say which side stalled: the relay (rows still in the outbox), the service's consumer
            // (o-2 never reserved), or this reader.
            let (status, body) = app.readiness().await;
            panic!(
                "the expiry and the late order's outcome were not all read: no record for {WAIT:?}, \
                 {:?} after the resume; read so far: {events:?}; unpublished outbox rows: {}; stock of a: {:?}; \
                 readiness {status}: {body}",
                resumed.elapsed(),
                db.unpublished().await,
                app.service.get_stock(&a).await,
            );
        };
        let field = |k: &str| r.value[k].as_str().unwrap_or_default().to_owned();
        let event = (field("orderId"), field("eventType"), field("reason"));
        eprintln!("{:?} after the resume: {event:?}", resumed.elapsed());
        if let Some(first) = events.insert(field("eventId"), event.clone()) {
            assert_eq!(first, event, "one eventId, one event");
        }
    }
    let mut distinct: Vec<_> = events.into_values().filter(|(order, ..)| order == "o-1").collect();
    distinct.sort();
    assert_eq!(
        distinct,
        expected[..1],
        "o-1 was released once (redeliveries share its eventId)"
    );
    let started = Instant::now();
    while db.unpublished().await > 0 {
        assert!(started.elapsed() < WAIT, "the outbox did not drain within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ready again by itself; the consumer may still be rejoining its group right after the pause
    // (readiness then truthfully says "joining the consumer group").
    app.wait_ready(WAIT).await;
    app.stop().await;
}
