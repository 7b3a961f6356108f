//! PostgreSQL over TLS, as a managed database requires it: a test cluster with `ssl = on` that
//! accepts TLS connections only (`hostssl`; `hostnossl ... reject`), its certificate signed by a CA
//! the test makes with `openssl`. The binary migrates and serves (REST and saga) over
//! `sslmode=verify-full`; a wrong CA, a host name the certificate does not name, and a plain
//! connection are refused with an error that says why.

use std::path::Path;
use std::time::Duration;

use inventory_tests::kafka::{Reader, Topics, order_created, producer, send_json};
use inventory_tests::process::ServiceProcess;
use inventory_tests::servers::OwnPostgres;
use inventory_tests::{openssl, stack, unique, workspace_root};

/// A CA, a server certificate for `localhost` signed by it, and an unrelated CA.
fn certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("cert dir");
    for (name, subject) in [("ca", "/CN=inventory test CA"), ("other-ca", "/CN=someone else")] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.cnf"), "subjectAltName=DNS:localhost\n").expect("san");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            "-out",
            "server.crt",
        ],
    );
}

/// `inventory-app migrate` against `url`: (exit status, stdout + stderr).
fn migrate(url: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_inventory-app"))
        .arg("migrate")
        .env("DATABASE_URL", url)
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_and_serves_over_verify_full_and_refuses_what_it_cannot_trust() {
    let certs = workspace_root().join(".local/instances").join(unique("pg-certs"));
    certificates(&certs);
    let pg = OwnPostgres::start_tls(&certs);
    let ca = certs.join("ca.crt");
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{}/inventory_db?{query}", pg.port());
    let verify_full = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );

    let (ok, out) = migrate(&verify_full);
    assert!(ok && out.contains("applied"), "migrations over verify-full: {out}");

    let (ok, out) = migrate(&url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            certs.join("other-ca.crt").display()
        ),
    ));
    assert!(
        !ok && out.contains("certificate verify failed"),
        "a CA that did not sign it: {out}"
    );

    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca accepts.
    let (ok, out) = migrate(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    ));
    assert!(
        !ok && out.contains("certificate verify failed"),
        "another host name: {out}"
    );
    let (ok, out) = migrate(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
    ));
    assert!(
        ok && out.contains("up to date"),
        "verify-ca does not check the name: {out}"
    );

    let (ok, out) = migrate(&url("localhost", "sslmode=disable"));
    assert!(
        !ok && out.contains("no encryption"),
        "the server refuses plain connections: {out}"
    );
    let (ok, out) = migrate(&url("localhost", "sslmode=verify-all"));
    assert!(
        !ok && out.contains("sslmode=verify-all"),
        "an unknown mode is named: {out}"
    );

    // Serving: the REST API and the saga over verify-full.
    let topics = Topics::new();
    let bootstrap = stack().kafka_bootstrap.clone();
    let secret = "secured-postgres-test-secret-of-32-bytes";
    let mut service = ServiceProcess::start(
        Path::new(env!("CARGO_BIN_EXE_inventory-app")),
        &[
            ("DATABASE_URL", &verify_full),
            ("JWT_SECRET", secret),
            ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
            ("KAFKA_GROUP_ID", &topics.group),
            ("KAFKA_ORDER_TOPIC", &topics.orders),
            ("KAFKA_PAYMENT_TOPIC", &topics.payments),
            ("KAFKA_INVENTORY_TOPIC", &topics.inventory),
            ("RUST_LOG", "info"),
        ],
    );
    let http = service.http_addr().await;
    let client = reqwest::Client::new();
    let admin = inventory_app::token::mint(secret, "tls-admin", &["ADMIN".to_owned()], 600).expect("token");
    let added = client
        .post(format!("http://{http}/api/inventory/add"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"productId": "tls-p", "quantity": 5}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200, "{:?}", added.text().await);
    send_json(
        &producer(),
        &topics.orders,
        &order_created("tls-order", &[("tls-p", 2)]),
    )
    .await;
    let outcome = Reader::new(&topics.inventory)
        .next_outcome(Duration::from_secs(60), "the order's outcome over TLS")
        .await;
    assert_eq!(
        outcome.value["eventType"], "InventoryReservedEvent",
        "{:?}",
        outcome.value
    );
    let stock: serde_json::Value = client
        .get(format!("http://{http}/api/inventory/tls-p"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (stock["quantity"].as_i64(), stock["reserved"].as_i64()),
        (Some(5), Some(2)),
        "{stock}"
    );
    let ready = client
        .get(format!("http://{http}/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    service.terminate();
    let _ = std::fs::remove_dir_all(&certs);
}
