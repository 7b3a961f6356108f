//! Tokens and a client for the HTTP tests.

use chrono::Utc;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::app::TEST_JWT_SECRET;

/// Claims valid for an hour.
pub fn claims(sub: &str, roles: &[&str]) -> Value {
    let now = Utc::now().timestamp();
    json!({"sub": sub, "roles": roles, "iat": now, "exp": now + 3600})
}

/// Signs `claims` with the test secret (HS256).
pub fn sign(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// A valid token with these roles.
pub fn token(roles: &[&str]) -> String {
    sign(&claims("tester", roles))
}

/// An HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}
