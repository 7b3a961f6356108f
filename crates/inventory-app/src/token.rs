//! Development tokens, signed with the configured HS256 secret.

use chrono::Utc;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

/// Signs a token for `subject` with `roles`, valid for `ttl_secs`.
pub fn mint(
    secret: &str,
    subject: &str,
    roles: &[String],
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = Utc::now().timestamp();
    let roles: Vec<String> = roles
        .iter()
        .map(|r| {
            if r.starts_with("ROLE_") {
                r.clone()
            } else {
                format!("ROLE_{r}")
            }
        })
        .collect();
    let claims = json!({ "sub": subject, "roles": roles, "iat": now, "nbf": now, "exp": now + ttl_secs });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}
