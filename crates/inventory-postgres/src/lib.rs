//! PostgreSQL adapter: the domain's repository and outbox ports over
//! diesel-async and a bb8 pool, and the embedded migrations.

pub mod cache;
mod cached;
mod errors;
pub mod listen;
mod outbox;
mod pool;
mod prepared;
mod repository;
mod rows;
mod schema;
pub mod tls;
mod writes;

pub use cache::{CacheConfig, CacheStats, StockCache};
pub use cached::CachedRepository;
pub use listen::run_listener;
pub use outbox::{RELAY_BEGIN, RELAY_CLAIM, RELAY_LOCK_CLASS};
pub use pool::{MIGRATIONS, MigrationError, PgPool, PoolConfig, pool, revert_all_migrations, run_migrations};
pub use repository::PgRepository;
