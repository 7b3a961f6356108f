//! `inventory-app demo`: shows the saga working against a running service.

use std::sync::Arc;
use std::time::Duration;

use inventory_app::settings::{DatabaseSettings, KafkaSettings};
use inventory_app::{BoxError, SystemClock};
use inventory_domain::{Actor, InventoryService, ProductId, Quantity, ServiceConfig};
use inventory_postgres::PgRepository;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

pub async fn run(mut database: DatabaseSettings, mut kafka: KafkaSettings) -> Result<(), BoxError> {
    database.prepare()?;
    kafka.prepare()?;
    let config = kafka
        .config()
        .ok_or("KAFKA_BOOTSTRAP_SERVERS is required (see .local/stack.env)")?;
    let pool_config = database.pool();
    let repo = PgRepository::new(inventory_postgres::pool(database.url(), &pool_config), &pool_config);
    let service = InventoryService::new(Arc::new(repo), Arc::new(SystemClock), ServiceConfig::default());
    let product = ProductId::parse("demo-widget")?;
    let stock = service
        .add_stock(&product, Quantity::new(5)?, &Actor("demo".into()))
        .await?;
    println!(
        "stocked {product}: quantity {} reserved {} available {}",
        stock.quantity(),
        stock.reserved(),
        stock.available()
    );

    let run = uuid::Uuid::new_v4().simple().to_string();
    let small = format!("demo-{}-small", &run[..8]);
    let big = format!("demo-{}-big", &run[..8]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .create()?;
    let events = [
        order_created(&small, 2),
        order_created(&big, 100_000),
        json!({"eventId": uuid::Uuid::new_v4(), "eventType": "OrderCancelledEvent", "orderId": small}),
    ];
    for event in &events {
        let key = event["orderId"].as_str().unwrap_or_default().to_owned();
        let payload = event.to_string();
        println!("→ {} {}", config.order_topic, payload);
        producer
            .send(
                FutureRecord::to(&config.order_topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", format!("inventory-demo-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&config.inventory_topic])?;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen < 3 {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .map_err(|_| "no outcome within 30 s: is the service running (`just run`)?")??;
        let Some(Ok(text)) = message.payload_view::<str>() else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let order = value["orderId"].as_str().unwrap_or_default();
        if order == small || order == big {
            seen += 1;
            println!("← {} {}", config.inventory_topic, serde_json::to_string_pretty(&value)?);
        }
    }
    let stock = service.get_stock(&product).await?.ok_or("demo-widget vanished")?;
    println!(
        "now {product}: quantity {} reserved {} available {}",
        stock.quantity(),
        stock.reserved(),
        stock.available()
    );
    Ok(())
}

fn order_created(order_id: &str, quantity: i64) -> Value {
    json!({
        "eventId": uuid::Uuid::new_v4(),
        "eventType": "OrderCreatedEvent",
        "occurredAt": chrono::Utc::now().to_rfc3339(),
        "correlationId": format!("demo-{order_id}"),
        "orderId": order_id,
        "items": [{"productId": "demo-widget", "quantity": quantity}]
    })
}
