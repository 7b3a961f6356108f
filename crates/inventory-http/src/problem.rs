//! Every error the API returns, as RFC 9457 problem details; the one place
//! where errors become status codes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use inventory_domain::{ErrorChain, ServiceError, StockError};
use serde::Serialize;

/// An offending field and what is wrong with it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field (`quantity`, `[3]`, `productId`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// RFC 9457 problem details, as every error is answered (documentation shape).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ProblemDoc {
    /// A URI reference naming the kind of problem.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable machine code, e.g. PRODUCT_NOT_FOUND, VALIDATION_FAILED.
    code: String,
    /// The offending fields, for VALIDATION_FAILED.
    errors: Option<Vec<FieldError>>,
}

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// A field is missing, of the wrong type, unknown, or out of range.
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),
    /// The body is over the limit.
    #[error("the body is over {0} bytes")]
    PayloadTooLarge(usize),
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials, missing role.
    #[error("this operation needs one of the roles {0}")]
    Forbidden(String),
    /// No stock record.
    #[error("product {0} has no stock record")]
    ProductNotFound(String),
    /// Audit count below reserved.
    #[error("count {count} is below the {reserved} units reserved for orders")]
    InsufficientStockForAudit {
        /// Count asked for.
        count: u32,
        /// Units on hold.
        reserved: u32,
    },
    /// Stale `expectedVersion`.
    #[error("expected version {expected}, but the record is at version {actual}")]
    VersionMismatch {
        /// Version sent.
        expected: i64,
        /// Version stored.
        actual: i64,
    },
    /// Stock would exceed the maximum.
    #[error("{0}")]
    StockLimit(String),
    /// Same idempotency key, different request.
    #[error("idempotency key {0} was used with a different request")]
    IdempotencyKeyReused(String),
    /// Conflicts did not settle.
    #[error("the record is changing too fast; try again")]
    Contention,
    /// The database is unreachable.
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    /// Anything else; details stay in the log.
    #[error("internal error")]
    Internal,
    /// No such route.
    #[error("no such resource")]
    NotFound,
    /// Wrong method for the route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// One line of a bulk request was refused: the line's own error, naming the line.
    #[error("{}: {inner}", .line.field)]
    AtLine {
        /// The line (`lines[3]`, or `line 5` of a CSV body) and the error's text.
        line: FieldError,
        /// The error the line met.
        inner: Box<ApiError>,
    },
}

impl ApiError {
    /// One validation error.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AtLine { inner, .. } => inner.code(),
            Self::MalformedJson(_) => "MALFORMED_JSON",
            Self::Validation(_) => "VALIDATION_FAILED",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::ProductNotFound(_) => "PRODUCT_NOT_FOUND",
            Self::InsufficientStockForAudit { .. } => "INSUFFICIENT_STOCK_FOR_AUDIT",
            Self::VersionMismatch { .. } => "VERSION_MISMATCH",
            Self::StockLimit(_) => "STOCK_LIMIT_EXCEEDED",
            Self::IdempotencyKeyReused(_) => "IDEMPOTENCY_KEY_REUSED",
            Self::Contention => "CONTENTION",
            Self::Unavailable => "SERVICE_UNAVAILABLE",
            Self::Internal => "INTERNAL_ERROR",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::AtLine { inner, .. } => inner.title(),
            Self::MalformedJson(_) => "Malformed JSON",
            Self::Validation(_) => "Validation failed",
            Self::PayloadTooLarge(_) => "Payload too large",
            Self::Unauthorized(_) => "Unauthorized",
            Self::Forbidden(_) => "Forbidden",
            Self::ProductNotFound(_) => "Product not found",
            Self::InsufficientStockForAudit { .. } => "Count below reserved stock",
            Self::VersionMismatch { .. } => "Version mismatch",
            Self::StockLimit(_) => "Stock limit exceeded",
            Self::IdempotencyKeyReused(_) => "Idempotency key reused",
            Self::Contention => "Too much contention",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal error",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::AtLine { inner, .. } => inner.status_code(),
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) | Self::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::ProductNotFound(_) | Self::NotFound => StatusCode::NOT_FOUND,
            Self::InsufficientStockForAudit { .. } | Self::VersionMismatch { .. } | Self::StockLimit(_) => {
                StatusCode::CONFLICT
            }
            Self::Contention | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let code = self.code();
        let problem = Problem {
            type_: format!("/problems/{}", code.to_lowercase().replace('_', "-")),
            title: self.title(),
            status: status.as_u16(),
            detail: self.to_string(),
            code,
            errors: match self {
                Self::Validation(errors) => Some(errors),
                Self::AtLine { line, .. } => Some(std::slice::from_ref(line)),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            Self::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::Unavailable | Self::Contention => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(p) => Self::ProductNotFound(p.to_string()),
            ServiceError::Stock(StockError::BelowReserved { count, reserved }) => {
                Self::InsufficientStockForAudit { count, reserved }
            }
            ServiceError::Stock(other) => Self::StockLimit(other.to_string()),
            ServiceError::VersionMismatch { expected, actual } => Self::VersionMismatch { expected, actual },
            ServiceError::Contention { .. } => Self::Contention,
            ServiceError::IdempotencyKeyReused(key) => Self::IdempotencyKeyReused(key),
            e @ ServiceError::Unavailable(_) => {
                tracing::warn!(error = %ErrorChain(&e), "database unavailable");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %ErrorChain(&other), "request failed");
                Self::Internal
            }
        }
    }
}
