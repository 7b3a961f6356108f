//! Stock listings against a real PostgreSQL: keyset pages in byte order of the id, filters,
//! the scan bound, pages under concurrent writes, and EXPLAIN showing that a page walks the
//! index and costs the same at 1,000,000 products as at 1,000.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use diesel_async::SimpleAsyncConnection;
use inventory_app::SystemClock;
use inventory_domain::*;
use inventory_postgres::PgRepository;
use inventory_tests::db::TestDb;

fn repo(db: &TestDb) -> PgRepository {
    db.repository(4)
}

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).unwrap()
}

/// Rows written in SQL: (product id, quantity, reserved).
async fn rows(db: &TestDb, rows: &[(&str, i32, i32)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(p, q, r)| format!("(gen_random_uuid(), '{}', {q}, {r}, 1, now())", p.replace('\'', "''")))
        .collect();
    db.conn()
        .await
        .batch_execute(&format!(
            "INSERT INTO inventory (id, product_id, quantity, reserved, version, updated_at) VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("insert stock rows");
}

/// Every page of a listing, followed to its end.
async fn all_pages(
    service: &InventoryService<PgRepository, SystemClock>,
    filter: &StockFilter,
    limit: u32,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = None;
    for _ in 0..1000 {
        let page = service.list_stock(filter.clone(), after.clone(), limit).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        ids.extend(page.items.iter().map(|i| i.product_id().to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => return ids,
        }
    }
    panic!("the listing did not end in 1000 pages");
}

#[tokio::test]
async fn pages_follow_the_byte_order_of_ids_and_filters_hold() {
    let db = TestDb::new().await;
    rows(
        &db,
        &[
            ("b-1", 10, 0),
            ("B-2", 5, 5),
            ("a%x", 3, 1),
            ("a_y", 7, 0),
            ("ab", 0, 0),
            ("é-1", 20, 2),
            ("a\\z", 1, 0),
        ],
    )
    .await;
    let service = InventoryService::new(Arc::new(repo(&db)), Arc::new(SystemClock), ServiceConfig::default());
    let everything = all_pages(&service, &StockFilter::default(), 2).await;
    // Byte order of UTF-8: upper case before lower case, '%' < '\' < '_' < 'b', 'é' last.
    assert_eq!(everything, ["B-2", "a%x", "a\\z", "a_y", "ab", "b-1", "é-1"]);

    let low = StockFilter {
        available_below: Some(3),
        ..StockFilter::default()
    };
    assert_eq!(all_pages(&service, &low, 1).await, ["B-2", "a%x", "a\\z", "ab"]);
    let plenty = StockFilter {
        available_at_least: Some(7),
        ..StockFilter::default()
    };
    assert_eq!(all_pages(&service, &plenty, 50).await, ["a_y", "b-1", "é-1"]);
    // A prefix's own wildcards are literal.
    for (prefix, expected) in [
        ("a%", vec!["a%x"]),
        ("a_", vec!["a_y"]),
        ("a\\", vec!["a\\z"]),
        ("a", vec!["a%x", "a\\z", "a_y", "ab"]),
    ] {
        let filter = StockFilter {
            product_id_prefix: Some(prefix.into()),
            ..StockFilter::default()
        };
        assert_eq!(all_pages(&service, &filter, 3).await, expected, "prefix {prefix}");
    }
    let future = StockFilter {
        updated_since: Some(Utc::now() + chrono::Duration::hours(1)),
        ..StockFilter::default()
    };
    assert!(all_pages(&service, &future, 10).await.is_empty());
    let past = StockFilter {
        updated_since: Some(Utc::now() - chrono::Duration::hours(1)),
        available_below: Some(1),
        ..StockFilter::default()
    };
    assert_eq!(all_pages(&service, &past, 10).await, ["B-2", "ab"]);
}

#[tokio::test]
async fn a_scan_stops_at_its_bound_and_the_next_page_goes_on_from_there() {
    let db = TestDb::new().await;
    let ids: Vec<String> = (0..30).map(|i| format!("p{i:02}")).collect();
    let mut spec: Vec<(&str, i32, i32)> = ids.iter().map(|p| (p.as_str(), 10, 0)).collect();
    spec[25].1 = 0; // only p25 is out of stock
    rows(&db, &spec).await;
    let repo = repo(&db);
    let listing = |after: Option<&str>| StockListing {
        filter: StockFilter {
            available_below: Some(1),
            ..StockFilter::default()
        },
        after: after.map(pid),
        limit: 5,
        scan: 10,
    };
    let first = repo.list_stock(&listing(None)).await.unwrap();
    assert!(first.rows.is_empty(), "no match among the first 10");
    assert_eq!(first.stopped_at, Some(pid("p09")), "the last row examined");
    let second = repo.list_stock(&listing(Some("p09"))).await.unwrap();
    assert_eq!(second.stopped_at, Some(pid("p19")));
    let third = repo.list_stock(&listing(Some("p19"))).await.unwrap();
    let found: Vec<&str> = third.rows.iter().map(|r| r.product_id().as_str()).collect();
    assert_eq!(found, ["p25"]);
    assert_eq!(
        third.stopped_at,
        Some(pid("p29")),
        "ten rows examined: p29 was the tenth"
    );
    let fourth = repo.list_stock(&listing(Some("p29"))).await.unwrap();
    assert!(fourth.rows.is_empty());
    assert_eq!(fourth.stopped_at, None, "the scan reached the end before its bound");
}

#[tokio::test]
async fn rows_written_between_pages_never_repeat_a_row_and_appear_when_after_the_cursor() {
    let db = TestDb::new().await;
    let ids: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
    rows(&db, &ids.iter().map(|p| (p.as_str(), 1, 0)).collect::<Vec<_>>()).await;
    let service = InventoryService::new(Arc::new(repo(&db)), Arc::new(SystemClock), ServiceConfig::default());
    let first = service.list_stock(StockFilter::default(), None, 10).await.unwrap();
    assert_eq!(first.next, Some(pid("k09")));
    // Meanwhile: a row before the cursor, one after it, and a change to a row already listed.
    rows(&db, &[("k05a", 1, 0), ("k15a", 1, 0)]).await;
    db.conn()
        .await
        .batch_execute("UPDATE inventory SET quantity = 9, version = version + 1 WHERE product_id = 'k03'")
        .await
        .unwrap();
    let rest = all_pages_after(&service, first.next.clone()).await;
    let mut seen: Vec<String> = first.items.iter().map(|i| i.product_id().to_string()).collect();
    seen.extend(rest);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice: {seen:?}");
    assert!(
        seen.contains(&"k15a".to_owned()),
        "a row written after the cursor is listed"
    );
    assert!(
        !seen.contains(&"k05a".to_owned()),
        "a row before the cursor belongs to a page already read"
    );
    assert_eq!(seen.len(), 21);
}

async fn all_pages_after(
    service: &InventoryService<PgRepository, SystemClock>,
    mut after: Option<ProductId>,
) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(cursor) = after {
        let page = service
            .list_stock(StockFilter::default(), Some(cursor), 10)
            .await
            .unwrap();
        ids.extend(page.items.iter().map(|i| i.product_id().to_string()));
        after = page.next;
    }
    ids
}

/// Shared buffers a plan touched, and whether it walked `inventory_listing`.
fn plan_cost(plan: &serde_json::Value) -> (i64, bool) {
    let root = &plan[0]["Plan"];
    let buffers = root["Shared Hit Blocks"].as_i64().unwrap_or(0) + root["Shared Read Blocks"].as_i64().unwrap_or(0);
    (buffers, plan.to_string().contains("inventory_listing"))
}

#[tokio::test]
async fn a_page_costs_the_same_at_a_million_products_as_at_a_thousand() {
    let mut costs = Vec::new();
    for n in [1_000, 1_000_000] {
        let db = TestDb::new().await;
        db.conn()
            .await
            .batch_execute(&format!(
                "INSERT INTO inventory (id, product_id, quantity, reserved, version, updated_at) \
                 SELECT gen_random_uuid(), 'p' || lpad(g::text, 7, '0'), g % 50, 0, 1, now() \
                 FROM generate_series(1, {n}) g; ANALYZE inventory"
            ))
            .await
            .expect("seed the products");
        let repo = repo(&db);
        let cases = [
            ("first page", None, None),
            ("a page from the middle", Some("p0000500"), None),
            ("a prefix", None, Some("p00005")),
        ];
        let mut these = Vec::new();
        for (name, after, prefix) in cases {
            let listing = StockListing {
                filter: StockFilter {
                    product_id_prefix: prefix.map(str::to_owned),
                    ..StockFilter::default()
                },
                after: after.map(pid),
                limit: 51,
                scan: MAX_SCAN,
            };
            let plan = repo.explain_listing(&listing).await.unwrap();
            let (buffers, indexed) = plan_cost(&plan);
            assert!(
                indexed,
                "{name} at {n} products does not walk inventory_listing: {plan}"
            );
            let page = repo.list_stock(&listing).await.unwrap();
            assert_eq!(page.rows.len(), 51, "{name} at {n} products");
            eprintln!("{name}, {n} products: {buffers} buffers");
            these.push(buffers);
        }
        costs.push(these);
    }
    for (small, large) in costs[0].iter().zip(&costs[1]) {
        // The index is one level deeper at a million rows; the rest is the page itself.
        assert!(
            *large <= small + 5,
            "a page touched {large} buffers at 1,000,000 products and {small} at 1,000"
        );
    }
}
