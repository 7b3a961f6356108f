//! The chaos run's load (orders, follow-ups, malformed records, HTTP) and its fault injector.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Cluster, Fate, Instances, Ledger, Log, Plan, Seen, SentOrder, cluster_op};
use crate::db::TestDb;
use crate::kafka::Topics;

/// The load's clients and what they share.
#[derive(Clone)]
pub(crate) struct Load {
    topics: Topics,
    bootstrap: String,
    products: Vec<String>,
    instances: Arc<Instances>,
    ledger: Arc<Mutex<Ledger>>,
    seen: Arc<Mutex<Seen>>,
    log: Log,
    producer: FutureProducer,
    http: reqwest::Client,
    admin: String,
    system: String,
}

/// The running parts of the stream that outlive it: the outcome reader and the follow-up sender.
pub(crate) struct Stream {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stream {
    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Load {
    pub(crate) fn new(
        cluster: &Cluster,
        topics: &Topics,
        plan: &Plan,
        instances: Arc<Instances>,
        ledger: Arc<Mutex<Ledger>>,
        log: Log,
    ) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cluster.kafka_bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "60000")
            .create()
            .expect("producer");
        Self {
            topics: topics.clone(),
            bootstrap: cluster.kafka_bootstrap.clone(),
            products: (0..plan.products).map(|i| format!("chaos-{i:03}")).collect(),
            instances,
            ledger,
            seen: Arc::default(),
            log,
            producer,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            admin: crate::http::sign(&crate::http::claims("chaos-admin", &["ADMIN"])),
            system: crate::http::sign(&crate::http::claims("chaos-cart", &["SYSTEM"])),
        }
    }

    /// Every product gets `units` through the HTTP API.
    pub(crate) async fn stock_up(&self, units: i64) {
        for p in self.products.clone() {
            let done = self.add(&p, units, false).await;
            assert!(done, "the initial add of {p} was never answered");
        }
        self.log.say(format!(
            "{} products stocked with {units} units each",
            self.products.len()
        ));
    }

    /// Sends the plan's orders over `plan.stream`, with malformed records among them, while HTTP
    /// workers run; returns when every order is sent (HTTP workers stopped, the reader and the
    /// follow-up sender still running).
    pub(crate) async fn stream(&self, plan: &Plan, seed: u64) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let (follow_tx, follow_rx) = mpsc::unbounded_channel::<String>();
        let mut tasks = vec![
            tokio::spawn(self.clone().read_outcomes(Arc::clone(&stop), follow_tx)),
            tokio::spawn(self.clone().send_follow_ups(follow_rx, seed ^ 0x5eed)),
        ];
        let http_stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<JoinHandle<()>> = (0..plan.http_workers)
            .map(|w| tokio::spawn(self.clone().http_worker(Arc::clone(&http_stop), seed ^ (w as u64 + 1))))
            .collect();

        let mut rng = fastrand::Rng::with_seed(seed);
        let pace = plan.stream.div_f64(plan.orders.max(1) as f64);
        let started = tokio::time::Instant::now();
        let in_flight = Arc::new(Semaphore::new(64));
        let mut sends = tokio::task::JoinSet::new();
        let malformed_every = plan.orders / (plan.malformed + 1).max(1);
        for i in 0..plan.orders {
            tokio::time::sleep_until(started + pace * i as u32).await;
            if plan.malformed > 0 && malformed_every > 0 && i % malformed_every == malformed_every / 2 {
                let n = self.ledger.lock().expect("ledger").malformed.len();
                if n < plan.malformed {
                    self.send_malformed(n).await;
                }
            }
            let order = self.new_order(i, &mut rng);
            let permit = Arc::clone(&in_flight).acquire_owned().await.expect("semaphore");
            let load = self.clone();
            sends.spawn(async move {
                load.send_order(order).await;
                drop(permit);
            });
        }
        while sends.join_next().await.is_some() {}
        http_stop.store(true, Ordering::SeqCst);
        for w in workers {
            let _ = w.await;
        }
        self.log.say(format!("{} orders sent; HTTP load stopped", plan.orders));
        tasks.shrink_to_fit();
        Stream { stop, tasks }
    }

    fn new_order(&self, i: usize, rng: &mut fastrand::Rng) -> (String, SentOrder, u32) {
        let id = format!("chaos-order-{i:05}");
        let n_lines = rng.usize(1..=3);
        let mut products = self.products.clone();
        rng.shuffle(&mut products);
        let lines = products
            .into_iter()
            .take(n_lines)
            .map(|p| (p, rng.i64(1..=3)))
            .collect();
        let fate = match rng.u32(0..100) {
            0..35 => Fate::Pay,
            35..55 => Fate::Cancel,
            55..72 => Fate::PaymentFails,
            72..82 => Fate::CancelFirst,
            _ => Fate::Open,
        };
        let copies = if rng.u32(0..100) < 6 { 2 } else { 1 };
        let order = SentOrder {
            event_id: Uuid::new_v4(),
            lines,
            fate,
            delivered: false,
            copies,
            follow_up: None,
        };
        (id, order, copies)
    }

    async fn send_order(&self, (id, order, copies): (String, SentOrder, u32)) {
        let event_id = order.event_id;
        let items: Vec<Value> = order
            .lines
            .iter()
            .map(|(p, q)| json!({"productId": p, "quantity": q}))
            .collect();
        let create = json!({
            "eventId": event_id,
            "eventType": "OrderCreatedEvent",
            "occurredAt": chrono::Utc::now().to_rfc3339(),
            "correlationId": format!("corr-{id}"),
            "orderId": id,
            "items": items,
        });
        let fate = order.fate;
        self.ledger.lock().expect("ledger").orders.insert(id.clone(), order);
        if fate == Fate::CancelFirst {
            let cancel_id = Uuid::new_v4();
            let cancel = json!({"eventId": cancel_id, "eventType": "OrderCancelledEvent", "orderId": id});
            if self.send(&self.topics.orders, &id, cancel.to_string().as_bytes()).await
                && let Some(o) = self.ledger.lock().expect("ledger").orders.get_mut(&id)
            {
                o.follow_up = Some(cancel_id);
            }
        }
        let mut delivered = false;
        for _ in 0..copies {
            delivered |= self.send(&self.topics.orders, &id, create.to_string().as_bytes()).await;
        }
        if let Some(o) = self.ledger.lock().expect("ledger").orders.get_mut(&id) {
            o.delivered = delivered;
        }
    }

    async fn send_malformed(&self, n: usize) {
        let marker = format!("chaos-malformed-{n}-{}", Uuid::new_v4().simple());
        let payload = match n % 3 {
            0 => format!("{{not json {marker}"),
            1 => json!({"eventType": "OrderCreatedEvent", "orderId": marker, "items": "none"}).to_string(),
            _ => json!({"eventId": Uuid::new_v4(), "eventType": "OrderCreatedEvent", "orderId": marker,
                        "items": [{"productId": "chaos-000", "quantity": -4}]})
            .to_string(),
        };
        if self.send(&self.topics.orders, &marker, payload.as_bytes()).await {
            self.ledger.lock().expect("ledger").malformed.push(marker);
        }
    }

    /// Publishes and waits for the acknowledgement; retries for about a minute.
    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> bool {
        for attempt in 0..5 {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => return true,
                Err((e, _)) => {
                    self.log
                        .say(format!("send to {topic} failed (attempt {}): {e}", attempt + 1));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        false
    }

    /// Reads the service's events as they come: which orders are answered and released; the
    /// reserved ones whose fate has a follow-up go to the follow-up sender.
    async fn read_outcomes(self, stop: Arc<AtomicBool>, follow_ups: mpsc::UnboundedSender<String>) {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", crate::unique("chaos-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&self.topics.inventory]).expect("subscribe");
        while !stop.load(Ordering::SeqCst) {
            let Ok(next) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await else {
                continue;
            };
            let Ok(message) = next else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let value: Value = serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(Value::Null);
            let order = value["orderId"].as_str().unwrap_or_default().to_owned();
            let mut seen = self.seen.lock().expect("seen");
            match value["eventType"].as_str() {
                Some("InventoryReservedEvent") if seen.answered.insert(order.clone()) => {
                    seen.reserved.insert(order.clone());
                    let fate = self.ledger.lock().expect("ledger").orders.get(&order).map(|o| o.fate);
                    if matches!(fate, Some(Fate::Pay | Fate::Cancel | Fate::PaymentFails)) {
                        let _ = follow_ups.send(order);
                    }
                }
                Some("StockReservationFailedEvent") => {
                    seen.answered.insert(order);
                }
                Some("InventoryReleasedEvent") => {
                    seen.released.insert(order);
                }
                _ => {}
            }
        }
    }

    async fn send_follow_ups(self, mut orders: mpsc::UnboundedReceiver<String>, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        while let Some(order) = orders.recv().await {
            let fate = self.ledger.lock().expect("ledger").orders.get(&order).map(|o| o.fate);
            let (topic, event_type) = match fate {
                Some(Fate::Pay) => (&self.topics.payments, "PaymentSucceededEvent"),
                Some(Fate::PaymentFails) => (&self.topics.payments, "PaymentFailedEvent"),
                Some(Fate::Cancel) => (&self.topics.orders, "OrderCancelledEvent"),
                _ => continue,
            };
            let event_id = Uuid::new_v4();
            let event = json!({"eventId": event_id, "eventType": event_type, "orderId": order,
                               "correlationId": format!("corr-{order}")});
            let copies = if rng.u32(0..100) < 8 { 2 } else { 1 };
            let mut sent = false;
            for _ in 0..copies {
                sent |= self.send(topic, &order, event.to_string().as_bytes()).await;
            }
            if sent && let Some(o) = self.ledger.lock().expect("ledger").orders.get_mut(&order) {
                o.follow_up = Some(event_id);
            }
        }
    }

    /// One HTTP client: GETs, checks, adds and audits against whichever instances are up.
    async fn http_worker(self, stop: Arc<AtomicBool>, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        while !stop.load(Ordering::SeqCst) {
            let product = self.products[rng.usize(..self.products.len())].clone();
            match rng.u32(0..100) {
                0..40 => {
                    if let Some((200, body)) = self
                        .call(
                            "get",
                            reqwest::Method::GET,
                            &format!("/api/inventory/{product}"),
                            None,
                            None,
                            None,
                            false,
                        )
                        .await
                    {
                        let (q, r) = (
                            body["quantity"].as_i64().unwrap_or(-1),
                            body["reserved"].as_i64().unwrap_or(-1),
                        );
                        if q < 0 || r < 0 || r > q {
                            self.ledger
                                .lock()
                                .expect("ledger")
                                .impossible_reads
                                .push(body.to_string());
                        }
                    }
                }
                40..60 => {
                    let mut ids = self.products.clone();
                    rng.shuffle(&mut ids);
                    ids.truncate(rng.usize(1..=5));
                    let token = self.system.clone();
                    self.call(
                        "check",
                        reqwest::Method::POST,
                        "/api/inventory/check",
                        Some(json!(ids)),
                        Some(&token),
                        None,
                        false,
                    )
                    .await;
                }
                60..85 => {
                    let units = rng.i64(1..=3);
                    let replay = rng.u32(0..100) < 10;
                    self.add(&product, units, replay).await;
                }
                _ => {
                    let get = self
                        .call(
                            "get",
                            reqwest::Method::GET,
                            &format!("/api/inventory/{product}"),
                            None,
                            None,
                            None,
                            false,
                        )
                        .await;
                    if let Some((200, body)) = get {
                        // Counted at about what is on hold: stock stays scarce (orders fail
                        // INSUFFICIENT_STOCK), and some counts fall below the holds and are refused.
                        let count = (body["reserved"].as_i64().unwrap_or(0) + rng.i64(-1..=4)).max(0);
                        self.audit(&product, count).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(10..40))).await;
        }
    }

    /// Adds `units` with a fresh Idempotency-Key, retried until answered (about a minute); with
    /// `replay`, sends it once more and compares. Whether it was answered 200.
    async fn add(&self, product: &str, units: i64, replay: bool) -> bool {
        let key = Uuid::new_v4().to_string();
        let body = json!({"productId": product, "quantity": units});
        let admin = self.admin.clone();
        let answer = self
            .call(
                "add",
                reqwest::Method::POST,
                "/api/inventory/add",
                Some(body.clone()),
                Some(&admin),
                Some(&key),
                true,
            )
            .await;
        let mut ledger_entry = (product.to_owned(), units);
        match answer {
            Some((200, first)) => {
                self.ledger
                    .lock()
                    .expect("ledger")
                    .adds
                    .insert(key.clone(), std::mem::take(&mut ledger_entry));
                if replay {
                    let again = self
                        .call(
                            "add",
                            reqwest::Method::POST,
                            "/api/inventory/add",
                            Some(body),
                            Some(&admin),
                            Some(&key),
                            true,
                        )
                        .await;
                    let mut ledger = self.ledger.lock().expect("ledger");
                    ledger.replays += 1;
                    match again {
                        Some((200, second)) if second == first => {}
                        other => ledger
                            .replay_mismatches
                            .push(format!("add {key}: first {first}, replay {other:?}")),
                    }
                }
                true
            }
            Some(_) => false,
            None => {
                self.ledger
                    .lock()
                    .expect("ledger")
                    .adds_unknown
                    .insert(key, ledger_entry);
                false
            }
        }
    }

    async fn audit(&self, product: &str, count: i64) {
        let key = Uuid::new_v4().to_string();
        let body = json!({"productId": product, "quantity": count, "reason": "CYCLE_COUNT"});
        let admin = self.admin.clone();
        match self
            .call(
                "audit",
                reqwest::Method::POST,
                "/api/inventory/audit",
                Some(body),
                Some(&admin),
                Some(&key),
                true,
            )
            .await
        {
            Some((200, _)) => {
                self.ledger
                    .lock()
                    .expect("ledger")
                    .audits
                    .insert(key, (product.to_owned(), count));
            }
            Some(_) => {}
            None => {
                self.ledger
                    .lock()
                    .expect("ledger")
                    .audits_unknown
                    .insert(key, (product.to_owned(), count));
            }
        }
    }

    /// One request to a random live instance; retried on another when it fails in transit, and on
    /// 503 when `retry_unavailable`, for up to a minute. The status and JSON body, or `None`.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        route: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        key: Option<&str>,
        retry_unavailable: bool,
    ) -> Option<(u16, Value)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let live = self.instances.live();
            if live.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let addr = &live[fastrand::usize(..live.len())];
            let mut request = self.http.request(method.clone(), format!("http://{addr}{path}"));
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            if let Some(k) = key {
                request = request.header("Idempotency-Key", k);
            }
            if let Some(b) = &body {
                request = request.json(b);
            }
            let sent = Instant::now();
            match request.send().await {
                // 408: the instance did not read the request's head within actix-web's
                // client_request_timeout (5 s) of accepting the connection, and closed it unprocessed.
                // RFC 9110 lets a client repeat it; it is kept with its time and instance, to be
                // matched with the fault log.
                Ok(response) if response.status().as_u16() == 408 => {
                    let line = format!(
                        "+{:.1}s {} {route} {path} to {addr}, answered after {:.1} s",
                        self.log.at(),
                        chrono::Utc::now().format("%H:%M:%S%.3f"),
                        sent.elapsed().as_secs_f64()
                    );
                    self.ledger.lock().expect("ledger").http_unread.push(line);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => {
                    self.ledger.lock().expect("ledger").http_transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    *self
                        .ledger
                        .lock()
                        .expect("ledger")
                        .http_status
                        .entry((route.to_owned(), status))
                        .or_default() += 1;
                    let value = response.json::<Value>().await.unwrap_or(Value::Null);
                    if status == 503 && retry_unavailable {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                    return Some((status, value));
                }
            }
        }
        None
    }

    /// Waits until every delivered order is answered, every follow-up has taken effect and the
    /// outbox is empty; how long that took, or `None` if not within `within`.
    pub(crate) async fn drain(&self, db: &TestDb, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut last_report = Instant::now() - Duration::from_secs(10);
        loop {
            let (unanswered, unreleased, pay_orders) = {
                let ledger = self.ledger.lock().expect("ledger");
                let seen = self.seen.lock().expect("seen");
                let unanswered = ledger
                    .orders
                    .iter()
                    .filter(|(id, o)| o.delivered && !seen.answered.contains(*id))
                    .count();
                let unreleased = ledger
                    .orders
                    .iter()
                    .filter(|(id, o)| {
                        matches!(o.fate, Fate::Cancel | Fate::PaymentFails)
                            && seen.reserved.contains(*id)
                            && !seen.released.contains(*id)
                    })
                    .count();
                let pay: Vec<String> = ledger
                    .orders
                    .iter()
                    .filter(|(id, o)| o.fate == Fate::Pay && seen.reserved.contains(*id))
                    .map(|(id, _)| id.clone())
                    .collect();
                (unanswered, unreleased, pay)
            };
            let (uncommitted, outbox) = match db_pending(db, &pay_orders).await {
                Ok(v) => v,
                Err(e) => {
                    self.log.say(format!("drain: the database is not answering yet ({e})"));
                    (i64::MAX, i64::MAX)
                }
            };
            let done = unanswered == 0 && unreleased == 0 && uncommitted == 0 && outbox == 0;
            if done || last_report.elapsed() >= Duration::from_secs(5) || started.elapsed() >= within {
                self.log.say(format!(
                    "drain: {unanswered} orders unanswered, {unreleased} releases and {uncommitted} commits \
                     pending, {outbox} outbox rows unpublished"
                ));
                last_report = Instant::now();
            }
            if done {
                return Some(started.elapsed());
            }
            if started.elapsed() >= within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Pending {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    uncommitted: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    outbox: i64,
}

async fn db_pending(db: &TestDb, pay_orders: &[String]) -> Result<(i64, i64), String> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(&db.url).await.map_err(|e| e.to_string())?;
    let row: Pending = diesel::sql_query(
        "SELECT (SELECT count(*) FROM reservations WHERE status = 'RESERVED' AND order_id = ANY($1)) AS uncommitted, \
                (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS outbox",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(pay_orders)
    .get_result(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    Ok((row.uncommitted, row.outbox))
}

/// A fault and when it starts (from the start of the stream).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    KillInstance,
    TermInstance,
    KillLeaderBroker,
    PauseBroker,
    KillPrimary,
}

/// The plan's faults at seeded times within 10-80 % of the stream, in order.
pub(crate) fn schedule(plan: &Plan, rng: &mut fastrand::Rng) -> Vec<(Duration, Fault, u64)> {
    let mut faults = Vec::new();
    let counts = [
        (Fault::KillInstance, plan.instance_kills),
        (Fault::TermInstance, plan.instance_terms),
        (Fault::KillLeaderBroker, plan.broker_kills),
        (Fault::PauseBroker, plan.broker_pauses),
        (Fault::KillPrimary, plan.pg_failovers),
    ];
    for (fault, n) in counts {
        for _ in 0..n {
            let at = plan.stream.mul_f64(0.1 + 0.7 * rng.f64());
            faults.push((at, fault, rng.u64(..)));
        }
    }
    faults.sort_by_key(|(at, _, _)| *at);
    faults
}

/// Injects `faults` one after the other at their times (a database node's rejoin runs on the
/// side); returns when every fault is over and every instance is up again.
pub(crate) async fn inject(
    faults: Vec<(Duration, Fault, u64)>,
    instances: Arc<Instances>,
    topics: Topics,
    bootstrap: String,
    ledger: Arc<Mutex<Ledger>>,
    log: Log,
    max_pause: Duration,
) {
    let started = tokio::time::Instant::now();
    let mut on_the_side = Vec::new();
    let failed = |what: String| {
        log.fault(format!("FAULT INJECTION FAILED: {what}"));
        ledger
            .lock()
            .expect("ledger")
            .faults
            .push(format!("INJECTION FAILED: {what}"));
    };
    for (at, fault, seed) in faults {
        tokio::time::sleep_until(started + at).await;
        let mut rng = fastrand::Rng::with_seed(seed);
        match fault {
            Fault::KillInstance | Fault::TermInstance => {
                let up = instances.up();
                if up.is_empty() {
                    continue;
                }
                let i = up[rng.usize(..up.len())];
                let signal = if matches!(fault, Fault::KillInstance) {
                    "KILL"
                } else {
                    "TERM"
                };
                let stopped = Instant::now();
                let exit = instances.stop(i, signal).await;
                log.fault(format!(
                    "SIG{signal} instance {i}: exit {exit:?} after {:.1} s",
                    stopped.elapsed().as_secs_f64()
                ));
                if signal == "TERM" && !matches!(exit, Some(Some(s)) if s.success()) {
                    ledger
                        .lock()
                        .expect("ledger")
                        .unclean_stops
                        .push(format!("instance {i}: {exit:?}"));
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(500..3000))).await;
                let starting = Instant::now();
                instances.start(i).await;
                log.fault(format!(
                    "instance {i} restarted, listening after {:.1} s",
                    starting.elapsed().as_secs_f64()
                ));
            }
            Fault::KillLeaderBroker => {
                let node = match leader_of_most(&bootstrap, &topics).await {
                    Ok(n) => n,
                    Err(e) => {
                        failed(format!("finding the busiest leader: {e}"));
                        continue;
                    }
                };
                match cluster_op(&["broker-kill", &node.to_string()]).await {
                    Ok(_) => log.fault(format!("SIGKILL broker {node} (leader of the most partitions)")),
                    Err(e) => {
                        failed(e);
                        continue;
                    }
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(3000..10_000))).await;
                let starting = Instant::now();
                match cluster_op(&["broker-start", &node.to_string()]).await {
                    Ok(_) => log.fault(format!(
                        "broker {node} restarted, started after {:.1} s",
                        starting.elapsed().as_secs_f64()
                    )),
                    Err(e) => failed(e),
                }
            }
            Fault::PauseBroker => {
                let node = rng.u32(1..=3);
                let pause = Duration::from_millis(rng.u64(2000..=max_pause.as_millis().max(2001) as u64));
                if let Err(e) = cluster_op(&["broker-pause", &node.to_string()]).await {
                    failed(e);
                    continue;
                }
                log.fault(format!("SIGSTOP broker {node} for {:.1} s", pause.as_secs_f64()));
                tokio::time::sleep(pause).await;
                match cluster_op(&["broker-resume", &node.to_string()]).await {
                    Ok(_) => log.fault(format!("SIGCONT broker {node}")),
                    Err(e) => failed(e),
                }
            }
            Fault::KillPrimary => {
                let killed = Instant::now();
                let old = match cluster_op(&["pg-kill-primary"]).await {
                    Ok(old) => old,
                    Err(e) => {
                        failed(e);
                        continue;
                    }
                };
                log.fault(format!("SIGKILL PostgreSQL primary (node {old}) and its keeper"));
                match cluster_op(&["pg-wait-primary", &old]).await {
                    Ok(new) => log.fault(format!(
                        "node {new} promoted: primary again {:.1} s after the kill",
                        killed.elapsed().as_secs_f64()
                    )),
                    Err(e) => failed(e),
                }
                let log = log.clone();
                let ledger = Arc::clone(&ledger);
                on_the_side.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    let rejoining = Instant::now();
                    match cluster_op(&["pg-rejoin", &old]).await {
                        Ok(_) => log.fault(format!(
                            "node {old} rejoined as standby after {:.1} s",
                            rejoining.elapsed().as_secs_f64()
                        )),
                        Err(e) => {
                            log.fault(format!("FAULT INJECTION FAILED: {e}"));
                            ledger
                                .lock()
                                .expect("ledger")
                                .faults
                                .push(format!("INJECTION FAILED: {e}"));
                        }
                    }
                }));
            }
        }
    }
    for task in on_the_side {
        let _ = task.await;
    }
}

/// The node (1-3) that leads the most partitions of the run's topics.
async fn leader_of_most(bootstrap: &str, topics: &Topics) -> Result<u32, String> {
    let mut ports = HashMap::new();
    for n in 1..=3u32 {
        let port = cluster_op(&["broker-port", &n.to_string()]).await?;
        ports.insert(port, n);
    }
    let bootstrap = bootstrap.to_owned();
    let names = [
        topics.orders.clone(),
        topics.payments.clone(),
        topics.inventory.clone(),
        format!("{}.DLT", topics.orders),
        format!("{}.DLT", topics.payments),
    ];
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = client
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let port_of: HashMap<i32, String> = metadata
            .brokers()
            .iter()
            .map(|b| (b.id(), b.port().to_string()))
            .collect();
        let mut led: HashMap<i32, usize> = HashMap::new();
        for t in metadata
            .topics()
            .iter()
            .filter(|t| names.contains(&t.name().to_owned()))
        {
            for p in t.partitions() {
                *led.entry(p.leader()).or_default() += 1;
            }
        }
        let (broker, _) = led
            .into_iter()
            .filter(|(b, _)| *b >= 0)
            .max_by_key(|(b, n)| (*n, -*b))
            .ok_or("no partition has a leader")?;
        let port = port_of.get(&broker).ok_or("the leader is not among the brokers")?;
        ports
            .get(port)
            .copied()
            .ok_or_else(|| format!("no cluster node listens on port {port}"))
    })
    .await
    .map_err(|e| e.to_string())?
}
