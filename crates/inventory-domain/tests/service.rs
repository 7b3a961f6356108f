//! Use cases against mocked ports: retries, errors, what gets saved.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use inventory_domain::ports::{MockClock, MockInventoryRepository};
use inventory_domain::*;
use uuid::Uuid;

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).unwrap()
}

fn oid(s: &str) -> OrderId {
    OrderId::parse(s).unwrap()
}

fn clock() -> MockClock {
    let mut clock = MockClock::new();
    clock
        .expect_now()
        .returning(|| Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap());
    clock.expect_sleep().returning(|_| ());
    clock
}

fn stock(product: &str, quantity: i64, reserved: i64, version: i64) -> Inventory {
    Inventory::restore(Uuid::nil(), pid(product), quantity, reserved, version, Utc::now()).unwrap()
}

fn service(repo: MockInventoryRepository, max_attempts: u32) -> InventoryService<MockInventoryRepository, MockClock> {
    let config = ServiceConfig {
        max_attempts,
        base_backoff: Duration::from_millis(1),
        ..ServiceConfig::default()
    };
    InventoryService::new(Arc::new(repo), Arc::new(clock()), config)
}

fn order(event: u128, order_id: &str, lines: &[(&str, i64)]) -> IncomingEvent {
    let lines = lines
        .iter()
        .map(|(p, q)| OrderLine {
            product_id: pid(p),
            quantity: Quantity::new(*q).unwrap(),
        })
        .collect();
    IncomingEvent {
        meta: EventMeta {
            event_id: Uuid::from_u128(event),
            correlation_id: Some("corr-1".into()),
            echo: Default::default(),
        },
        command: OrderCommand::Reserve {
            order_id: oid(order_id),
            lines: OrderLines::new(lines).unwrap(),
        },
    }
}

fn keyed(key: &str, fingerprint: &str) -> IdempotentRequest {
    IdempotentRequest {
        key: key.into(),
        fingerprint: fingerprint.into(),
    }
}

#[tokio::test]
async fn an_add_is_one_increment_in_the_store_without_a_read() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().never();
    repo.expect_save().never();
    repo.expect_add_units()
        .times(1)
        .withf(|a| {
            a.product_id == pid("new")
                && a.amount.get() == 7
                && a.actor == Actor("ops".into())
                && a.max_quantity == StockCount::MAX
                && a.idempotency.is_none()
        })
        .returning(|_| Ok(AddOutcome::Added(stock("new", 7, 0, 0))));
    let svc = service(repo, 3);
    let inv = svc
        .add_stock(&pid("new"), Quantity::new(7).unwrap(), &Actor("ops".into()))
        .await
        .unwrap();
    assert_eq!((inv.quantity(), inv.reserved(), inv.version()), (7, 0, 0));
    assert_eq!(svc.metrics().conflicts(), 0);
}

#[tokio::test]
async fn an_add_replays_what_its_key_stored_and_refuses_the_key_for_another_request() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_add_units()
        .times(2)
        .withf(|a| a.idempotency.as_ref().is_some_and(|i| i.key == "k-1"))
        .returning(|_| {
            Ok(AddOutcome::Replayed(IdempotencyRecord {
                request: keyed("k-1", "add:p:3"),
                result: stock("p", 13, 2, 4),
                lines: None,
            }))
        });
    let svc = service(repo, 3);
    let first = svc
        .add_stock_once(
            &pid("p"),
            Quantity::new(3).unwrap(),
            &Actor("a".into()),
            Some(&keyed("k-1", "add:p:3")),
        )
        .await
        .unwrap();
    assert_eq!(
        (first.quantity(), first.version()),
        (13, 4),
        "the stored result, as it was"
    );
    let err = svc
        .add_stock_once(
            &pid("p"),
            Quantity::new(9).unwrap(),
            &Actor("a".into()),
            Some(&keyed("k-1", "add:p:9")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::IdempotencyKeyReused(k) if k == "k-1"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_add_past_the_largest_count_is_refused() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_add_units()
        .times(1)
        .returning(|_| Ok(AddOutcome::WouldOverflow));
    let err = service(repo, 3)
        .add_stock(&pid("p"), Quantity::new(5).unwrap(), &Actor("a".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::Stock(StockError::Overflow { max: StockCount::MAX })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_key_stored_meanwhile_by_a_concurrent_add_is_retried_then_replayed() {
    let mut repo = MockInventoryRepository::new();
    let mut seq = mockall::Sequence::new();
    repo.expect_add_units()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(RepoError::Conflict));
    repo.expect_add_units().times(1).in_sequence(&mut seq).returning(|_| {
        Ok(AddOutcome::Replayed(IdempotencyRecord {
            request: keyed("k", "f"),
            result: stock("p", 4, 0, 1),
            lines: None,
        }))
    });
    let svc = service(repo, 3);
    let inv = svc
        .add_stock_once(
            &pid("p"),
            Quantity::new(1).unwrap(),
            &Actor("a".into()),
            Some(&keyed("k", "f")),
        )
        .await
        .unwrap();
    assert_eq!(inv.quantity(), 4);
    assert_eq!((svc.metrics().conflicts(), svc.metrics().retries()), (1, 1));
}

#[tokio::test]
async fn an_add_the_store_cannot_take_is_that_error_at_once() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_add_units()
        .times(1)
        .returning(|_| Err(RepoError::unavailable("down")));
    let err = service(repo, 3)
        .add_stock(&pid("p"), Quantity::new(1).unwrap(), &Actor("a".into()))
        .await
        .unwrap_err();
    assert!(
        err.is_transient() && matches!(err, ServiceError::Unavailable(_)),
        "{err:?}"
    );
}

async fn audit(
    svc: &InventoryService<MockInventoryRepository, MockClock>,
    count: i64,
) -> Result<Inventory, ServiceError> {
    svc.audit_stock(
        &pid("p"),
        StockCount::new(count).unwrap(),
        AdjustmentReason::CycleCount,
        &Actor("a".into()),
        None,
    )
    .await
}

#[tokio::test]
async fn conflict_reloads_and_retries() {
    let mut repo = MockInventoryRepository::new();
    let loads = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&loads);
    repo.expect_load().times(2).returning(move |_| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        // The second load sees the concurrent writer's change.
        let version = if *n == 1 { 3 } else { 4 };
        let reserved = if *n == 1 { 0 } else { 2 };
        Ok(Snapshot {
            stock: vec![stock("p", 10, reserved, version)],
            ..Snapshot::default()
        })
    });
    let mut seq = mockall::Sequence::new();
    repo.expect_save()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(RepoError::Conflict));
    repo.expect_save()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|c| {
            c.stock[0].expected_version == Some(4)
                && (c.stock[0].inventory.quantity(), c.stock[0].inventory.reserved()) == (15, 2)
        })
        .returning(|_| Ok(()));
    let svc = service(repo, 5);
    let inv = audit(&svc, 15).await.unwrap();
    assert_eq!((inv.quantity(), inv.version()), (15, 5));
    assert_eq!(
        (
            svc.metrics().conflicts(),
            svc.metrics().retries(),
            svc.metrics().exhausted()
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn retries_exhausted_is_a_clear_error() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().times(4).returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("p", 1, 0, 0)],
            ..Snapshot::default()
        })
    });
    repo.expect_save().times(4).returning(|_| Err(RepoError::Conflict));
    let svc = service(repo, 4);
    let err = audit(&svc, 2).await.unwrap_err();
    assert!(matches!(err, ServiceError::Contention { attempts: 4 }), "{err:?}");
    assert_eq!(
        (
            svc.metrics().conflicts(),
            svc.metrics().retries(),
            svc.metrics().exhausted()
        ),
        (4, 3, 1)
    );
}

#[tokio::test]
async fn audit_below_reserved_is_refused_without_saving() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("p", 10, 6, 2)],
            ..Snapshot::default()
        })
    });
    repo.expect_save().never();
    let err = service(repo, 3)
        .audit_stock(
            &pid("p"),
            StockCount::new(5).unwrap(),
            AdjustmentReason::CycleCount,
            &Actor("a".into()),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Stock(StockError::BelowReserved { count: 5, reserved: 6 })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn audit_with_stale_version_is_refused() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("p", 10, 0, 2)],
            ..Snapshot::default()
        })
    });
    repo.expect_save().never();
    let err = service(repo, 3)
        .audit_stock(
            &pid("p"),
            StockCount::new(5).unwrap(),
            AdjustmentReason::Damaged,
            &Actor("a".into()),
            Some(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::VersionMismatch { expected: 1, actual: 2 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn audit_of_unknown_product_is_not_found() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| Ok(Snapshot::default()));
    repo.expect_save().never();
    let err = service(repo, 3)
        .audit_stock(
            &pid("x"),
            StockCount::new(5).unwrap(),
            AdjustmentReason::Other,
            &Actor("a".into()),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn short_order_holds_nothing_and_names_each_short_line() {
    let saved = Arc::new(Mutex::new(None));
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|req| {
        assert_eq!(req.products, vec![pid("a"), pid("b"), pid("c")]);
        Ok(Snapshot {
            stock: vec![stock("a", 5, 0, 0), stock("b", 1, 0, 0)],
            ..Snapshot::default()
        })
    });
    let sink = Arc::clone(&saved);
    repo.expect_save().times(1).returning(move |c| {
        *sink.lock().unwrap() = Some(c.clone());
        Ok(())
    });
    let outcomes = service(repo, 3)
        .handle_events(&[order(1, "o-1", &[("a", 2), ("b", 2), ("c", 1)])])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Failed(FailureReason::UnknownProduct)]);
    let changes = saved.lock().unwrap().take().unwrap();
    assert!(changes.stock.is_empty(), "no stock row may change");
    let InventoryEvent::ReservationFailed { items, reason, .. } = &changes.outbox[0].event else {
        panic!("expected a failure event, got {:?}", changes.outbox[0].event)
    };
    assert_eq!(*reason, FailureReason::UnknownProduct);
    let short: Vec<_> = items
        .iter()
        .map(|s| (s.product_id.as_str(), s.requested, s.available))
        .collect();
    assert_eq!(short, vec![("b", 2, 1), ("c", 1, 0)]);
    assert_eq!(changes.outbox[0].causation_id, Some(Uuid::from_u128(1).to_string()));
    assert_eq!(changes.outbox[0].correlation_id.as_deref(), Some("corr-1"));
}

#[tokio::test]
async fn same_product_twice_is_summed() {
    let saved = Arc::new(Mutex::new(None));
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("a", 5, 0, 0)],
            ..Snapshot::default()
        })
    });
    let sink = Arc::clone(&saved);
    repo.expect_save().returning(move |c| {
        *sink.lock().unwrap() = Some(c.clone());
        Ok(())
    });
    let svc = service(repo, 3);
    let outcomes = svc
        .handle_events(&[order(1, "o-1", &[("a", 2), ("a", 3)])])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Reserved]);
    let changes = saved.lock().unwrap().take().unwrap();
    assert_eq!(changes.stock[0].inventory.reserved(), 5);
    assert_eq!(
        changes.reservations[0].reservation.lines(),
        &[LineItem {
            product_id: pid("a"),
            quantity: 5
        }]
    );
}

#[tokio::test]
async fn a_processed_event_changes_nothing() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("a", 5, 0, 0)],
            processed_events: vec![Uuid::from_u128(9)],
            ..Snapshot::default()
        })
    });
    repo.expect_save().never();
    let outcomes = service(repo, 3)
        .handle_events(&[order(9, "o-1", &[("a", 1)])])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Duplicate]);
}

#[tokio::test]
async fn store_outage_surfaces_as_unavailable() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load()
        .returning(|_| Err(RepoError::unavailable("connection refused")));
    let err = service(repo, 3)
        .handle_events(&[order(1, "o", &[("a", 1)])])
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        inventory_domain::ErrorChain(&err).to_string(),
        "store unavailable: connection refused",
        "the cause is kept, not flattened"
    );
}

#[tokio::test]
async fn availability_is_zero_for_unknown_products_and_reads_once() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_stock()
        .times(1)
        .withf(|p| p == [pid("a"), pid("z")])
        .returning(|_| Ok(vec![stock("a", 10, 3, 0)]));
    let map = service(repo, 3)
        .availability(&[pid("z"), pid("a"), pid("a")])
        .await
        .unwrap();
    assert_eq!(map.get(&pid("a")), Some(&7));
    assert_eq!(map.get(&pid("z")), Some(&0));
    assert_eq!(map.len(), 2);
}

#[tokio::test]
async fn first_use_of_an_idempotency_key_stores_the_result() {
    let saved = Arc::new(Mutex::new(None));
    let mut repo = MockInventoryRepository::new();
    repo.expect_load()
        .withf(|r| r.idempotency_key.as_deref() == Some("k-1"))
        .returning(|_| {
            Ok(Snapshot {
                stock: vec![stock("p", 4, 0, 2)],
                ..Snapshot::default()
            })
        });
    let sink = Arc::clone(&saved);
    repo.expect_save().times(1).returning(move |c| {
        *sink.lock().unwrap() = Some(c.clone());
        Ok(())
    });
    let inv = service(repo, 3)
        .audit_stock_once(
            &pid("p"),
            StockCount::new(5).unwrap(),
            AdjustmentReason::CycleCount,
            &Actor("a".into()),
            None,
            Some(&keyed("k-1", "audit p 5")),
        )
        .await
        .unwrap();
    let changes = saved.lock().unwrap().take().unwrap();
    let record = changes.idempotency.expect("the result is stored under the key");
    assert_eq!(record.request, keyed("k-1", "audit p 5"));
    assert_eq!(record.result, inv);
    assert_eq!((inv.quantity(), inv.version()), (5, 3));
}

#[tokio::test]
async fn a_replayed_idempotency_key_returns_the_first_result_and_saves_nothing() {
    let first = stock("p", 5, 0, 3);
    let stored = first.clone();
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(move |_| {
        Ok(Snapshot {
            stock: vec![stock("p", 9, 0, 7)],
            idempotency: Some(IdempotencyRecord {
                request: keyed("k-1", "audit p 5"),
                result: stored.clone(),
                lines: None,
            }),
            ..Snapshot::default()
        })
    });
    repo.expect_save().never();
    let svc = service(repo, 3);
    let again = svc
        .audit_stock_once(
            &pid("p"),
            StockCount::new(5).unwrap(),
            AdjustmentReason::CycleCount,
            &Actor("a".into()),
            None,
            Some(&keyed("k-1", "audit p 5")),
        )
        .await
        .unwrap();
    assert_eq!(again, first);
    let reused = svc
        .audit_stock_once(
            &pid("p"),
            StockCount::new(6).unwrap(),
            AdjustmentReason::CycleCount,
            &Actor("a".into()),
            None,
            Some(&keyed("k-1", "audit p 6")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(reused, ServiceError::IdempotencyKeyReused(ref k) if k == "k-1"),
        "{reused:?}"
    );
}

#[tokio::test]
async fn a_listing_asks_one_row_more_than_the_page_and_says_where_to_go_on() {
    let mut repo = MockInventoryRepository::new();
    let filter = StockFilter {
        available_below: Some(5),
        ..StockFilter::default()
    };
    let expected = StockListing {
        filter: filter.clone(),
        after: Some(pid("b")),
        limit: 3,
        scan: MAX_SCAN,
    };
    repo.expect_list_stock()
        .withf(move |l| *l == expected)
        .times(1)
        .returning(|_| {
            Ok(StockScan {
                rows: vec![stock("c", 1, 0, 1), stock("d", 2, 0, 1), stock("e", 3, 0, 1)],
                stopped_at: None,
            })
        });
    let page = service(repo, 1).list_stock(filter, Some(pid("b")), 2).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|i| i.product_id().as_str()).collect();
    assert_eq!(ids, ["c", "d"], "the extra row is not returned");
    assert_eq!(
        page.next,
        Some(pid("d")),
        "the next page starts after the last row shown"
    );
}

#[tokio::test]
async fn the_last_page_has_no_continuation_and_the_limit_is_clamped() {
    let mut repo = MockInventoryRepository::new();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    repo.expect_list_stock().times(2).returning(move |l| {
        log.lock().unwrap().push(l.limit);
        Ok(StockScan {
            rows: vec![stock("a", 1, 0, 1)],
            stopped_at: None,
        })
    });
    let service = service(repo, 1);
    for limit in [0, 10_000] {
        let page = service.list_stock(StockFilter::default(), None, limit).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next, None, "fewer rows than the page: nothing follows");
    }
    assert_eq!(
        *asked.lock().unwrap(),
        [2, MAX_PAGE + 1],
        "limits clamped to 1..=MAX_PAGE, plus one"
    );
}

#[tokio::test]
async fn a_short_page_whose_scan_stopped_at_its_bound_goes_on_from_there() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_list_stock().returning(|_| {
        Ok(StockScan {
            rows: vec![stock("k", 0, 0, 1)],
            stopped_at: Some(pid("z")),
        })
    });
    let page = service(repo, 1)
        .list_stock(StockFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, Some(pid("z")), "more rows may match after the scanned ones");
}

#[tokio::test]
async fn a_listing_the_store_cannot_answer_is_unavailable() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_list_stock()
        .returning(|_| Err(RepoError::unavailable("connection refused")));
    let err = service(repo, 1)
        .list_stock(StockFilter::default(), None, 50)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[test]
fn an_addition_emits_what_its_increment_crossed() {
    let addition = |amount: i64| StockAddition {
        product_id: pid("a"),
        amount: Quantity::new(amount).unwrap(),
        actor: Actor("ops".into()),
        at: Utc::now(),
        new_id: Uuid::nil(),
        max_quantity: StockCount::MAX,
        idempotency: None,
        availability: AvailabilityConfig {
            enabled: true,
            default_low_stock_threshold: Some(5),
        },
        request_id: None,
    };
    let kinds =
        |events: Vec<OutboxEvent>| -> Vec<&'static str> { events.iter().map(|e| e.event.event_type()).collect() };
    // 1 -> 4: low before and after.
    assert!(kinds(addition(3).availability_events(&stock("a", 4, 0, 4))).is_empty());
    // 3 -> 6: low -> in stock.
    assert_eq!(
        kinds(addition(3).availability_events(&stock("a", 6, 0, 4))),
        ["InventoryLowStockClearedEvent"]
    );
    // A new record (version 0) of 3: out -> low.
    assert_eq!(
        kinds(addition(3).availability_events(&stock("a", 3, 0, 0))),
        ["InventoryBackInStockEvent", "InventoryLowStockEvent"]
    );
    // 2 reserved of 2, then 2 more: out -> low.
    assert_eq!(
        kinds(addition(2).availability_events(&stock("a", 4, 2, 7))),
        ["InventoryBackInStockEvent", "InventoryLowStockEvent"]
    );
    let mut off = addition(3);
    off.availability.enabled = false;
    assert!(off.availability_events(&stock("a", 3, 0, 0)).is_empty());
}

fn count(p: &str, n: i64, expected_version: Option<i64>) -> CountLine {
    CountLine {
        product_id: pid(p),
        count: StockCount::new(n).unwrap(),
        expected_version,
    }
}

#[tokio::test]
async fn a_bulk_count_saves_every_line_in_one_change_set_under_its_key() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("a", 10, 2, 4), stock("b", 5, 0, 1)],
            ..Snapshot::default()
        })
    });
    let saved = Arc::new(Mutex::new(None));
    let keep = saved.clone();
    repo.expect_save().times(1).returning(move |c| {
        *keep.lock().unwrap() = Some(c.clone());
        Ok(())
    });
    let lines = service(repo, 3)
        .audit_many(
            &[count("a", 7, Some(4)), count("b", 9, None)],
            AdjustmentReason::CycleCount,
            &Actor("ops".into()),
            false,
            Some(&keyed("k-9", "counts")),
        )
        .await
        .unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| (
                l.product_id.as_str(),
                l.old_quantity,
                l.new_quantity,
                l.reserved,
                l.version
            ))
            .collect::<Vec<_>>(),
        [("a", 10, 7, 2, 5), ("b", 5, 9, 0, 2)]
    );
    let changes = saved.lock().unwrap().take().unwrap();
    assert_eq!(changes.stock.len(), 2, "one transaction for both");
    assert_eq!(changes.adjustments.len(), 2);
    let record = changes.idempotency.expect("stored under the key");
    assert_eq!(
        record.lines.as_deref(),
        Some(lines.as_slice()),
        "the answer is what a retry gets"
    );
}

#[tokio::test]
async fn one_refused_line_refuses_the_bulk_count_and_names_the_line() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("a", 10, 0, 1), stock("b", 5, 4, 1)],
            ..Snapshot::default()
        })
    });
    repo.expect_save().never();
    let err = service(repo, 3)
        .audit_many(
            &[count("a", 1, None), count("b", 3, None), count("c", 1, None)],
            AdjustmentReason::CycleCount,
            &Actor("ops".into()),
            false,
            None,
        )
        .await
        .unwrap_err();
    match err {
        ServiceError::Line { index, source } => {
            assert_eq!(index, 1);
            assert!(
                matches!(
                    *source,
                    ServiceError::Stock(StockError::BelowReserved { count: 3, reserved: 4 })
                ),
                "{source:?}"
            );
        }
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dry_run_reads_and_never_saves() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load()
        .withf(|r| r.idempotency_key.is_none())
        .times(1)
        .returning(|_| {
            Ok(Snapshot {
                stock: vec![stock("a", 10, 0, 3)],
                ..Snapshot::default()
            })
        });
    repo.expect_save().never();
    let lines = service(repo, 3)
        .audit_many(
            &[count("a", 4, Some(3))],
            AdjustmentReason::Damaged,
            &Actor("ops".into()),
            true,
            Some(&keyed("k", "f")),
        )
        .await
        .unwrap();
    assert_eq!(
        (lines[0].old_quantity, lines[0].new_quantity, lines[0].version),
        (10, 4, 3),
        "the version as it is"
    );
}

fn cancel(event: u128, order_id: &str) -> IncomingEvent {
    IncomingEvent {
        meta: EventMeta {
            event_id: Uuid::from_u128(event),
            correlation_id: None,
            echo: Default::default(),
        },
        command: OrderCommand::Release {
            order_id: oid(order_id),
            reason: ReleaseReason::OrderCancelled,
        },
    }
}

/// A batch worked out while the one before is still being saved reads the store as it was before
/// that save; the earlier batch's changes laid over it make the outcomes and versions what they
/// will be once it has committed.
#[tokio::test]
async fn a_batch_prepared_during_the_last_save_builds_on_that_save() {
    let mut repo = MockInventoryRepository::new();
    // The store never shows the first batch: its save is still in flight.
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("a", 5, 0, 4)],
            ..Snapshot::default()
        })
    });
    repo.expect_save().never();
    let svc = service(repo, 3);
    let first = svc
        .prepare_events(&[order(1, "o-1", &[("a", 2)])], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.outcomes, vec![Outcome::Reserved]);

    let next = [
        cancel(2, "o-1"),
        order(3, "o-2", &[("a", 4)]),
        order(1, "o-1", &[("a", 2)]),
    ];
    let second = svc.prepare_events(&next, Some(&first.changes)).await.unwrap().unwrap();
    assert_eq!(
        second.outcomes,
        vec![Outcome::Released, Outcome::Reserved, Outcome::Duplicate],
        "the cancel finds o-1's hold, o-2 finds its 2 units back, the redelivery is known"
    );
    let a = &second.changes.stock[0];
    assert_eq!(
        a.expected_version,
        Some(5),
        "checked against the version the first save writes"
    );
    assert_eq!((a.inventory.reserved(), a.inventory.version()), (4, 6));
    let held = &second.changes.reservations[0];
    assert_eq!(held.reservation.order_id(), &oid("o-1"));
    assert_eq!(
        held.expected_version,
        Some(0),
        "an update of the row the first save inserts"
    );
    assert!(matches!(held.reservation.status(), ReservationStatus::Released(_)));

    // Without the first batch's changes the same events would be answered wrongly.
    let blind = svc.prepare_events(&next[..1], None).await.unwrap().unwrap();
    assert_eq!(blind.outcomes, vec![Outcome::CancelRecorded]);
}

#[tokio::test]
async fn a_hold_whose_stock_row_is_in_neither_cannot_be_laid_over() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|r| {
        Ok(Snapshot {
            stock: if r.products.is_empty() {
                vec![]
            } else {
                vec![stock("b", 5, 0, 0)]
            },
            ..Snapshot::default()
        })
    });
    let svc = service(repo, 3);
    let mut first = svc
        .prepare_events(&[order(1, "o-1", &[("b", 1)])], None)
        .await
        .unwrap()
        .unwrap();
    // A change of the hold alone (its stock row not in the change set, nor loaded for the cancel).
    first.changes.stock.clear();
    let second = svc
        .prepare_events(&[cancel(2, "o-1")], Some(&first.changes))
        .await
        .unwrap();
    assert!(second.is_none(), "the caller must load again after the save");
}

#[tokio::test]
async fn a_conflicting_prepared_save_is_transient_and_counted() {
    let mut repo = MockInventoryRepository::new();
    repo.expect_load().returning(|_| {
        Ok(Snapshot {
            stock: vec![stock("a", 5, 0, 0)],
            ..Snapshot::default()
        })
    });
    repo.expect_save().times(1).returning(|_| Err(RepoError::Conflict));
    let svc = service(repo, 3);
    let prepared = svc
        .prepare_events(&[order(1, "o-1", &[("a", 1)])], None)
        .await
        .unwrap()
        .unwrap();
    let err = svc.save_prepared(&prepared.changes).await.unwrap_err();
    assert!(matches!(err, ServiceError::Contention { attempts: 1 }), "{err:?}");
    assert_eq!(svc.metrics().conflicts(), 1);
}
