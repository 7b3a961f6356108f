//! The API table: the one list every route is registered from and the
//! OpenAPI 3.1 document is generated from, so neither can miss a route.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    Required, ResponseBuilder, Type,
};

use crate::handlers::{
    AddRequest, AdjustmentPage, AdjustmentView, AuditRequest, CountRequestLine, CountedView, CountsRequest,
    CountsResult, StockListPage, StockView, ThresholdsRequest,
};
use crate::problem::{FieldError, ProblemDoc};

/// What a product id must look like: no control characters, no whitespace at the ends.
pub const PRODUCT_ID_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$";

/// The schema of a product id, wherever one appears.
pub(crate) fn product_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some(PRODUCT_ID_PATTERN))
}

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
    pub roles: &'static [&'static str],
    /// Request body schema (a component name, or `ids` for the id list).
    pub body: Option<&'static str>,
    /// Success schema (a component name, `availability`, or `status`).
    pub ok: &'static str,
    /// Error statuses it can answer.
    pub errors: &'static [u16],
    /// Query parameters.
    pub query: &'static [Param],
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
        summary: "Add received units; creates the record for a new product. Honours Idempotency-Key.",
        roles: &["ADMIN"],
        body: Some("AddRequest"),
        ok: "StockView",
        errors: &[400, 401, 403, 409, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "POST",
        path: "/api/inventory/audit",
        summary: "Set the counted physical stock, with a reason. Honours Idempotency-Key.",
        roles: &["ADMIN"],
        body: Some("AuditRequest"),
        ok: "StockView",
        errors: &[400, 401, 403, 404, 409, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "POST",
        path: "/api/inventory/audits",
        summary: "A bulk cycle count: up to 1,000 products' counts with one reason, all or none, in one \
                  transaction; each line in the audit trail. JSON, or text/csv (productId,quantity[,expectedVersion] \
                  with a header row, the reason as a query parameter); errors name the line. dryRun=true says what \
                  would change and changes nothing. Honours Idempotency-Key.",
        roles: &["ADMIN"],
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
        summary: "Units available per product id (0 for unknown ids), 1 to 1,000 ids.",
        roles: &["SYSTEM", "ADMIN"],
        body: Some("ids"),
        ok: "availability",
        errors: &[400, 401, 403, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/api/inventory",
        summary: "Stock rows in product-id order (byte order), filtered, in keyset pages. A page examines at most \
                  10,000 rows, so with a selective filter it may be short, even empty, and still carry nextCursor.",
        roles: &["ADMIN", "SYSTEM"],
        body: None,
        ok: "StockListPage",
        errors: &[401, 403, 422, 503],
        query: &LISTING_PARAMS,
    },
    Route {
        method: "GET",
        path: "/api/inventory/export",
        summary: "Every stock row the filters select, as CSV (text/csv), streamed in product-id order: \
                  productId,quantity,reserved,available,version,updatedAt.",
        roles: &["ADMIN", "SYSTEM"],
        body: None,
        ok: "csv",
        errors: &[401, 403, 422, 503],
        query: &LISTING_FILTERS,
    },
    Route {
        method: "PUT",
        path: "/api/inventory/{productId}/thresholds",
        summary: "Set the product's low-stock threshold (null: the configured default). In the audit trail; \
                  an availability event when the product's level moves. Honours Idempotency-Key.",
        roles: &["ADMIN"],
        body: Some("ThresholdsRequest"),
        ok: "StockView",
        errors: &[400, 401, 403, 404, 409, 413, 422, 503],
        query: &[],
    },
    Route {
        method: "GET",
        path: "/api/inventory/{productId}/adjustments",
        summary: "The product's audit trail, newest first.",
        roles: &["ADMIN"],
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
        summary: "This document.",
        roles: &[],
        body: None,
        ok: "openapi",
        errors: &[],
        query: &[],
    },
];

/// The route at `method path` (for handlers reading their own parameters).
pub fn route(method: &str, path: &str) -> &'static Route {
    API.iter()
        .find(|r| r.method == method && r.path == path)
        .unwrap_or_else(|| panic!("the API table has no {method} {path}"))
}

fn schema_ref(name: &str) -> Ref {
    Ref::from_schema_name(name)
}

fn json_content(name: &str) -> utoipa::openapi::Content {
    match name {
        "ids" => ContentBuilder::new()
            .schema(Some(
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(product_id_schema())
                    .min_items(Some(1))
                    .max_items(Some(1000)),
            ))
            .build(),
        "availability" => ContentBuilder::new()
            .schema(Some(ObjectBuilder::new().additional_properties(Some(
                ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)),
            ))))
            .build(),
        "status" | "openapi" => ContentBuilder::new().schema(Some(ObjectBuilder::new())).build(),
        other => ContentBuilder::new().schema(Some(schema_ref(other))).build(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        304 => "Not modified: If-None-Match names the current ETag (no body)",
        400 => "Malformed JSON",
        401 => "Missing or invalid bearer token",
        403 => "The token lacks the role",
        404 => "No such product",
        409 => "Conflict with the stored state",
        413 => "Body over 64 KiB",
        422 => "Validation failed; the field is named",
        503 => "Database unavailable (Retry-After)",
        _ => "Error",
    }
}

/// The OpenAPI 3.1 document of [`API`].
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in API {
        let mut op = OperationBuilder::new()
            .summary(Some(route.summary))
            .operation_id(Some(format!(
                "{}{}",
                route.method.to_lowercase(),
                route.path.replace(['/', '{', '}', '-', '.'], "_")
            )));
        if route.path.contains("{productId}") {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("productId")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(product_id_schema())),
            );
        }
        for param in route.query {
            let schema = match param.kind {
                Kind::Integer(min, max) => ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(min))
                    .maximum(Some(max)),
                Kind::Text(max) => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(max)),
                Kind::Boolean => ObjectBuilder::new().schema_type(Type::Boolean),
                Kind::DateTime => ObjectBuilder::new().schema_type(Type::String).format(Some(
                    utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime),
                )),
            };
            op = op.parameter(
                ParameterBuilder::new()
                    .name(param.name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(param.description))
                    .schema(Some(schema)),
            );
        }
        if matches!(route.method, "POST" | "PUT") && route.path != "/api/inventory/check" {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .schema(Some(
                        ObjectBuilder::new().schema_type(Type::String).max_length(Some(255)),
                    )),
            );
        }
        if let Some(body) = route.body {
            let mut request = RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json_content(body));
            if body == "CountsRequest" {
                request = request.content(
                    "text/csv",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String).description(Some(
                            "productId,quantity[,expectedVersion] with a header row; the reason as a query parameter",
                        ))))
                        .build(),
                );
            }
            op = op.request_body(Some(request.build()));
        }
        let ok = match route.ok {
            "text" | "csv" => ResponseBuilder::new().description("OK").content(
                if route.ok == "csv" { "text/csv" } else { "text/plain" },
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            ),
            name => ResponseBuilder::new()
                .description("OK")
                .content("application/json", json_content(name)),
        };
        op = op.response("200", ok.build());
        for status in route.errors {
            if *status == 304 {
                op = op
                    .parameter(
                        ParameterBuilder::new()
                            .name("If-None-Match")
                            .parameter_in(ParameterIn::Header)
                            .required(Required::False)
                            .description(Some("An ETag of an earlier answer (or *): 304 while it is current"))
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                    )
                    .response("304", ResponseBuilder::new().description(reason(304)).build());
                continue;
            }
            let problem = ContentBuilder::new().schema(Some(schema_ref("Problem"))).build();
            op = op.response(
                status.to_string(),
                ResponseBuilder::new()
                    .description(reason(*status))
                    .content("application/problem+json", problem)
                    .build(),
            );
        }
        if !route.roles.is_empty() {
            let roles: Vec<String> = route.roles.iter().map(|r| format!("ROLE_{r}")).collect();
            op = op
                .security(SecurityRequirement::new("bearer", roles.clone()))
                .description(Some(format!(
                    "Needs a bearer token with one of the roles {}.",
                    roles.join(", ")
                )));
        }
        let method = match route.method {
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            _ => HttpMethod::Get,
        };
        paths = paths.path(route.path, PathItem::new(method, op.build()));
    }
    let components = ComponentsBuilder::new()
        .schema_from::<StockView>()
        .schema_from::<AddRequest>()
        .schema_from::<AuditRequest>()
        .schema_from::<AdjustmentView>()
        .schema_from::<AdjustmentPage>()
        .schema_from::<StockListPage>()
        .schema_from::<ThresholdsRequest>()
        .schema_from::<CountsRequest>()
        .schema_from::<CountRequestLine>()
        .schema_from::<CountsResult>()
        .schema_from::<CountedView>()
        .schema_from::<FieldError>()
        .schema("Problem", <ProblemDoc as utoipa::PartialSchema>::schema())
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Inventory service")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Stock per product, reservations for orders, manual adjustments with an audit trail.",
                )),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}
