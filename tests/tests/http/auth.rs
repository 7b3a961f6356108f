//! Bearer tokens: the verification matrix, public keys, failing closed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use inventory_tests::app::{AppOptions, TestApp};
use inventory_tests::db::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{assert_problem, call, no_kafka, post};
use inventory_tests::http::{claims, sign, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix() {
    let db = TestDb::new().await;
    let options = AppOptions {
        jwt_issuer: Some("shop-auth".into()),
        jwt_audience: Some("inventory".into()),
        ..no_kafka()
    };
    let app = TestApp::spawn(&db, options).await;
    let now = chrono::Utc::now().timestamp();
    let good = || {
        let mut c = claims("alice", &["ROLE_ADMIN"]);
        c["iss"] = json!("shop-auth");
        c["aud"] = json!("inventory");
        c
    };
    let body = json!({"productId": "p", "quantity": 1});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good();
        f(&mut c);
        sign(&c)
    };
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good().to_string())
    );
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        ("garbage", Some("not-a-jwt".into()), 401),
        ("bad signature", Some(forged), 401),
        ("alg none", Some(none_alg), 401),
        ("expired", Some(with(&|c| c["exp"] = json!(now - 120))), 401),
        (
            "expired within leeway",
            Some(with(&|c| c["exp"] = json!(now - 10))),
            200,
        ),
        ("not yet valid", Some(with(&|c| c["nbf"] = json!(now + 300))), 401),
        (
            "no exp",
            Some(with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            401,
        ),
        ("wrong issuer", Some(with(&|c| c["iss"] = json!("evil"))), 401),
        ("wrong audience", Some(with(&|c| c["aud"] = json!("billing"))), 401),
        ("wrong role", Some(with(&|c| c["roles"] = json!(["ROLE_SYSTEM"]))), 403),
        (
            "no role",
            Some(with(&|c| {
                c.as_object_mut().unwrap().remove("roles");
            })),
            403,
        ),
        ("right role", Some(sign(&good())), 200),
        (
            "ADMIN without prefix",
            Some(with(&|c| c["roles"] = json!(["ADMIN"]))),
            200,
        ),
        (
            "Spring authorities",
            Some(with(&|c| {
                c.as_object_mut().unwrap().remove("roles");
                c["authorities"] = json!([{"authority": "ROLE_ADMIN"}]);
            })),
            200,
        ),
        (
            "scope",
            Some(with(&|c| {
                c.as_object_mut().unwrap().remove("roles");
                c["scope"] = json!("read admin");
            })),
            200,
        ),
    ];
    for (name, bearer, status) in cases {
        let reply = post(&app, "/api/inventory/add", bearer.as_deref(), &body).await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {:?}", reply.body);
        if status == 401 {
            assert_eq!(
                reply.headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{name}"
            );
            assert_problem(&reply, 401, "UNAUTHORIZED");
        }
    }
    let trail = call(
        &app,
        Method::GET,
        "/api/inventory/p/adjustments",
        Some(&sign(&good())),
        None,
    )
    .await;
    assert_eq!(
        trail.body["items"][0]["actor"], "alice",
        "the actor is the token's subject"
    );
    // The public read needs no token.
    assert_eq!(
        call(&app, Method::GET, "/api/inventory/p", None, None).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_protected_routes_fail_closed() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db,
        AppOptions {
            jwt: false,
            ..no_kafka()
        },
    )
    .await;
    let reply = post(
        &app,
        "/api/inventory/add",
        Some(&token(&["ROLE_ADMIN"])),
        &json!({"productId": "p", "quantity": 1}),
    )
    .await;
    assert_problem(&reply, 401, "UNAUTHORIZED");
    assert_eq!(
        call(&app, Method::GET, "/api/inventory/p", None, None).await.status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_verify_rs256_and_es256_and_refuse_algorithm_switching() {
    let dir = std::env::temp_dir().join(inventory_tests::unique("keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    inventory_tests::openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &path("rsa.pem"),
        ],
    );
    inventory_tests::openssl(
        &dir,
        &["pkey", "-in", &path("rsa.pem"), "-pubout", "-out", &path("rsa.pub")],
    );
    inventory_tests::openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &path("ec.pem"),
        ],
    );
    inventory_tests::openssl(
        &dir,
        &["pkey", "-in", &path("ec.pem"), "-pubout", "-out", &path("ec.pub")],
    );
    let db = TestDb::new().await;
    let body = json!({"productId": "p", "quantity": 1});
    for (public, private, algorithm) in [
        ("rsa.pub", "rsa.pem", jsonwebtoken::Algorithm::RS256),
        ("ec.pub", "ec.pem", jsonwebtoken::Algorithm::ES256),
    ] {
        let options = AppOptions {
            jwt_public_key_file: Some(dir.join(public)),
            ..no_kafka()
        };
        let app = TestApp::spawn(&db, options).await;
        let pem = std::fs::read(dir.join(private)).unwrap();
        let key = match algorithm {
            jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let good = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(algorithm),
            &claims("kim", &["ROLE_ADMIN"]),
            &key,
        )
        .unwrap();
        assert_eq!(
            post(&app, "/api/inventory/add", Some(&good), &body).await.status,
            StatusCode::OK,
            "{algorithm:?}"
        );
        // The classic switch: HS256 signed with the public key as the secret.
        let public_pem = std::fs::read(dir.join(public)).unwrap();
        let switched = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims("mallory", &["ROLE_ADMIN"]),
            &jsonwebtoken::EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        assert_problem(
            &post(&app, "/api/inventory/add", Some(&switched), &body).await,
            401,
            "UNAUTHORIZED",
        );
        // A token signed with the HS256 test secret is refused too.
        assert_problem(
            &post(&app, "/api/inventory/add", Some(&token(&["ROLE_ADMIN"])), &body).await,
            401,
            "UNAUTHORIZED",
        );
        app.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
