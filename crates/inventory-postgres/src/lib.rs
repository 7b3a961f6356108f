//! PostgreSQL adapter: the domain's repository and outbox ports over
//! diesel-async and a bb8 pool, and the embedded migrations.

mod errors;
mod outbox;
mod pool;
mod repository;
mod rows;
mod schema;
pub mod tls;
mod writes;

pub use pool::{MIGRATIONS, MigrationError, PgPool, PoolConfig, pool, revert_all_migrations, run_migrations};
pub use repository::PgRepository;
