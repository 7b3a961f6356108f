//! Connection pool and migrations.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The migrations in the workspace's `migrations/` folder, built into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// A pool of async PostgreSQL connections.
pub type PgPool = Pool<AsyncPgConnection>;

/// Pool sizes and time limits.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections open at once.
    pub max_size: u32,
    /// Connections kept open when idle.
    pub min_idle: u32,
    /// Longest wait for a free connection before the store counts as unavailable.
    pub acquire_timeout: Duration,
}

impl PoolConfig {
    /// Default for [`PoolConfig::max_size`].
    pub const DEFAULT_MAX_SIZE: u32 = 16;
    /// Default for [`PoolConfig::min_idle`].
    pub const DEFAULT_MIN_IDLE: u32 = 2;
    /// Default for [`PoolConfig::acquire_timeout`], in milliseconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 3_000;
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: Self::DEFAULT_MAX_SIZE,
            min_idle: Self::DEFAULT_MIN_IDLE,
            acquire_timeout: Duration::from_millis(Self::DEFAULT_ACQUIRE_TIMEOUT_MS),
        }
    }
}

/// Builds the pool; connections are made lazily, so a database that is down
/// at start-up shows as unavailable rather than stopping the process.
pub fn pool(database_url: &str, config: &PoolConfig) -> PgPool {
    let mut setup = ManagerConfig::<AsyncPgConnection>::default();
    // TLS as libpq makes it (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`): see `tls`.
    setup.custom_setup = Box::new(|url| Box::pin(connect(url)));
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, setup);
    Pool::builder()
        .max_size(config.max_size)
        .min_idle(Some(config.min_idle.min(config.max_size)))
        .connection_timeout(config.acquire_timeout)
        .retry_connection(false)
        // A ping per checkout doubles the round trips of a read. Instead the
        // repository's checkout skips connections whose socket has closed (a
        // database restart closes every idle one), which costs no round trip.
        .test_on_check_out(false)
        .build_unchecked(manager)
}

/// One connection of the pool: TLS as libpq makes it (`sslmode`, `sslrootcert`, `sslcert`,
/// `sslkey`: see `tls`), then no sequential or bitmap scans for its whole session.
///
/// Every statement this service runs reads by key, or walks an index in order to a bound: none
/// should ever read a whole table. The planner may still think so. A connection caches each
/// prepared statement's plan from its sixth run until the table is next analysed; made on a table of
/// a few rows (a new database, before autovacuum's first analysis), that plan was a sequential scan,
/// and it stayed one as the table grew: the saga's load of one order's holds, lines and processed
/// events read every page of 100,000 rows each (`tests/tests/postgres.rs`). With these two off, a
/// statement that has an index path takes it; one with none still scans (they only add a cost).
async fn connect(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = crate::tls::connect(url).await?;
    conn.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// A migration run failed.
#[derive(Debug, thiserror::Error)]
#[error("migration failed: {0}")]
pub struct MigrationError(String);

/// Applies pending migrations; returns the versions applied.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, MigrationError> {
    change_migrations(database_url, MigrationDirection::Up).await
}

/// Reverts every applied migration (tests and `reset` use it).
pub async fn revert_all_migrations(database_url: &str) -> Result<Vec<String>, MigrationError> {
    change_migrations(database_url, MigrationDirection::DownAll).await
}

enum MigrationDirection {
    Up,
    DownAll,
}

async fn change_migrations(database_url: &str, direction: MigrationDirection) -> Result<Vec<String>, MigrationError> {
    let conn = crate::tls::connect(database_url)
        .await
        .map_err(|e| MigrationError(e.to_string()))?;
    // The harness blocks (block_in_place); keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
        let versions = match direction {
            MigrationDirection::Up => harness.run_pending_migrations(MIGRATIONS),
            MigrationDirection::DownAll => harness.revert_all_migrations(MIGRATIONS),
        }
        .map_err(|e| MigrationError(e.to_string()))?;
        Ok(versions.into_iter().map(|v| v.to_string()).collect())
    })
    .await
    .map_err(|e| MigrationError(e.to_string()))?
}
