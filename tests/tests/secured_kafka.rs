//! Kafka as secured clusters run it, with brokers of the test's own: one with a `SASL_SSL` listener
//! (SCRAM-SHA-512 users created by Kafka's own StorageTool, a PEM keystore from the test's CA), one
//! with mutual TLS (`ssl.client.auth=required`). Over each: the saga's happy path, a duplicate
//! and a poison record; and credentials the broker refuses stop the start-up with a clear reason
//! instead of hanging it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use inventory_app::settings::{SaslMechanism, SecurityProtocol, Settings};
use inventory_domain::{Actor, ProductId, Quantity};
use inventory_tests::app::{AppOptions, TestApp, settings};
use inventory_tests::db::TestDb;
use inventory_tests::kafka::{Reader, Topics, order_created, producer_with, send, send_json};
use inventory_tests::servers::OwnKafka;
use inventory_tests::{openssl, unique, workspace_root};

const USER: &str = "inventory-service";
const PASSWORD: &str = "scram-password-of-the-test";

/// A CA; the broker's certificate for `localhost` and its PEM keystore (key, then chain); a client
/// certificate for mutual TLS.
fn certificates() -> PathBuf {
    let dir = workspace_root().join(".local/instances").join(unique("kafka-certs"));
    std::fs::create_dir_all(&dir).expect("cert dir");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=inventory test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    std::fs::write(dir.join("server.cnf"), "subjectAltName=DNS:localhost\n").expect("san");
    for (name, subject, ext) in [
        ("server", "/CN=localhost", Some("server.cnf")),
        ("client", "/CN=inventory-service", None),
    ] {
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        if let Some(ext) = ext {
            args.extend(["-extfile".to_owned(), ext.to_owned()]);
        }
        openssl(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let keystore = [
        std::fs::read_to_string(dir.join("server.key")).expect("key"),
        std::fs::read_to_string(dir.join("server.crt")).expect("cert"),
        std::fs::read_to_string(dir.join("ca.crt")).expect("ca"),
    ]
    .concat();
    std::fs::write(dir.join("server-keystore.pem"), keystore).expect("keystore");
    dir
}

fn sasl_ssl_broker(certs: &Path) -> OwnKafka {
    let config = format!(
        "listeners=SASL_SSL://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,INTERNAL://127.0.0.1:@INTERNAL_PORT@
advertised.listeners=SASL_SSL://localhost:@PORT@,INTERNAL://127.0.0.1:@INTERNAL_PORT@
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location={}/server-keystore.pem
",
        certs.display()
    );
    OwnKafka::start_with(&config, &[&format!("SCRAM-SHA-512=[name={USER},password={PASSWORD}]")])
}

fn mtls_broker(certs: &Path) -> OwnKafka {
    let config = format!(
        "listeners=SSL://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,INTERNAL://127.0.0.1:@INTERNAL_PORT@
advertised.listeners=SSL://localhost:@PORT@,INTERNAL://127.0.0.1:@INTERNAL_PORT@
listener.security.protocol.map=SSL:SSL,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT
inter.broker.listener.name=INTERNAL
ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location={dir}/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location={dir}/ca.crt
",
        dir = certs.display()
    );
    OwnKafka::start_with(&config, &[])
}

/// The service's settings against `bootstrap` with `secure` applied.
fn secured_settings(db: &TestDb, topics: &Topics, bootstrap: &str, secure: impl Fn(&mut Settings)) -> Settings {
    let options = AppOptions {
        kafka_bootstrap: Some(bootstrap.to_owned()),
        ..AppOptions::default()
    };
    let mut s = settings(db, topics, &options);
    secure(&mut s);
    s
}

/// The happy path, a duplicate and a poison record, over a secured broker; `client` is what the
/// test's own producer and readers need to talk to it.
async fn saga_over(kafka: &OwnKafka, client: &[(&str, &str)], secure: impl Fn(&mut Settings)) {
    let bootstrap = format!("localhost:{}", kafka.port());
    let db = TestDb::new().await;
    let topics = Topics::new();
    // The broker must serve the test's own client first: if it does not, its log says why.
    let probe = producer_with(&bootstrap, client);
    let record = rdkafka::producer::FutureRecord::<str, str>::to("secured-probe").payload("probe");
    if let Err((e, _)) = probe.send(record, Duration::from_secs(30)).await {
        panic!(
            "the secured broker does not serve a client ({e}); its log ends:\n{}",
            kafka.log_tail(60)
        );
    }
    let app = TestApp::spawn_with(secured_settings(&db, &topics, &bootstrap, secure), topics).await;
    app.service
        .add_stock(
            &ProductId::parse("s").unwrap(),
            Quantity::new(5).unwrap(),
            &Actor("test".into()),
        )
        .await
        .unwrap();
    let producer = producer_with(&bootstrap, client);
    let outcomes = Reader::with(&bootstrap, &app.topics.inventory, client);

    let order = order_created("secure-1", &[("s", 2)]);
    send_json(&producer, &app.topics.orders, &order).await;
    send_json(&producer, &app.topics.orders, &order).await; // delivered twice
    send(&producer, &app.topics.orders, "poison", b"{not json", &[]).await;
    send_json(&producer, &app.topics.orders, &order_created("secure-2", &[("s", 1)])).await;

    let first = outcomes
        .next(Duration::from_secs(60), "the first order's outcome")
        .await;
    assert_eq!(
        (first.value["eventType"].as_str(), first.value["orderId"].as_str()),
        (Some("InventoryReservedEvent"), Some("secure-1")),
        "{:?}",
        first.value
    );
    let second = outcomes
        .next(Duration::from_secs(60), "the second order's outcome")
        .await;
    assert_eq!(
        second.value["orderId"], "secure-2",
        "the duplicate got no answer of its own: {:?}",
        second.value
    );
    let dead = Reader::with(&bootstrap, &format!("{}.DLT", app.topics.orders), client)
        .next(Duration::from_secs(60), "the poison record's dead letter")
        .await;
    assert_eq!(dead.key.as_deref(), Some("poison"));
    let stock = app
        .service
        .get_stock(&ProductId::parse("s").unwrap())
        .await
        .unwrap()
        .expect("stock");
    assert_eq!((stock.quantity(), stock.reserved()), (5, 3));
    let (status, body) = app.readiness().await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

/// Start-up with settings the broker refuses: it ends with an error naming the cause, in bounded time.
async fn refused(kafka: &OwnKafka, secure: impl Fn(&mut Settings), expected: &[&str]) {
    let db = TestDb::new().await;
    let topics = Topics::new();
    let bootstrap = format!("localhost:{}", kafka.port());
    // Kept to the end: dropping it stops the log's writer.
    let _telemetry = std::env::var_os("RUST_LOG")
        .is_some()
        .then(|| inventory_app::telemetry::init(inventory_app::settings::LogFormat::Pretty));
    let started = std::time::Instant::now();
    let built = tokio::time::timeout(
        Duration::from_secs(90),
        inventory_app::Application::build(secured_settings(&db, &topics, &bootstrap, secure)),
    )
    .await
    .expect("start-up ends instead of hanging");
    let error = match built {
        Ok(_) => panic!("the service started with credentials the broker refuses"),
        Err(e) => e.to_string(),
    };
    assert!(
        expected
            .iter()
            .any(|e| error.to_lowercase().contains(&e.to_lowercase())),
        "the error says why ({expected:?}): {error}"
    );
    eprintln!("refused after {:?}: {error}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_runs_over_sasl_ssl_with_scram() {
    let certs = certificates();
    let kafka = tokio::task::spawn_blocking({
        let certs = certs.clone();
        move || sasl_ssl_broker(&certs)
    })
    .await
    .expect("the SASL_SSL broker starts");
    let ca = certs.join("ca.crt");
    let ca = ca.to_str().expect("path");
    let client = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", USER),
        ("sasl.password", PASSWORD),
        ("ssl.ca.location", ca),
    ];
    let secure = |password: &'static str| {
        let ca = PathBuf::from(ca);
        move |s: &mut Settings| {
            s.kafka.kafka_security_protocol = SecurityProtocol::SaslSsl;
            s.kafka.kafka_sasl_mechanism = Some(SaslMechanism::ScramSha512);
            s.kafka.kafka_sasl_username = Some(USER.to_owned());
            s.kafka.kafka_sasl_password = Some(password.to_owned().into());
            s.kafka.kafka_ssl_ca_location = Some(ca.clone());
        }
    };
    saga_over(&kafka, &client, secure(PASSWORD)).await;
    refused(&kafka, secure("not-the-password"), &["authentication", "SASL"]).await;
    let _ = std::fs::remove_dir_all(&certs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_runs_over_mutual_tls() {
    let certs = certificates();
    let kafka = tokio::task::spawn_blocking({
        let certs = certs.clone();
        move || mtls_broker(&certs)
    })
    .await
    .expect("the mutual-TLS broker starts");
    let path = |name: &str| certs.join(name).to_str().expect("path").to_owned();
    let (ca, cert, key) = (path("ca.crt"), path("client.crt"), path("client.key"));
    let client = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.certificate.location", cert.as_str()),
        ("ssl.key.location", key.as_str()),
    ];
    let secure = |with_certificate: bool| {
        let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
        move |s: &mut Settings| {
            s.kafka.kafka_security_protocol = SecurityProtocol::Ssl;
            s.kafka.kafka_ssl_ca_location = Some(PathBuf::from(&ca));
            if with_certificate {
                s.kafka.kafka_ssl_certificate_location = Some(PathBuf::from(&cert));
                s.kafka.kafka_ssl_key_location = Some(PathBuf::from(&key));
            }
        }
    };
    saga_over(&kafka, &client, secure(true)).await;
    refused(
        &kafka,
        secure(false),
        &["ssl", "handshake", "certificate", "authentication"],
    )
    .await;
    let _ = std::fs::remove_dir_all(&certs);
}
