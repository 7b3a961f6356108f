//! The reservation state machine, event by event.

use chrono::{Duration, TimeZone, Utc};
use inventory_domain::*;
use uuid::Uuid;

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).unwrap()
}

fn oid(s: &str) -> OrderId {
    OrderId::parse(s).unwrap()
}

fn meta(n: u128) -> EventMeta {
    EventMeta {
        event_id: Uuid::from_u128(n),
        correlation_id: None,
        echo: Default::default(),
    }
}

fn reserve(n: u128, order: &str, lines: &[(&str, i64)]) -> IncomingEvent {
    let lines = lines
        .iter()
        .map(|(p, q)| OrderLine {
            product_id: pid(p),
            quantity: Quantity::new(*q).unwrap(),
        })
        .collect();
    IncomingEvent {
        meta: meta(n),
        command: OrderCommand::Reserve {
            order_id: oid(order),
            lines: OrderLines::new(lines).unwrap(),
        },
    }
}

fn release(n: u128, order: &str, reason: ReleaseReason) -> IncomingEvent {
    IncomingEvent {
        meta: meta(n),
        command: OrderCommand::Release {
            order_id: oid(order),
            reason,
        },
    }
}

fn commit(n: u128, order: &str) -> IncomingEvent {
    IncomingEvent {
        meta: meta(n),
        command: OrderCommand::Commit { order_id: oid(order) },
    }
}

fn ledger_with(stock: &[(&str, i64)]) -> Ledger {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let stock = stock
        .iter()
        .map(|(p, q)| Inventory::restore(Uuid::nil(), pid(p), *q, 0, 0, now).unwrap())
        .collect();
    Ledger::new(
        Snapshot {
            stock,
            ..Snapshot::default()
        },
        now,
        Duration::minutes(30),
    )
}

fn counts(ledger: &Ledger, p: &str) -> (u32, u32) {
    let inv = ledger.stock(&pid(p)).unwrap();
    (inv.quantity(), inv.reserved())
}

#[test]
fn reserve_then_commit_deducts() {
    let mut l = ledger_with(&[("a", 10)]);
    assert_eq!(l.apply(&reserve(1, "o", &[("a", 4)])).unwrap(), Outcome::Reserved);
    assert_eq!(counts(&l, "a"), (10, 4));
    assert_eq!(l.apply(&commit(2, "o")).unwrap(), Outcome::Committed);
    assert_eq!(counts(&l, "a"), (6, 0));
    // Cancel after commit does nothing.
    assert_eq!(
        l.apply(&release(3, "o", ReleaseReason::OrderCancelled)).unwrap(),
        Outcome::NoChange
    );
    assert_eq!(counts(&l, "a"), (6, 0));
    assert_eq!(l.outbox().len(), 1);
}

#[test]
fn release_gives_back_exactly_what_was_held_once() {
    let mut l = ledger_with(&[("a", 10), ("b", 3)]);
    l.apply(&reserve(1, "o", &[("a", 4), ("b", 3)])).unwrap();
    assert_eq!(
        l.apply(&release(2, "o", ReleaseReason::PaymentFailed)).unwrap(),
        Outcome::Released
    );
    assert_eq!((counts(&l, "a"), counts(&l, "b")), ((10, 0), (3, 0)));
    assert_eq!(
        l.apply(&release(3, "o", ReleaseReason::OrderCancelled)).unwrap(),
        Outcome::NoChange
    );
    assert_eq!(
        l.apply(&release(2, "o", ReleaseReason::OrderCancelled)).unwrap(),
        Outcome::Duplicate
    );
    match &l.outbox()[1].event {
        InventoryEvent::Released { reason, items, .. } => {
            assert_eq!(*reason, ReleaseReason::PaymentFailed);
            assert_eq!(items.len(), 2);
        }
        other => panic!("expected a release, got {other:?}"),
    }
}

#[test]
fn multi_line_order_is_all_or_nothing() {
    let mut l = ledger_with(&[("a", 10), ("b", 1)]);
    let outcome = l.apply(&reserve(1, "o", &[("a", 4), ("b", 2)])).unwrap();
    assert_eq!(outcome, Outcome::Failed(FailureReason::InsufficientStock));
    assert_eq!((counts(&l, "a"), counts(&l, "b")), ((10, 0), (1, 0)));
    // A second create of the failed order is a no-op, not a second outcome.
    assert_eq!(l.apply(&reserve(2, "o", &[("a", 1)])).unwrap(), Outcome::NoChange);
    assert_eq!(l.outbox().len(), 1);
}

#[test]
fn cancel_before_create_makes_a_late_create_fail() {
    let mut l = ledger_with(&[("a", 10)]);
    assert_eq!(
        l.apply(&release(1, "o", ReleaseReason::OrderCancelled)).unwrap(),
        Outcome::CancelRecorded
    );
    let late = l.apply(&reserve(2, "o", &[("a", 1)])).unwrap();
    assert_eq!(late, Outcome::Failed(FailureReason::OrderCancelled));
    assert_eq!(counts(&l, "a"), (10, 0));
    assert_eq!(
        l.reservation(&oid("o")).unwrap().status(),
        ReservationStatus::Failed(FailureReason::OrderCancelled)
    );
}

#[test]
fn empty_order_is_invalid() {
    let mut l = ledger_with(&[]);
    assert_eq!(
        l.apply(&reserve(1, "o", &[])).unwrap(),
        Outcome::Failed(FailureReason::InvalidOrder)
    );
}

fn reject(n: u128, order: &str, detail: &str) -> IncomingEvent {
    IncomingEvent {
        meta: meta(n),
        command: OrderCommand::Reject {
            order_id: oid(order),
            detail: detail.into(),
        },
    }
}

#[test]
fn an_unreadable_order_is_answered_as_invalid_with_its_problem() {
    let mut l = ledger_with(&[("a", 10)]);
    assert_eq!(
        l.apply(&reject(1, "o", "items[0].quantity: must be positive")).unwrap(),
        Outcome::Failed(FailureReason::InvalidOrder)
    );
    assert_eq!(counts(&l, "a"), (10, 0), "nothing is held");
    let [answer] = l.outbox() else {
        panic!("one answer: {:?}", l.outbox())
    };
    assert_eq!(
        answer.event,
        InventoryEvent::ReservationFailed {
            order_id: oid("o"),
            reason: FailureReason::InvalidOrder,
            detail: "items[0].quantity: must be positive".into(),
            items: Vec::new(),
        }
    );
    // The same record again, or a readable copy of the order after it, changes nothing more.
    assert_eq!(
        l.apply(&reject(1, "o", "items[0].quantity: must be positive")).unwrap(),
        Outcome::Duplicate
    );
    assert_eq!(l.apply(&reserve(2, "o", &[("a", 1)])).unwrap(), Outcome::NoChange);
    assert_eq!(counts(&l, "a"), (10, 0));
}

#[test]
fn an_unreadable_copy_after_a_reservation_changes_nothing() {
    let mut l = ledger_with(&[("a", 10)]);
    assert_eq!(l.apply(&reserve(1, "o", &[("a", 2)])).unwrap(), Outcome::Reserved);
    assert_eq!(
        l.apply(&reject(2, "o", "eventId: too long")).unwrap(),
        Outcome::NoChange
    );
    assert_eq!(counts(&l, "a"), (10, 2), "the hold stands");
    assert_eq!(l.outbox().len(), 1, "only the reservation was announced");
}

#[test]
fn too_many_lines_are_refused_at_construction() {
    let line = OrderLine {
        product_id: pid("a"),
        quantity: Quantity::new(1).unwrap(),
    };
    assert!(OrderLines::new(vec![line.clone(); 100]).is_ok());
    assert_eq!(
        OrderLines::new(vec![line; 101]),
        Err(TooManyLines { max: 100, got: 101 })
    );
}

#[test]
fn expiry_releases_only_active_expired_holds() {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let stock = vec![Inventory::restore(Uuid::nil(), pid("a"), 10, 0, 0, t0).unwrap()];
    let mut l = Ledger::new(
        Snapshot {
            stock,
            ..Snapshot::default()
        },
        t0,
        Duration::minutes(30),
    );
    l.apply(&reserve(1, "o", &[("a", 4)])).unwrap();
    let changes = l.into_changes();
    let held = changes.reservations[0].reservation.clone();
    assert_eq!(held.expires_at(), Some(t0 + Duration::minutes(30)));
    let snapshot = Snapshot {
        stock: vec![changes.stock[0].inventory.clone()],
        reservations: vec![held],
        processed_events: vec![],
        idempotency: None,
    };
    let mut early = Ledger::new(snapshot.clone(), t0 + Duration::minutes(29), Duration::minutes(30));
    assert_eq!(early.expire(&oid("o")).unwrap(), Outcome::NoChange);
    let mut late = Ledger::new(snapshot, t0 + Duration::minutes(31), Duration::minutes(30));
    assert_eq!(late.expire(&oid("o")).unwrap(), Outcome::Released);
    assert_eq!(counts(&late, "a"), (10, 0));
    match &late.outbox()[0].event {
        InventoryEvent::Released { reason, .. } => assert_eq!(*reason, ReleaseReason::Expired),
        other => panic!("expected a release, got {other:?}"),
    }
    assert_eq!(late.outbox()[0].causation_id, None);
}

#[test]
fn change_set_carries_versions() {
    let mut l = ledger_with(&[("a", 10)]);
    l.add_stock(&pid("new"), Quantity::new(2).unwrap(), &Actor("x".into()))
        .unwrap();
    l.apply(&reserve(1, "o", &[("a", 1)])).unwrap();
    let changes = l.into_changes();
    let versions: Vec<_> = changes
        .stock
        .iter()
        .map(|w| {
            (
                w.inventory.product_id().as_str(),
                w.expected_version,
                w.inventory.version(),
            )
        })
        .collect();
    assert_eq!(versions, vec![("a", Some(0), 1), ("new", None, 0)]);
    assert_eq!(changes.processed_events.len(), 1);
}

#[test]
fn an_outbox_event_names_its_cause() {
    let mut l = ledger_with(&[("a", 10)]);
    l.apply(&reserve(1, "o-7", &[("a", 2)])).unwrap();
    let event = &l.outbox()[0];
    assert_eq!(event.event.event_type(), "InventoryReservedEvent");
    assert_eq!(event.event.key(), "o-7");
    assert_eq!(
        event.causation_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001"),
        "a cause with no id of its own as sent is named by its key"
    );
}

#[test]
fn payment_before_create_makes_the_late_create_deduct_at_once() {
    let mut l = ledger_with(&[("a", 10)]);
    assert_eq!(l.apply(&commit(1, "o")).unwrap(), Outcome::PaymentRecorded);
    assert_eq!(l.apply(&commit(2, "o")).unwrap(), Outcome::NoChange, "remembered once");
    assert_eq!(l.reservation(&oid("o")).unwrap().status(), ReservationStatus::Paid);
    assert_eq!(counts(&l, "a"), (10, 0), "a payment alone moves no stock");

    assert_eq!(l.apply(&reserve(3, "o", &[("a", 4)])).unwrap(), Outcome::Reserved);
    assert_eq!(counts(&l, "a"), (6, 0), "deducted, nothing left on hold to expire");
    let record = l.reservation(&oid("o")).unwrap();
    assert_eq!(record.status(), ReservationStatus::Committed);
    assert_eq!(record.expires_at(), None);
    assert_eq!(record.lines().len(), 1);
    assert!(matches!(l.outbox(), [e] if matches!(e.event, InventoryEvent::Reserved { .. })));
    assert_eq!(
        l.apply(&release(4, "o", ReleaseReason::OrderCancelled)).unwrap(),
        Outcome::NoChange,
        "a cancel after the deduction changes nothing"
    );
    let changes = l.into_changes();
    assert!(changes.reservations[0].lines_added);
}

#[test]
fn a_stored_payment_is_settled_by_a_create_in_a_later_batch() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let paid = Reservation::restore(oid("o"), ReservationStatus::Paid, Vec::new(), now, now, None, 3);
    let mut l = Ledger::new(
        Snapshot {
            stock: vec![Inventory::restore(Uuid::nil(), pid("a"), 5, 1, 7, now).unwrap()],
            reservations: vec![paid],
            ..Snapshot::default()
        },
        now,
        Duration::minutes(30),
    );
    assert_eq!(
        l.apply(&reserve(1, "o", &[("a", 2), ("a", 1)])).unwrap(),
        Outcome::Reserved
    );
    let changes = l.into_changes();
    let write = &changes.reservations[0];
    assert_eq!(
        write.expected_version,
        Some(3),
        "the stored row is updated, not inserted again"
    );
    assert!(write.lines_added, "its lines are new");
    assert_eq!(write.reservation.status(), ReservationStatus::Committed);
    assert_eq!(write.reservation.lines()[0].quantity, 3);
    let stock = &changes.stock[0].inventory;
    assert_eq!(
        (stock.quantity(), stock.reserved()),
        (2, 1),
        "3 deducted, the other hold untouched"
    );
}

#[test]
fn a_paid_order_that_cannot_be_served_fails_and_holds_nothing() {
    let mut l = ledger_with(&[("a", 2)]);
    assert_eq!(l.apply(&commit(1, "o")).unwrap(), Outcome::PaymentRecorded);
    assert_eq!(
        l.apply(&reserve(2, "o", &[("a", 3)])).unwrap(),
        Outcome::Failed(FailureReason::InsufficientStock)
    );
    assert_eq!(counts(&l, "a"), (2, 0));
    assert_eq!(
        l.reservation(&oid("o")).unwrap().status(),
        ReservationStatus::Failed(FailureReason::InsufficientStock)
    );
}

fn availability_on(default: Option<u32>) -> AvailabilityConfig {
    AvailabilityConfig {
        enabled: true,
        default_low_stock_threshold: default,
    }
}

/// The availability events of a unit of work: (product, event type, available, cause).
fn availability(changes: &ChangeSet) -> Vec<(String, &'static str, u32, AvailabilityCause)> {
    changes
        .outbox
        .iter()
        .filter_map(|e| match &e.event {
            InventoryEvent::Availability(c) => {
                Some((c.product_id.to_string(), c.kind.event_type(), c.available, c.cause))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_batch_that_goes_to_zero_and_back_emits_nothing() {
    let mut l = ledger_with(&[("a", 4)]).with_availability(availability_on(Some(2)));
    l.apply(&reserve(1, "o", &[("a", 4)])).unwrap();
    l.apply(&release(2, "o", ReleaseReason::OrderCancelled)).unwrap();
    let changes = l.into_changes();
    assert!(availability(&changes).is_empty(), "{:?}", changes.outbox);
    assert_eq!(changes.outbox.len(), 2, "the reservation and the release only");
}

#[test]
fn reaching_zero_is_one_out_of_stock_caused_by_the_last_order() {
    let mut l = ledger_with(&[("a", 5), ("b", 9)]).with_availability(availability_on(Some(3)));
    l.apply(&reserve(1, "o-1", &[("a", 2), ("b", 1)])).unwrap();
    l.apply(&reserve(2, "o-2", &[("a", 3)])).unwrap();
    let changes = l.into_changes();
    assert_eq!(
        availability(&changes),
        [(
            "a".to_owned(),
            "InventoryOutOfStockEvent",
            0,
            AvailabilityCause::OrderReserved
        )],
        "a passed through low to out: one event; b stayed in stock"
    );
    let out = changes.outbox.last().unwrap();
    assert_eq!(
        out.causation_id.as_deref(),
        Some(Uuid::from_u128(2).to_string().as_str())
    );
    assert_eq!(out.event.key(), "a");
    assert!(out.headers.is_empty(), "no reply headers on an availability event");
}

#[test]
fn out_to_low_is_back_in_stock_then_low() {
    let mut l = ledger_with(&[("a", 3)]).with_availability(availability_on(Some(5)));
    l.apply(&reserve(1, "o", &[("a", 3)])).unwrap();
    let first = l.into_changes();
    assert_eq!(availability(&first)[0].1, "InventoryOutOfStockEvent");
    // The next unit of work starts from what was saved: 3 on hold, then a release.
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let stored = first.stock[0].inventory.clone();
    let reservation = first.reservations[0].reservation.clone();
    let mut l = Ledger::new(
        Snapshot {
            stock: vec![stored],
            reservations: vec![reservation],
            ..Snapshot::default()
        },
        now,
        Duration::minutes(30),
    )
    .with_availability(availability_on(Some(5)));
    l.apply(&release(2, "o", ReleaseReason::PaymentFailed)).unwrap();
    let kinds: Vec<&str> = availability(&l.into_changes()).iter().map(|e| e.1).collect();
    assert_eq!(kinds, ["InventoryBackInStockEvent", "InventoryLowStockEvent"]);
}

#[test]
fn manual_changes_name_their_cause_and_actor_and_no_threshold_means_never_low() {
    let mut l = ledger_with(&[("a", 10)]).with_availability(availability_on(None));
    l.audit_stock(
        &pid("a"),
        StockCount::new(1).unwrap(),
        AdjustmentReason::Damaged,
        &Actor("ops".into()),
        None,
    )
    .unwrap();
    let changes = l.into_changes();
    assert!(availability(&changes).is_empty(), "1 of no threshold is in stock");

    let mut l = ledger_with(&[("a", 10)]).with_availability(availability_on(None));
    l.set_low_stock_threshold(&pid("a"), Some(20), &Actor("ops".into()), None)
        .unwrap();
    let changes = l.into_changes();
    assert_eq!(
        availability(&changes),
        [(
            "a".to_owned(),
            "InventoryLowStockEvent",
            10,
            AvailabilityCause::ThresholdChanged
        )]
    );
    let InventoryEvent::Availability(change) = &changes.outbox[0].event else {
        unreachable!()
    };
    assert_eq!(change.actor.as_deref(), Some("ops"));
    assert_eq!(change.low_stock_threshold, Some(20));
    assert_eq!(changes.adjustments[0].reason, AdjustmentReason::Threshold);
    assert_eq!(changes.adjustments[0].delta(), 0);
    assert_eq!(
        changes.adjustments[0].note.as_deref(),
        Some("lowStockThreshold default -> 20")
    );

    let mut l = ledger_with(&[]).with_availability(availability_on(None));
    l.add_stock(&pid("new"), Quantity::new(1).unwrap(), &Actor("ops".into()))
        .unwrap();
    assert_eq!(
        availability(&l.into_changes()),
        [(
            "new".to_owned(),
            "InventoryBackInStockEvent",
            1,
            AvailabilityCause::StockAdded
        )],
        "a product without a record was out"
    );
}

#[test]
fn availability_events_are_off_unless_asked_for() {
    let mut l = ledger_with(&[("a", 1)]);
    l.apply(&reserve(1, "o", &[("a", 1)])).unwrap();
    assert!(availability(&l.into_changes()).is_empty());
}
