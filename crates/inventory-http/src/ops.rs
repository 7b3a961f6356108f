//! Health, metrics, request ids, and the fallback routes.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use async_trait::async_trait;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use serde_json::json;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::ApiState;
use crate::problem::ApiError;

/// Checks of dependencies other than the database (Kafka).
#[async_trait]
pub trait Readiness: Send + Sync {
    /// (name, `Ok` or why it is down) per dependency.
    async fn check(&self) -> Vec<(&'static str, Result<(), String>)>;
}

/// Renders the Prometheus text exposition.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id (`X-Request-Id`, sent or made up), in its extensions.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

fn usable_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())).then(|| s.to_owned())
}

/// The route table's pattern `path` falls under, for span names and metric labels ("unmatched"
/// for none). Segment by segment, `{name}` matching any one, the first in table order (static
/// routes come before `{productId}` ones there, as actix matches them). `match_pattern` would give
/// the same, but it runs the router's regexes again for every request: 17 % of a GET's CPU.
pub(crate) fn route_of(path: &str) -> &'static str {
    crate::routes::API
        .iter()
        .map(|r| r.path)
        .find(|pattern| {
            let mut want = pattern.split('/');
            let mut got = path.split('/');
            loop {
                match (want.next(), got.next()) {
                    (None, None) => return true,
                    (Some(w), Some(g)) if w == g || (w.starts_with('{') && !g.is_empty()) => {}
                    _ => return false,
                }
            }
        })
        .unwrap_or("unmatched")
}

/// Request id in and out, a span per request, and request metrics.
pub(crate) async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(usable_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = route_of(request.path());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "http",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        request_id = %request_id,
        %method,
        %route,
        http.response.status_code = tracing::field::Empty,
    );
    // A caller's W3C trace context makes this request part of its trace.
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&RequestHeaders(request.headers())));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    // Handlers put it on the events a change causes.
    actix_web::HttpMessage::extensions_mut(&request).insert(RequestId(request_id.clone()));
    let started = Instant::now();
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    span.record("http.response.status_code", status);
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed * 1000.0, "request done"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    // ...and the answer names the span that served it.
    let context = span.context();
    if context.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut ResponseHeaders(response.headers_mut()));
        });
    }
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    Ok(response)
}

struct RequestHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct ResponseHeaders<'a>(&'a mut actix_web::http::header::HeaderMap);

impl Injector for ResponseHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// Where the operations listener is bound, when there is one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpsListener(pub(crate) Option<std::net::SocketAddr>);

/// The routes the operations listener serves.
const OPS_ROUTES: [&str; 3] = ["/metrics", "/health/live", "/health/ready"];

/// With an operations listener, `/metrics` is served there only, and that
/// listener serves only `/metrics` and health; anything else is a 404.
pub(crate) async fn split_listeners(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(ops) = request.app_data::<web::Data<OpsListener>>().and_then(|o| o.0) {
        let on_ops = request.app_config().local_addr() == ops;
        let allowed = if on_ops {
            OPS_ROUTES.contains(&request.path())
        } else {
            request.path() != "/metrics"
        };
        if !allowed {
            return Ok(request.into_response(not_found().await));
        }
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

pub(crate) async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let mut checks = serde_json::Map::new();
    let mut reasons = serde_json::Map::new();
    let database = state
        .service
        .ping_store()
        .await
        .map_err(|e| inventory_domain::ErrorChain(&e).to_string());
    let mut up = true;
    for (name, result) in std::iter::once(("database", database)).chain(state.readiness.check().await) {
        up &= result.is_ok();
        checks.insert(name.into(), json!(if result.is_ok() { "UP" } else { "DOWN" }));
        if let Err(why) = result {
            reasons.insert(name.into(), json!(why));
        }
    }
    let mut body = json!({"status": if up { "UP" } else { "DOWN" }, "checks": checks});
    if !reasons.is_empty() {
        body["reasons"] = serde_json::Value::Object(reasons);
    }
    if up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

pub(crate) async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body((state.metrics)())
}

pub(crate) async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}

/// 405 naming the one method the route serves (RFC 9110 requires `Allow`).
pub(crate) async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    response
        .headers_mut()
        .insert(actix_web::http::header::ALLOW, HeaderValue::from_static(allow));
    response
}

pub(crate) async fn openapi() -> HttpResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| crate::openapi::document().to_pretty_json().unwrap_or_default());
    HttpResponse::Ok().content_type("application/json").body(body.as_str())
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn a_path_is_labelled_with_its_route_as_actix_would_match_it() {
        assert_eq!(route_of("/api/inventory/sku-1"), "/api/inventory/{productId}");
        assert_eq!(
            route_of("/api/inventory/add"),
            "/api/inventory/add",
            "static before {{productId}}"
        );
        assert_eq!(route_of("/api/inventory/check"), "/api/inventory/check");
        assert_eq!(
            route_of("/api/inventory/sku-1/adjustments"),
            "/api/inventory/{productId}/adjustments"
        );
        assert_eq!(route_of("/health/live"), "/health/live");
        for unmatched in ["/", "/api/inventory/", "/api/inventory/a/b", "/nope", "/health/live/x"] {
            assert_eq!(route_of(unmatched), "unmatched", "{unmatched}");
        }
    }
}
