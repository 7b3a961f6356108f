//! `GET /api/inventory` (keyset pages with filters) and `GET /api/inventory/export` (CSV), over
//! HTTP on a real PostgreSQL.

use inventory_tests::app::TestApp;
use inventory_tests::db::TestDb;
use inventory_tests::http::{client, token};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{add, assert_problem, call, field_of, no_kafka, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_a_cursor_to_the_end_and_filters_apply() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    let system = token(&["ROLE_SYSTEM"]);
    for (i, product) in ["a,1", "b\"2", "c-3", "d-4", "e-5"].iter().enumerate() {
        add(&app, &admin, product, i as i64 + 1).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/inventory?limit=2".to_owned();
    loop {
        let reply = call(&app, Method::GET, &path, Some(&system), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let items = reply.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            for key in ["productId", "quantity", "reserved", "available", "version", "updatedAt"] {
                assert!(!item[key].is_null(), "{key} in {item}");
            }
            seen.push(item["productId"].as_str().unwrap().to_owned());
        }
        match reply.body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/inventory?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a,1", "b\"2", "c-3", "d-4", "e-5"]);

    let reply = call(&app, Method::GET, "/api/inventory?availableBelow=3", Some(&admin), None).await;
    let ids: Vec<&str> = reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["productId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a,1", "b\"2"]);
    assert!(reply.body["nextCursor"].is_null());
    let reply = call(
        &app,
        Method::GET,
        "/api/inventory?availableAtLeast=4&productIdPrefix=d",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(reply.body["items"][0]["productId"], "d-4");
    assert_eq!(reply.body["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_missing_roles_are_named() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let system = token(&["ROLE_SYSTEM"]);
    let user = token(&["ROLE_USER"]);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("availableBelow=-1", "availableBelow"),
        ("updatedSince=yesterday", "updatedSince"),
        ("cursor=abc", "cursor"),
        ("cursor=c1.zz", "cursor"),
        ("cursor=c1.ff", "cursor"),
        ("sort=desc", "sort"),
    ] {
        let reply = call(
            &app,
            Method::GET,
            &format!("/api/inventory?{query}"),
            Some(&system),
            None,
        )
        .await;
        assert_problem(&reply, 422, "VALIDATION_FAILED");
        assert_eq!(field_of(&reply), field, "{query}");
    }
    let reply = call(&app, Method::GET, "/api/inventory/export?limit=5", Some(&system), None).await;
    assert_problem(&reply, 422, "VALIDATION_FAILED");
    assert_eq!(field_of(&reply), "limit", "an export has no pages");
    for path in ["/api/inventory", "/api/inventory/export"] {
        assert_problem(&call(&app, Method::GET, path, None, None).await, 401, "UNAUTHORIZED");
        assert_problem(
            &call(&app, Method::GET, path, Some(&user), None).await,
            403,
            "FORBIDDEN",
        );
    }
    app.stop().await;
}

/// The text of `GET /api/inventory/export{query}`.
async fn export(app: &TestApp, token: &str, query: &str) -> String {
    let response = client()
        .get(app.url(&format!("/api/inventory/export{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "export{query}");
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_streams_every_selected_row_as_csv() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    // More than one page of 500, so the stream goes on past its first chunk.
    {
        use diesel_async::SimpleAsyncConnection;
        db.conn()
            .await
            .batch_execute(
                "INSERT INTO inventory (id, product_id, quantity, reserved, version, updated_at) \
                 SELECT gen_random_uuid(), 'x' || lpad(g::text, 4, '0'), g, 0, 1, now() \
                 FROM generate_series(1, 1234) g",
            )
            .await
            .unwrap();
    }
    add(&app, &admin, "a,\"quoted\"", 3).await;
    let response = client()
        .get(app.url("/api/inventory/export"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "productId,quantity,reserved,available,version,updatedAt");
    assert_eq!(lines.last(), Some(&""), "ends with a line break");
    assert_eq!(lines.len(), 1 + 1235 + 1, "header, every row, the final break");
    assert!(lines[1].starts_with("\"a,\"\"quoted\"\"\",3,0,3,0,"), "{}", lines[1]);
    assert!(lines[2].starts_with("x0001,1,0,1,1,"), "{}", lines[2]);
    assert!(lines[1235].starts_with("x1234,1234,0,1234,1,"), "{}", lines[1235]);
    let filtered = export(&app, &admin, "?availableAtLeast=1230").await;
    assert_eq!(filtered.lines().count(), 1 + 5, "{filtered}");

    // An id a spreadsheet would run as a formula is exported as text, and the same line sent back
    // as a count names the same product.
    add(&app, &admin, "=1+2", 7).await;
    let exported = export(&app, &admin, "?productIdPrefix=%3D").await;
    let line = exported.lines().nth(1).expect("the row of =1+2");
    assert!(line.starts_with("'=1+2,7,0,7,"), "{exported}");
    let id = line.split(',').next().unwrap();
    let count = client()
        .post(app.url("/api/inventory/audits?reason=CYCLE_COUNT"))
        .bearer_auth(&admin)
        .header("content-type", "text/csv")
        .body(format!("productId,quantity\r\n{id},5\r\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(count.status(), StatusCode::OK);
    let body: serde_json::Value = count.json().await.unwrap();
    assert_eq!(body["lines"][0]["productId"], "=1+2", "{body}");
    assert_eq!(body["lines"][0]["newQuantity"], 5, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_are_set_audited_listed_and_checked() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    let system = token(&["ROLE_SYSTEM"]);
    add(&app, &admin, "t-1", 9).await;
    let put = |body: serde_json::Value, bearer: String, key: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = client()
                .put(app.url("/api/inventory/t-1/thresholds"))
                .bearer_auth(bearer)
                .json(&body);
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (status, body) = put(json!({"lowStockThreshold": 5}), admin.clone(), Some("k-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lowStockThreshold"], 5);
    let version = body["version"].as_i64().unwrap();
    // The same key and body: the first answer again, nothing changed twice.
    let (_, replay) = put(json!({"lowStockThreshold": 5}), admin.clone(), Some("k-1")).await;
    assert_eq!(replay, body);
    let reply = call(&app, Method::GET, "/api/inventory/t-1", None, None).await;
    assert_eq!(reply.body["lowStockThreshold"], 5);
    let list = call(
        &app,
        Method::GET,
        "/api/inventory?productIdPrefix=t-",
        Some(&system),
        None,
    )
    .await;
    assert_eq!(list.body["items"][0]["lowStockThreshold"], 5);
    let trail = call(&app, Method::GET, "/api/inventory/t-1/adjustments", Some(&admin), None).await;
    assert_eq!(trail.body["items"][0]["reason"], "LOW_STOCK_THRESHOLD");
    assert_eq!(trail.body["items"][0]["delta"], 0);

    // Null clears it (the default applies); a stale expectedVersion is a conflict.
    let (status, body) = put(
        json!({"lowStockThreshold": null, "expectedVersion": version}),
        admin.clone(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["lowStockThreshold"].is_null());
    let (status, body) = put(
        json!({"lowStockThreshold": 1, "expectedVersion": version}),
        admin.clone(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    for (bad, field) in [
        (json!({"lowStockThreshold": -1}), "lowStockThreshold"),
        (json!({"lowStockThreshold": 1_000_000_001_i64}), "lowStockThreshold"),
        (json!({"lowStockThreshold": "5"}), "lowStockThreshold"),
        (json!({"lowStock": 5}), "lowStock"),
    ] {
        let (status, body) = put(bad.clone(), admin.clone(), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{bad}: {body}");
    }
    let (status, _) = put(json!({"lowStockThreshold": 5}), system.clone(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only an admin sets thresholds");
    let missing = client()
        .put(app.url("/api/inventory/nope/thresholds"))
        .bearer_auth(&admin)
        .json(&json!({"lowStockThreshold": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // An audit cannot pose as a threshold change.
    let reply = post(
        &app,
        "/api/inventory/audit",
        Some(&admin),
        &json!({"productId": "t-1", "quantity": 3, "reason": "LOW_STOCK_THRESHOLD"}),
    )
    .await;
    assert_problem(&reply, 422, "VALIDATION_FAILED");
    app.stop().await;
}

#[derive(diesel::QueryableByName)]
struct Payload {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_change_names_its_request_on_the_availability_events_it_causes() {
    use diesel_async::RunQueryDsl;
    let db = TestDb::new().await;
    let options = inventory_tests::app::AppOptions {
        availability_events: true,
        ..no_kafka()
    };
    let app = TestApp::spawn(&db, options).await;
    let admin = token(&["ROLE_ADMIN"]);
    add(&app, &admin, "r-1", 5).await;
    let response = client()
        .put(app.url("/api/inventory/r-1/thresholds"))
        .bearer_auth(&admin)
        .header("x-request-id", "req-42")
        .json(&json!({"lowStockThreshold": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let rows: Vec<Payload> = diesel::sql_query(
        "SELECT event_type, payload::text AS payload FROM outbox WHERE message_key = 'r-1' ORDER BY id",
    )
    .load(&mut db.conn().await)
    .await
    .unwrap();
    let events: Vec<(String, serde_json::Value)> = rows
        .into_iter()
        .map(|r| (r.event_type, serde_json::from_str(&r.payload).unwrap()))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let (kind, back) = &events[0];
    assert_eq!(kind, "InventoryBackInStockEvent");
    assert!(
        back["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "the add's own id: {back}"
    );
    let (kind, low) = &events[1];
    assert_eq!(kind, "InventoryLowStockEvent");
    assert_eq!(low["requestId"], "req-42");
    assert_eq!(low["actor"], "tester");
    assert_eq!(low["cause"], "THRESHOLD_CHANGED");
    app.stop().await;
}
