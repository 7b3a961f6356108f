//! The OpenAPI 3.1 document, generated from the API table (`routes.rs`) and the bodies'
//! types (`schemas.rs`).

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    Required, ResponseBuilder, Type,
};

use crate::problem::{FieldError, ProblemDoc};
use crate::routes::{API, Kind};
use crate::schemas::{
    AddRequest, AdjustmentPage, AdjustmentView, AuditRequest, CountRequestLine, CountedView, CountsRequest,
    CountsResult, StockListPage, StockView, ThresholdsRequest, product_id_schema,
};

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
            let roles: Vec<String> = route.roles.iter().map(|r| format!("ROLE_{}", r.as_str())).collect();
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
