//! The domain's repository port over PostgreSQL.
//!
//! Reads take no locks. A save (see `writes`) runs in one transaction: it locks the stock
//! rows it changes in id order, as it updates them (so two savers never deadlock),
//! checks every version it expects, and writes each table with one
//! statement over `unnest`ed arrays, however many rows the change has.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use inventory_domain::{
    Actor, AddOutcome, Adjustment, AdjustmentReason, AdjustmentRecord, ChangeSet, IdempotencyRecord, IdempotentRequest,
    Inventory, InventoryRepository, LoadRequest, OrderId, ProductId, RepoError, Snapshot, StockAddition, StockListing,
    StockScan,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::errors::{db_error, pool_error};
use crate::pool::{PgPool, PoolConfig};
use crate::prepared::Prepared;
use crate::rows::{LineRow, ReservationRow, StockRow};
use crate::schema::{idempotency_keys, inventory, processed_events, reservations, stock_adjustments};

/// PostgreSQL implementation of the domain's store ports.
#[derive(Clone)]
pub struct PgRepository {
    pub(crate) pool: PgPool,
    pub(crate) acquire_timeout: Duration,
    /// Most connections the pool holds.
    pub(crate) max_size: u32,
    /// Woken after a save that wrote outbox rows, so the relay publishes at once.
    pub(crate) outbox_written: Arc<Notify>,
}

impl PgRepository {
    /// Wraps a pool.
    pub fn new(pool: PgPool, config: &PoolConfig) -> Self {
        Self {
            pool,
            acquire_timeout: config.acquire_timeout,
            max_size: config.max_size,
            outbox_written: Arc::new(Notify::new()),
        }
    }

    /// Notified after every commit that added outbox rows.
    pub fn outbox_notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.outbox_written)
    }

    async fn idempotency_record(
        &self,
        conn: &mut AsyncPgConnection,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, RepoError> {
        type Row = (
            String,
            Uuid,
            String,
            i32,
            i32,
            i64,
            DateTime<Utc>,
            Option<i32>,
            Option<serde_json::Value>,
        );
        let row: Option<Row> = idempotency_keys::table
            .filter(idempotency_keys::idempotency_key.eq(key))
            .select((
                idempotency_keys::fingerprint,
                idempotency_keys::inventory_id,
                idempotency_keys::product_id,
                idempotency_keys::quantity,
                idempotency_keys::reserved,
                idempotency_keys::version,
                idempotency_keys::updated_at,
                idempotency_keys::low_stock_threshold,
                idempotency_keys::lines,
            ))
            .first(conn)
            .await
            .optional()
            .map_err(db_error)?;
        let Some((fingerprint, id, product_id, quantity, reserved, version, updated_at, low_stock_threshold, lines)) =
            row
        else {
            return Ok(None);
        };
        let result = StockRow {
            id,
            product_id,
            quantity,
            reserved,
            version,
            updated_at,
            low_stock_threshold,
        }
        .into_domain()
        .map_err(RepoError::failure)?;
        Ok(Some(IdempotencyRecord {
            request: IdempotentRequest {
                key: key.to_owned(),
                fingerprint,
            },
            result,
            lines: lines
                .map(|l| crate::rows::lines_from_json(&l))
                .transpose()
                .map_err(RepoError::failure)?,
        }))
    }

    /// Deletes settled reservations (every state but `RESERVED`) last changed
    /// before `before`, with their lines, a bounded batch per statement so no
    /// statement holds many locks for long. Returns how many went.
    ///
    /// A settled reservation is what makes a replayed order event change
    /// nothing; keep them longer than the consumed topics keep their records.
    pub async fn purge_settled_reservations(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        const BATCH: i64 = 5_000;
        let mut conn = self.conn().await?;
        let mut deleted = 0u64;
        loop {
            let n = diesel::sql_query(
                "DELETE FROM reservations WHERE order_id IN ( \
                   SELECT order_id FROM reservations \
                   WHERE status <> 'RESERVED' AND updated_at < $1 LIMIT $2)",
            )
            .bind::<diesel::sql_types::Timestamptz, _>(before)
            .bind::<diesel::sql_types::BigInt, _>(BATCH)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            deleted += n as u64;
            if (n as i64) < BATCH {
                return Ok(deleted);
            }
        }
    }

    /// The pool, for its state (metrics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn conn(
        &self,
    ) -> Result<
        bb8::PooledConnection<'_, diesel_async::pooled_connection::AsyncDieselConnectionManager<AsyncPgConnection>>,
        RepoError,
    > {
        // A restart of the database closes every idle connection; their
        // sockets say so at once. Hand out only open ones: the closed one is
        // dropped, and the pool discards it (`has_broken`) and makes another.
        // Bounded, since a pool cannot hold more closed connections than it holds.
        let mut skipped = 0;
        loop {
            let mut conn = self.pool.get().await.map_err(|e| pool_error(e, self.acquire_timeout))?;
            if !diesel_async::pooled_connection::PoolableConnection::is_broken(&mut *conn) || skipped > self.max_size {
                return Ok(conn);
            }
            skipped += 1;
            metrics::counter!("db_pool_broken_connections_total").increment(1);
        }
    }
}

fn strings<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> Vec<String> {
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

#[async_trait]
impl InventoryRepository for PgRepository {
    async fn ping(&self) -> Result<(), RepoError> {
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn stock(&self, products: &[ProductId]) -> Result<Vec<Inventory>, RepoError> {
        let mut conn = self.conn().await?;
        let ids = strings(products.iter().map(ProductId::as_str));
        let rows: Vec<StockRow> = inventory::table
            .filter(inventory::product_id.eq_any(&ids))
            .select(StockRow::as_select())
            .load(&mut *conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|r| r.into_domain().map_err(RepoError::failure))
            .collect()
    }

    async fn list_stock(&self, listing: &StockListing) -> Result<StockScan, RepoError> {
        let mut conn = self.conn().await?;
        let query = listing_query(listing, "");
        let rows: Vec<StockRow> = query.load(&mut *conn).await.map_err(db_error)?;
        let rows = rows
            .into_iter()
            .map(|r| r.into_domain().map_err(RepoError::failure))
            .collect::<Result<Vec<_>, _>>()?;
        // A short page: did the scan stop at its bound? Then the next page goes on after the last
        // row it examined (an index-only walk of the same range).
        let stopped_at = if rows.len() < listing.limit as usize && listing.scan > 0 {
            let (scope, binds) = listing_scope(listing);
            let sql = format!(
                "SELECT product_id FROM inventory WHERE {scope} ORDER BY product_id COLLATE \"C\" OFFSET {} LIMIT 1",
                listing.scan - 1
            );
            let mut query = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
            for b in binds {
                query = query.bind::<diesel::sql_types::Text, _>(b);
            }
            let last: Option<ListedId> = query.get_result(&mut *conn).await.optional().map_err(db_error)?;
            last.map(|l| {
                ProductId::parse(l.product_id).map_err(|e| RepoError::failure(format!("stored product id: {e}")))
            })
            .transpose()?
        } else {
            None
        };
        Ok(StockScan { rows, stopped_at })
    }

    #[tracing::instrument(name = "db load", skip_all, fields(otel.kind = "client", db.system = "postgresql",
        products = request.products.len(), orders = request.orders.len()))]
    async fn load(&self, request: &LoadRequest) -> Result<Snapshot, RepoError> {
        let mut conn = self.conn().await?;
        let order_ids = strings(request.orders.iter().map(OrderId::as_str));
        let requested: BTreeSet<String> = request.products.iter().map(|p| p.as_str().to_owned()).collect();
        // One pipelined round trip: the orders' holds and lines, the events already processed, and
        // the stock rows asked for (the lines' products, when a release needs more, cost a second).
        // Each probes a key index for its ids, on any table size: the pool's connections have
        // sequential and bitmap scans off (`pool::connect`).
        let (reservation_rows, line_rows, processed, mut stock_rows) = {
            let db: &AsyncPgConnection = &conn;
            let holds = (!order_ids.is_empty()).then(|| {
                reservations::table
                    .filter(reservations::order_id.eq_any(order_ids.clone()))
                    .select(ReservationRow::as_select())
                    .load::<ReservationRow>(&mut &*db)
            });
            // Lines exist only under a reservation (migration 000011's checks), so they are found
            // through the orders' reservations: a new order costs no probe of the lines' index.
            // The lateral subquery keeps that a nested loop whatever the estimates; as a plain
            // join, 500 ids planned a hash join over every line (30 ms against 0.7 on the
            // benchmark's 120,000 lines).
            let lines = (!order_ids.is_empty()).then(|| {
                Prepared(
                    diesel::sql_query(
                        "SELECT l.order_id, l.product_id, l.quantity FROM reservations r, \
                         LATERAL (SELECT order_id, product_id, quantity FROM reservation_lines \
                                  WHERE order_id = r.order_id OFFSET 0) l \
                         WHERE r.order_id = ANY($1)",
                    )
                    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(order_ids.clone()),
                )
                .load::<LineRow>(&mut &*db)
            });
            let processed = (!request.events.is_empty()).then(|| {
                processed_events::table
                    .filter(processed_events::event_id.eq_any(request.events.clone()))
                    .select(processed_events::event_id)
                    .load::<Uuid>(&mut &*db)
            });
            let stock = (!requested.is_empty()).then(|| {
                inventory::table
                    .filter(inventory::product_id.eq_any(requested.iter().cloned().collect::<Vec<_>>()))
                    .select(StockRow::as_select())
                    .load::<StockRow>(&mut &*db)
            });
            futures_util::future::try_join4(optional(holds), optional(lines), optional(processed), optional(stock))
                .await
                .map_err(db_error)?
        };
        let missing: Vec<String> = line_rows
            .iter()
            .filter(|l| !requested.contains(&l.product_id))
            .map(|l| l.product_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            let more: Vec<StockRow> = inventory::table
                .filter(inventory::product_id.eq_any(&missing))
                .select(StockRow::as_select())
                .load(&mut *conn)
                .await
                .map_err(db_error)?;
            stock_rows.extend(more);
        }

        let mut lines_by_order: HashMap<String, Vec<LineRow>> = HashMap::new();
        for line in line_rows {
            lines_by_order.entry(line.order_id.clone()).or_default().push(line);
        }
        let reservations = reservation_rows
            .into_iter()
            .map(|r| {
                let lines = lines_by_order.remove(&r.order_id).unwrap_or_default();
                r.into_domain(lines).map_err(RepoError::failure)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stock = stock_rows
            .into_iter()
            .map(|r| r.into_domain().map_err(RepoError::failure))
            .collect::<Result<Vec<_>, _>>()?;
        let idempotency = match &request.idempotency_key {
            None => None,
            Some(key) => self.idempotency_record(&mut conn, key).await?,
        };
        Ok(Snapshot {
            stock,
            reservations,
            processed_events: processed,
            idempotency,
        })
    }

    #[tracing::instrument(name = "db transaction", skip_all, fields(otel.kind = "client", db.system = "postgresql",
        outbox = changes.outbox.len()))]
    async fn save(&self, changes: &ChangeSet) -> Result<(), RepoError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let result = conn
            .transaction(async |tx| crate::writes::write_changes(tx, changes).await)
            .await;
        if let Err(e) = &result {
            crate::errors::discard_if_read_only(&mut conn, e);
        }
        result.map_err(RepoError::from)?;
        if !changes.outbox.is_empty() {
            self.outbox_written.notify_one();
        }
        Ok(())
    }

    #[tracing::instrument(name = "db add", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn add_units(&self, addition: &StockAddition) -> Result<AddOutcome, RepoError> {
        let mut conn = self.conn().await?;
        if let Some(request) = &addition.idempotency
            && let Some(stored) = self.idempotency_record(&mut conn, &request.key).await?
        {
            return Ok(AddOutcome::Replayed(stored));
        }
        let result = conn
            .transaction(async |tx| crate::writes::add_units(tx, addition).await)
            .await;
        if let Err(e) = &result {
            crate::errors::discard_if_read_only(&mut conn, e);
        }
        if addition.availability.enabled && matches!(result, Ok(AddOutcome::Added(_))) {
            // It may have written availability events.
            self.outbox_written.notify_one();
        }
        Ok(result?)
    }

    async fn expired_holds(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OrderId>, RepoError> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = reservations::table
            .filter(reservations::status.eq("RESERVED"))
            .filter(reservations::expires_at.le(now))
            .order(reservations::expires_at.asc())
            .limit(limit)
            .select(reservations::order_id)
            .load(&mut *conn)
            .await
            .map_err(db_error)?;
        ids.into_iter()
            .map(|id| OrderId::parse(id).map_err(|e| RepoError::failure(format!("stored order id: {e}"))))
            .collect()
    }

    async fn adjustments(
        &self,
        product: &ProductId,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AdjustmentRecord>, RepoError> {
        type Row = (i64, String, i32, i32, String, String, Option<String>, DateTime<Utc>);
        let mut conn = self.conn().await?;
        let mut query = stock_adjustments::table
            .filter(stock_adjustments::product_id.eq(product.as_str()))
            .order(stock_adjustments::id.desc())
            .limit(limit)
            .select((
                stock_adjustments::id,
                stock_adjustments::product_id,
                stock_adjustments::old_quantity,
                stock_adjustments::new_quantity,
                stock_adjustments::reason,
                stock_adjustments::actor,
                stock_adjustments::note,
                stock_adjustments::created_at,
            ))
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(stock_adjustments::id.lt(before));
        }
        let rows: Vec<Row> = query.load(&mut *conn).await.map_err(db_error)?;
        rows.into_iter()
            .map(|(id, product_id, old, new, reason, actor, note, at)| {
                let bad = |what: &str| RepoError::failure(format!("stored adjustment {id}: bad {what}"));
                Ok(AdjustmentRecord {
                    id,
                    adjustment: Adjustment {
                        product_id: ProductId::parse(product_id).map_err(|_| bad("product id"))?,
                        old_quantity: u32::try_from(old).map_err(|_| bad("old quantity"))?,
                        new_quantity: u32::try_from(new).map_err(|_| bad("new quantity"))?,
                        reason: AdjustmentReason::parse(&reason).ok_or_else(|| bad("reason"))?,
                        actor: Actor(actor),
                        note,
                        at,
                    },
                })
            })
            .collect()
    }
}

/// A query that may not be needed: its rows, or none.
async fn optional<T>(
    query: Option<impl std::future::Future<Output = diesel::QueryResult<Vec<T>>>>,
) -> diesel::QueryResult<Vec<T>> {
    match query {
        Some(query) => query.await,
        None => Ok(Vec::new()),
    }
}

/// The page query of a listing, behind `head` (empty, or an `EXPLAIN`): the scan of rows after
/// the cursor with the prefix, in index order, at most `scan` of them, and the filters on top. The
/// outer LIMIT stops the scan as soon as the page is full.
fn listing_query(
    listing: &StockListing,
    head: &str,
) -> diesel::query_builder::BoxedSqlQuery<'static, diesel::pg::Pg, diesel::query_builder::SqlQuery> {
    let (scope, binds) = listing_scope(listing);
    let mut sql = format!(
        "{head}SELECT id, product_id, quantity, reserved, version, updated_at, low_stock_threshold FROM \
         (SELECT * FROM inventory WHERE {scope} ORDER BY product_id COLLATE \"C\" LIMIT {scan}) s WHERE true",
        scan = listing.scan
    );
    let f = &listing.filter;
    let mut numbers: Vec<i32> = Vec::new();
    if let Some(below) = f.available_below {
        numbers.push(i32::try_from(below).unwrap_or(i32::MAX));
        sql.push_str(&format!(" AND quantity - reserved < ${}", binds.len() + numbers.len()));
    }
    if let Some(least) = f.available_at_least {
        numbers.push(i32::try_from(least).unwrap_or(i32::MAX));
        sql.push_str(&format!(" AND quantity - reserved >= ${}", binds.len() + numbers.len()));
    }
    if f.updated_since.is_some() {
        sql.push_str(&format!(" AND updated_at >= ${}", binds.len() + numbers.len() + 1));
    }
    sql.push_str(&format!(" ORDER BY product_id COLLATE \"C\" LIMIT {}", listing.limit));
    let mut query = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
    for b in binds {
        query = query.bind::<diesel::sql_types::Text, _>(b);
    }
    for n in numbers {
        query = query.bind::<diesel::sql_types::Integer, _>(n);
    }
    if let Some(since) = f.updated_since {
        query = query.bind::<diesel::sql_types::Timestamptz, _>(since);
    }
    query
}

impl PgRepository {
    /// PostgreSQL's `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of a listing's page query, as run:
    /// for tests and operators to see that a page walks the index and costs the same however many
    /// products there are.
    pub async fn explain_listing(&self, listing: &StockListing) -> Result<serde_json::Value, RepoError> {
        #[derive(QueryableByName)]
        struct Plan {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            plan: String,
        }
        let mut conn = self.conn().await?;
        let plan: Plan = listing_query(listing, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ")
            .get_result(&mut *conn)
            .await
            .map_err(db_error)?;
        serde_json::from_str(&plan.plan).map_err(|e| RepoError::failure(format!("EXPLAIN output: {e}")))
    }
}

#[derive(QueryableByName)]
struct ListedId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    product_id: String,
}

/// The range a listing walks in the `inventory_listing` index: after the cursor, within the prefix.
/// The SQL text and its text binds ($1, $2, ... in order).
fn listing_scope(listing: &StockListing) -> (String, Vec<String>) {
    let mut scope = vec!["true".to_owned()];
    let mut binds = Vec::new();
    if let Some(after) = &listing.after {
        binds.push(after.as_str().to_owned());
        scope.push(format!("product_id COLLATE \"C\" > ${}", binds.len()));
    }
    if let Some(prefix) = &listing.filter.product_id_prefix {
        // LIKE with the prefix's own wildcards escaped: in collation "C" it becomes an index range.
        let escaped: String = prefix
            .chars()
            .flat_map(|c| match c {
                '\\' | '%' | '_' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        binds.push(format!("{escaped}%"));
        scope.push(format!("product_id COLLATE \"C\" LIKE ${}", binds.len()));
    }
    (scope.join(" AND "), binds)
}
