//! Bearer JWT verification and roles.
//!
//! One algorithm is accepted, fixed by the configured key (HS256 secret, or
//! an RS256/ES256 public key), so `alg: none` and algorithm switching fail.
//! Roles come from `roles`, Spring Security's `authorities`, or `scope`;
//! `ROLE_ADMIN` and `ADMIN` mean the same. With no key configured every
//! protected route answers 401: the API fails closed.

use std::collections::HashSet;

use actix_web::HttpRequest;
use actix_web::http::header;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use crate::problem::ApiError;

/// How tokens are verified.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// The verification key and its algorithm; with neither it nor `jwks`, every token is refused.
    pub key: Option<(DecodingKey, Algorithm)>,
    /// The identity provider's published keys (instead of `key`).
    pub jwks: Option<std::sync::Arc<crate::jwks::Jwks>>,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
}

impl AuthConfig {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: Some((DecodingKey::from_secret(secret), Algorithm::HS256)),
            ..Self::default()
        }
    }

    /// RS256 or ES256 with a PEM public key (the algorithm follows the key type).
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, String> {
        let key = match DecodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, Algorithm::RS256),
            Err(_) => (
                DecodingKey::from_ec_pem(pem).map_err(|e| format!("not an RSA or EC public key: {e}"))?,
                Algorithm::ES256,
            ),
        };
        Ok(Self {
            key: Some(key),
            ..Self::default()
        })
    }
}

/// Who called, and with which roles (normalised: no `ROLE_` prefix, upper case).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// Roles.
    pub roles: HashSet<String>,
}

impl Principal {
    /// Whether the caller holds any of `roles` (given without prefix).
    pub fn has_any(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.roles.contains(*r))
    }
}

fn normalise(role: &str) -> String {
    let upper = role.trim().to_uppercase();
    upper.strip_prefix("ROLE_").map(str::to_owned).unwrap_or(upper)
}

fn roles_of(claims: &Value) -> HashSet<String> {
    let mut roles = HashSet::new();
    let mut add_list = |value: Option<&Value>| {
        if let Some(Value::Array(items)) = value {
            for item in items {
                match item {
                    Value::String(s) => {
                        roles.insert(normalise(s));
                    }
                    // Spring serialises GrantedAuthority as {"authority": "ROLE_X"}.
                    Value::Object(o) => {
                        if let Some(Value::String(s)) = o.get("authority") {
                            roles.insert(normalise(s));
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    add_list(claims.get("roles"));
    add_list(claims.get("authorities"));
    if let Some(Value::String(scope)) = claims.get("scope") {
        roles.extend(scope.split_whitespace().map(normalise));
    }
    roles
}

/// Verifies the request's bearer token and requires one of `roles`.
pub async fn authorize(config: &AuthConfig, request: &HttpRequest, roles: &[&str]) -> Result<Principal, ApiError> {
    if config.key.is_none() && config.jwks.is_none() {
        return Err(ApiError::Unauthorized("no token verification key is configured".into()));
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
    let published;
    let (key, algorithm) = match (&config.jwks, &config.key) {
        (Some(jwks), _) => {
            let header = decode_header(token).map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
            published = jwks
                .key(header.kid.as_deref())
                .await
                .map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
            (&*published.0, &published.1)
        }
        (None, Some((key, algorithm))) => (key, algorithm),
        (None, None) => unreachable!("checked above"),
    };
    let mut validation = Validation::new(*algorithm);
    validation.leeway = 30;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    match &config.issuer {
        Some(iss) => validation.set_issuer(&[iss]),
        None => validation.iss = None,
    }
    match &config.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data =
        decode::<Value>(token, key, &validation).map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
    let claims = data.claims;
    let principal = Principal {
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        roles: roles_of(&claims),
    };
    if principal.has_any(roles) {
        Ok(principal)
    } else {
        Err(ApiError::Forbidden(
            roles.iter().map(|r| format!("ROLE_{r}")).collect::<Vec<_>>().join(", "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_every_claim_style() {
        let claims = serde_json::json!({
            "roles": ["ROLE_ADMIN"],
            "authorities": [{"authority": "ROLE_SYSTEM"}, "role_audit"],
            "scope": "read ADMIN"
        });
        let roles = roles_of(&claims);
        for r in ["ADMIN", "SYSTEM", "AUDIT", "READ"] {
            assert!(roles.contains(r), "{r} in {roles:?}");
        }
    }
}
