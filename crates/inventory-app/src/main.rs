//! `inventory-app`: serve (default), migrate, and the development tools token and demo.

mod demo;

use clap::Parser;
use inventory_app::cli::{Cli, Command, with_default_command};
use inventory_app::settings::Settings;
use inventory_app::{Application, BoxError, telemetry};
use secrecy::ExposeSecret;

/// mimalloc rather than glibc's malloc: in an A/B on the benchmark (fast profile, two rounds),
/// 10-14 % more 1-line and 14-34 % more 3-line orders per second, 32-50 % more `/check`s, and
/// a lower paced p99. Built without transparent huge pages (the `no_thp` feature): with them the
/// peak resident set went from 52 to 99-118 MB; without, 72 MB (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let cli = Cli::parse_from(with_default_command(std::env::args().collect()));
    let telemetry = telemetry::init(cli.log_format)?;
    let outcome = match cli.command {
        Some(Command::Serve(settings)) => serve(*settings).await,
        Some(Command::Migrate(mut db)) => migrate(&mut db).await,
        Some(Command::Token {
            jwt_secret,
            sub,
            roles,
            ttl,
        }) => inventory_app::token::mint(jwt_secret.expose_secret(), &sub, &roles, ttl)
            .map(|token| println!("{token}"))
            .map_err(BoxError::from),
        Some(Command::Demo(demo)) => demo::run(demo.database, demo.kafka).await,
        None => unreachable!("serve is inserted when no subcommand is given"),
    };
    telemetry.shutdown();
    outcome
}

async fn migrate(db: &mut inventory_app::settings::DatabaseSettings) -> Result<(), BoxError> {
    db.prepare()?;
    let applied = inventory_postgres::run_migrations(db.url()).await?;
    if applied.is_empty() {
        println!("database is up to date");
    }
    for version in applied {
        println!("applied {version}");
    }
    Ok(())
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
