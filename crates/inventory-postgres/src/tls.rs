//! Connections with TLS as libpq makes them: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`), `sslrootcert` (a PEM file, or `system` for the system's trust
//! store), `sslcert` and `sslkey` (a client certificate) in the connection string, for the pool and
//! the migrations alike. tokio-postgres alone knows neither the verifying modes nor the file
//! parameters, so they are taken out of the string here and become an OpenSSL connector.
//!
//! Without `sslmode` the connection is plain, as it always was here (libpq would `prefer`).

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS, unverified (verified against `sslrootcert` when one is given, as libpq does).
    Require,
    /// TLS, the server's certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, the certificate trusted and naming the host connected to.
    VerifyFull,
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    /// The mode; `None` when the string names none.
    pub mode: Option<SslMode>,
    /// `sslrootcert`.
    pub root_cert: Option<String>,
    /// `sslcert`.
    pub cert: Option<String>,
    /// `sslkey`.
    pub key: Option<String>,
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

fn bad(message: String) -> ConnectionError {
    ConnectionError::BadConnection(message)
}

/// Splits the TLS parameters off `url`; returns the rest (for tokio-postgres) and them.
pub fn split(url: &str) -> ConnectionResult<(String, TlsParams)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The other parameters are kept byte for byte: tokio-postgres percent-decodes them its way.
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for segment in query.split('&') {
                    let (k, v) = segment.split_once('=').unwrap_or((segment, ""));
                    if TLS_KEYS.contains(&k) {
                        let v = percent_encoding::percent_decode_str(v)
                            .decode_utf8()
                            .map_err(|e| bad(format!("{k}: {e}")))?;
                        pairs.push((k.to_owned(), v.into_owned()));
                    } else {
                        kept.push(segment);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        // Key/value form (`host=a sslmode=verify-full`); values with spaces are not split apart here.
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if TLS_KEYS.contains(&k) => pairs.push((k.to_owned(), v.trim_matches('\'').to_owned())),
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    let mut params = TlsParams {
        mode: None,
        root_cert: None,
        cert: None,
        key: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "sslmode" => {
                params.mode = Some(match v.as_str() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(bad(format!(
                            "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
                        )));
                    }
                })
            }
            "sslrootcert" => params.root_cert = Some(v),
            "sslcert" => params.cert = Some(v),
            "sslkey" => params.key = Some(v),
            _ => {}
        }
    }
    Ok((rest, params))
}

/// The OpenSSL connector for `params` (not for `Disable`).
fn connector(params: &TlsParams, mode: SslMode) -> ConnectionResult<MakeTlsConnector> {
    let ssl = |e: openssl::error::ErrorStack| bad(format!("TLS setup: {e}"));
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(ssl)?;
    let verify = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => true,
        // libpq: with a root certificate, `require` verifies the chain as verify-ca does.
        SslMode::Require => params.root_cert.as_deref().is_some_and(|r| r != "system"),
        SslMode::Prefer | SslMode::Disable => false,
    };
    match params.root_cert.as_deref() {
        Some("system") | None if verify => {
            // `system` (libpq 16), or no file: the system's trust store.
            builder.set_default_verify_paths().map_err(ssl)?;
        }
        Some(path) if path != "system" => builder
            .set_ca_file(path)
            .map_err(|e| bad(format!("sslrootcert {path}: {e}")))?,
        _ => {}
    }
    builder.set_verify(if verify {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    match (&params.cert, &params.key) {
        (Some(cert), Some(key)) => {
            builder
                .set_certificate_chain_file(cert)
                .map_err(|e| bad(format!("sslcert {cert}: {e}")))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| bad(format!("sslkey {key}: {e}")))?;
        }
        (None, None) => {}
        _ => return Err(bad("sslcert and sslkey go together".to_owned())),
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    let full = mode == SslMode::VerifyFull;
    connector.set_callback(move |config, _| {
        config.set_verify_hostname(full);
        Ok(())
    });
    Ok(connector)
}

/// Opens a connection to `url`, with TLS as its parameters ask.
pub async fn connect(url: &str) -> ConnectionResult<AsyncPgConnection> {
    use diesel_async::AsyncConnection;
    let (rest, params) = split(url)?;
    let mode = match params.mode {
        None | Some(SslMode::Disable) => {
            if params.root_cert.is_some() || params.cert.is_some() {
                return Err(bad(
                    "sslrootcert/sslcert are given but sslmode is not set (or disable)".to_owned()
                ));
            }
            return AsyncPgConnection::establish(&rest).await;
        }
        Some(mode) => mode,
    };
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| bad(format!("invalid database URL: {e}")))?;
    config.ssl_mode(if mode == SslMode::Prefer {
        tokio_postgres::config::SslMode::Prefer
    } else {
        tokio_postgres::config::SslMode::Require
    });
    let (client, connection) = config
        .connect(connector(&params, mode)?)
        .await
        .map_err(|e| bad(format!("{e}{}", source_chain(&e))))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// ": cause: cause" of an error, so a refused certificate says why.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    out
}

/// A plain tokio-postgres connection to `url` (TLS as for the pool) named `application_name`,
/// driven on its own task, with the notices it receives: for the cache's listener.
pub(crate) async fn connect_listener(
    url: &str,
    application_name: &str,
) -> Result<(tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>), String> {
    let (rest, params) = split(url).map_err(|e| e.to_string())?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("invalid database URL: {e}"))?;
    config.application_name(application_name);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = match params.mode {
        None | Some(SslMode::Disable) => {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("{e}{}", source_chain(&e)))?;
            tokio::spawn(crate::listen::drive(connection, tx));
            client
        }
        Some(mode) => {
            config.ssl_mode(if mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let (client, connection) = config
                .connect(connector(&params, mode).map_err(|e| e.to_string())?)
                .await
                .map_err(|e| format!("{e}{}", source_chain(&e)))?;
            tokio::spawn(crate::listen::drive(connection, tx));
            client
        }
    };
    Ok((client, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_split_off_a_url() {
        let (rest, params) = split(
            "postgres://u:p@db.example:5432/inventory_db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=inv",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db.example:5432/inventory_db?application_name=inv");
        assert_eq!(params.mode, Some(SslMode::VerifyFull));
        assert_eq!(params.root_cert.as_deref(), Some("/ca.pem"));
        let (rest, params) = split("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), params.mode),
            ("postgres://u@h/db", Some(SslMode::Require))
        );
        let (rest, params) = split("postgres://u@h/db").unwrap();
        assert_eq!((rest.as_str(), params.mode), ("postgres://u@h/db", None));
        // Other parameters stay byte for byte (tokio-postgres decodes them its own way).
        let (rest, params) =
            split("postgres://u@h/db?options=-c%20search_path%3Dt+x&sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-ca")
                .unwrap();
        assert_eq!(rest, "postgres://u@h/db?options=-c%20search_path%3Dt+x");
        assert_eq!(params.root_cert.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn and_off_a_key_value_string() {
        let (rest, params) =
            split("host=a,b dbname=inventory_db sslmode=verify-ca sslcert=/c.pem sslkey=/k.pem").unwrap();
        assert_eq!(rest, "host=a,b dbname=inventory_db");
        assert_eq!(params.mode, Some(SslMode::VerifyCa));
        assert_eq!(
            (params.cert.as_deref(), params.key.as_deref()),
            (Some("/c.pem"), Some("/k.pem"))
        );
    }

    #[test]
    fn an_unknown_mode_is_refused_by_name() {
        let error = split("postgres://u@h/db?sslmode=verify-all").unwrap_err().to_string();
        assert!(error.contains("sslmode=verify-all"), "{error}");
    }
}
