//! A stuck producer is replaced by a new one, so events flow again without a restart: one in
//! librdkafka's fatal state (an idempotent producer that lost track of its sequence numbers fails
//! every send from then on) at the first failed send, and one whose sends keep timing out (seen
//! after a broker hung: it timed out every send while new clients were served) after
//! `RENEW_AFTER_TIMEOUTS` of them in a row.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use inventory_domain::{EventPublisher, PendingEvent};
use inventory_kafka::{KafkaConfig, KafkaPublisher, RENEW_AFTER_TIMEOUTS};
use inventory_tests::kafka::{Reader, Topics};
use inventory_tests::servers::OwnKafka;
use inventory_tests::stack;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use uuid::Uuid;

fn event(key: &str) -> PendingEvent {
    PendingEvent {
        id: 1,
        event_id: Uuid::new_v4(),
        event_type: "InventoryReservedEvent".into(),
        key: key.into(),
        payload: format!(r#"{{"orderId":"{key}"}}"#),
        created_at: Utc::now(),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn a_producer_in_a_fatal_state_is_replaced_and_events_flow_again() {
    let topics = Topics::new();
    let mut config = KafkaConfig::new(stack().kafka_bootstrap.clone());
    config.order_topic = topics.orders.clone();
    config.payment_topic = topics.payments.clone();
    // Not an `inventory-events` topic: the test's records are bare, and the reader validates those
    // topics' records against the contract.
    config.inventory_topic = format!("{}-fatal-producer", topics.orders);
    inventory_kafka::ensure_topics(&config).await.expect("topics");
    let publisher = KafkaPublisher::new(&config).expect("producer");
    let out = Reader::new(&config.inventory_topic);

    publisher
        .publish(&[event("before")])
        .await
        .expect("a healthy producer publishes");
    let broken = publisher.producer();
    // librdkafka's own hook for this state: what it raises when an idempotent producer's sequence
    // numbers can no longer be trusted.
    let code = rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    // SAFETY: the pointer is the live client of `broken`, which outlives the call, and the reason
    // is a NUL-terminated string that librdkafka copies.
    #[allow(unsafe_code)]
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            broken.client().native_ptr(),
            code,
            c"injected by the test".as_ptr(),
        );
    }
    assert!(
        broken.client().fatal_error().is_some(),
        "the producer is in its fatal state"
    );

    let failed = publisher
        .publish(&[event("during")])
        .await
        .expect_err("a send on the fatal producer fails");
    assert!(
        failed
            .to_string()
            .contains("the producer was replaced after a fatal error"),
        "the failure says the producer was replaced: {failed}"
    );
    assert!(
        publisher.producer().client().fatal_error().is_none(),
        "a new producer took its place"
    );
    // As the relay does: the next pass sends the same rows again, on the new producer.
    publisher
        .publish(&[event("during"), event("after")])
        .await
        .expect("the new producer publishes");

    let mut keys = Vec::new();
    while keys.len() < 3 {
        let r = out.next(Duration::from_secs(30), "the events before and after").await;
        keys.push(r.value["orderId"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        keys,
        ["before", "during", "after"],
        "in order, and nothing sent by the broken producer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_whose_sends_keep_timing_out_is_replaced_and_events_flow_again() {
    // A broker of the test's own, to hang.
    let kafka = Arc::new(
        tokio::task::spawn_blocking(OwnKafka::start)
            .await
            .expect("the broker starts"),
    );
    let topics = Topics::new();
    let mut config = KafkaConfig::new(kafka.bootstrap());
    config.order_topic = topics.orders.clone();
    config.payment_topic = topics.payments.clone();
    config.inventory_topic = format!("{}-stuck-producer", topics.orders);
    config.publish_timeout = Duration::from_secs(1);
    inventory_kafka::ensure_topics(&config).await.expect("topics");
    let publisher = KafkaPublisher::new(&config).expect("producer");
    let out = Reader::on(&kafka.bootstrap(), &config.inventory_topic);
    // A new broker's partition may take longer than the 1 s timeout to accept its first record.
    publish_within(&publisher, "before", Duration::from_secs(60)).await;

    // A success starts the count again: so many timeouts, reported by hand, replace nothing.
    let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
    let first = publisher.producer();
    for _ in 1..RENEW_AFTER_TIMEOUTS {
        assert_eq!(publisher.renew_if_stuck(&first, &timed_out), None);
    }
    publisher.sent();
    assert_eq!(publisher.renew_if_stuck(&first, &timed_out), None);
    publisher.sent();
    // Other errors are no sign of a stuck producer.
    for _ in 0..RENEW_AFTER_TIMEOUTS {
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(publisher.renew_if_stuck(&first, &refused), None);
    }

    let hung = Arc::clone(&kafka);
    tokio::task::spawn_blocking(move || hung.pause()).await.expect("pause");
    for n in 1..=RENEW_AFTER_TIMEOUTS {
        let failed = publisher
            .publish(&[event(&format!("during-{n}"))])
            .await
            .expect_err("no send is acknowledged while the broker hangs")
            .to_string();
        assert!(failed.contains("timed out"), "send {n} timed out: {failed}");
        let replaced = !std::ptr::eq(publisher.producer().client().native_ptr(), first.client().native_ptr());
        if n < RENEW_AFTER_TIMEOUTS {
            assert!(!replaced, "replaced after only {n} timeouts: {failed}");
        } else {
            assert!(replaced, "a new producer after {n} timeouts in a row");
            assert!(
                failed.contains(&format!("the producer was replaced after {n} sends in a row timed out")),
                "the failure says why the producer was replaced: {failed}"
            );
        }
    }
    let hung = Arc::clone(&kafka);
    tokio::task::spawn_blocking(move || hung.resume())
        .await
        .expect("resume");

    // As the relay does: the next passes send again, on the new producer, until the broker takes it.
    publish_within(&publisher, "after", Duration::from_secs(60)).await;
    // The records sent while it hung may or may not have been written: the broker read them on
    // resume. What was acknowledged is there, "after" last.
    let mut keys = Vec::new();
    while keys.last().map(String::as_str) != Some("after") {
        let r = out
            .next(Duration::from_secs(30), "the events before and after the hang")
            .await;
        keys.push(r.value["orderId"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(keys.first().map(String::as_str), Some("before"), "{keys:?}");
}

/// Publishes an event keyed `key`, again after each failure, as the relay does; fails the test
/// when nothing went through within `within`.
async fn publish_within(publisher: &KafkaPublisher, key: &str, within: Duration) {
    let started = std::time::Instant::now();
    loop {
        match publisher.publish(&[event(key)]).await {
            Ok(()) => return,
            Err(e) => assert!(
                started.elapsed() < within,
                "{key}: nothing published within {within:?}: {e}"
            ),
        }
    }
}
