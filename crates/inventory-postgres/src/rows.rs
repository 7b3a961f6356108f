//! Row structs and their translation to domain types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use inventory_domain::{
    FailureReason, Inventory, LineItem, OrderId, ProductId, ReleaseReason, Reservation, ReservationStatus,
};
use uuid::Uuid;

use crate::schema::{inventory, reservation_lines, reservations};

#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = inventory, check_for_backend(diesel::pg::Pg))]
pub(crate) struct StockRow {
    pub id: Uuid,
    pub product_id: String,
    pub quantity: i32,
    pub reserved: i32,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub low_stock_threshold: Option<i32>,
}

impl StockRow {
    pub fn into_domain(self) -> Result<Inventory, String> {
        let product_id = ProductId::parse(self.product_id.clone()).map_err(|e| format!("stored product id: {e}"))?;
        Inventory::restore(
            self.id,
            product_id,
            i64::from(self.quantity),
            i64::from(self.reserved),
            self.version,
            self.updated_at,
        )
        .map(|inv| inv.with_low_stock_threshold(self.low_stock_threshold.and_then(|t| u32::try_from(t).ok())))
        .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = reservations, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ReservationRow {
    pub order_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
}

#[derive(Debug, QueryableByName)]
#[diesel(table_name = reservation_lines, check_for_backend(diesel::pg::Pg))]
pub(crate) struct LineRow {
    pub order_id: String,
    pub product_id: String,
    pub quantity: i32,
}

pub(crate) fn status_to_row(status: ReservationStatus) -> (&'static str, Option<&'static str>) {
    match status {
        ReservationStatus::Released(r) => (status.as_str(), Some(r.as_str())),
        ReservationStatus::Failed(r) => (status.as_str(), Some(r.as_str())),
        _ => (status.as_str(), None),
    }
}

fn status_from_row(status: &str, reason: Option<&str>) -> Result<ReservationStatus, String> {
    let bad = || format!("stored reservation state {status}/{reason:?} is unknown");
    Ok(match status {
        "RESERVED" => ReservationStatus::Reserved,
        "COMMITTED" => ReservationStatus::Committed,
        "CANCELLED" => ReservationStatus::Cancelled,
        "PAID" => ReservationStatus::Paid,
        "RELEASED" => ReservationStatus::Released(reason.and_then(ReleaseReason::parse).ok_or_else(bad)?),
        "FAILED" => ReservationStatus::Failed(reason.and_then(FailureReason::parse).ok_or_else(bad)?),
        _ => return Err(bad()),
    })
}

impl ReservationRow {
    pub fn into_domain(self, lines: Vec<LineRow>) -> Result<Reservation, String> {
        let status = status_from_row(&self.status, self.reason.as_deref())?;
        let mut items = lines
            .into_iter()
            .map(|l| {
                Ok(LineItem {
                    product_id: ProductId::parse(l.product_id).map_err(|e| format!("stored product id: {e}"))?,
                    quantity: u32::try_from(l.quantity).map_err(|e| e.to_string())?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        items.sort_by(|a, b| a.product_id.cmp(&b.product_id));
        let order_id = OrderId::parse(self.order_id).map_err(|e| format!("stored order id: {e}"))?;
        Ok(Reservation::restore(
            order_id,
            status,
            items,
            self.created_at,
            self.updated_at,
            self.expires_at,
            self.version,
        ))
    }
}

/// A bulk count's answer as stored with its idempotency key.
pub(crate) fn lines_to_json(lines: &[inventory_domain::CountedLine]) -> serde_json::Value {
    lines
        .iter()
        .map(|l| {
            serde_json::json!({
                "productId": l.product_id.as_str(),
                "oldQuantity": l.old_quantity,
                "newQuantity": l.new_quantity,
                "reserved": l.reserved,
                "version": l.version,
            })
        })
        .collect()
}

/// A stored bulk count's answer, back.
pub(crate) fn lines_from_json(value: &serde_json::Value) -> Result<Vec<inventory_domain::CountedLine>, String> {
    let bad = || format!("a stored bulk count answer cannot be read: {value}");
    let number = |l: &serde_json::Value, k: &str| l[k].as_i64().ok_or_else(bad);
    let small = |l: &serde_json::Value, k: &str| number(l, k).and_then(|n| u32::try_from(n).map_err(|_| bad()));
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|l| {
            Ok(inventory_domain::CountedLine {
                product_id: ProductId::parse(l["productId"].as_str().ok_or_else(bad)?.to_owned()).map_err(|_| bad())?,
                old_quantity: small(l, "oldQuantity")?,
                new_quantity: small(l, "newQuantity")?,
                reserved: small(l, "reserved")?,
                version: number(l, "version")?,
            })
        })
        .collect()
}
