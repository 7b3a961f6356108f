//! The API table: the one list every route is registered from, authorized by and documented
//! from, so none of them can miss a route or disagree on its roles.

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path pattern.
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Roles of which the caller needs one; empty = public.
    pub roles: &'static [Role],
    /// What answers it.
    pub handler: Handler,
    /// Request body schema (a component name, or `ids` for the id list).
    pub body: Option<&'static str>,
    /// Success schema (a component name, `availability`, or `status`).
    pub ok: &'static str,
    /// Error statuses it can answer.
    pub errors: &'static [u16],
    /// Query parameters.
    pub query: &'static [Param],
}

/// A role a bearer token carries (`ROLE_ADMIN` or `ADMIN` in the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Operators: stock changes, the audit trail.
    Admin,
    /// Other services: availability checks, listings.
    System,
}

impl Role {
    /// The name without its `ROLE_` prefix, as tokens are compared.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "ADMIN",
            Self::System => "SYSTEM",
        }
    }
}

/// What answers a route (the registration in `lib.rs` matches on it, exhaustively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `POST /api/inventory/add`.
    AddStock,
    /// `POST /api/inventory/audit`.
    AuditStock,
    /// `POST /api/inventory/audits`.
    CountStock,
    /// `POST /api/inventory/check`.
    CheckAvailability,
    /// `GET /api/inventory`.
    ListStock,
    /// `GET /api/inventory/export`.
    ExportStock,
    /// `PUT /api/inventory/{productId}/thresholds`.
    SetThresholds,
    /// `GET /api/inventory/{productId}/adjustments`.
    Adjustments,
    /// `GET /api/inventory/{productId}`.
    GetStock,
    /// `GET /health/live`.
    Live,
    /// `GET /health/ready`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /api-docs/openapi.json`.
    OpenApi,
}

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// What it means.
    pub description: &'static str,
    /// Its values.
    pub kind: Kind,
}

/// What a query parameter holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer in this range.
    Integer(i64, i64),
    /// Text of at most this many characters.
    Text(usize),
    /// An RFC 3339 date-time.
    DateTime,
    /// `true` or `false`.
    Boolean,
}

const fn param(name: &'static str, description: &'static str, kind: Kind) -> Param {
    Param {
        name,
        description,
        kind,
    }
}

/// The filters of a stock listing and of its CSV export.
const LISTING_FILTERS: [Param; 4] = [
    param(
        "availableBelow",
        "only products with quantity - reserved below this",
        Kind::Integer(0, i32::MAX as i64),
    ),
    param(
        "availableAtLeast",
        "only products with quantity - reserved at least this",
        Kind::Integer(0, i32::MAX as i64),
    ),
    param(
        "productIdPrefix",
        "only product ids that start with this",
        Kind::Text(64),
    ),
    param(
        "updatedSince",
        "only products changed at or after this instant",
        Kind::DateTime,
    ),
];

/// A listing's parameters: the filters, the page size and the cursor.
const LISTING_PARAMS: [Param; 6] = [
    LISTING_FILTERS[0],
    LISTING_FILTERS[1],
    LISTING_FILTERS[2],
    LISTING_FILTERS[3],
    param("limit", "rows per page, 1 to 500, default 50", Kind::Integer(1, 500)),
    param("cursor", "nextCursor of the page before", Kind::Text(512)),
];

/// Every route, literal paths before parameterised ones (registration order).
pub const API: &[Route] = &[
    Route {
        method: "POST",
        path: "/api/inventory/add",
        handler: Handler::AddStock,
        summary: "Add received units; creates the record for a new product. Honours Idempotency-Key.",
        roles: &[Role::Admin],
        body: Some("AddRequest"),
        ok: "StockView",
        errors: &[400, 401, 403, 409, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "POST",
        path: "/api/inventory/audit",
        handler: Handler::AuditStock,
        summary: "Set the counted physical stock, with a reason. Honours Idempotency-Key.",
        roles: &[Role::Admin],
        body: Some("AuditRequest"),
        ok: "StockView",
        errors: &[400, 401, 403, 404, 409, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "POST",
        path: "/api/inventory/audits",
        handler: Handler::CountStock,
        summary: "A bulk cycle count: up to 1,000 products' counts with one reason, all or none, in one \
                  transaction; each line in the audit trail. JSON, or text/csv (productId,quantity[,expectedVersion] \
                  with a header row, the reason as a query parameter); errors name the line. dryRun=true says what \
                  would change and changes nothing. Honours Idempotency-Key.",
        roles: &[Role::Admin],
        body: Some("CountsRequest"),
        ok: "CountsResult",
        errors: &[400, 401, 403, 404, 409, 413, 422, 503],
        query: &[
            param("dryRun", "true: say what would change, change nothing", Kind::Boolean),
            param("reason", "the reason, for a text/csv body", Kind::Text(32)),
        ],
    },
    Route {
        method: "POST",
        path: "/api/inventory/check",
        handler: Handler::CheckAvailability,
        summary: "Units available per product id (0 for unknown ids), 1 to 1,000 ids.",
        roles: &[Role::System, Role::Admin],
        body: Some("ids"),
        ok: "availability",
        errors: &[400, 401, 403, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/api/inventory",
        handler: Handler::ListStock,
        summary: "Stock rows in product-id order (byte order), filtered, in keyset pages. A page examines at most \
                  10,000 rows, so with a selective filter it may be short, even empty, and still carry nextCursor.",
        roles: &[Role::Admin, Role::System],
        body: None,
        ok: "StockListPage",
        errors: &[401, 403, 422, 503],
        query: &LISTING_PARAMS,
    },
    Route {
        method: "GET",
        path: "/api/inventory/export",
        handler: Handler::ExportStock,
        summary: "Every stock row the filters select, as CSV (text/csv), streamed in product-id order: \
                  productId,quantity,reserved,available,version,updatedAt. An id that starts with =, +, -, @ \
                  or ' is written with a ' in front, so a spreadsheet shows it as text; a CSV count takes it off.",
        roles: &[Role::Admin, Role::System],
        body: None,
        ok: "csv",
        errors: &[401, 403, 422, 503],
        query: &LISTING_FILTERS,
    },
    Route {
        method: "PUT",
        path: "/api/inventory/{productId}/thresholds",
        handler: Handler::SetThresholds,
        summary: "Set the product's low-stock threshold (null: the configured default). In the audit trail; \
                  an availability event when the product's level moves. Honours Idempotency-Key.",
        roles: &[Role::Admin],
        body: Some("ThresholdsRequest"),
        ok: "StockView",
        errors: &[400, 401, 403, 404, 409, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/api/inventory/{productId}/adjustments",
        handler: Handler::Adjustments,
        summary: "The product's audit trail, newest first.",
        roles: &[Role::Admin],
        body: None,
        ok: "AdjustmentPage",
        errors: &[401, 403, 404, 422, 503],
        query: &[
            param("limit", "1 to 500, default 50", Kind::Integer(1, 500)),
            param("before", "an id from nextBefore", Kind::Integer(1, i64::MAX)),
        ],
    },
    Route {
        method: "GET",
        path: "/api/inventory/{productId}",
        handler: Handler::GetStock,
        summary: "Stock of one product. ETag is its version; If-None-Match answers 304 while it holds; \
                  Cache-Control: public, max-age=1.",
        roles: &[],
        body: None,
        ok: "StockView",
        errors: &[304, 404, 422, 503],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/health/live",
        handler: Handler::Live,
        summary: "The process is up.",
        roles: &[],
        body: None,
        ok: "status",
        errors: &[],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/health/ready",
        handler: Handler::Ready,
        summary: "PostgreSQL (and Kafka when configured) answer.",
        roles: &[],
        body: None,
        ok: "status",
        errors: &[503],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/metrics",
        handler: Handler::Metrics,
        summary: "Prometheus text exposition (only on OPS_ADDR when that is set).",
        roles: &[],
        body: None,
        ok: "text",
        errors: &[],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/api-docs/openapi.json",
        handler: Handler::OpenApi,
        summary: "This document.",
        roles: &[],
        body: None,
        ok: "openapi",
        errors: &[],
        query: &[],
    },
];

/// The route a handler answers (for its roles and parameters).
pub fn route(handler: Handler) -> &'static Route {
    API.iter()
        .find(|r| r.handler == handler)
        .unwrap_or_else(|| panic!("the API table has no route for {handler:?}"))
}

/// The route whose literal path a product id would be in `GET /api/inventory/{productId}`, if any
/// (`export`, `check`, ...). Literal paths are registered first, so such a product's stock could
/// never be read there: the router answers that route (or 405) instead.
pub fn literal_route_named(product_id: &str) -> Option<&'static Route> {
    API.iter().find(|r| {
        r.path
            .strip_prefix("/api/inventory/")
            .is_some_and(|tail| !tail.contains(['/', '{']) && tail == product_id)
    })
}
