//! Keys from the identity provider: a JWKS endpoint served by the test (a real HTTP server on
//! loopback) that rotates its keys and goes down, under a running service.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::db::TestDb;
use inventory_tests::http::claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{assert_problem, no_kafka, post};

/// A signing key: its private half for tokens, its public half as a JWK.
struct Key {
    kid: &'static str,
    algorithm: Algorithm,
    private: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa(kid: &'static str) -> Key {
    let rsa = Rsa::generate(2048).expect("RSA key");
    let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
    let pem = PKey::from_rsa(rsa)
        .and_then(|k| k.private_key_to_pem_pkcs8())
        .expect("PEM");
    Key {
        kid,
        algorithm: Algorithm::RS256,
        private: EncodingKey::from_rsa_pem(&pem).expect("RSA PEM"),
        jwk,
    }
}

fn ec(kid: &'static str) -> Key {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let ec = EcKey::generate(&group).expect("EC key");
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().expect("bn"),
        openssl::bn::BigNum::new().expect("bn"),
    );
    ec.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut BigNumContext::new().expect("ctx"))
        .expect("coordinates");
    // Without "alg": the curve says ES256.
    let jwk = json!({"kty": "EC", "kid": kid, "crv": "P-256",
        "x": b64(&x.to_vec_padded(32).expect("x")), "y": b64(&y.to_vec_padded(32).expect("y"))});
    let pem = PKey::from_ec_key(ec)
        .and_then(|k| k.private_key_to_pem_pkcs8())
        .expect("PEM");
    Key {
        kid,
        algorithm: Algorithm::ES256,
        private: EncodingKey::from_ec_pem(&pem).expect("EC PEM"),
        jwk,
    }
}

fn ed25519(kid: &'static str) -> Key {
    let key = PKey::generate_ed25519().expect("Ed25519 key");
    let jwk = json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA",
        "x": b64(&key.raw_public_key().expect("raw"))});
    Key {
        kid,
        algorithm: Algorithm::EdDSA,
        private: EncodingKey::from_ed_pem(&key.private_key_to_pem_pkcs8().expect("PEM")).expect("Ed PEM"),
        jwk,
    }
}

fn token(key: &Key, kid: Option<&str>) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims("idp-user", &["ROLE_ADMIN"]), &key.private).expect("sign")
}

/// The identity provider's JWKS endpoint: what it publishes, whether it answers, how often it was asked.
#[derive(Clone, Default)]
struct Provider {
    keys: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    fn publish(&self, keys: &[&Value]) {
        *self.keys.lock().expect("keys") = keys.iter().map(|k| (*k).clone()).collect();
    }

    fn serve(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/realms/shop/protocol/openid-connect/certs",
            listener.local_addr().expect("addr")
        );
        let provider = self.clone();
        let issuer = url.replace("/protocol/openid-connect/certs", "");
        let discovery = json!({"issuer": issuer, "jwks_uri": url});
        let server = HttpServer::new(move || {
            let provider = provider.clone();
            let discovery = discovery.clone();
            App::new()
                .route(
                    "/realms/shop/.well-known/openid-configuration",
                    web::get().to(move || {
                        let discovery = discovery.clone();
                        async move { HttpResponse::Ok().json(discovery) }
                    }),
                )
                .route(
                    "/realms/shop/protocol/openid-connect/certs",
                    web::get().to(move || {
                        let provider = provider.clone();
                        async move {
                            provider.fetches.fetch_add(1, Ordering::SeqCst);
                            if provider.down.load(Ordering::SeqCst) {
                                return HttpResponse::ServiceUnavailable().finish();
                            }
                            let keys = provider.keys.lock().expect("keys").clone();
                            HttpResponse::Ok().json(json!({ "keys": keys }))
                        }
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        url
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_identity_provider_and_rotate_without_a_restart() {
    let (a, b, c, stranger) = (rsa("key-a"), ec("key-b"), ed25519("key-c"), rsa("key-d"));
    let provider = Provider::default();
    provider.publish(&[&a.jwk]);
    let url = provider.serve();
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db,
        AppOptions {
            jwt: false,
            jwt_jwks_url: Some(url),
            ..no_kafka()
        },
    )
    .await;
    let add = json!({"productId": "p", "quantity": 1});
    let accepted =
        |reply: &crate::Reply, what: &str| assert_eq!(reply.status, StatusCode::OK, "{what}: {:?}", reply.body);

    accepted(
        &post(&app, "/api/inventory/add", Some(&token(&a, Some(a.kid))), &add).await,
        "RS256 key A",
    );
    let fetched_at_start = provider.fetches.load(Ordering::SeqCst);
    assert!(fetched_at_start >= 1);

    // The provider rotates: B (ES256) and C (EdDSA) join, A stays for tokens already issued.
    provider.publish(&[&a.jwk, &b.jwk, &c.jwk]);
    tokio::time::sleep(Duration::from_millis(150)).await; // the test app refetches at most every 100 ms
    accepted(
        &post(&app, "/api/inventory/add", Some(&token(&b, Some(b.kid))), &add).await,
        "ES256 key B, new",
    );
    accepted(
        &post(&app, "/api/inventory/add", Some(&token(&c, Some(c.kid))), &add).await,
        "EdDSA key C, new",
    );
    assert!(
        provider.fetches.load(Ordering::SeqCst) > fetched_at_start,
        "an unknown kid fetched the keys again"
    );

    // A kid nobody publishes: refused after one more look.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = provider.fetches.load(Ordering::SeqCst);
    let reply = post(
        &app,
        "/api/inventory/add",
        Some(&token(&stranger, Some(stranger.kid))),
        &add,
    )
    .await;
    assert_problem(&reply, 401, "UNAUTHORIZED");
    assert!(
        reply.body["detail"].as_str().unwrap_or_default().contains("key-d"),
        "{:?}",
        reply.body
    );
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        before + 1,
        "refused after the refresh"
    );
    // A stranger's token that claims A's kid fails the signature.
    let forged = post(&app, "/api/inventory/add", Some(&token(&stranger, Some(a.kid))), &add).await;
    assert_problem(&forged, 401, "UNAUTHORIZED");
    // Unknown kids do not hammer the provider: at most one fetch per interval.
    let before = provider.fetches.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        post(
            &app,
            "/api/inventory/add",
            Some(&token(&stranger, Some("made-up"))),
            &add,
        )
        .await;
    }
    let allowed = started.elapsed().as_millis() / 100 + 1;
    let fetched = provider.fetches.load(Ordering::SeqCst) - before;
    assert!(
        fetched as u128 <= allowed,
        "{fetched} fetches for 20 unknown kids; at most one per 100 ms ({allowed})"
    );

    // The provider goes down: the cached keys keep working, nothing unverified gets through.
    provider.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    accepted(
        &post(&app, "/api/inventory/add", Some(&token(&a, Some(a.kid))), &add).await,
        "A while the provider is down",
    );
    accepted(
        &post(&app, "/api/inventory/add", Some(&token(&b, Some(b.kid))), &add).await,
        "B while the provider is down",
    );
    assert_problem(
        &post(&app, "/api/inventory/add", Some(&token(&stranger, Some("key-e"))), &add).await,
        401,
        "UNAUTHORIZED",
    );
    assert!(
        provider.fetches.load(Ordering::SeqCst) > before,
        "it did try the provider"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_keys_in_a_jwks_are_never_trusted() {
    let provider = Provider::default();
    let secret = b"a-shared-secret-that-is-long-enough-for-hs256";
    let oct = json!({"kty": "oct", "kid": "shared", "alg": "HS256", "k": b64(secret)});
    let a = rsa("key-a");
    provider.publish(&[&oct, &a.jwk]);
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db,
        AppOptions {
            jwt: false,
            jwt_jwks_url: Some(provider.serve()),
            ..no_kafka()
        },
    )
    .await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("shared".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims("mallory", &["ROLE_ADMIN"]),
        &EncodingKey::from_secret(secret),
    )
    .expect("sign");
    let add = json!({"productId": "p", "quantity": 1});
    assert_problem(
        &post(&app, "/api/inventory/add", Some(&hs), &add).await,
        401,
        "UNAUTHORIZED",
    );
    assert_eq!(
        post(&app, "/api/inventory/add", Some(&token(&a, Some(a.kid))), &add)
            .await
            .status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_are_found_by_openid_connect_discovery_from_the_issuer() {
    let provider = Provider::default();
    let a = rsa("key-a");
    provider.publish(&[&a.jwk]);
    let certs = provider.serve();
    let issuer = certs.replace("/protocol/openid-connect/certs", "");
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db,
        AppOptions {
            jwt: false,
            jwt_issuer: Some(issuer.clone()),
            jwt_oidc_discovery: true,
            ..no_kafka()
        },
    )
    .await;
    let mut claims = claims("idp-user", &["ROLE_ADMIN"]);
    claims["iss"] = json!(issuer);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(a.kid.to_owned());
    let signed = jsonwebtoken::encode(&header, &claims, &a.private).expect("sign");
    let add = json!({"productId": "p", "quantity": 1});
    let reply = post(&app, "/api/inventory/add", Some(&signed), &add).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // The issuer is checked too: a token from another issuer is refused.
    claims["iss"] = json!("https://elsewhere.example");
    let other = jsonwebtoken::encode(&header, &claims, &a.private).expect("sign");
    assert_problem(
        &post(&app, "/api/inventory/add", Some(&other), &add).await,
        401,
        "UNAUTHORIZED",
    );
    assert!(
        provider.fetches.load(Ordering::SeqCst) >= 1,
        "the keys came from the discovered jwks_uri"
    );
    app.stop().await;
}
