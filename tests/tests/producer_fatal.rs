//! A producer in librdkafka's fatal state (an idempotent producer that lost track of its sequence
//! numbers fails every send from then on) is replaced by a new one at the first failed send, so
//! events flow again without a restart.

use std::time::Duration;

use chrono::Utc;
use inventory_domain::{EventPublisher, PendingEvent};
use inventory_kafka::{KafkaConfig, KafkaPublisher};
use inventory_tests::kafka::{Reader, Topics};
use inventory_tests::stack;
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
        failed.to_string().contains("replaced after a fatal error"),
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
