//! Signing keys from the identity provider's JWKS endpoint (what Spring's resource servers call
//! `jwk-set-uri`): fetched, cached, chosen by `kid`, fetched again when a token names a `kid` we do
//! not know (at most once per [`Jwks::REFETCH_AFTER`], by default) and when the cache is older than
//! [`Jwks::REFRESH_EVERY`]. When the endpoint cannot be reached the cached keys stay in use; a token
//! whose key is not known is refused, never let through.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

/// Where the keys are published.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// The JWKS URL itself.
    Url(String),
    /// An OpenID Connect issuer: its `/.well-known/openid-configuration` names the JWKS URL.
    Discovery {
        /// The issuer (`iss`), e.g. `https://idp.example.com/realms/shop`.
        issuer: String,
    },
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, (Arc<DecodingKey>, Algorithm)>,
    /// Keys without a `kid` (a token without one may use the only key there is).
    anonymous: Vec<(Arc<DecodingKey>, Algorithm)>,
    fetched_at: Option<Instant>,
}

/// The identity provider's keys, cached.
pub struct Jwks {
    source: JwksSource,
    client: reqwest::Client,
    cache: RwLock<Cache>,
    /// Serialises fetches and remembers when the last one was tried.
    last_attempt: Mutex<Option<Instant>>,
    /// The JWKS URL, once known (discovered or given).
    url: RwLock<Option<String>>,
    refetch_after: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// The cache is fetched again when older than this.
    pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
    /// By default an unknown `kid` fetches the keys again at most this often (tokens with made-up
    /// `kid`s must not make us hammer the identity provider).
    pub const REFETCH_AFTER: Duration = Duration::from_secs(10);

    /// Keys from `source`; nothing is fetched until [`Self::refresh`] or the first token.
    pub fn new(source: JwksSource) -> Self {
        let url = match &source {
            JwksSource::Url(url) => Some(url.clone()),
            JwksSource::Discovery { .. } => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            source,
            client,
            cache: RwLock::new(Cache::default()),
            last_attempt: Mutex::new(None),
            url: RwLock::new(url),
            refetch_after: Self::REFETCH_AFTER,
        }
    }

    /// Fetches again for an unknown `kid` at most once per `interval`.
    pub fn with_refetch_after(mut self, interval: Duration) -> Self {
        self.refetch_after = interval;
        self
    }

    /// Fetches the keys now; how many usable ones there are. On failure the cached keys stay.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.last_attempt.lock().await;
        *last = Some(Instant::now());
        let url = self.jwks_url().await?;
        let set: JwkSet = self
            .client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("JWKS {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("JWKS {url}: not a JWK set: {e}"))?;
        let mut cache = Cache {
            fetched_at: Some(Instant::now()),
            ..Cache::default()
        };
        for jwk in &set.keys {
            match usable(jwk) {
                Ok(key) => match &jwk.common.key_id {
                    Some(kid) => {
                        cache.keys.insert(kid.clone(), key);
                    }
                    None => cache.anonymous.push(key),
                },
                Err(why) => tracing::warn!(kid = ?jwk.common.key_id, %why, "JWKS key skipped"),
            }
        }
        let count = cache.keys.len() + cache.anonymous.len();
        tracing::info!(%url, keys = count, "JWKS keys fetched");
        *self.cache.write().await = cache;
        Ok(count)
    }

    async fn jwks_url(&self) -> Result<String, String> {
        if let Some(url) = self.url.read().await.clone() {
            return Ok(url);
        }
        let JwksSource::Discovery { issuer } = &self.source else {
            return Err("no JWKS URL".to_owned());
        };
        let discovery = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let document: serde_json::Value = self
            .client
            .get(&discovery)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("OIDC discovery {discovery}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("OIDC discovery {discovery}: {e}"))?;
        let url = document["jwks_uri"]
            .as_str()
            .ok_or_else(|| format!("OIDC discovery {discovery}: no jwks_uri"))?
            .to_owned();
        *self.url.write().await = Some(url.clone());
        Ok(url)
    }

    /// Fetches again if the cache is stale, or if `force` and the last attempt is long enough ago.
    async fn maybe_refresh(&self, force: bool) {
        let due = {
            let last = *self.last_attempt.lock().await;
            let fetched = self.cache.read().await.fetched_at;
            let stale = fetched.is_none_or(|at| at.elapsed() >= Self::REFRESH_EVERY);
            let may = last.is_none_or(|at| at.elapsed() >= self.refetch_after);
            may && (stale || force)
        };
        if due && let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "JWKS refresh failed; the cached keys stay in use");
        }
    }

    /// The key a token with `kid` was signed with, if the provider publishes it.
    pub async fn key(&self, kid: Option<&str>) -> Result<(Arc<DecodingKey>, Algorithm), String> {
        self.maybe_refresh(false).await;
        if let Some(key) = self.lookup(kid).await {
            return Ok(key);
        }
        self.maybe_refresh(true).await;
        self.lookup(kid).await.ok_or_else(|| match kid {
            Some(kid) => format!("no signing key with kid {kid:?} is published by the identity provider"),
            None => "the token names no key (kid) and the identity provider publishes several".to_owned(),
        })
    }

    async fn lookup(&self, kid: Option<&str>) -> Option<(Arc<DecodingKey>, Algorithm)> {
        let cache = self.cache.read().await;
        match kid {
            Some(kid) => cache.keys.get(kid).cloned(),
            None => match (cache.keys.len(), cache.anonymous.as_slice()) {
                (0, [only]) => Some(only.clone()),
                (1, []) => cache.keys.values().next().cloned(),
                _ => None,
            },
        }
    }
}

/// A published key we verify with: asymmetric only (RS*, PS*, ES256/384, EdDSA).
fn usable(jwk: &Jwk) -> Result<(Arc<DecodingKey>, Algorithm), String> {
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(declared), _) => declared
            .to_string()
            .parse::<Algorithm>()
            .map_err(|_| format!("algorithm {declared} is not supported"))?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            ref other => return Err(format!("curve {other:?} is not supported")),
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, AlgorithmParameters::OctetKey(_)) => return Err("symmetric keys are not accepted".to_owned()),
    };
    if matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err("symmetric keys are not accepted from a JWKS".to_owned());
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok((Arc::new(key), algorithm))
}
