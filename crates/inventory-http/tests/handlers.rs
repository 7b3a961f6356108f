//! The handlers over a mocked use-case port: status codes, problem codes, role checks, and what
//! reaches the use case (idempotency keys, decoded cursors, parsed lines), without PostgreSQL.
//! The end-to-end tests in `tests/` cover the same routes over the real service.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::http::header::HeaderMap;
use actix_web::{App, test, web};
use chrono::Utc;
use inventory_domain::usecases::MockStockUseCases;
use inventory_domain::*;
use inventory_http::{ApiState, AuthConfig, Readiness};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use uuid::Uuid;

const SECRET: &[u8] = b"handler-tests-secret-long-enough-for-hs256";

fn token(roles: &[&str]) -> String {
    let now = Utc::now().timestamp();
    let claims = json!({"sub": "tester", "roles": roles, "iat": now, "exp": now + 600});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

struct NothingElse;

#[async_trait::async_trait]
impl Readiness for NothingElse {
    async fn check(&self) -> Vec<(&'static str, Result<(), String>)> {
        Vec::new()
    }
}

fn stock(product: &str, quantity: i64, reserved: i64, version: i64) -> Inventory {
    Inventory::restore(
        Uuid::nil(),
        ProductId::parse(product).unwrap(),
        quantity,
        reserved,
        version,
        Utc::now(),
    )
    .unwrap()
}

/// Sends `request` to the routes over `mock`: the status, the JSON body and the headers.
async fn send(mock: MockStockUseCases, request: test::TestRequest) -> (u16, Value, HeaderMap) {
    let state = ApiState {
        service: Arc::new(mock),
        auth: AuthConfig::hs256(SECRET),
        readiness: Arc::new(NothingElse),
        metrics: Arc::new(String::new),
        writes: Arc::default(),
    };
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(inventory_http::routes),
    )
    .await;
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().try_into_bytes().unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
}

fn with_token(request: test::TestRequest, roles: &[&str]) -> test::TestRequest {
    request.insert_header(("authorization", format!("Bearer {}", token(roles))))
}

fn post(path: &str, roles: &[&str], body: Value) -> test::TestRequest {
    with_token(test::TestRequest::post().uri(path), roles).set_json(body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// A cursor as the API gives it out: a tag and the id's bytes in hex.
fn cursor(id: &str) -> String {
    format!("c1.{}", id.bytes().map(|b| format!("{b:02x}")).collect::<String>())
}

#[actix_web::test]
async fn an_add_reaches_the_use_case_with_its_key_and_answers_the_record() {
    let mut mock = MockStockUseCases::new();
    mock.expect_add_stock()
        .withf(|product, amount, caller, once| {
            let once = once.as_ref().expect("the key reaches the use case");
            product.as_str() == "p-1"
                && amount.get() == 3
                && caller.actor.0 == "tester"
                && caller.request_id.is_none()
                && once.key == "k-1"
                && once.fingerprint.starts_with("tester /api/inventory/add ")
        })
        .times(1)
        .returning(|_, _, _, _| Ok(stock("p-1", 3, 0, 0)));
    let request = post(
        "/api/inventory/add",
        &["ROLE_ADMIN"],
        json!({"productId": "p-1", "quantity": 3}),
    )
    .insert_header(("idempotency-key", "k-1"));
    let (status, body, _) = send(mock, request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["productId"].as_str(), body["available"].as_u64()),
        (Some("p-1"), Some(3))
    );
}

#[actix_web::test]
async fn roles_come_from_the_route_table_and_nothing_reaches_the_use_case_without_them() {
    for (path, body) in [
        ("/api/inventory/add", json!({"productId": "p", "quantity": 1})),
        (
            "/api/inventory/audits",
            json!({"reason": "OTHER", "lines": [{"productId": "p", "quantity": 1}]}),
        ),
    ] {
        // No expectations: any call of the use case would fail the test.
        let (status, problem, _) = send(MockStockUseCases::new(), post(path, &["ROLE_SYSTEM"], body.clone())).await;
        assert_eq!((status, problem["code"].as_str()), (403, Some("FORBIDDEN")), "{path}");
        let request = test::TestRequest::post().uri(path).set_json(body);
        let (status, problem, headers) = send(MockStockUseCases::new(), request).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{path}"
        );
        assert_eq!(header(&headers, "www-authenticate"), "Bearer");
    }
    // /check takes either role.
    let mut mock = MockStockUseCases::new();
    mock.expect_availability()
        .returning(|ids| Ok(ids.into_iter().map(|p| (p, 0)).collect()));
    let (status, body, _) = send(mock, post("/api/inventory/check", &["ROLE_SYSTEM"], json!(["a", "b"]))).await;
    assert_eq!((status, body), (200, json!({"a": 0, "b": 0})));
    for route in inventory_http::API {
        for role in route.roles {
            assert!(
                matches!(role, inventory_http::Role::Admin | inventory_http::Role::System),
                "{} {}",
                route.method,
                route.path
            );
        }
    }
}

#[actix_web::test]
async fn each_use_case_failure_has_its_status_and_problem_code() {
    let cases: Vec<(ServiceError, u16, &str)> = vec![
        (
            ServiceError::NotFound(ProductId::parse("p").unwrap()),
            404,
            "PRODUCT_NOT_FOUND",
        ),
        (
            ServiceError::VersionMismatch { expected: 1, actual: 2 },
            409,
            "VERSION_MISMATCH",
        ),
        (
            ServiceError::Stock(StockError::BelowReserved { count: 1, reserved: 2 }),
            409,
            "INSUFFICIENT_STOCK_FOR_AUDIT",
        ),
        (ServiceError::Contention { attempts: 10 }, 503, "CONTENTION"),
        (
            ServiceError::Unavailable(RepoError::unavailable("down")),
            503,
            "SERVICE_UNAVAILABLE",
        ),
        (
            ServiceError::IdempotencyKeyReused("k".into()),
            422,
            "IDEMPOTENCY_KEY_REUSED",
        ),
        (ServiceError::Store(RepoError::failure("bug")), 500, "INTERNAL_ERROR"),
    ];
    for (error, want, code) in cases {
        let mut mock = MockStockUseCases::new();
        let mut error = Some(error);
        mock.expect_audit_stock()
            .times(1)
            .returning(move |_, _, _, _, _, _| Err(error.take().expect("called once")));
        let body = json!({"productId": "p", "quantity": 1, "reason": "CYCLE_COUNT"});
        let (status, problem, headers) = send(mock, post("/api/inventory/audit", &["ROLE_ADMIN"], body)).await;
        assert_eq!((status, problem["code"].as_str()), (want, Some(code)), "{problem}");
        assert_eq!(header(&headers, "content-type"), "application/problem+json");
        if want == 503 {
            assert_eq!(header(&headers, "retry-after"), "1", "{code}");
        }
    }
}

#[actix_web::test]
async fn invalid_input_is_named_and_never_reaches_the_use_case() {
    for (path, body, field) in [
        (
            "/api/inventory/add",
            json!({"productId": "p", "quantity": 0}),
            "quantity",
        ),
        (
            "/api/inventory/add",
            json!({"productId": " p", "quantity": 1}),
            "productId",
        ),
        (
            "/api/inventory/audit",
            json!({"productId": "p", "quantity": 1, "reason": "ADD"}),
            "reason",
        ),
        (
            "/api/inventory/audits",
            json!({"reason": "OTHER", "lines": [{"productId": "p", "quantity": -1}]}),
            "lines[0].quantity",
        ),
    ] {
        let (status, problem, _) = send(MockStockUseCases::new(), post(path, &["ROLE_ADMIN"], body.clone())).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let request = with_token(
        test::TestRequest::put().uri("/api/inventory/p/thresholds"),
        &["ROLE_ADMIN"],
    )
    .set_json(json!({"lowStockThreshold": 2_000_000_000_i64}));
    let (status, problem, _) = send(MockStockUseCases::new(), request).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("lowStockThreshold"))
    );
}

#[actix_web::test]
async fn an_add_refuses_the_ids_the_router_would_answer_with_another_route() {
    // `GET /api/inventory/export` is the CSV export, `GET /api/inventory/check` a 405: a product
    // with such an id could be stocked but never read at `GET /api/inventory/{productId}`.
    for name in ["add", "audit", "audits", "check", "export"] {
        let (status, _, _) = send(
            MockStockUseCases::new(),
            test::TestRequest::get().uri(&format!("/api/inventory/{name}")),
        )
        .await;
        assert_ne!(
            status, 200,
            "GET /api/inventory/{name} reads another route, not the product"
        );
        let (status, problem, _) = send(
            MockStockUseCases::new(),
            post(
                "/api/inventory/add",
                &["ROLE_ADMIN"],
                json!({"productId": name, "quantity": 1}),
            ),
        )
        .await;
        assert_eq!(status, 422, "{name}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "productId", "{name}: {problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("/api/inventory/{name}")), "{message}");
    }
    // Only those: ids merely like them are products as usual, and readable.
    for name in ["exports", "Export", "check-1", "export.csv"] {
        let mut mock = MockStockUseCases::new();
        mock.expect_add_stock()
            .times(1)
            .returning(move |_, _, _, _| Ok(stock(name, 1, 0, 0)));
        let (status, body, _) = send(
            mock,
            post(
                "/api/inventory/add",
                &["ROLE_ADMIN"],
                json!({"productId": name, "quantity": 1}),
            ),
        )
        .await;
        assert_eq!((status, body["productId"].as_str()), (200, Some(name)), "{body}");
        let mut mock = MockStockUseCases::new();
        mock.expect_get_stock()
            .times(1)
            .returning(move |_| Ok(Some(stock(name, 1, 0, 0))));
        let (status, body, _) = send(mock, test::TestRequest::get().uri(&format!("/api/inventory/{name}"))).await;
        assert_eq!((status, body["productId"].as_str()), (200, Some(name)), "{body}");
    }
}

#[actix_web::test]
async fn a_bulk_count_line_error_names_the_line_and_keeps_the_lines_status() {
    let mut mock = MockStockUseCases::new();
    mock.expect_audit_many()
        .withf(|lines, reason, _, dry_run, once| {
            lines.len() == 2
                && lines[1].expected_version == Some(4)
                && *reason == AdjustmentReason::CycleCount
                && !dry_run
                && once.is_none()
        })
        .returning(|_, _, _, _, _| {
            Err(ServiceError::Line {
                index: 1,
                source: Box::new(ServiceError::VersionMismatch { expected: 4, actual: 5 }),
            })
        });
    let body = json!({"reason": "CYCLE_COUNT", "lines": [
        {"productId": "a", "quantity": 1},
        {"productId": "b", "quantity": 2, "expectedVersion": 4},
    ]});
    let (status, problem, _) = send(mock, post("/api/inventory/audits", &["ROLE_ADMIN"], body)).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("VERSION_MISMATCH")));
    assert_eq!(problem["errors"][0]["field"], "lines[1]");
}

#[actix_web::test]
async fn a_listing_passes_the_decoded_cursor_and_filters_and_encodes_the_next_one() {
    let mut mock = MockStockUseCases::new();
    mock.expect_list_stock()
        .withf(|filter, after, limit| {
            filter.available_below == Some(3)
                && filter.product_id_prefix.as_deref() == Some("sk")
                && after.as_ref().map(ProductId::as_str) == Some("sku-9")
                && *limit == 2
        })
        .returning(|_, _, _| {
            Ok(StockPage {
                items: vec![stock("sku-a", 1, 0, 1)],
                next: Some(ProductId::parse("sku-a").unwrap()),
            })
        });
    let uri = format!(
        "/api/inventory?availableBelow=3&productIdPrefix=sk&limit=2&cursor={}",
        cursor("sku-9")
    );
    let (status, body, _) = send(mock, with_token(test::TestRequest::get().uri(&uri), &["ROLE_SYSTEM"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["productId"], "sku-a");
    assert_eq!(body["nextCursor"], cursor("sku-a").as_str());
}

#[actix_web::test]
async fn a_get_revalidates_with_its_version_as_etag() {
    let mut mock = MockStockUseCases::new();
    mock.expect_get_stock()
        .times(1)
        .returning(|_| Ok(Some(stock("p", 5, 1, 7))));
    let (status, body, headers) = send(mock, test::TestRequest::get().uri("/api/inventory/p")).await;
    assert_eq!((status, body["available"].as_u64()), (200, Some(4)));
    assert_eq!(header(&headers, "etag"), "\"7\"");
    let mut mock = MockStockUseCases::new();
    mock.expect_get_stock()
        .times(1)
        .returning(|_| Ok(Some(stock("p", 5, 1, 7))));
    let request = test::TestRequest::get()
        .uri("/api/inventory/p")
        .insert_header(("if-none-match", "W/\"7\""));
    let (status, _, _) = send(mock, request).await;
    assert_eq!(status, 304);
}

#[actix_web::test]
async fn a_retry_with_its_fields_reordered_is_the_same_request_for_the_replay() {
    // The use case replays a stored answer when the key's fingerprint matches: the same body
    // with other spacing or key order must give the same fingerprint, another body another one.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    for body in [
        r#"{"productId":"p","quantity":3}"#,
        r#"{ "quantity": 3.0, "productId": "p" }"#,
        r#"{"productId":"p","quantity":4}"#,
    ] {
        let mut mock = MockStockUseCases::new();
        let log = Arc::clone(&seen);
        mock.expect_add_stock().times(1).returning(move |_, amount, _, once| {
            log.lock().unwrap().push(once.expect("keyed").fingerprint);
            Ok(stock("p", i64::from(amount.get()), 0, 1))
        });
        let request = with_token(test::TestRequest::post().uri("/api/inventory/add"), &["ROLE_ADMIN"])
            .insert_header(("content-type", "application/json"))
            .insert_header(("idempotency-key", "k-7"))
            .set_payload(body);
        let (status, answer, _) = send(mock, request).await;
        assert_eq!(status, 200, "{body}: {answer}");
    }
    let fingerprints = seen.lock().unwrap().clone();
    assert_eq!(
        fingerprints[0], fingerprints[1],
        "reordered and respaced: the same request"
    );
    assert_ne!(fingerprints[0], fingerprints[2], "another quantity: another request");
}
