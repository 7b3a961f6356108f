//! A change set written in one transaction: stock rows updated (and locked) in
//! id order and version-checked, then each table written with one
//! statement over `unnest`ed arrays, however many rows the change has.
//!
//! The statements are pipelined: all are sent before the first answer is read
//! (PostgreSQL runs them one after the other, in the order sent), so a change
//! set costs one round trip between `BEGIN` and `COMMIT`, not one per table.
//! Row counts are checked once every answer is in, before the commit.

use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use inventory_domain::{AddOutcome, Adjustment, AdjustmentReason, ChangeSet, IdempotencyRecord, StockAddition};

use crate::errors::TxError;
use crate::prepared::Prepared;
use crate::rows::{StockRow, status_to_row};
use crate::schema::idempotency_keys;

fn to_i32(v: u32) -> Result<i32, TxError> {
    i32::try_from(v).map_err(|_| TxError::Invalid(format!("{v} does not fit a PostgreSQL integer")))
}

pub(crate) async fn write_changes(conn: &mut AsyncPgConnection, changes: &ChangeSet) -> Result<(), TxError> {
    let mut pipeline = Pipeline::new(conn);
    write_stock(&mut pipeline, changes)?;
    write_reservations(&mut pipeline, changes)?;
    write_processed(&mut pipeline, changes);
    write_outbox(&mut pipeline, changes)?;
    write_adjustments(&mut pipeline, changes)?;
    if let Some(record) = &changes.idempotency {
        let inv = &record.result;
        // A key already stored is a unique violation: a conflict, retried, then replayed.
        let insert = diesel::insert_into(idempotency_keys::table).values((
            idempotency_keys::idempotency_key.eq(record.request.key.clone()),
            idempotency_keys::fingerprint.eq(record.request.fingerprint.clone()),
            idempotency_keys::inventory_id.eq(inv.id()),
            idempotency_keys::product_id.eq(inv.product_id().to_string()),
            idempotency_keys::quantity.eq(to_i32(inv.quantity())?),
            idempotency_keys::reserved.eq(to_i32(inv.reserved())?),
            idempotency_keys::version.eq(inv.version()),
            idempotency_keys::updated_at.eq(inv.updated_at()),
            idempotency_keys::low_stock_threshold.eq(inv.low_stock_threshold().map(to_i32).transpose()?),
            idempotency_keys::lines.eq(record.lines.as_deref().map(crate::rows::lines_to_json)),
        ));
        let future = insert.execute(&mut pipeline.conn());
        pipeline.push(future, None);
    }
    pipeline.run().await
}

/// Statements sent on one connection without waiting for each answer, each with the row count
/// it must report (a different count is a conflict: the batch is redone from fresh state).
struct Pipeline<'a> {
    conn: &'a AsyncPgConnection,
    steps: Vec<(BoxFuture<'a, QueryResult<usize>>, Option<usize>)>,
    probes_only: bool,
}

impl<'a> Pipeline<'a> {
    fn new(conn: &'a AsyncPgConnection) -> Self {
        Self {
            conn,
            steps: Vec::new(),
            probes_only: false,
        }
    }

    /// Before the first `UPDATE ... FROM unnest(...)`: for the rest of the transaction, the
    /// planner may only join by probing the primary key from the arrays, in their order (hash,
    /// merge, sequential and bitmap plans, whose order is the table's, are turned off). Besides
    /// the lock order, this keeps each statement's cost to its rows, not its table's: a plan the
    /// connection caches is made under whatever settings its run had, and made on a table of a
    /// few rows without them, it scanned the whole table on every later run (a 1-row update of
    /// `reservations` read every page of 100,000 rows; `tests/tests/postgres.rs`).
    fn probes_only(&mut self) {
        if std::mem::replace(&mut self.probes_only, true) {
            return;
        }
        let settings = Prepared(diesel::sql_query(
            "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), \
                    set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)",
        ))
        .execute(&mut self.conn());
        self.push(settings, Some(1));
    }

    /// The connection to bind a statement to (a shared reference is what pipelines).
    fn conn(&self) -> &'a AsyncPgConnection {
        self.conn
    }

    fn push(&mut self, statement: BoxFuture<'a, QueryResult<usize>>, expected: Option<usize>) {
        self.steps.push((statement, expected));
    }

    /// Sends every statement, in order, then reads every answer. The first failure in statement
    /// order is the cause (the ones after it only report the aborted transaction); a count off
    /// is a conflict.
    async fn run(self) -> Result<(), TxError> {
        let (statements, expected): (Vec<_>, Vec<_>) = self.steps.into_iter().unzip();
        let answers = futures_util::future::join_all(statements).await;
        for (answer, expected) in answers.into_iter().zip(expected) {
            let n = answer?;
            if expected.is_some_and(|e| e != n) {
                return Err(TxError::Conflict);
            }
        }
        Ok(())
    }
}

/// Adds units as one increment of the stored count (or the row, created), then its audit row and
/// idempotency record. The row stays locked until commit, so the count before is the count after
/// minus the units.
pub(crate) async fn add_units(conn: &mut AsyncPgConnection, addition: &StockAddition) -> Result<AddOutcome, TxError> {
    let row: Option<StockRow> = diesel::sql_query(
        "INSERT INTO inventory AS i (id, product_id, quantity, reserved, version, updated_at) \
         VALUES ($1, $2, $3, 0, 0, $4) \
         ON CONFLICT (product_id) DO UPDATE \
         SET quantity = i.quantity + EXCLUDED.quantity, version = i.version + 1, updated_at = EXCLUDED.updated_at \
         WHERE i.quantity + EXCLUDED.quantity <= $5 \
         RETURNING i.id, i.product_id, i.quantity, i.reserved, i.version, i.updated_at, i.low_stock_threshold",
    )
    .bind::<diesel::sql_types::Uuid, _>(addition.new_id)
    .bind::<Text, _>(addition.product_id.as_str())
    .bind::<Integer, _>(to_i32(addition.amount.get())?)
    .bind::<Timestamptz, _>(addition.at)
    .bind::<Integer, _>(to_i32(addition.max_quantity)?)
    .get_result(conn)
    .await
    .optional()?;
    let Some(row) = row else {
        return Ok(AddOutcome::WouldOverflow);
    };
    let inventory = row.into_domain().map_err(TxError::Invalid)?;
    let changes = ChangeSet {
        adjustments: vec![Adjustment {
            product_id: addition.product_id.clone(),
            old_quantity: inventory.quantity() - addition.amount.get(),
            new_quantity: inventory.quantity(),
            reason: AdjustmentReason::Add,
            actor: addition.actor.clone(),
            note: None,
            at: addition.at,
        }],
        idempotency: addition.idempotency.as_ref().map(|request| IdempotencyRecord {
            request: request.clone(),
            result: inventory.clone(),
            lines: None,
        }),
        outbox: addition.availability_events(&inventory),
        ..ChangeSet::default()
    };
    write_changes(conn, &changes).await?;
    Ok(AddOutcome::Added(inventory))
}

fn thresholds(writes: &[&inventory_domain::StockWrite]) -> Result<Vec<Option<i32>>, TxError> {
    writes
        .iter()
        .map(|w| w.inventory.low_stock_threshold().map(to_i32).transpose())
        .collect()
}

fn write_stock(pipeline: &mut Pipeline<'_>, changes: &ChangeSet) -> Result<(), TxError> {
    let (updates, inserts): (Vec<_>, Vec<_>) = changes.stock.iter().partition(|w| w.expected_version.is_some());
    if !updates.is_empty() {
        // One statement locks and writes the rows, in `id` order, so concurrent savers queue
        // instead of deadlocking. The order is the plan's: the rows come from the arrays (sorted
        // by id) in a nested loop over the primary key (`probes_only`). A row missing or a version
        // moved on updates fewer rows: a conflict, and the batch is redone from fresh state.
        let mut updates = updates;
        updates.sort_unstable_by_key(|w| w.inventory.id());
        pipeline.probes_only();
        let update = Prepared(
            diesel::sql_query(
                "UPDATE inventory AS i \
             SET quantity = v.quantity, reserved = v.reserved, version = v.version, updated_at = v.updated_at, \
                 low_stock_threshold = v.low_stock_threshold \
             FROM unnest($1::uuid[], $2::int4[], $3::int4[], $4::int8[], $5::int8[], $6::timestamptz[], $7::int4[]) \
                  AS v(id, quantity, reserved, version, expected, updated_at, low_stock_threshold) \
             WHERE i.id = v.id AND i.version = v.expected",
            )
            .bind::<Array<diesel::sql_types::Uuid>, _>(updates.iter().map(|w| w.inventory.id()).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>(
                updates
                    .iter()
                    .map(|w| to_i32(w.inventory.quantity()))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind::<Array<Integer>, _>(
                updates
                    .iter()
                    .map(|w| to_i32(w.inventory.reserved()))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind::<Array<BigInt>, _>(updates.iter().map(|w| w.inventory.version()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(
                updates
                    .iter()
                    .map(|w| w.expected_version.unwrap_or(-1))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Timestamptz>, _>(updates.iter().map(|w| w.inventory.updated_at()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Integer>>, _>(thresholds(&updates)?),
        )
        .execute(&mut pipeline.conn());
        pipeline.push(update, Some(updates.len()));
    }
    if !inserts.is_empty() {
        let insert = Prepared(
            diesel::sql_query(
                "INSERT INTO inventory (id, product_id, quantity, reserved, version, updated_at, low_stock_threshold) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::int4[], $5::int8[], $6::timestamptz[], \
                                  $7::int4[]) \
             ON CONFLICT (product_id) DO NOTHING",
            )
            .bind::<Array<diesel::sql_types::Uuid>, _>(inserts.iter().map(|w| w.inventory.id()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                inserts
                    .iter()
                    .map(|w| w.inventory.product_id().to_string())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Integer>, _>(
                inserts
                    .iter()
                    .map(|w| to_i32(w.inventory.quantity()))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind::<Array<Integer>, _>(
                inserts
                    .iter()
                    .map(|w| to_i32(w.inventory.reserved()))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind::<Array<BigInt>, _>(inserts.iter().map(|w| w.inventory.version()).collect::<Vec<_>>())
            .bind::<Array<Timestamptz>, _>(inserts.iter().map(|w| w.inventory.updated_at()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Integer>>, _>(thresholds(&inserts)?),
        )
        .execute(&mut pipeline.conn());
        pipeline.push(insert, Some(inserts.len()));
    }
    Ok(())
}

fn write_reservations(pipeline: &mut Pipeline<'_>, changes: &ChangeSet) -> Result<(), TxError> {
    let (updates, inserts): (Vec<_>, Vec<_>) = changes.reservations.iter().partition(|w| w.expected_version.is_some());
    let columns = |ws: &[&inventory_domain::ReservationWrite]| {
        let mut ids = Vec::new();
        let mut statuses = Vec::new();
        let mut reasons = Vec::new();
        let mut expires = Vec::new();
        for w in ws {
            let (status, reason) = status_to_row(w.reservation.status());
            ids.push(w.reservation.order_id().to_string());
            statuses.push(status.to_owned());
            reasons.push(reason.map(str::to_owned));
            expires.push(w.reservation.expires_at());
        }
        (ids, statuses, reasons, expires)
    };
    if !inserts.is_empty() {
        let (ids, statuses, reasons, expires) = columns(&inserts);
        let insert = Prepared(
            diesel::sql_query(
                "INSERT INTO reservations (order_id, status, reason, created_at, updated_at, expires_at, version) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], \
                                  $6::timestamptz[], $7::int8[]) \
             ON CONFLICT (order_id) DO NOTHING",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Text>, _>(statuses)
            .bind::<Array<Nullable<Text>>, _>(reasons)
            .bind::<Array<Timestamptz>, _>(inserts.iter().map(|w| w.reservation.created_at()).collect::<Vec<_>>())
            .bind::<Array<Timestamptz>, _>(inserts.iter().map(|w| w.reservation.updated_at()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Timestamptz>>, _>(expires)
            .bind::<Array<BigInt>, _>(inserts.iter().map(|w| w.reservation.version()).collect::<Vec<_>>()),
        )
        .execute(&mut pipeline.conn());
        pipeline.push(insert, Some(inserts.len()));
    }
    if !updates.is_empty() {
        // Often after the stock's update, which set this already; not when the batch changes no
        // stock (a create after its order's cancel only marks the reservation failed).
        pipeline.probes_only();
        let (ids, statuses, reasons, expires) = columns(&updates);
        let update = Prepared(
            diesel::sql_query(
                "UPDATE reservations AS r \
             SET status = v.status, reason = v.reason, updated_at = v.updated_at, expires_at = v.expires_at, \
                 version = v.version \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int8[], \
                         $7::int8[]) AS v(order_id, status, reason, updated_at, expires_at, version, expected) \
             WHERE r.order_id = v.order_id AND r.version = v.expected",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Text>, _>(statuses)
            .bind::<Array<Nullable<Text>>, _>(reasons)
            .bind::<Array<Timestamptz>, _>(updates.iter().map(|w| w.reservation.updated_at()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Timestamptz>>, _>(expires)
            .bind::<Array<BigInt>, _>(updates.iter().map(|w| w.reservation.version()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(
                updates
                    .iter()
                    .map(|w| w.expected_version.unwrap_or(-1))
                    .collect::<Vec<_>>(),
            ),
        )
        .execute(&mut pipeline.conn());
        pipeline.push(update, Some(updates.len()));
    }
    // Lines of new holds, and of paid orders reserved late, after their reservation rows.
    let lines: Vec<(&str, &inventory_domain::LineItem)> = changes
        .reservations
        .iter()
        .filter(|w| w.lines_added)
        .flat_map(|w| {
            w.reservation
                .lines()
                .iter()
                .map(move |l| (w.reservation.order_id().as_str(), l))
        })
        .collect();
    if !lines.is_empty() {
        let insert = Prepared(
            diesel::sql_query(
                "INSERT INTO reservation_lines (order_id, product_id, quantity) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[])",
            )
            .bind::<Array<Text>, _>(lines.iter().map(|(o, _)| (*o).to_owned()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(lines.iter().map(|(_, l)| l.product_id.to_string()).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>(
                lines
                    .iter()
                    .map(|(_, l)| to_i32(l.quantity))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        )
        .execute(&mut pipeline.conn());
        pipeline.push(insert, None);
    }
    Ok(())
}

fn write_processed(pipeline: &mut Pipeline<'_>, changes: &ChangeSet) {
    let events = &changes.processed_events;
    if events.is_empty() {
        return;
    }
    let insert = Prepared(
        diesel::sql_query(
            "INSERT INTO processed_events (event_id, order_id, outcome, processed_at) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) \
         ON CONFLICT (event_id) DO NOTHING",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(events.iter().map(|e| e.order_id.to_string()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(events.iter().map(|e| e.outcome.to_owned()).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(events.iter().map(|e| e.processed_at).collect::<Vec<_>>()),
    )
    .execute(&mut pipeline.conn());
    // Fewer rows: another consumer processed one of them meanwhile; the batch is redone from fresh state.
    pipeline.push(insert, Some(events.len()));
}

fn write_outbox(pipeline: &mut Pipeline<'_>, changes: &ChangeSet) -> Result<(), TxError> {
    let events = &changes.outbox;
    if events.is_empty() {
        return Ok(());
    }
    let payloads = events.iter().map(payload).collect::<Result<Vec<_>, _>>()?;
    let headers: Vec<Option<serde_json::Value>> = events
        .iter()
        .map(|e| (!e.headers.is_empty()).then(|| serde_json::json!(e.headers)))
        .collect();
    let insert = Prepared(
        diesel::sql_query(
            "INSERT INTO outbox (event_id, event_type, message_key, payload, created_at, headers) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::jsonb[])",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            events
                .iter()
                .map(|e| e.event.event_type().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(events.iter().map(|e| e.event.key().to_owned()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(payloads)
        .bind::<Array<Timestamptz>, _>(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
        .bind::<Array<diesel::sql_types::Nullable<Jsonb>>, _>(headers),
    )
    .execute(&mut pipeline.conn());
    pipeline.push(insert, None);
    Ok(())
}

/// The published document, in the wire contract's form.
fn payload(event: &inventory_domain::OutboxEvent) -> Result<serde_json::Value, TxError> {
    inventory_contract::encode(event).map_err(|err| TxError::Invalid(err.to_string()))
}

fn write_adjustments(pipeline: &mut Pipeline<'_>, changes: &ChangeSet) -> Result<(), TxError> {
    let rows = &changes.adjustments;
    if rows.is_empty() {
        return Ok(());
    }
    let insert = Prepared(diesel::sql_query(
        "INSERT INTO stock_adjustments (product_id, old_quantity, new_quantity, delta, reason, actor, note, created_at) \
         SELECT * FROM unnest($1::text[], $2::int4[], $3::int4[], $4::int4[], $5::text[], $6::text[], $7::text[], \
                              $8::timestamptz[])",
    )
    .bind::<Array<Text>, _>(rows.iter().map(|a| a.product_id.to_string()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(rows.iter().map(|a| to_i32(a.old_quantity)).collect::<Result<Vec<_>, _>>()?)
    .bind::<Array<Integer>, _>(rows.iter().map(|a| to_i32(a.new_quantity)).collect::<Result<Vec<_>, _>>()?)
    .bind::<Array<Integer>, _>(
        rows.iter()
            .map(|a| i32::try_from(a.delta()).map_err(|_| TxError::Invalid("delta out of range".into())))
            .collect::<Result<Vec<_>, _>>()?,
    )
    .bind::<Array<Text>, _>(rows.iter().map(|a| a.reason.as_str().to_owned()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|a| a.actor.0.clone()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|a| a.note.clone()).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|a| a.at).collect::<Vec<_>>())
    )
        .execute(&mut pipeline.conn());
    pipeline.push(insert, None);
    Ok(())
}
