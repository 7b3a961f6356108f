//! `POST /api/inventory/audits`: bulk cycle counts in JSON and CSV, all or none, dry runs,
//! idempotent retries, and errors that name the line; over HTTP on a real PostgreSQL.

use inventory_tests::app::TestApp;
use inventory_tests::db::TestDb;
use inventory_tests::http::{client, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{add, call, no_kafka};

async fn quantity(app: &TestApp, product: &str) -> i64 {
    call(app, Method::GET, &format!("/api/inventory/{product}"), None, None)
        .await
        .body["quantity"]
        .as_i64()
        .unwrap()
}

/// POST /api/inventory/audits with a body of `content_type`.
async fn counts(
    app: &TestApp,
    query: &str,
    content_type: &str,
    body: String,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = client()
        .post(app.url(&format!("/api/inventory/audits{query}")))
        .bearer_auth(token(&["ROLE_ADMIN"]))
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_count_changes_every_line_or_none_and_names_the_line_that_failed() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    add(&app, &admin, "c-1", 10).await;
    add(&app, &admin, "c-2", 5).await;
    let body = json!({"reason": "CYCLE_COUNT", "lines": [
        {"productId": "c-1", "quantity": 7},
        {"productId": "c-2", "quantity": 9, "expectedVersion": 0},
    ]});

    // A dry run says what would change and changes nothing.
    let (status, dry) = counts(&app, "?dryRun=true", "application/json", body.to_string(), None).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["lines"][0]["oldQuantity"], 10);
    assert_eq!(dry["lines"][0]["newQuantity"], 7);
    assert_eq!(dry["lines"][0]["delta"], -3);
    assert_eq!((quantity(&app, "c-1").await, quantity(&app, "c-2").await), (10, 5));

    // For real, under a key: both lines, each in the trail; the retry replays the answer.
    let (status, done) = counts(&app, "", "application/json", body.to_string(), Some("bulk-1")).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["dryRun"], false);
    assert_eq!(done["reason"], "CYCLE_COUNT");
    assert_eq!(
        done["lines"][1],
        json!({"productId": "c-2", "oldQuantity": 5, "newQuantity": 9, "delta": 4, "reserved": 0, "version": 1})
    );
    assert_eq!((quantity(&app, "c-1").await, quantity(&app, "c-2").await), (7, 9));
    let (status, again) = counts(&app, "", "application/json", body.to_string(), Some("bulk-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, done, "the first answer, replayed");
    let trail = call(&app, Method::GET, "/api/inventory/c-2/adjustments", Some(&admin), None).await;
    let reasons: Vec<&str> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["CYCLE_COUNT", "ADD"], "counted once, despite the retry");
    let (status, reused) = counts(
        &app,
        "",
        "application/json",
        json!({"reason": "CYCLE_COUNT", "lines": [{"productId": "c-1", "quantity": 1}]}).to_string(),
        Some("bulk-1"),
    )
    .await;
    assert_eq!(
        (status, reused["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("IDEMPOTENCY_KEY_REUSED"))
    );

    // A stale version on line 1 refuses the whole count: line 0 is not changed either.
    let stale = json!({"reason": "CORRECTION", "lines": [
        {"productId": "c-1", "quantity": 100},
        {"productId": "c-2", "quantity": 1, "expectedVersion": 0},
    ]});
    let (status, problem) = counts(&app, "", "application/json", stale.to_string(), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "VERSION_MISMATCH");
    assert_eq!(problem["errors"][0]["field"], "lines[1]");
    assert_eq!(quantity(&app, "c-1").await, 7, "all or none");

    // A product without a record, and a count below what is reserved, name their lines too.
    let (status, problem) = counts(
        &app,
        "",
        "application/json",
        json!({"reason": "OTHER", "lines": [{"productId": "c-1", "quantity": 1}, {"productId": "nope", "quantity": 1}]}).to_string(),
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PRODUCT_NOT_FOUND"))
    );
    assert_eq!(problem["errors"][0]["field"], "lines[1]");

    for (body, field) in [
        (
            json!({"reason": "ADD", "lines": [{"productId": "c-1", "quantity": 1}]}),
            "reason",
        ),
        (json!({"reason": "OTHER", "lines": []}), "lines"),
        (
            json!({"reason": "OTHER", "lines": [{"productId": "c-1", "quantity": -1}]}),
            "lines[0].quantity",
        ),
        (
            json!({"reason": "OTHER", "lines": [{"productId": "c-1", "quantity": "x"}]}),
            "lines[0].quantity",
        ),
        (
            json!({"reason": "OTHER", "lines": [{"productId": "c-1", "quantity": 1}, {"productId": "c-1", "quantity": 2}]}),
            "lines[1].productId",
        ),
        (
            json!({"reason": "OTHER", "lines": [{"productId": "c-1", "quantity": 1, "extra": 1}]}),
            "lines[0].extra",
        ),
    ] {
        let (status, problem) = counts(&app, "", "application/json", body.to_string(), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"productId": format!("m-{i}"), "quantity": 1}))
        .collect();
    let (status, problem) = counts(
        &app,
        "",
        "application/json",
        json!({"reason": "OTHER", "lines": many}).to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "lines");
    let (status, _) = counts(&app, "?dryRun=maybe", "application/json", body_of_one(), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let forbidden = client()
        .post(app.url("/api/inventory/audits"))
        .bearer_auth(token(&["ROLE_SYSTEM"]))
        .json(&json!({"reason": "OTHER", "lines": [{"productId": "c-1", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

fn body_of_one() -> String {
    json!({"reason": "OTHER", "lines": [{"productId": "c-1", "quantity": 1}]}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_count_reads_quoted_ids_and_names_line_numbers() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    add(&app, &admin, "s-1", 4).await;
    add(&app, &admin, "s,\"2\"", 4).await;
    let csv = "productId,quantity,expectedVersion\r\ns-1,6,\r\n\"s,\"\"2\"\"\",2,0\r\n".to_owned();
    let (status, done) = counts(&app, "?reason=RECEIVED", "text/csv", csv.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["reason"], "RECEIVED");
    assert_eq!(done["lines"][1]["productId"], "s,\"2\"");
    assert_eq!(
        (quantity(&app, "s-1").await, done["lines"][1]["newQuantity"].as_i64()),
        (6, Some(2))
    );

    for (query, body, field) in [
        ("", "productId,quantity\ns-1,1\n", "reason"),
        ("?reason=OTHER", "sku,count\ns-1,1\n", "line 1"),
        (
            "?reason=OTHER",
            "productId,quantity\ns-1,1\ns-1,2\n",
            "line 3 (productId)",
        ),
        ("?reason=OTHER", "productId,quantity\ns-1,abc\n", "line 2 (quantity)"),
        ("?reason=OTHER", "productId,quantity\ns-1,1\n,1\n", "line 3 (productId)"),
        ("?reason=OTHER", "productId,quantity\ns-1,1,9\n", "line 2"),
        ("?reason=OTHER", "productId,quantity\n", "body"),
    ] {
        let (status, problem) = counts(&app, query, "text/csv", body.to_owned(), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    // A line the store refuses is named by its line number.
    let (status, problem) = counts(
        &app,
        "?reason=OTHER",
        "text/csv",
        "productId,quantity\ns-1,1\nnope,1\n".into(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "line 3");
    assert_eq!(quantity(&app, "s-1").await, 6, "nothing changed");
    app.stop().await;
}
