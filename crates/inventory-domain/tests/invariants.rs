//! Property: no sequence of operations breaks the stock invariants, and
//! `reserved` always equals the sum of active holds.

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use inventory_domain::*;
use proptest::prelude::*;
use uuid::Uuid;

const PRODUCTS: [&str; 3] = ["p0", "p1", "p2"];

#[derive(Debug, Clone)]
enum Op {
    Add(usize, i64),
    Audit(usize, i64),
    Reserve(u8, Vec<(usize, i64)>),
    Release(u8, bool),
    Commit(u8),
    Expire(u8),
    Redeliver(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..20i64).prop_map(|(p, q)| Op::Add(p, q)),
        (0..3usize, 0..30i64).prop_map(|(p, q)| Op::Audit(p, q)),
        (0..6u8, prop::collection::vec((0..3usize, 1..8i64), 0..4)).prop_map(|(o, l)| Op::Reserve(o, l)),
        (0..6u8, any::<bool>()).prop_map(|(o, c)| Op::Release(o, c)),
        (0..6u8).prop_map(Op::Commit),
        (0..6u8).prop_map(Op::Expire),
        (0..50usize).prop_map(Op::Redeliver),
    ]
}

/// The store, as far as the rules can tell: rows replaced by change sets.
#[derive(Default)]
struct Store {
    stock: BTreeMap<ProductId, Inventory>,
    reservations: BTreeMap<OrderId, Reservation>,
    processed: Vec<Uuid>,
}

impl Store {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            stock: self.stock.values().cloned().collect(),
            reservations: self.reservations.values().cloned().collect(),
            processed_events: self.processed.clone(),
            idempotency: None,
        }
    }

    fn save(&mut self, changes: ChangeSet) {
        for w in changes.stock {
            let stored = self.stock.get(w.inventory.product_id()).map(Inventory::version);
            assert_eq!(
                stored, w.expected_version,
                "optimistic version must match the loaded row"
            );
            self.stock.insert(w.inventory.product_id().clone(), w.inventory);
        }
        for w in changes.reservations {
            self.reservations
                .insert(w.reservation.order_id().clone(), w.reservation);
        }
        self.processed
            .extend(changes.processed_events.iter().map(|p| p.event_id));
    }

    fn check(&self) {
        for (product, inv) in &self.stock {
            assert!(inv.reserved() <= inv.quantity(), "{product}: reserved above quantity");
            let held: u32 = self
                .reservations
                .values()
                .filter(|r| r.status().is_active())
                .flat_map(|r| r.lines())
                .filter(|l| &l.product_id == product)
                .map(|l| l.quantity)
                .sum();
            assert_eq!(
                inv.reserved(),
                held,
                "{product}: reserved differs from the active holds"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_any_sequence(ops in prop::collection::vec(op(), 1..60)) {
        let mut store = Store::default();
        let mut now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut history: Vec<IncomingEvent> = Vec::new();
        let actor = Actor("prop".into());
        for (i, op) in ops.into_iter().enumerate() {
            now += Duration::minutes(7);
            let mut ledger = Ledger::new(store.snapshot(), now, Duration::minutes(30));
            let order = |o: u8| OrderId::parse(format!("o{o}")).unwrap();
            let product = |p: usize| ProductId::parse(PRODUCTS[p]).unwrap();
            let event = |command| IncomingEvent {
                meta: EventMeta { event_id: Uuid::from_u128(i as u128 + 1), correlation_id: None , echo: Default::default()},
                command,
            };
            match op {
                Op::Add(p, q) => { let _ = ledger.add_stock(&product(p), Quantity::new(q).unwrap(), &actor); }
                Op::Audit(p, q) => {
                    let _ = ledger.audit_stock(&product(p), StockCount::new(q).unwrap(), AdjustmentReason::CycleCount, &actor, None);
                }
                Op::Reserve(o, lines) => {
                    let lines = lines.into_iter()
                        .map(|(p, q)| OrderLine { product_id: product(p), quantity: Quantity::new(q).unwrap() })
                        .collect();
                    let e = event(OrderCommand::Reserve { order_id: order(o), lines: OrderLines::new(lines).unwrap() });
                    ledger.apply(&e).unwrap();
                    history.push(e);
                }
                Op::Release(o, cancelled) => {
                    let reason = if cancelled { ReleaseReason::OrderCancelled } else { ReleaseReason::PaymentFailed };
                    let e = event(OrderCommand::Release { order_id: order(o), reason });
                    ledger.apply(&e).unwrap();
                    history.push(e);
                }
                Op::Commit(o) => {
                    let e = event(OrderCommand::Commit { order_id: order(o) });
                    ledger.apply(&e).unwrap();
                    history.push(e);
                }
                Op::Expire(o) => { ledger.expire(&order(o)).unwrap(); }
                Op::Redeliver(k) => {
                    if let Some(e) = history.get(k % history.len().max(1)).cloned() {
                        prop_assert_eq!(ledger.apply(&e).unwrap(), Outcome::Duplicate);
                    }
                }
            }
            store.save(ledger.into_changes());
            store.check();
        }
    }
}
