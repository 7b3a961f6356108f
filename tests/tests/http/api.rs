//! The endpoints: every status they answer, idempotency, concurrency, bad input, the OpenAPI document.

use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::db::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{assert_problem, call, field_of, no_kafka, post};
use inventory_tests::http::{client, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_table_of_every_endpoint() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    let system = token(&["ROLE_SYSTEM"]);

    // GET /api/inventory/{productId}
    assert_problem(
        &call(&app, Method::GET, "/api/inventory/p-1", None, None).await,
        404,
        "PRODUCT_NOT_FOUND",
    );
    let long = "x".repeat(65);
    let reply = call(&app, Method::GET, &format!("/api/inventory/{long}"), None, None).await;
    assert_problem(&reply, 422, "VALIDATION_FAILED");
    assert_eq!(field_of(&reply), "productId");

    // POST /api/inventory/add
    let reply = post(
        &app,
        "/api/inventory/add",
        Some(&admin),
        &json!({"productId": "p-1", "quantity": 7}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["productId"], "p-1");
    assert_eq!(
        (reply.body["quantity"].as_u64(), reply.body["available"].as_u64()),
        (Some(7), Some(7))
    );
    assert_eq!(reply.body["version"], 0);
    let reply = call(&app, Method::GET, "/api/inventory/p-1", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    for key in ["productId", "quantity", "reserved", "available", "version", "updatedAt"] {
        assert!(!reply.body[key].is_null(), "{key} in {:?}", reply.body);
    }
    assert_problem(
        &post(
            &app,
            "/api/inventory/add",
            None,
            &json!({"productId": "p", "quantity": 1}),
        )
        .await,
        401,
        "UNAUTHORIZED",
    );
    assert_problem(
        &post(
            &app,
            "/api/inventory/add",
            Some(&system),
            &json!({"productId": "p", "quantity": 1}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    for (body, field) in [
        (json!({"productId": "p", "quantity": 0}), "quantity"),
        (json!({"productId": "p", "quantity": 1_000_001}), "quantity"),
        (json!({"productId": "p", "quantity": "3"}), "quantity"),
        (json!({"productId": "p"}), "quantity"),
        (json!({"productId": "", "quantity": 1}), "productId"),
        (json!({"productId": "p", "quantity": 1, "extra": true}), "extra"),
        // A literal route's name: that product could never be read at GET /api/inventory/{id}.
        (json!({"productId": "export", "quantity": 1}), "productId"),
        (json!({"productId": "check", "quantity": 1}), "productId"),
    ] {
        let reply = post(&app, "/api/inventory/add", Some(&admin), &body).await;
        assert_problem(&reply, 422, "VALIDATION_FAILED");
        assert_eq!(field_of(&reply), field, "{body}");
    }
    let reply = call(
        &app,
        Method::POST,
        "/api/inventory/add",
        Some(&admin),
        Some(b"{\"productId\":".to_vec()),
    )
    .await;
    assert_problem(&reply, 400, "MALFORMED_JSON");
    let big = vec![b' '; 70 * 1024];
    assert_problem(
        &call(&app, Method::POST, "/api/inventory/add", Some(&admin), Some(big)).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );

    // POST /api/inventory/audit
    let audit = |q: i64, reason: &str, version: Option<i64>| {
        let mut body = json!({"productId": "p-1", "quantity": q, "reason": reason});
        if let Some(v) = version {
            body["expectedVersion"] = json!(v);
        }
        body
    };
    let reply = post(
        &app,
        "/api/inventory/audit",
        Some(&admin),
        &audit(5, "DAMAGED", Some(0)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        (reply.body["quantity"].as_u64(), reply.body["version"].as_u64()),
        (Some(5), Some(1))
    );
    assert_problem(
        &post(
            &app,
            "/api/inventory/audit",
            Some(&admin),
            &audit(5, "DAMAGED", Some(0)),
        )
        .await,
        409,
        "VERSION_MISMATCH",
    );
    let reply = post(&app, "/api/inventory/audit", Some(&admin), &audit(5, "LOST_IT", None)).await;
    assert_problem(&reply, 422, "VALIDATION_FAILED");
    assert_eq!(field_of(&reply), "reason");
    let reply = post(&app, "/api/inventory/audit", Some(&admin), &audit(-1, "OTHER", None)).await;
    assert_eq!(field_of(&reply), "quantity");
    let unknown = json!({"productId": "nope", "quantity": 1, "reason": "OTHER"});
    assert_problem(
        &post(&app, "/api/inventory/audit", Some(&admin), &unknown).await,
        404,
        "PRODUCT_NOT_FOUND",
    );
    assert_problem(
        &post(&app, "/api/inventory/audit", Some(&system), &audit(5, "OTHER", None)).await,
        403,
        "FORBIDDEN",
    );

    // POST /api/inventory/check
    let reply = post(
        &app,
        "/api/inventory/check",
        Some(&system),
        &json!(["p-1", "zz", "p-1"]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"p-1": 5, "zz": 0}));
    assert_eq!(
        post(&app, "/api/inventory/check", Some(&admin), &json!(["p-1"]))
            .await
            .status,
        StatusCode::OK
    );
    assert_problem(
        &post(&app, "/api/inventory/check", None, &json!(["p-1"])).await,
        401,
        "UNAUTHORIZED",
    );
    assert_problem(
        &post(
            &app,
            "/api/inventory/check",
            Some(&token(&["ROLE_USER"])),
            &json!(["p-1"]),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_problem(
        &post(&app, "/api/inventory/check", Some(&system), &json!([])).await,
        422,
        "VALIDATION_FAILED",
    );
    let many: Vec<String> = (0..1001).map(|i| format!("p{i}")).collect();
    assert_problem(
        &post(&app, "/api/inventory/check", Some(&system), &json!(many)).await,
        422,
        "VALIDATION_FAILED",
    );
    let reply = post(&app, "/api/inventory/check", Some(&system), &json!(["ok", " bad"])).await;
    assert_eq!(field_of(&reply), "[1]");
    let reply = post(&app, "/api/inventory/check", Some(&system), &json!({"ids": []})).await;
    assert_problem(&reply, 422, "VALIDATION_FAILED");

    // GET /api/inventory/{productId}/adjustments
    let reply = call(
        &app,
        Method::GET,
        "/api/inventory/p-1/adjustments?limit=1",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let first = &reply.body["items"][0];
    assert_eq!(
        (
            first["reason"].as_str(),
            first["delta"].as_i64(),
            first["actor"].as_str()
        ),
        (Some("DAMAGED"), Some(-2), Some("tester"))
    );
    let before = reply.body["nextBefore"].as_i64().expect("a next page");
    let reply = call(
        &app,
        Method::GET,
        &format!("/api/inventory/p-1/adjustments?before={before}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(reply.body["items"][0]["reason"], "ADD");
    assert!(reply.body.get("nextBefore").is_none());
    assert_problem(
        &call(&app, Method::GET, "/api/inventory/p-1/adjustments", Some(&system), None).await,
        403,
        "FORBIDDEN",
    );
    assert_problem(
        &call(&app, Method::GET, "/api/inventory/nope/adjustments", Some(&admin), None).await,
        404,
        "PRODUCT_NOT_FOUND",
    );
    let reply = call(
        &app,
        Method::GET,
        "/api/inventory/p-1/adjustments?limit=0",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(field_of(&reply), "limit");

    // Fallbacks
    assert_problem(&call(&app, Method::GET, "/nowhere", None, None).await, 404, "NOT_FOUND");
    let reply = call(&app, Method::DELETE, "/api/inventory/add", Some(&admin), None).await;
    assert_problem(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.headers["allow"], "POST", "405 names the allowed method");
    // JSON Schema's integers include 2.0; 2.5 is no integer.
    let reply = post(
        &app,
        "/api/inventory/add",
        Some(&admin),
        &json!({"productId": "p-2", "quantity": 2.0}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let reply = post(
        &app,
        "/api/inventory/add",
        Some(&admin),
        &json!({"productId": "p-2", "quantity": 2.5}),
    )
    .await;
    assert_eq!(field_of(&reply), "quantity");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_adds_sum_exactly() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db,
        AppOptions {
            pool_max: 16,
            ..no_kafka()
        },
    )
    .await;
    let admin = token(&["ROLE_ADMIN"]);
    let url = app.url("/api/inventory/add");
    let http = client();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (http, url, admin) = (http.clone(), url.clone(), admin.clone());
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(admin)
                    .json(&json!({"productId": "hot", "quantity": 1}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let reply = call(&app, Method::GET, "/api/inventory/hot", None, None).await;
    assert_eq!(reply.body["quantity"], 200);
    assert_eq!(reply.body["version"], 199);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_racing_reservations_never_drives_available_below_zero() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    post(
        &app,
        "/api/inventory/add",
        Some(&admin),
        &json!({"productId": "p", "quantity": 100}),
    )
    .await;
    let product = inventory_domain::ProductId::parse("p").unwrap();
    let service = app.service.clone();
    let reservations = tokio::spawn(async move {
        for i in 0..60 {
            let event = inventory_domain::IncomingEvent {
                meta: inventory_domain::EventMeta {
                    event_id: uuid::Uuid::new_v4(),
                    correlation_id: None,
                    echo: Default::default(),
                },
                command: inventory_domain::OrderCommand::Reserve {
                    order_id: inventory_domain::OrderId::parse(format!("o-{i}")).unwrap(),
                    lines: inventory_domain::OrderLines::new(vec![inventory_domain::OrderLine {
                        product_id: inventory_domain::ProductId::parse("p").unwrap(),
                        quantity: inventory_domain::Quantity::new(1).unwrap(),
                    }])
                    .unwrap(),
                },
            };
            service.handle_events(&[event]).await.unwrap();
        }
    });
    let mut statuses = Vec::new();
    for count in (0..60).rev() {
        let body = json!({"productId": "p", "quantity": count, "reason": "CYCLE_COUNT"});
        let reply = post(&app, "/api/inventory/audit", Some(&admin), &body).await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::CONFLICT {
            assert_eq!(reply.body["code"], "INSUFFICIENT_STOCK_FOR_AUDIT");
        }
        let s = app.service.get_stock(&product).await.unwrap().unwrap();
        assert!(s.reserved() <= s.quantity(), "available went negative: {s:?}");
    }
    reservations.await.unwrap();
    assert!(statuses.contains(&409), "some counts must fall below what is reserved");
    let s = app.service.get_stock(&product).await.unwrap().unwrap();
    assert!(s.reserved() <= s.quantity());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_never_give_a_server_error() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"\xff\xfe".to_vec(),
        b"{\"productId\":null,\"quantity\":null}".to_vec(),
        b"{\"productId\":\"p\",\"quantity\":1e309}".to_vec(),
        b"{\"productId\":\"p\",\"quantity\":99999999999999999999}".to_vec(),
        b"{\"productId\":\"p\",\"quantity\":-9223372036854775808}".to_vec(),
        b"{\"productId\":\"\\u0000\",\"quantity\":1}".to_vec(),
        b"{\"productId\":\"p\",\"quantity\":1,\"reason\":\"OTHER\",\"expectedVersion\":\"x\"}".to_vec(),
        b"[\"a\",1,null]".to_vec(),
        format!("[{}]", "[".repeat(200)).into_bytes(),
        b"{\"productId\":\"p\",\"quantity\":1}{}".to_vec(),
        "{\"productId\":\"ü\u{1F600}\",\"quantity\":1}".as_bytes().to_vec(),
    ];
    for path in ["/api/inventory/add", "/api/inventory/audit", "/api/inventory/check"] {
        for body in &bodies {
            let reply = call(&app, Method::POST, path, Some(&admin), Some(body.clone())).await;
            assert!(
                reply.status.as_u16() < 500,
                "{path} {:?} gave {}",
                String::from_utf8_lossy(body),
                reply.status
            );
            if !reply.status.is_success() {
                assert_eq!(
                    reply.content_type,
                    "application/problem+json",
                    "{path} {:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
    for path in [
        "/api/inventory/%00",
        "/api/inventory/%20x",
        "/api/inventory/a%2Fb",
        "/api/inventory/%F0%9F%98%80",
    ] {
        let reply = call(&app, Method::GET, path, None, None).await;
        assert!(reply.status.as_u16() < 500, "{path}: {}", reply.status);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_result() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    let http = client();
    let add = |key: &'static str, body: Value| {
        let (http, url, admin) = (http.clone(), app.url("/api/inventory/add"), admin.clone());
        async move {
            let r = http
                .post(url)
                .bearer_auth(admin)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = add("k-1", json!({"productId": "p", "quantity": 5})).await;
    assert_eq!(status, StatusCode::OK);
    // Same key, same body (other key order): the first result, nothing changed again.
    let (status, again) = add("k-1", json!({"quantity": 5, "productId": "p"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first);
    let (status, problem) = add("k-1", json!({"productId": "p", "quantity": 6})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "IDEMPOTENCY_KEY_REUSED");

    // Twenty concurrent retries of one new key apply once.
    let tasks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(add("k-2", json!({"productId": "p", "quantity": 1}))))
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every retry sees the first result"
    );
    let now = call(&app, Method::GET, "/api/inventory/p", None, None).await;
    assert_eq!(now.body["quantity"], 6, "5 + 1, applied once");
    let trail = call(&app, Method::GET, "/api/inventory/p/adjustments", Some(&admin), None).await;
    assert_eq!(trail.body["items"].as_array().unwrap().len(), 2);

    let bad = client()
        .post(app.url("/api/inventory/add"))
        .bearer_auth(&admin)
        .header("idempotency-key", "has space")
        .json(&json!({"productId": "p", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_route_is_in_the_openapi_document() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let doc = call(&app, Method::GET, "/api-docs/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    assert_eq!(doc.body["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for schema in ["StockView", "AddRequest", "AuditRequest", "AdjustmentPage", "Problem"] {
        assert!(
            doc.body["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    let paths = doc.body["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        inventory_http::API.len(),
        "one document path per served route"
    );
    let admin = token(&["ROLE_ADMIN"]);
    for route in inventory_http::API {
        let operation = &paths[route.path][route.method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
        assert!(
            operation["responses"]["200"].is_object(),
            "{} {}",
            route.method,
            route.path
        );
        for status in route.errors {
            assert!(
                operation["responses"][status.to_string()].is_object(),
                "{} {} {status}",
                route.method,
                route.path
            );
        }
        if !route.roles.is_empty() {
            assert!(
                operation["security"].is_array(),
                "{} {} must name its bearer roles",
                route.method,
                route.path
            );
        }
        // The route is served: the answer is never the fallback for unknown routes or methods.
        let path = route.path.replace("{productId}", "some-product");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let body = (route.method == "POST").then(|| b"{}".to_vec());
        let reply = call(&app, method, &path, Some(&admin), body).await;
        assert_ne!(
            reply.body["code"], "NOT_FOUND",
            "{} {} is not served",
            route.method, route.path
        );
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {} is not served",
            route.method,
            route.path
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_carries_its_version_as_etag_and_revalidates_with_304() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db, no_kafka()).await;
    let admin = token(&["ROLE_ADMIN"]);
    let added = post(
        &app,
        "/api/inventory/add",
        Some(&admin),
        &json!({"productId": "e-1", "quantity": 3}),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK);
    let get = |tag: Option<&'static str>| {
        let mut request = client().get(app.url("/api/inventory/e-1"));
        if let Some(t) = tag {
            request = request.header("If-None-Match", t);
        }
        async move {
            let response = request.send().await.expect("GET");
            let status = response.status();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (etag, cache) = (header("etag"), header("cache-control"));
            let body = response.bytes().await.expect("body");
            (status, etag, cache, body)
        }
    };
    let (status, etag, cache, body) = get(None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(etag.as_deref(), Some("\"0\""), "the ETag is the version");
    assert_eq!(cache.as_deref(), Some("public, max-age=1"));
    assert!(!body.is_empty());

    // The current tag, weak or strong, in a list, or *: 304, no body, the same headers.
    for tag in ["\"0\"", "W/\"0\"", "\"9\", \"0\"", "*"] {
        let (status, etag, cache, body) = get(Some(tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "If-None-Match: {tag}");
        assert_eq!(etag.as_deref(), Some("\"0\""));
        assert_eq!(cache.as_deref(), Some("public, max-age=1"));
        assert!(body.is_empty(), "a 304 has no body");
    }
    // A change bumps the version: the old tag no longer matches.
    let added = post(
        &app,
        "/api/inventory/add",
        Some(&admin),
        &json!({"productId": "e-1", "quantity": 2}),
    )
    .await;
    assert_eq!(added.body["version"], 1);
    let (status, etag, _, body) = get(Some("\"0\"")).await;
    assert_eq!(status, StatusCode::OK, "a stale tag gets the new answer");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let view: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(view["quantity"], 5);
    // An unknown product is still a 404, whatever the tag.
    let reply = client()
        .get(app.url("/api/inventory/nope"))
        .header("If-None-Match", "*")
        .send()
        .await
        .expect("GET");
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
}
