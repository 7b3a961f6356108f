//! The invariant checker: after the stream has drained and the instances have stopped, reads
//! PostgreSQL and every topic from offset 0 and checks what the service promises, printing each
//! check with its figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;

use super::{Cluster, Fate, Ledger, Plan};
use crate::db::TestDb;
use crate::kafka::{Reader, Topics, record_count};

/// One check: what it looked at, and what broke.
#[derive(Debug)]
pub struct CheckResult {
    /// What is checked.
    pub name: &'static str,
    /// Its figures.
    pub figures: String,
    /// Violations (empty when it holds).
    pub violations: Vec<String>,
}

/// Every check of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// The checks, in order.
    pub checks: Vec<CheckResult>,
    /// The run's fault log.
    pub faults: Vec<String>,
}

impl Report {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.violations.is_empty())
    }

    /// Every violation, named by its check.
    pub fn violations(&self) -> Vec<String> {
        self.checks
            .iter()
            .flat_map(|c| c.violations.iter().map(move |v| format!("{}: {v}", c.name)))
            .collect()
    }

    /// Prints the fault log and each check with its figures.
    pub fn print(&self) {
        println!("{}", self.render_checks());
    }

    fn render_checks(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from("\n[chaos] fault log:\n");
        for line in &self.faults {
            let _ = writeln!(out, "  {line}");
        }
        out.push_str("\n[chaos] invariant checks:\n");
        for c in &self.checks {
            let mark = if c.violations.is_empty() { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  [{mark}] {}: {}", c.name, c.figures);
            for v in c.violations.iter().take(20) {
                let _ = writeln!(out, "         - {v}");
            }
            if c.violations.len() > 20 {
                let _ = writeln!(out, "         ... and {} more", c.violations.len() - 20);
            }
        }
        let n = self.violations().len();
        let _ = writeln!(
            out,
            "\n[chaos] {}",
            if n == 0 {
                "every invariant held".to_owned()
            } else {
                format!("{n} VIOLATIONS")
            }
        );
        out
    }

    /// The report as text, headed by the plan.
    pub fn render(&self, plan: &Plan) -> String {
        format!("[chaos] plan: {plan:?}\n{}", self.render_checks())
    }

    fn add(&mut self, name: &'static str, figures: String, violations: Vec<String>) {
        self.checks.push(CheckResult {
            name,
            figures,
            violations,
        });
    }
}

/// The availability events, and the level a reader is at after each.
const AVAILABILITY_TYPES: [(&str, Level); 4] = [
    ("InventoryLowStockEvent", Level::Low),
    ("InventoryOutOfStockEvent", Level::Out),
    ("InventoryBackInStockEvent", Level::InStock),
    ("InventoryLowStockClearedEvent", Level::InStock),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Out,
    Low,
    InStock,
}

/// Each product's availability events, read in order (copies of one event id once), must never
/// repeat a kind back to back, must start from "out" (the products are created by the run's
/// first adds), and must leave a reader at the product's level in PostgreSQL.
fn check_availability(report: &mut Report, events: &BTreeMap<String, Vec<Value>>, stock: &[StockRow], threshold: u32) {
    let level = |available: i64| match available {
        0 => Level::Out,
        a if a < i64::from(threshold) => Level::Low,
        _ => Level::InStock,
    };
    let mut bad = Vec::new();
    let mut total = 0;
    for s in stock {
        let mut ids = HashSet::new();
        let kinds: Vec<&str> = events
            .get(&s.product_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|e| ids.insert(e["eventId"].as_str().unwrap_or_default().to_owned()))
            .map(|e| e["eventType"].as_str().unwrap_or_default())
            .collect();
        total += kinds.len();
        if let Some(w) = kinds.windows(2).find(|w| w[0] == w[1]) {
            bad.push(format!("{}: {} twice in a row in {kinds:?}", s.product_id, w[0]));
        }
        if kinds
            .as_slice()
            .first()
            .is_some_and(|k| *k != "InventoryBackInStockEvent")
        {
            bad.push(format!(
                "{}: the first event is {}, not a BackInStock",
                s.product_id, kinds[0]
            ));
        }
        let read = kinds.last().map_or(Level::Out, |k| {
            AVAILABILITY_TYPES
                .iter()
                .find(|(name, _)| name == k)
                .map_or(Level::Out, |(_, l)| *l)
        });
        let actual = level(s.quantity - s.reserved);
        if read != actual {
            bad.push(format!(
                "{}: the events leave a reader at {read:?}, the product is {actual:?} ({} available): {kinds:?}",
                s.product_id,
                s.quantity - s.reserved
            ));
        }
    }
    report.add(
        "availability events replay to each product's level, never one kind twice in a row",
        format!(
            "{total} distinct availability events over {} products (low-stock threshold {threshold})",
            stock.len()
        ),
        bad,
    );
}

#[derive(QueryableByName)]
struct StockRow {
    #[diesel(sql_type = Text)]
    product_id: String,
    #[diesel(sql_type = BigInt)]
    quantity: i64,
    #[diesel(sql_type = BigInt)]
    reserved: i64,
}

#[derive(QueryableByName)]
struct HoldRow {
    #[diesel(sql_type = Text)]
    product_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    units: i64,
}

#[derive(QueryableByName)]
struct ReservationRow {
    #[diesel(sql_type = Text)]
    order_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
}

#[derive(QueryableByName)]
struct AdjustmentRow {
    #[diesel(sql_type = Text)]
    product_id: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    units: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The service's events of one kind for one order, distinct by event id.
#[derive(Debug, Default)]
struct Events {
    by_id: BTreeMap<String, Value>,
    copies: usize,
}

impl Events {
    fn push(&mut self, v: Value) {
        self.copies += 1;
        self.by_id
            .entry(v["eventId"].as_str().unwrap_or_default().to_owned())
            .or_insert(v);
    }
}

/// Runs every check.
pub async fn check(
    cluster: &Cluster,
    db: &TestDb,
    topics: &Topics,
    plan: &Plan,
    ledger: &Ledger,
    drained: Option<Duration>,
) -> Report {
    let mut report = Report {
        faults: ledger.faults.clone(),
        ..Report::default()
    };
    let injection_failures: Vec<String> = ledger
        .faults
        .iter()
        .filter(|f| f.contains("INJECTION FAILED"))
        .cloned()
        .collect();
    report.add(
        "faults injected",
        format!("{} fault-log lines", ledger.faults.len()),
        injection_failures,
    );
    report.add(
        "the stream drained",
        match drained {
            Some(took) => format!(
                "{:.1} s after the last order and fault (bound {} s)",
                took.as_secs_f64(),
                plan.drain.as_secs()
            ),
            None => format!("not within {} s", plan.drain.as_secs()),
        },
        if drained.is_some() {
            vec![]
        } else {
            vec!["orders, releases, commits or outbox rows were still pending".into()]
        },
    );
    check_topics(&mut report, cluster, topics, plan).await;

    let mut conn = AsyncPgConnection::establish(&db.url)
        .await
        .unwrap_or_else(|e| panic!("the checker cannot reach PostgreSQL at {}: {e}", db.url));
    let stock: Vec<StockRow> = diesel::sql_query(
        "SELECT product_id, quantity::bigint AS quantity, reserved::bigint AS reserved FROM inventory",
    )
    .load(&mut conn)
    .await
    .expect("stock rows");
    let holds: Vec<HoldRow> = diesel::sql_query(
        "SELECT l.product_id, r.status, sum(l.quantity)::bigint AS units \
         FROM reservation_lines l JOIN reservations r USING (order_id) GROUP BY 1, 2",
    )
    .load(&mut conn)
    .await
    .expect("holds");
    let reservations: Vec<ReservationRow> = diesel::sql_query("SELECT order_id, status, reason FROM reservations")
        .load(&mut conn)
        .await
        .expect("reservations");
    let adjustments: Vec<AdjustmentRow> = diesel::sql_query(
        "SELECT product_id, reason, count(*)::bigint AS n, sum(delta)::bigint AS units \
         FROM stock_adjustments GROUP BY 1, 2",
    )
    .load(&mut conn)
    .await
    .expect("adjustments");
    let outbox: Count = diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        .get_result(&mut conn)
        .await
        .expect("outbox");

    // Stock rows.
    let mut bad = Vec::new();
    for s in &stock {
        if s.quantity < 0 || s.reserved < 0 || s.quantity - s.reserved < 0 {
            bad.push(format!(
                "{}: quantity {} reserved {}",
                s.product_id, s.quantity, s.reserved
            ));
        }
    }
    let (q, r): (i64, i64) = stock.iter().fold((0, 0), |(q, r), s| (q + s.quantity, r + s.reserved));
    report.add(
        "quantity >= 0, reserved >= 0, quantity - reserved >= 0",
        format!("{} products, {q} units in stock, {r} reserved", stock.len()),
        bad,
    );
    let held = |status: &str| -> HashMap<&str, i64> {
        holds
            .iter()
            .filter(|h| h.status == status)
            .map(|h| (h.product_id.as_str(), h.units))
            .collect()
    };
    let active = held("RESERVED");
    let committed = held("COMMITTED");
    let bad: Vec<String> = stock
        .iter()
        .filter(|s| s.reserved != active.get(s.product_id.as_str()).copied().unwrap_or(0))
        .map(|s| {
            format!(
                "{}: reserved {} but the active holds sum to {}",
                s.product_id,
                s.reserved,
                active.get(s.product_id.as_str()).copied().unwrap_or(0)
            )
        })
        .collect();
    report.add(
        "reserved equals the sum of the active holds",
        format!(
            "{} units on hold in {} products",
            active.values().sum::<i64>(),
            active.len()
        ),
        bad,
    );

    // The topics from offset 0.
    let read_all = |topic: String| {
        let bootstrap = cluster.kafka_bootstrap.clone();
        async move {
            let n = record_count(&bootstrap, &topic).await;
            if n == 0 {
                return Vec::new();
            }
            Reader::on(&bootstrap, &topic)
                .take(
                    n as usize,
                    Duration::from_secs(120),
                    &format!("every record of {topic}"),
                )
                .await
        }
    };
    let produced = read_all(topics.inventory.clone()).await;
    let order_dlt = read_all(format!("{}.DLT", topics.orders)).await;
    let payment_dlt = read_all(format!("{}.DLT", topics.payments)).await;

    let mut outcomes: HashMap<String, Events> = HashMap::new();
    let mut releases: HashMap<String, Events> = HashMap::new();
    // Availability events per product, in topic order (one partition per product).
    let mut availability: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut other = Vec::new();
    for r in &produced {
        let order = r.value["orderId"].as_str().unwrap_or_default().to_owned();
        match r.value["eventType"].as_str() {
            Some("InventoryReservedEvent" | "StockReservationFailedEvent") => {
                outcomes.entry(order).or_default().push(r.value.clone())
            }
            Some("InventoryReleasedEvent") => releases.entry(order).or_default().push(r.value.clone()),
            Some(t) if AVAILABILITY_TYPES.iter().any(|(name, _)| *name == t) => {
                let product = r.value["productId"].as_str().unwrap_or_default().to_owned();
                availability.entry(product).or_default().push(r.value.clone())
            }
            _ => other.push(r.value.to_string()),
        }
    }
    check_availability(&mut report, &availability, &stock, plan.low_stock_threshold);

    // One outcome per order, caused by it.
    let mut bad = other
        .iter()
        .map(|o| format!("an event of no known type: {o}"))
        .collect::<Vec<_>>();
    let mut causation = Vec::new();
    let mut items_wrong = Vec::new();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcome_of: HashMap<&str, &Value> = HashMap::new();
    let delivered: Vec<(&String, &super::SentOrder)> = ledger.orders.iter().filter(|(_, o)| o.delivered).collect();
    for (id, order) in &delivered {
        let Some(events) = outcomes.get(id.as_str()) else {
            bad.push(format!("{id}: no outcome"));
            continue;
        };
        if events.by_id.len() != 1 {
            let kinds: Vec<String> = events
                .by_id
                .values()
                .map(|v| format!("{} {}", v["eventType"], v["reason"]))
                .collect();
            bad.push(format!("{id}: {} different outcomes: {kinds:?}", events.by_id.len()));
        }
        let v = events.by_id.values().next().expect("one");
        outcome_of.insert(id.as_str(), v);
        let kind = match v["eventType"].as_str() {
            Some("InventoryReservedEvent") => "RESERVED".to_owned(),
            _ => format!("FAILED {}", v["reason"].as_str().unwrap_or("?")),
        };
        *by_reason.entry(kind).or_default() += 1;
        if v["causationId"].as_str() != Some(order.event_id.to_string().as_str()) {
            causation.push(format!(
                "{id}: causationId {} is not {}",
                v["causationId"], order.event_id
            ));
        }
        if v["eventType"] == "InventoryReservedEvent" {
            let mut want: Vec<(String, i64)> = order.lines.clone();
            want.sort();
            let mut got: Vec<(String, i64)> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    (
                        i["productId"].as_str().unwrap_or_default().to_owned(),
                        i["quantity"].as_i64().unwrap_or(0),
                    )
                })
                .collect();
            got.sort();
            if got != want {
                items_wrong.push(format!("{id}: held {got:?}, ordered {want:?}"));
            }
        }
    }
    let known: HashSet<&str> = ledger.orders.keys().map(String::as_str).collect();
    let mut invalid_answered = 0;
    for (id, events) in outcomes.iter().filter(|(id, _)| !known.contains(id.as_str())) {
        // A malformed order whose id could be read is answered INVALID_ORDER (and dead-lettered).
        let invalid = ledger.malformed.contains(id)
            && events.by_id.len() == 1
            && events
                .by_id
                .values()
                .all(|v| v["eventType"] == "StockReservationFailedEvent" && v["reason"] == "INVALID_ORDER");
        if invalid {
            invalid_answered += 1;
        } else {
            bad.push(format!(
                "an outcome for an order never sent: {id}: {:?}",
                events.by_id.values()
            ));
        }
    }
    let copies: usize = outcomes.values().map(|e| e.copies).sum();
    let distinct: usize = outcomes.values().map(|e| e.by_id.len()).sum();
    report.add(
        "every delivered order has exactly one outcome",
        format!(
            "{} orders delivered ({} sent, {} with their create sent twice); outcomes {by_reason:?}; \
             {copies} outcome records, {distinct} distinct; {invalid_answered} malformed orders answered INVALID_ORDER",
            delivered.len(),
            ledger.orders.len(),
            ledger.orders.values().filter(|o| o.copies > 1).count()
        ),
        bad,
    );
    report.add(
        "each outcome's causationId is its order event's id",
        format!("{} outcomes", outcome_of.len()),
        causation,
    );
    report.add(
        "a reservation holds exactly the order's lines",
        format!("{} reservations", by_reason.get("RESERVED").copied().unwrap_or(0)),
        items_wrong,
    );
    let cancel_first: Vec<&(&String, &super::SentOrder)> = delivered
        .iter()
        .filter(|(_, o)| o.fate == Fate::CancelFirst && o.follow_up.is_some())
        .collect();
    let bad: Vec<String> = cancel_first
        .iter()
        .filter_map(|(id, _)| {
            let v = outcome_of.get(id.as_str())?;
            (v["eventType"] != "StockReservationFailedEvent" || v["reason"] != "ORDER_CANCELLED")
                .then(|| format!("{id}: answered {} {}", v["eventType"], v["reason"]))
        })
        .collect();
    report.add(
        "a cancel that overtook its order is answered ORDER_CANCELLED",
        format!("{} such orders", cancel_first.len()),
        bad,
    );

    // Releases.
    let mut bad = Vec::new();
    let mut released = 0;
    for (id, events) in &releases {
        let Some(order) = ledger.orders.get(id) else {
            bad.push(format!("a release for an order never sent: {id}"));
            continue;
        };
        if events.by_id.len() != 1 {
            bad.push(format!("{id}: released {} times", events.by_id.len()));
        }
        let v = events.by_id.values().next().expect("one");
        let reserved = outcome_of
            .get(id.as_str())
            .is_some_and(|o| o["eventType"] == "InventoryReservedEvent");
        let want = match order.fate {
            Fate::Cancel => Some("ORDER_CANCELLED"),
            Fate::PaymentFails => Some("PAYMENT_FAILED"),
            _ => None,
        };
        if !reserved {
            bad.push(format!("{id}: released but never reserved"));
        } else if want.is_none() || v["reason"].as_str() != want {
            bad.push(format!("{id} ({:?}): released with reason {}", order.fate, v["reason"]));
        } else if v["causationId"].as_str() != order.follow_up.map(|u| u.to_string()).as_deref() {
            bad.push(format!(
                "{id}: the release's causationId {} is not the follow-up's",
                v["causationId"]
            ));
        } else if outcome_of.get(id.as_str()).map(|o| &o["items"]) != Some(&v["items"]) {
            bad.push(format!(
                "{id}: released {} but held {:?}",
                v["items"],
                outcome_of.get(id.as_str()).map(|o| &o["items"])
            ));
        }
        released += 1;
    }
    let mut owed = 0;
    for (id, order) in &delivered {
        let reserved = outcome_of
            .get(id.as_str())
            .is_some_and(|o| o["eventType"] == "InventoryReservedEvent");
        if reserved && matches!(order.fate, Fate::Cancel | Fate::PaymentFails) && order.follow_up.is_some() {
            owed += 1;
            if !releases.contains_key(id.as_str()) {
                bad.push(format!(
                    "{id} ({:?}): reserved, then cancelled or unpaid, never released",
                    order.fate
                ));
            }
        }
    }
    report.add(
        "releases: one per cancelled or unpaid reservation, with its reason, and no others",
        format!("{released} orders released, {owed} owed a release"),
        bad,
    );

    // Final state of each reservation.
    let status: HashMap<&str, (&str, Option<&str>)> = reservations
        .iter()
        .map(|r| (r.order_id.as_str(), (r.status.as_str(), r.reason.as_deref())))
        .collect();
    let mut bad = Vec::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut committed_expected: HashMap<String, i64> = HashMap::new();
    for (id, order) in &delivered {
        let Some(outcome) = outcome_of.get(id.as_str()) else {
            continue;
        };
        let got = status.get(id.as_str()).map_or("NONE", |(s, _)| *s);
        *statuses.entry(got.to_owned()).or_default() += 1;
        let reserved = outcome["eventType"] == "InventoryReservedEvent";
        let want: &[&str] = match (reserved, order.fate, order.follow_up.is_some()) {
            (true, Fate::Pay, true) => &["COMMITTED"],
            (true, Fate::Cancel | Fate::PaymentFails, true) => &["RELEASED"],
            (true, _, _) => &["RESERVED"],
            (false, _, _) => &["FAILED", "CANCELLED"],
        };
        if !want.contains(&got) {
            bad.push(format!(
                "{id} ({:?}, reserved: {reserved}): status {got}, expected {want:?}",
                order.fate
            ));
        }
        if reserved && order.fate == Fate::Pay && order.follow_up.is_some() {
            for (p, q) in &order.lines {
                *committed_expected.entry(p.clone()).or_default() += q;
            }
        }
    }
    report.add(
        "each reservation ends in the state its events lead to",
        format!("{statuses:?}"),
        bad,
    );

    // Conservation.
    let mut bad = Vec::new();
    let mut adj: HashMap<(&str, &str), (i64, i64)> = HashMap::new();
    for a in &adjustments {
        adj.insert((a.product_id.as_str(), a.reason.as_str()), (a.n, a.units));
    }
    let sum_by = |entries: &HashMap<String, (String, i64)>, p: &str| -> (i64, i64) {
        entries
            .values()
            .filter(|(q, _)| q == p)
            .fold((0, 0), |(n, u), (_, units)| (n + 1, u + units))
    };
    let mut total_adds = 0;
    let mut total_audits = 0;
    for s in &stock {
        let p = s.product_id.as_str();
        let deltas: i64 = adjustments.iter().filter(|a| a.product_id == p).map(|a| a.units).sum();
        let committed_units = committed.get(p).copied().unwrap_or(0);
        if deltas - committed_units != s.quantity {
            bad.push(format!(
                "{p}: adds and audits {deltas:+} - committed {committed_units} = {}, but quantity is {}",
                deltas - committed_units,
                s.quantity
            ));
        }
        let expected_commit = committed_expected.get(p).copied().unwrap_or(0);
        if committed_units != expected_commit {
            bad.push(format!(
                "{p}: {committed_units} units committed, but the paid orders hold {expected_commit}"
            ));
        }
        let (db_adds, db_add_units) = adj.get(&(p, "ADD")).copied().unwrap_or((0, 0));
        let (ok_adds, ok_units) = sum_by(&ledger.adds, p);
        let (unknown_adds, unknown_units) = sum_by(&ledger.adds_unknown, p);
        if !(ok_adds..=ok_adds + unknown_adds).contains(&db_adds)
            || !(ok_units..=ok_units + unknown_units).contains(&db_add_units)
        {
            bad.push(format!(
                "{p}: the trail has {db_adds} adds of {db_add_units} units; the clients were answered 200 for \
                 {ok_adds} adds of {ok_units} units ({unknown_adds} more unanswered)"
            ));
        }
        total_adds += db_adds;
        let db_audits: i64 = adjustments
            .iter()
            .filter(|a| a.product_id == p && a.reason != "ADD")
            .map(|a| a.n)
            .sum();
        let (ok_audits, _) = sum_by(&ledger.audits, p);
        let (unknown_audits, _) = sum_by(&ledger.audits_unknown, p);
        if !(ok_audits..=ok_audits + unknown_audits).contains(&db_audits) {
            bad.push(format!(
                "{p}: the trail has {db_audits} audits; the clients were answered 200 for {ok_audits} \
                 ({unknown_audits} more unanswered)"
            ));
        }
        total_audits += db_audits;
    }
    report.add(
        "conservation: adds + audit deltas - committed = quantity; each Idempotency-Key applied once",
        format!(
            "{total_adds} adds and {total_audits} audits in the trail; {} units committed; {} replays of a key, \
             {} unanswered adds",
            committed.values().sum::<i64>(),
            ledger.replays,
            ledger.adds_unknown.len()
        ),
        bad.into_iter()
            .chain(ledger.replay_mismatches.iter().cloned())
            .collect(),
    );

    // Dead letters.
    let mut bad = Vec::new();
    let mut found: HashSet<&str> = HashSet::new();
    for r in &order_dlt {
        let text = r.value.to_string() + &String::from_utf8_lossy(&r.raw_headers.get("").cloned().unwrap_or_default());
        let raw = if r.value.is_null() {
            format!("{:?}", r.key)
        } else {
            text
        };
        match ledger
            .malformed
            .iter()
            .find(|m| raw.contains(m.as_str()) || r.key.as_deref() == Some(m.as_str()))
        {
            Some(m) => {
                found.insert(m.as_str());
            }
            None => bad.push(format!("a dead letter that is not one of the malformed records: {raw}")),
        }
    }
    for m in &ledger.malformed {
        if !found.contains(m.as_str()) {
            bad.push(format!("the malformed record {m} is not in the dead-letter topic"));
        }
    }
    for r in &payment_dlt {
        bad.push(format!("a payment event was dead-lettered: {}", r.value));
    }
    report.add(
        "dead letters: every malformed record, and no valid event",
        format!(
            "{} malformed sent, {} records in {}.DLT, {} in {}.DLT",
            ledger.malformed.len(),
            order_dlt.len(),
            topics.orders,
            payment_dlt.len(),
            topics.payments
        ),
        bad,
    );
    report.add(
        "the outbox is drained",
        format!("{} unpublished rows", outbox.n),
        if outbox.n == 0 {
            vec![]
        } else {
            vec![format!("{} outbox rows never published", outbox.n)]
        },
    );

    // HTTP.
    let allowed: &[(&str, &[u16])] = &[
        ("get", &[200, 503]),
        ("check", &[200, 503]),
        ("add", &[200, 503]),
        ("audit", &[200, 409, 422, 503]),
    ];
    let mut bad = Vec::new();
    let mut figures: BTreeMap<String, u64> = BTreeMap::new();
    for ((route, status), n) in &ledger.http_status {
        figures.insert(format!("{route} {status}"), *n);
        let ok = allowed
            .iter()
            .find(|(r, _)| r == route)
            .is_some_and(|(_, s)| s.contains(status));
        if !ok {
            bad.push(format!("{route} answered {status} {n} times"));
        }
    }
    bad.extend(
        ledger
            .impossible_reads
            .iter()
            .map(|b| format!("a GET showed impossible stock: {b}")),
    );
    report.add(
        "HTTP: never a 500 (only 503 while a dependency is down)",
        format!(
            "{figures:?}; {} requests failed in transit (instance down); {} answered 408, not processed \
             and retried{}",
            ledger.http_transport_errors,
            ledger.http_unread.len(),
            if ledger.http_unread.is_empty() {
                String::new()
            } else {
                format!(": {}", ledger.http_unread.join("; "))
            }
        ),
        bad,
    );
    report.add(
        "SIGTERM ends an instance cleanly (exit 0)",
        format!("{} unclean", ledger.unclean_stops.len()),
        ledger.unclean_stops.clone(),
    );
    report.add(
        "no panic in any instance's log",
        format!("{} panics", ledger.panics.len()),
        ledger.panics.clone(),
    );
    report
}

/// The service created its topics as configured: the plan's partitions, three replicas each,
/// `min.insync.replicas` 2.
async fn check_topics(report: &mut Report, cluster: &Cluster, topics: &Topics, plan: &Plan) {
    let rf: usize = cluster
        .env
        .get("KAFKA_TOPIC_REPLICATION_FACTOR")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let min_insync = cluster
        .env
        .get("KAFKA_TOPIC_MIN_INSYNC_REPLICAS")
        .cloned()
        .unwrap_or_else(|| "2".to_owned());
    let names = vec![
        topics.orders.clone(),
        topics.payments.clone(),
        topics.inventory.clone(),
        format!("{}.DLT", topics.orders),
        format!("{}.DLT", topics.payments),
    ];
    let bootstrap = cluster.kafka_bootstrap.clone();
    let wanted = names.clone();
    let partitions = plan.partitions;
    let mut bad: Vec<String> = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("client");
        let metadata = client.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
        let mut bad = Vec::new();
        for name in &wanted {
            let Some(t) = metadata.topics().iter().find(|t| t.name() == name) else {
                bad.push(format!("{name} does not exist"));
                continue;
            };
            if t.partitions().len() as i32 != partitions {
                bad.push(format!(
                    "{name} has {} partitions, not {partitions}",
                    t.partitions().len()
                ));
            }
            for p in t.partitions() {
                if p.replicas().len() != rf {
                    bad.push(format!("{name}[{}] has {} replicas", p.id(), p.replicas().len()));
                }
            }
        }
        bad
    })
    .await
    .expect("metadata");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cluster.kafka_bootstrap)
        .create()
        .expect("admin");
    let specs: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    match admin.describe_configs(&specs, &AdminOptions::new()).await {
        Ok(results) => {
            for (name, result) in names.iter().zip(results) {
                match result {
                    Ok(config) => {
                        let value = config.get("min.insync.replicas").and_then(|e| e.value.clone());
                        if value.as_deref() != Some(min_insync.as_str()) {
                            bad.push(format!("{name}: min.insync.replicas is {value:?}, not {min_insync}"));
                        }
                    }
                    Err(e) => bad.push(format!("{name}: cannot describe its configuration: {e}")),
                }
            }
        }
        Err(e) => bad.push(format!("cannot describe the topics' configuration: {e}")),
    }
    report.add(
        "the service created its topics as configured",
        format!(
            "{} topics, {} partitions, {rf} replicas, min.insync.replicas={min_insync}",
            names.len(),
            plan.partitions
        ),
        bad,
    );
}
