//! JSON bodies parsed with the offending field's path in every error.

use actix_web::web::Bytes;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest bulk request body accepted (1,000 lines and room).
pub const MAX_BULK_BODY_BYTES: usize = 512 * 1024;

/// Parses `body` as `T`, naming the field on failure.
pub fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    parse_up_to(body, MAX_BODY_BYTES)
}

/// [`parse`] with another size limit.
pub fn parse_up_to<T: DeserializeOwned>(body: &Bytes, limit: usize) -> Result<T, ApiError> {
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the body is empty".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::MalformedJson(inner.to_string());
        }
        // serde reports unknown and missing fields at the parent's path.
        let message = inner.to_string();
        let field = match quoted_field(&message) {
            Some(f) if path == "." => f,
            Some(f) if !path.ends_with(&f) => format!("{path}.{f}"),
            _ => path,
        };
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        ApiError::field(if field == "." { "body".to_owned() } else { field }, message)
    })?;
    de.end().map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

fn quoted_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        product_id: String,
        quantity: i64,
    }

    fn field_of(body: &str) -> String {
        match parse::<Body>(&Bytes::from(body.to_owned())) {
            Err(ApiError::Validation(errors)) => errors[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"productId":"a","quantity":"x"}"#), "quantity");
        assert_eq!(field_of(r#"{"productId":"a"}"#), "quantity");
        assert_eq!(field_of(r#"{"productId":"a","quantity":1,"extra":1}"#), "extra");
        assert_eq!(field_of(r#"{"productId":7,"quantity":1}"#), "productId");
        assert!(matches!(
            parse::<Body>(&Bytes::from_static(b"{")),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<Body>(&Bytes::from_static(b"")),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
