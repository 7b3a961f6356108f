//! The command line: `serve` (the default), `migrate`, and two development tools.

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::settings::{DatabaseSettings, KafkaSettings, LogFormat, Settings};

/// The shortest `token` secret accepted: 256 bits, as HS256 wants (RFC 7518 section 3.2).
pub const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// `inventory-app [--log-format F] [COMMAND] [FLAGS]`.
#[derive(Parser)]
#[command(name = "inventory-app", version, about = "The inventory service of the shop")]
pub struct Cli {
    /// Log format (before or after the command).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty", global = true)]
    pub log_format: LogFormat,
    /// The command; `serve` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Subcommand)]
pub enum Command {
    /// Serve the REST API and run the saga (the default).
    Serve(Box<Settings>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseSettings),
    /// [development tool] Print a bearer token signed with an HS256 secret (JWT_SECRET), for
    /// trying the API by hand; production tokens come from the identity provider.
    Token {
        /// HS256 secret, at least 32 bytes; required, never defaulted.
        #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = token_secret)]
        jwt_secret: SecretString,
        /// Subject (`sub`), recorded as the actor of changes.
        #[arg(long, default_value = "dev-admin")]
        sub: String,
        /// Roles, e.g. ADMIN or SYSTEM (repeatable).
        #[arg(long = "role", default_value = "ADMIN")]
        roles: Vec<String>,
        /// Lifetime in seconds (1 s to 1 day).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..=86_400))]
        ttl: i64,
    },
    /// [development tool] Stock a demo product, publish sample orders and print the outcome
    /// events; it writes to the database and topics it is given, so never point it at production.
    Demo(Box<DemoSettings>),
}

/// What `demo` connects to.
#[derive(clap::Args)]
pub struct DemoSettings {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// The brokers.
    #[command(flatten)]
    pub kafka: KafkaSettings,
}

fn token_secret(value: &str) -> Result<SecretString, String> {
    if value.len() < MIN_TOKEN_SECRET_BYTES {
        return Err(format!(
            "the secret must be at least {MIN_TOKEN_SECRET_BYTES} bytes (got {})",
            value.len()
        ));
    }
    Ok(SecretString::from(value.to_owned()))
}

/// The names of the commands, and what clap answers by itself.
const COMMANDS: [&str; 9] = [
    "serve",
    "migrate",
    "token",
    "demo",
    "help",
    "-h",
    "--help",
    "-V",
    "--version",
];

/// Inserts `serve` where the command goes when none is given, after any global flags: so
/// `inventory-app`, `inventory-app --log-format json` and `inventory-app --http-addr X` serve, and
/// `inventory-app --log-format json migrate` migrates.
pub fn with_default_command(mut args: Vec<String>) -> Vec<String> {
    let mut at = 1;
    while let Some(arg) = args.get(at) {
        if arg == "--log-format" {
            at += 2;
        } else if arg.starts_with("--log-format=") {
            at += 1;
        } else {
            break;
        }
    }
    let at = at.min(args.len());
    if args.get(at).is_none_or(|a| !COMMANDS.contains(&a.as_str())) {
        args.insert(at, "serve".into());
    }
    args
}

/// Every environment variable a command reads, with whether it is required (no default).
pub fn environment(command: &str) -> Vec<(String, bool)> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let globals = cli.get_arguments();
    let sub = cli.find_subcommand(command).into_iter().flat_map(|c| c.get_arguments());
    globals
        .chain(sub)
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, arg.is_required_set()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = with_default_command(args.iter().map(|a| (*a).to_owned()).collect());
        Cli::try_parse_from(args)
    }

    fn is_serve(cli: &Cli) -> bool {
        matches!(cli.command, Some(Command::Serve(_)))
    }

    const URL: &str = "--database-url=postgres://u:p@h/db";

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        for args in [
            vec!["inventory-app", "--log-format", "json", "serve", URL],
            vec!["inventory-app", "serve", URL, "--log-format", "json"],
            vec!["inventory-app", "--log-format=json", URL],
            vec!["inventory-app", "--log-format", "json", URL],
        ] {
            let cli = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(is_serve(&cli), "{args:?}");
            assert_eq!(cli.log_format, LogFormat::Json, "{args:?}");
        }
        let cli = parse(&["inventory-app", "--log-format", "json", "migrate", URL]).expect("migrate");
        assert!(matches!(cli.command, Some(Command::Migrate(_))));
    }

    #[test]
    fn out_of_range_values_are_refused_not_clamped() {
        for (flag, value) in [
            ("--db-pool-max-size", "0"),
            ("--kafka-batch-max", "0"),
            ("--kafka-watchdog-bound-ms", "10"),
            ("--hold-ttl-secs", "0"),
            ("--kafka-topic-partitions", "-1"),
            ("--kafka-max-poll-interval-ms", "999"),
            ("--max-conflict-retries", "0"),
        ] {
            let error = parse(&["inventory-app", "serve", URL, &format!("{flag}={value}")])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            assert!(error.to_string().contains(flag), "{flag}: {error}");
        }
    }

    #[test]
    fn combinations_are_checked_at_start_up() {
        let cli = parse(&[
            "inventory-app",
            URL,
            "--db-pool-max-size",
            "2",
            "--db-pool-min-idle",
            "3",
        ])
        .expect("parses");
        let Some(Command::Serve(settings)) = cli.command else {
            panic!("serve expected")
        };
        let mut settings = *settings;
        assert_eq!(
            settings.prepare().unwrap_err(),
            "DB_POOL_MIN_IDLE (3) must not exceed DB_POOL_MAX_SIZE (2)"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cli = parse(&["inventory-app", URL, "--jwt-secret", "hunter2-hunter2"]).expect("parses");
        let Some(Command::Serve(settings)) = cli.command else {
            panic!("serve expected")
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("u:p@h") && !shown.contains("hunter2"), "{shown}");
        assert_eq!(settings.database.url(), "postgres://u:p@h/db");
    }

    fn serve(args: &[&str]) -> Settings {
        let mut all = vec!["inventory-app", "serve"];
        all.extend_from_slice(args);
        match parse(&all).unwrap_or_else(|e| panic!("{args:?}: {e}")).command {
            Some(Command::Serve(settings)) => *settings,
            _ => panic!("serve expected"),
        }
    }

    #[test]
    fn secrets_come_from_files_too() {
        let dir = std::env::temp_dir().join(format!("inventory-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let url = dir.join("url");
        std::fs::write(&url, "postgres://u:p@from-file/db\n").expect("write");
        let sasl = dir.join("sasl");
        std::fs::write(&sasl, "s3cret").expect("write");
        // Built by hand: a DATABASE_URL in the test's environment (the stack's) would count as set.
        let mut database = DatabaseSettings {
            database_url: None,
            database_url_file: Some(url.clone()),
            ..DatabaseSettings::new("")
        };
        database.prepare().expect("prepared");
        assert_eq!(database.url(), "postgres://u:p@from-file/db");
        assert!(!format!("{database:?}").contains("from-file"));
        let mut both = DatabaseSettings {
            database_url_file: Some(url),
            ..DatabaseSettings::new("postgres://u@h/db")
        };
        assert_eq!(
            both.prepare().unwrap_err(),
            "DATABASE_URL and DATABASE_URL_FILE are both set: set one"
        );

        let mut settings = serve(&[
            URL,
            "--kafka-security-protocol=sasl_ssl",
            "--kafka-sasl-mechanism=SCRAM-SHA-512",
            "--kafka-sasl-username=inventory",
            &format!("--kafka-sasl-password-file={}", sasl.display()),
        ]);
        settings.prepare().expect("prepared");
        let props = &settings.kafka.client_properties;
        assert_eq!(props.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(props.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(props.get("sasl.password"), Some("s3cret"));
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kafka_security_settings_that_cannot_work_are_refused() {
        for (args, error) in [
            (
                vec![URL, "--kafka-security-protocol=SASL_SSL"],
                "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
            ),
            (
                vec![URL, "--kafka-sasl-username=u"],
                "SASL settings are given but KAFKA_SECURITY_PROTOCOL is PLAINTEXT (use SASL_SSL or SASL_PLAINTEXT)",
            ),
            (
                vec![URL, "--kafka-ssl-ca-location=/etc/hostname"],
                "TLS files are given but KAFKA_SECURITY_PROTOCOL is PLAINTEXT (use SSL or SASL_SSL)",
            ),
            (
                vec![
                    URL,
                    "--kafka-security-protocol=SSL",
                    "--kafka-ssl-key-location=/etc/hostname",
                ],
                "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together",
            ),
        ] {
            assert_eq!(serve(&args).prepare().unwrap_err(), error, "{args:?}");
        }
        let mut missing = serve(&[
            URL,
            "--kafka-security-protocol=SSL",
            "--kafka-ssl-ca-location=/nonexistent/ca.pem",
        ]);
        assert!(
            missing
                .prepare()
                .unwrap_err()
                .starts_with("ssl.ca.location /nonexistent/ca.pem:")
        );
    }

    #[test]
    fn a_properties_file_passes_any_librdkafka_setting() {
        let file = std::env::temp_dir().join(format!("inventory-props-{}", std::process::id()));
        std::fs::write(
            &file,
            "# tuning\nsocket.keepalive.enable = true\n\nfetch.wait.max.ms=50\n",
        )
        .expect("write");
        let mut settings = serve(&[URL, &format!("--kafka-properties-file={}", file.display())]);
        settings.prepare().expect("prepared");
        let props = &settings.kafka.client_properties;
        assert_eq!(props.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(props.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(props.get("security.protocol"), Some("PLAINTEXT"));
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn token_wants_a_real_secret() {
        let error = parse(&["inventory-app", "token", "--jwt-secret", "short"])
            .err()
            .expect("a short secret is refused");
        assert!(error.to_string().contains("at least 32 bytes"), "{error}");
        assert!(parse(&["inventory-app", "token", "--jwt-secret", &"k".repeat(32)]).is_ok());
    }

    #[test]
    fn the_environment_lists_what_serve_reads() {
        let env = environment("serve");
        assert!(env.contains(&("DATABASE_URL".to_owned(), false)), "{env:?}");
        assert!(env.contains(&("DATABASE_URL_FILE".to_owned(), false)), "{env:?}");
        assert!(env.contains(&("KAFKA_WATCHDOG_BOUND_MS".to_owned(), false)));
        assert!(env.contains(&("LOG_FORMAT".to_owned(), false)));
    }
}
