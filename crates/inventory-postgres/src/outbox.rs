//! The relay side of the transactional outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use inventory_domain::{EventPublisher, OutboxBacklog, OutboxStore, PendingEvent, Relayed, RepoError};
use uuid::Uuid;

use crate::errors::{TxError, db_error};
use crate::prepared::Prepared;
use crate::repository::PgRepository;

/// First half of the key of the transaction-scoped advisory lock that makes
/// one relay active at a time, so events leave in outbox order even with
/// several instances. The second half is the outbox table's OID: advisory
/// locks are database-wide, and services (or tests) that keep their tables in
/// other schemas of the same database must not wait on each other.
pub const RELAY_LOCK_CLASS: i32 = 0x0069_6e76; // "inv"

/// The relay's first statement: its transaction's settings, then the relay lock (`$1`, see
/// [`RELAY_LOCK_CLASS`]); one boolean, `locked`.
///
/// - `synchronous_commit` off: the pass's commit only marks rows as published, and need not wait
///   for the disk. A crash may lose a mark made in the last moments; those events are then
///   published again, with the same ids (delivery is at least once anyway). Reservations and
///   outbox rows are still written durably.
/// - No bitmap or sequential scan: [`RELAY_PENDING`] must walk `outbox_unpublished` in `id` order
///   and stop at its limit. The index keeps an entry for every row published since the last
///   vacuum. When the outbox has no statistics, or stale ones (a new or emptied outbox), the
///   planner prefers a bitmap scan: it reads every such entry and its heap page on every pass, then
///   sorts (measured: 75,000 entries and 974 heap pages for 160 rows, 2.8 ms against 0.12 ms). A
///   plain index scan also marks the dead entries it passes, so the next pass, and the backlog
///   gauge, skip them.
pub const RELAY_BEGIN: &str = "SELECT set_config('synchronous_commit', 'off', true) IS NOT NULL \
        AND set_config('enable_bitmapscan', 'off', true) IS NOT NULL \
        AND set_config('enable_seqscan', 'off', true) IS NOT NULL \
        AND pg_try_advisory_xact_lock($1, 'outbox'::regclass::oid::int4) AS locked";

/// The relay's pass: the oldest unpublished rows, at most `$1`, locked.
pub const RELAY_PENDING: &str = "SELECT id, event_id, event_type, message_key, payload::text AS payload, created_at, \
        headers::text AS headers \
     FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

#[derive(QueryableByName)]
struct PendingRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    message_key: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    headers: Option<String>,
}

#[derive(QueryableByName)]
struct LockRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct BacklogRow {
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    oldest_age_ms: i64,
}

#[async_trait]
impl OutboxStore for PgRepository {
    async fn relay(&self, limit: i64, publisher: &dyn EventPublisher) -> Result<Relayed, RepoError> {
        let mut conn = self.conn().await?;
        let relayed: Result<Relayed, TxError> = conn
            .transaction(async |tx| {
                let lock: LockRow =
                    Prepared(diesel::sql_query(RELAY_BEGIN).bind::<diesel::sql_types::Integer, _>(RELAY_LOCK_CLASS))
                        .get_result(tx)
                        .await?;
                if !lock.locked {
                    return Ok::<Relayed, TxError>(Relayed::Busy);
                }
                let rows: Vec<PendingRow> = Prepared(diesel::sql_query(RELAY_PENDING).bind::<BigInt, _>(limit))
                    .load(tx)
                    .await?;
                if rows.is_empty() {
                    return Ok(Relayed::Published(0));
                }
                let events: Vec<PendingEvent> = rows
                    .into_iter()
                    .map(|r| PendingEvent {
                        id: r.id,
                        event_id: r.event_id,
                        event_type: r.event_type,
                        key: r.message_key,
                        payload: r.payload,
                        created_at: r.created_at,
                        // Written by this adapter as [[name, value], ...]; anything else carries nothing.
                        headers: r
                            .headers
                            .and_then(|h| serde_json::from_str(&h).ok())
                            .unwrap_or_default(),
                    })
                    .collect();
                publisher.publish(&events).await.map_err(TxError::Publish)?;
                let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
                Prepared(
                    diesel::sql_query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
                        .bind::<diesel::sql_types::Array<BigInt>, _>(ids),
                )
                .execute(tx)
                .await?;
                Ok(Relayed::Published(events.len()))
            })
            .await;
        if let Err(e) = &relayed {
            crate::errors::discard_if_read_only(&mut conn, e);
        }
        Ok(relayed.map_err(RepoError::from)?)
    }

    async fn backlog(&self) -> Result<OutboxBacklog, RepoError> {
        let mut conn = self.conn().await?;
        let row: BacklogRow = diesel::sql_query(
            "SELECT count(*) AS pending, \
                    coalesce((extract(epoch FROM now() - min(created_at)) * 1000)::int8, 0) AS oldest_age_ms \
             FROM outbox WHERE published_at IS NULL",
        )
        .get_result(&mut *conn)
        .await
        .map_err(db_error)?;
        Ok(OutboxBacklog {
            pending: row.pending,
            oldest_age_ms: row.oldest_age_ms,
        })
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let mut conn = self.conn().await?;
        let outbox = diesel::sql_query("DELETE FROM outbox WHERE published_at < $1")
            .bind::<Timestamptz, _>(before)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        let processed = diesel::sql_query("DELETE FROM processed_events WHERE processed_at < $1")
            .bind::<Timestamptz, _>(before)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        let keys = diesel::sql_query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind::<Timestamptz, _>(before)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok((outbox + processed + keys) as u64)
    }
}
