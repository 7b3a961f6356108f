//! The REST API over real HTTP, on a real PostgreSQL: the app on port 0
//! per test, each in a schema of its own.

mod api;
mod auth;
mod contention;
mod counts;
mod jwks;
mod listing;
mod ops;

use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::http::client;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub(crate) fn no_kafka() -> AppOptions {
    AppOptions {
        kafka: false,
        ..AppOptions::default()
    }
}

pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
}

pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut request = client().request(method, app.url(path));
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.header("content-type", "application/json").body(b);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("body");
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        content_type,
        headers,
    }
}

pub(crate) async fn post(app: &TestApp, path: &str, bearer: Option<&str>, body: &Value) -> Reply {
    call(app, Method::POST, path, bearer, Some(body.to_string().into_bytes())).await
}

/// Every error is problem+json with the stable fields.
pub(crate) fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    assert_eq!(reply.content_type, "application/problem+json", "{:?}", reply.body);
    assert_eq!(reply.body["status"], status);
    assert_eq!(reply.body["code"], code, "{:?}", reply.body);
    for field in ["type", "title", "detail"] {
        assert!(reply.body[field].is_string(), "{field} missing in {:?}", reply.body);
    }
}

pub(crate) fn field_of(reply: &Reply) -> String {
    reply.body["errors"][0]["field"].as_str().unwrap_or_default().to_owned()
}

/// Adds `quantity` units of `product` as `admin`; the answer must be 200.
pub(crate) async fn add(app: &TestApp, admin: &str, product: &str, quantity: i64) {
    let body = serde_json::json!({"productId": product, "quantity": quantity});
    let reply = post(app, "/api/inventory/add", Some(admin), &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}
