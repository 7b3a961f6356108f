//! The inventory endpoints: requests to use cases, results to JSON.

use std::collections::HashMap;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use inventory_domain::{
    Actor, AdjustmentReason, Caller, IdempotentRequest, Inventory, ProductId, Quantity, StockCount, StockFilter,
};

use crate::ApiState;
use crate::auth::{AuthConfig, Principal, authorize};
use crate::body::{MAX_BODY_BYTES, parse};
use crate::problem::ApiError;
use crate::routes::{self, Handler, Kind, Param};
use crate::schemas::{
    AddRequest, AdjustmentPage, AdjustmentView, AuditRequest, CountRequestLine, CountedView, CountsRequest,
    CountsResult, StockListPage, StockView, ThresholdsRequest,
};

/// Who is asking, and the request's id (set by the request-id middleware), for the events a
/// change causes.
fn caller(request: &HttpRequest, principal: Principal) -> Caller {
    use actix_web::HttpMessage;
    Caller {
        actor: Actor(principal.subject),
        request_id: request.extensions().get::<crate::ops::RequestId>().map(|r| r.0.clone()),
    }
}

/// Authorizes the caller for `handler`'s route: one of the roles the API table gives it.
async fn allowed(auth: &AuthConfig, request: &HttpRequest, handler: Handler) -> Result<Principal, ApiError> {
    let roles: Vec<&str> = routes::route(handler).roles.iter().map(|r| r.as_str()).collect();
    authorize(auth, request, &roles).await
}

/// Most ids one availability check may ask about.
pub const MAX_CHECK_IDS: usize = 1_000;

fn product_id(field: &str, raw: String) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|e| ApiError::field(field, e.to_string()))
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(payload: web::Payload) -> Result<Bytes, ApiError> {
    read_body_up_to(payload, MAX_BODY_BYTES).await
}

/// Reads the body, refusing more than `limit` bytes.
pub(crate) async fn read_body_up_to(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::MalformedJson(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// How long a browser or a shared cache may keep a public stock answer: one second, since stock
/// moves; after that, `If-None-Match` revalidates it for the price of a 304.
pub(crate) const STOCK_CACHE_CONTROL: &str = "public, max-age=1";

/// A stock row's entity tag: its version, which every change of the row bumps.
fn stock_etag(stock: &Inventory) -> String {
    format!("\"{}\"", stock.version())
}

/// Whether `If-None-Match` names `etag` (or `*`), by the weak comparison RFC 9110 asks for.
fn none_match(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get_all(actix_web::http::header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

pub(crate) async fn get_stock(
    state: web::Data<ApiState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    use actix_web::http::header::{CACHE_CONTROL, ETAG};
    let product = product_id("productId", path.into_inner())?;
    let stock = state
        .service
        .get_stock(product.clone())
        .await?
        .ok_or_else(|| ApiError::ProductNotFound(product.to_string()))?;
    let etag = stock_etag(&stock);
    let headers = [(ETAG, etag.as_str()), (CACHE_CONTROL, STOCK_CACHE_CONTROL)];
    if none_match(&request, &etag) {
        let mut response = HttpResponse::NotModified();
        for h in headers {
            response.insert_header(h);
        }
        return Ok(response.finish());
    }
    let mut response = HttpResponse::Ok();
    for h in headers {
        response.insert_header(h);
    }
    Ok(response.json(StockView::from(&stock)))
}

/// The request's `Idempotency-Key`, bound to who sent what where.
fn idempotency(
    request: &HttpRequest,
    principal: &Principal,
    body: &Bytes,
) -> Result<Option<IdempotentRequest>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| ApiError::field("Idempotency-Key", "must be 1 to 255 visible ASCII characters"))?;
    // Canonical JSON: the same body with other spacing or key order is the same request. Any
    // other body (CSV) as it is; the query too, since it can change what is asked.
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| whole_numbers(v).to_string())
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    let target = match request.query_string() {
        "" => request.path().to_owned(),
        query => format!("{}?{query}", request.path()),
    };
    let fingerprint = format!("{} {target} {canonical}", principal.subject);
    Ok(Some(IdempotentRequest {
        key: key.to_owned(),
        fingerprint,
    }))
}

/// The value with every number that is a whole one written as an integer: `3.0` is the
/// quantity 3 to the API, so it is the same request as `3` to the idempotency key.
fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_none() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect()),
        other => other,
    }
}

/// What an admin write starts from: who, the parsed body, and its idempotency key.
struct AdminWrite<T> {
    actor: Caller,
    body: T,
    once: Option<IdempotentRequest>,
}

/// Authorizes `ROLE_ADMIN`, reads and parses the body, and binds any `Idempotency-Key` to it.
async fn admin_write<T: serde::de::DeserializeOwned>(
    auth: &AuthConfig,
    request: &HttpRequest,
    payload: web::Payload,
    handler: Handler,
) -> Result<AdminWrite<T>, ApiError> {
    let principal = allowed(auth, request, handler).await?;
    let raw = read_body(payload).await?;
    let body = parse(&raw)?;
    let once = idempotency(request, &principal, &raw)?;
    Ok(AdminWrite {
        actor: caller(request, principal),
        body,
        once,
    })
}

pub(crate) async fn add_stock(
    state: web::Data<ApiState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let AdminWrite { actor, body, once } =
        admin_write::<AddRequest>(&state.auth, &request, payload, Handler::AddStock).await?;
    let product = product_id("productId", body.product_id)?;
    if let Some(route) = routes::literal_route_named(product.as_str()) {
        return Err(ApiError::field(
            "productId",
            format!(
                "'{}' is the path of {} {}: its stock could not be read at \
                 GET /api/inventory/{{productId}}; give the product another id",
                product.as_str(),
                route.method,
                route.path
            ),
        ));
    }
    let amount = Quantity::new(body.quantity).map_err(|e| ApiError::field("quantity", e.to_string()))?;
    // No turn to take: an add is one increment in the store, and adds never conflict.
    let stock = state.service.add_stock(product, amount, actor, once).await?;
    Ok(HttpResponse::Ok().json(StockView::from(&stock)))
}

pub(crate) async fn audit_stock(
    state: web::Data<ApiState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let AdminWrite { actor, body, once } =
        admin_write::<AuditRequest>(&state.auth, &request, payload, Handler::AuditStock).await?;
    let product = product_id("productId", body.product_id)?;
    let count = StockCount::new(body.quantity).map_err(|e| ApiError::field("quantity", e.to_string()))?;
    let reason = AdjustmentReason::parse(&body.reason)
        .filter(|r| !matches!(r, AdjustmentReason::Add | AdjustmentReason::Threshold))
        .ok_or_else(|| {
            ApiError::field(
                "reason",
                "must be one of CYCLE_COUNT, DAMAGED, SHRINKAGE, RECEIVED, CORRECTION, OTHER",
            )
        })?;
    let _turn = state.writes.lock(product.as_str()).await;
    let stock = state
        .service
        .audit_stock(product.clone(), count, reason, actor, body.expected_version, once)
        .await?;
    Ok(HttpResponse::Ok().json(StockView::from(&stock)))
}

pub(crate) async fn set_thresholds(
    state: web::Data<ApiState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let AdminWrite { actor, body, once } =
        admin_write::<ThresholdsRequest>(&state.auth, &request, payload, Handler::SetThresholds).await?;
    let product = product_id("productId", path.into_inner())?;
    let threshold = body
        .low_stock_threshold
        .map(|t| {
            u32::try_from(t).ok().filter(|t| *t <= MAX_THRESHOLD).ok_or_else(|| {
                ApiError::field(
                    "lowStockThreshold",
                    format!("must be an integer from 0 to {MAX_THRESHOLD}"),
                )
            })
        })
        .transpose()?;
    let _turn = state.writes.lock(product.as_str()).await;
    let stock = state
        .service
        .set_low_stock_threshold(product.clone(), threshold, actor, body.expected_version, once)
        .await?;
    Ok(HttpResponse::Ok().json(StockView::from(&stock)))
}

/// Highest low-stock threshold accepted.
pub const MAX_THRESHOLD: u32 = 1_000_000_000;

pub(crate) async fn check_availability(
    state: web::Data<ApiState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    allowed(&state.auth, &request, Handler::CheckAvailability).await?;
    let ids: Vec<String> = parse(&read_body(payload).await?)?;
    if ids.is_empty() || ids.len() > MAX_CHECK_IDS {
        return Err(ApiError::field(
            "body",
            format!("must list 1 to {MAX_CHECK_IDS} product ids, got {}", ids.len()),
        ));
    }
    let products = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| product_id(&format!("[{i}]"), id))
        .collect::<Result<Vec<_>, _>>()?;
    let available = state.service.availability(products).await?;
    let body: HashMap<&str, u32> = available.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn adjustments(
    state: web::Data<ApiState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    allowed(&state.auth, &request, Handler::Adjustments).await?;
    let product = product_id("productId", path.into_inner())?;
    let number = |name: &str, min: i64, max: i64| -> Result<Option<i64>, ApiError> {
        query
            .get(name)
            .map(|raw| {
                raw.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| ApiError::field(name, format!("must be an integer from {min} to {max}")))
            })
            .transpose()
    };
    let limit = number("limit", 1, 500)?.unwrap_or(50);
    let before = number("before", 1, i64::MAX)?;
    if state.service.get_stock(product.clone()).await?.is_none() {
        return Err(ApiError::ProductNotFound(product.to_string()));
    }
    let rows = state.service.adjustments(product, limit, before).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(HttpResponse::Ok().json(AdjustmentPage {
        items: rows.iter().map(AdjustmentView::from).collect(),
        next_before,
    }))
}

/// A cursor is opaque to clients: a version tag and the product id's bytes in hex.
const CURSOR_TAG: &str = "c1.";

fn encode_cursor(after: &ProductId) -> String {
    let mut cursor = String::from(CURSOR_TAG);
    for b in after.as_str().bytes() {
        cursor.push_str(&format!("{b:02x}"));
    }
    cursor
}

fn decode_cursor(raw: &str) -> Result<ProductId, ApiError> {
    let invalid = || {
        ApiError::field(
            "cursor",
            "is not a cursor this API gave out (pass nextCursor unchanged)",
        )
    };
    let hex = raw.strip_prefix(CURSOR_TAG).ok_or_else(invalid)?;
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let id = String::from_utf8(bytes).map_err(|_| invalid())?;
    ProductId::parse(id).map_err(|_| invalid())
}

/// Reads a listing's query: only the parameters `allowed` names, each checked, named when wrong.
fn listing_query(
    query: &HashMap<String, String>,
    allowed: &[Param],
) -> Result<(StockFilter, HashMap<&'static str, String>), ApiError> {
    let mut values: HashMap<&'static str, String> = HashMap::new();
    for (name, raw) in query {
        let param = allowed.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|p| p.name).collect();
            ApiError::field(name, format!("is not a parameter here (known: {})", names.join(", ")))
        })?;
        match param.kind {
            Kind::Integer(min, max) => {
                raw.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| ApiError::field(name, format!("must be an integer from {min} to {max}")))?;
            }
            Kind::Text(max) => {
                if raw.is_empty() || raw.chars().count() > max {
                    return Err(ApiError::field(name, format!("must be 1 to {max} characters")));
                }
            }
            Kind::Boolean => {
                if raw != "true" && raw != "false" {
                    return Err(ApiError::field(name, "must be true or false"));
                }
            }
            Kind::DateTime => {
                DateTime::parse_from_rfc3339(raw).map_err(|e| {
                    ApiError::field(
                        name,
                        format!("must be an RFC 3339 date-time (2026-11-27T08:00:00Z): {e}"),
                    )
                })?;
            }
        }
        values.insert(param.name, raw.clone());
    }
    let number = |name: &str| values.get(name).and_then(|v| v.parse::<u32>().ok());
    let filter = StockFilter {
        available_below: number("availableBelow"),
        available_at_least: number("availableAtLeast"),
        product_id_prefix: values.get("productIdPrefix").cloned(),
        updated_since: values
            .get("updatedSince")
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc)),
    };
    Ok((filter, values))
}

pub(crate) async fn list_stock(
    state: web::Data<ApiState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    allowed(&state.auth, &request, Handler::ListStock).await?;
    let route = routes::route(Handler::ListStock);
    let (filter, values) = listing_query(&query, route.query)?;
    let limit = values.get("limit").and_then(|v| v.parse().ok()).unwrap_or(50);
    let after = values.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    let page = state.service.list_stock(filter, after, limit).await?;
    Ok(HttpResponse::Ok().json(StockListPage {
        items: page.items.iter().map(StockView::from).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// What a spreadsheet takes for the start of a formula in a cell it opens (OWASP "CSV injection"),
/// and the quote that escapes it. Ids cannot start with a tab, a line break or a space.
const FORMULA_STARTS: [char; 5] = ['=', '+', '-', '@', '\''];

/// A product id as an export writes it: with a `'` in front when it starts like a formula (or with
/// `'` itself, so that [`id_from_csv`] undoes exactly this), so a spreadsheet shows it as text.
fn id_for_csv(id: &str) -> std::borrow::Cow<'_, str> {
    if id.starts_with(FORMULA_STARTS) {
        format!("'{id}").into()
    } else {
        id.into()
    }
}

/// A product id as a bulk count's CSV gives it: an export's `'` in front of a formula start (see
/// [`id_for_csv`]) is taken off, so an exported file, edited and sent back, names the same products.
fn id_from_csv(field: &str) -> &str {
    match field.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => field,
    }
}

/// The CSV header of an export.
pub const EXPORT_HEADER: &str = "productId,quantity,reserved,available,version,updatedAt\r\n";

pub(crate) async fn export_stock(
    state: web::Data<ApiState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    allowed(&state.auth, &request, Handler::ExportStock).await?;
    let route = routes::route(Handler::ExportStock);
    let (filter, _) = listing_query(&query, route.query)?;
    // The first page is read before answering, so an unavailable store is a 503, not a cut stream.
    let first = state
        .service
        .list_stock(filter.clone(), None, inventory_domain::MAX_PAGE)
        .await?;
    let rows = |page: &inventory_domain::StockPage| {
        let mut out = String::new();
        for inv in &page.items {
            csv_field(&mut out, &id_for_csv(inv.product_id().as_str()));
            out.push_str(&format!(
                ",{},{},{},{},{}\r\n",
                inv.quantity(),
                inv.reserved(),
                inv.available(),
                inv.version(),
                inv.updated_at().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ));
        }
        Bytes::from(out)
    };
    let head = Bytes::from(format!("{EXPORT_HEADER}{}", String::from_utf8_lossy(&rows(&first))));
    let next = first.next.clone();
    let rest = futures_util::stream::unfold(next, move |after| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            let after = after?;
            // A failure mid-stream ends the body without its last chunk: the client sees it cut.
            match state
                .service
                .list_stock(filter, Some(after), inventory_domain::MAX_PAGE)
                .await
            {
                Ok(page) => Some((Ok(rows(&page)), page.next.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "stock export cut short");
                    Some((Err(actix_web::error::ErrorServiceUnavailable(e.to_string())), None))
                }
            }
        }
    });
    let body = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(head) }).chain(rest);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"inventory.csv\""))
        .streaming(body))
}

/// Most lines one bulk count may hold.
pub const MAX_COUNT_LINES: usize = 1_000;

/// How a line is named in errors: its JSON path, or its line number in a CSV body.
#[derive(Clone, Copy)]
enum LineNames {
    Json,
    Csv,
}

impl LineNames {
    fn name(self, index: usize, field: &str) -> String {
        match self {
            Self::Json if field.is_empty() => format!("lines[{index}]"),
            Self::Json => format!("lines[{index}].{field}"),
            // The header is line 1.
            Self::Csv if field.is_empty() => format!("line {}", index + 2),
            Self::Csv => format!("line {} ({field})", index + 2),
        }
    }
}

fn count_reason(raw: &str, field: &str) -> Result<AdjustmentReason, ApiError> {
    AdjustmentReason::parse(raw)
        .filter(|r| !matches!(r, AdjustmentReason::Add | AdjustmentReason::Threshold))
        .ok_or_else(|| {
            ApiError::field(
                field,
                "must be one of CYCLE_COUNT, DAMAGED, SHRINKAGE, RECEIVED, CORRECTION, OTHER",
            )
        })
}

/// A CSV body's lines: a header `productId,quantity[,expectedVersion]`, then one product per row.
fn csv_lines(body: &[u8]) -> Result<Vec<CountRequestLine>, ApiError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| ApiError::field("line 1", format!("cannot be read as CSV: {e}")))?
        .clone();
    let columns: Vec<&str> = header.iter().map(str::trim).collect();
    if columns != ["productId", "quantity"] && columns != ["productId", "quantity", "expectedVersion"] {
        return Err(ApiError::field(
            "line 1",
            format!(
                "the header must be productId,quantity[,expectedVersion], got {}",
                columns.join(",")
            ),
        ));
    }
    let mut lines = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let name = |field: &str| LineNames::Csv.name(index, field);
        let record = record.map_err(|e| ApiError::field(name(""), format!("cannot be read as CSV: {e}")))?;
        if record.len() != columns.len() {
            return Err(ApiError::field(
                name(""),
                format!("has {} fields, the header {}", record.len(), columns.len()),
            ));
        }
        let integer = |i: usize, field: &str| -> Result<Option<i64>, ApiError> {
            let raw = record.get(i).unwrap_or_default().trim();
            if raw.is_empty() {
                return Ok(None);
            }
            raw.parse()
                .map(Some)
                .map_err(|_| ApiError::field(name(field), format!("must be an integer, got {raw:?}")))
        };
        lines.push(CountRequestLine {
            product_id: id_from_csv(record.get(0).unwrap_or_default()).to_owned(),
            quantity: integer(1, "quantity")?.ok_or_else(|| ApiError::field(name("quantity"), "is missing"))?,
            expected_version: if columns.len() == 3 {
                integer(2, "expectedVersion")?
            } else {
                None
            },
        });
        if lines.len() > MAX_COUNT_LINES {
            break;
        }
    }
    Ok(lines)
}

pub(crate) async fn count_stock(
    state: web::Data<ApiState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let principal = allowed(&state.auth, &request, Handler::CountStock).await?;
    let route = routes::route(Handler::CountStock);
    let (_, params) = listing_query(&query, route.query)?;
    let dry_run = match params.get("dryRun").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("dryRun", "must be true or false")),
    };
    let raw = read_body_up_to(payload, crate::body::MAX_BULK_BODY_BYTES).await?;
    let csv = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    let (reason, lines, names) = if csv {
        let reason = params
            .get("reason")
            .ok_or_else(|| ApiError::field("reason", "a CSV count names its reason as a query parameter"))?;
        (count_reason(reason, "reason")?, csv_lines(&raw)?, LineNames::Csv)
    } else {
        if params.contains_key("reason") {
            return Err(ApiError::field("reason", "a JSON count names its reason in the body"));
        }
        let body: CountsRequest = crate::body::parse_up_to(&raw, crate::body::MAX_BULK_BODY_BYTES)?;
        (count_reason(&body.reason, "reason")?, body.lines, LineNames::Json)
    };
    if lines.is_empty() || lines.len() > MAX_COUNT_LINES {
        return Err(ApiError::field(
            if csv { "body" } else { "lines" },
            format!("must hold 1 to {MAX_COUNT_LINES} lines"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut counts = Vec::with_capacity(lines.len());
    for (index, line) in lines.into_iter().enumerate() {
        let product = product_id(&names.name(index, "productId"), line.product_id)?;
        if !seen.insert(product.clone()) {
            return Err(ApiError::field(
                names.name(index, "productId"),
                format!("{product} is counted twice"),
            ));
        }
        let count = StockCount::new(line.quantity)
            .map_err(|e| ApiError::field(names.name(index, "quantity"), e.to_string()))?;
        counts.push(inventory_domain::CountLine {
            product_id: product,
            count,
            expected_version: line.expected_version,
        });
    }
    let once = idempotency(&request, &principal, &raw)?;
    let counted = state
        .service
        .audit_many(counts, reason, caller(&request, principal), dry_run, once)
        .await
        .map_err(|e| match e {
            inventory_domain::ServiceError::Line { index, source } => {
                let inner = ApiError::from(*source);
                ApiError::AtLine {
                    line: crate::problem::FieldError {
                        field: names.name(index, ""),
                        message: inner.to_string(),
                    },
                    inner: Box::new(inner),
                }
            }
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(CountsResult {
        dry_run,
        reason: reason.as_str(),
        lines: counted
            .into_iter()
            .map(|l| CountedView {
                product_id: l.product_id.to_string(),
                old_quantity: l.old_quantity,
                new_quantity: l.new_quantity,
                delta: i64::from(l.new_quantity) - i64::from(l.old_quantity),
                reserved: l.reserved,
                version: l.version,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod csv_ids {
    use super::{id_for_csv, id_from_csv};

    #[test]
    fn ids_a_spreadsheet_would_run_are_exported_as_text_and_read_back_as_they_were() {
        for (id, exported) in [
            ("sku-1", "sku-1"),
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("'=x", "''=x"),
            ("'quoted", "''quoted"),
            ("a=b", "a=b"),
        ] {
            assert_eq!(id_for_csv(id), exported, "{id}");
            assert_eq!(id_from_csv(exported), id, "{exported}");
        }
        // A count written by hand with a plain id, or one whose quote guards nothing, is taken as is.
        assert_eq!(id_from_csv("'abc"), "'abc");
        assert_eq!(id_from_csv("s-1"), "s-1");
    }
}
