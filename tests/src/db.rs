//! A private, migrated schema per test, dropped when the test ends.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::{stack, unique};

/// A migrated schema of its own; `url` connects with it as `search_path`.
pub struct TestDb {
    /// URL whose connections see only this schema.
    pub url: String,
    /// The schema's name.
    pub schema: String,
    admin_url: String,
}

fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

async fn admin(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.unwrap_or_else(|e| {
        panic!("cannot connect to PostgreSQL at {url}: {e}; run `just test` or `bash deploy/local/stack.sh up`")
    })
}

impl TestDb {
    /// Creates and migrates a fresh schema.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        inventory_postgres::run_migrations(&db.url)
            .await
            .expect("migrations apply to a fresh schema");
        db
    }

    /// Creates and migrates a fresh schema on another server (a test's own).
    pub async fn on(admin_url: &str) -> Self {
        let db = Self::empty_on(admin_url).await;
        inventory_postgres::run_migrations(&db.url)
            .await
            .expect("migrations apply to a fresh schema");
        db
    }

    /// A fresh schema with no tables (for the migration test).
    pub async fn empty() -> Self {
        Self::empty_on(&stack().database_url).await
    }

    async fn empty_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let schema = unique("test");
        let mut conn = admin(&admin_url).await;
        conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create schema");
        let url = with_search_path(&admin_url, &schema);
        Self { url, schema, admin_url }
    }

    /// Outbox rows not yet published.
    pub async fn unpublished(&self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let row: Count = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL"),
            &mut self.conn().await,
        )
        .await
        .expect("count the unpublished outbox rows");
        row.n
    }

    /// The PostgreSQL adapter on this schema, with a pool of at most `max_size` connections.
    pub fn repository(&self, max_size: u32) -> inventory_postgres::PgRepository {
        let config = inventory_postgres::PoolConfig {
            max_size,
            min_idle: 1,
            acquire_timeout: std::time::Duration::from_secs(10),
        };
        inventory_postgres::PgRepository::new(inventory_postgres::pool(&self.url, &config), &config)
    }

    /// A connection in this schema.
    pub async fn conn(&self) -> AsyncPgConnection {
        admin(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // A failed test may leave a transaction holding locks in the schema: give up rather than
        // hang (the schema is then left behind, under its unique name).
        run_from_drop(
            &self.admin_url,
            format!("SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
        );
    }
}

/// Runs `sql` at `url`, from a `Drop` (inside the test's runtime: so on a thread with its own);
/// failures are ignored.
fn run_from_drop(url: &str, sql: String) {
    let url = url.to_owned();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            if let Ok(mut conn) = AsyncPgConnection::establish(&url).await {
                let _ = conn.batch_execute(&sql).await;
            }
        });
    })
    .join();
}

/// A migrated schema in a database of its own on the stack's server, the database dropped when
/// the test ends: for what PostgreSQL counts per database (`pg_stat_statements`), which other
/// tests' schemas would otherwise share.
pub struct OwnDatabase {
    /// The schema, in that database.
    pub db: TestDb,
    name: String,
    admin_url: String,
}

impl OwnDatabase {
    /// Creates the database, then a migrated schema in it.
    pub async fn new() -> Self {
        let admin_url = stack().database_url.clone();
        let name = unique("db");
        let mut conn = admin(&admin_url).await;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a database");
        let (base, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
        let (server, _) = base.rsplit_once('/').expect("the database URL names a database");
        let url = if query.is_empty() {
            format!("{server}/{name}")
        } else {
            format!("{server}/{name}?{query}")
        };
        let db = TestDb::on(&url).await;
        Self { db, name, admin_url }
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        run_from_drop(
            &self.admin_url,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
