//! `inventory-app`: serve (default), migrate, token, demo.

mod demo;

use clap::{Parser, Subcommand};
use inventory_app::settings::{DatabaseSettings, KafkaSettings, LogFormat, Settings};
use inventory_app::{Application, BoxError, telemetry};

#[derive(Parser)]
#[command(name = "inventory-app", version, about = "The inventory service of the shop")]
struct Cli {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API and run the saga (the default).
    Serve(Box<Settings>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseSettings),
    /// Print a development bearer token signed with JWT_SECRET.
    Token {
        /// HS256 secret.
        #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
        /// Subject (`sub`), recorded as the actor of changes.
        #[arg(long, default_value = "dev-admin")]
        sub: String,
        /// Roles, e.g. ADMIN or SYSTEM (repeatable).
        #[arg(long = "role", default_value = "ADMIN")]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Stock a demo product, publish sample orders and print the outcome events.
    Demo {
        #[command(flatten)]
        database: DatabaseSettings,
        #[command(flatten)]
        kafka: KafkaSettings,
    },
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    // `inventory-app` alone means `inventory-app serve`.
    let mut args: Vec<String> = std::env::args().collect();
    let known = [
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
    if args.get(1).is_none_or(|a| !known.contains(&a.as_str())) {
        args.insert(1, "serve".into());
    }
    let cli = Cli::parse_from(args);
    telemetry::init_logging(cli.log_format);
    match cli.command {
        Some(Command::Serve(settings)) => serve(*settings).await,
        Some(Command::Migrate(db)) => {
            let applied = inventory_postgres::run_migrations(&db.database_url).await?;
            if applied.is_empty() {
                println!("database is up to date");
            }
            for version in applied {
                println!("applied {version}");
            }
            Ok(())
        }
        Some(Command::Token {
            jwt_secret,
            sub,
            roles,
            ttl,
        }) => {
            println!("{}", inventory_app::token::mint(&jwt_secret, &sub, &roles, ttl)?);
            Ok(())
        }
        Some(Command::Demo { database, kafka }) => demo::run(database, kafka).await,
        None => unreachable!("serve is inserted when no subcommand is given"),
    }
}

async fn serve(settings: Settings) -> Result<(), BoxError> {
    // Handlers first: a SIGTERM or SIGINT at any point of start-up (say, while
    // topics are created against a hung broker) stops the process cleanly.
    let stop = stop_on_signal()?;
    let app = tokio::select! {
        app = Application::build(settings) => app?,
        _ = stop.cancelled() => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        stop.cancelled().await;
        shutdown.cancel();
    });
    app.run().await
}

/// A token cancelled by the first SIGTERM or SIGINT.
fn stop_on_signal() -> Result<tokio_util::sync::CancellationToken, BoxError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
        token.cancel();
    });
    Ok(stop)
}
