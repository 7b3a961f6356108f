//! The API's request and response bodies, and the schemas they share: what the handlers
//! read and write and what the OpenAPI document describes, in one place.

use chrono::{DateTime, Utc};
use inventory_domain::{AdjustmentRecord, Inventory};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, Type};

/// What a product id must look like: no control characters, no whitespace at the ends.
pub const PRODUCT_ID_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$";

/// The schema of a product id, wherever one appears.
pub(crate) fn product_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some(PRODUCT_ID_PATTERN))
}

/// A product's stock as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockView {
    /// Product.
    pub product_id: String,
    /// Physical units.
    pub quantity: u32,
    /// Units on hold.
    pub reserved: u32,
    /// `quantity - reserved`.
    pub available: u32,
    /// Optimistic-lock version; send it back as `expectedVersion`.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The product's own low-stock threshold; null: the configured default applies.
    #[serde(default)]
    pub low_stock_threshold: Option<u32>,
}

impl From<&Inventory> for StockView {
    fn from(inv: &Inventory) -> Self {
        Self {
            product_id: inv.product_id().to_string(),
            quantity: inv.quantity(),
            reserved: inv.reserved(),
            available: inv.available(),
            version: inv.version(),
            updated_at: inv.updated_at(),
            low_stock_threshold: inv.low_stock_threshold(),
        }
    }
}

/// Units received for a product.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AddRequest {
    /// 1 to 64 printable characters.
    #[schema(schema_with = crate::schemas::product_id_schema)]
    pub(crate) product_id: String,
    /// 1 to 1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    #[serde(deserialize_with = "whole_number")]
    pub(crate) quantity: i64,
}

/// A counted physical stock level.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuditRequest {
    #[schema(schema_with = crate::schemas::product_id_schema)]
    pub(crate) product_id: String,
    /// The count, 0 or more; refused below what is reserved.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "whole_number")]
    pub(crate) quantity: i64,
    /// CYCLE_COUNT, DAMAGED, SHRINKAGE, RECEIVED, CORRECTION or OTHER.
    #[schema(pattern = "^(CYCLE_COUNT|DAMAGED|SHRINKAGE|RECEIVED|CORRECTION|OTHER)$")]
    pub(crate) reason: String,
    /// The version the count was taken against; 409 when it moved on.
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub(crate) expected_version: Option<i64>,
}

/// A product's thresholds (the whole set: a field left out is cleared).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ThresholdsRequest {
    /// Below this many available units (and above 0) the product is low on stock; null or absent:
    /// the configured default (LOW_STOCK_THRESHOLD_DEFAULT) applies.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub(crate) low_stock_threshold: Option<i64>,
    /// The version the change was decided against; 409 when it moved on.
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub(crate) expected_version: Option<i64>,
}

/// An integer, also when written with a zero fraction (`4.0`), as JSON Schema counts it.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("must be an integer, got {n}")))
}

pub(crate) fn optional_whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| whole_number(serde_json::Value::Number(n)).map_err(serde::de::Error::custom))
        .transpose()
}

/// One manual change of a count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdjustmentView {
    pub(crate) id: i64,
    pub(crate) product_id: String,
    pub(crate) old_quantity: u32,
    pub(crate) new_quantity: u32,
    pub(crate) delta: i64,
    pub(crate) reason: &'static str,
    pub(crate) actor: String,
    pub(crate) at: DateTime<Utc>,
}

impl From<&AdjustmentRecord> for AdjustmentView {
    fn from(r: &AdjustmentRecord) -> Self {
        let a = &r.adjustment;
        Self {
            id: r.id,
            product_id: a.product_id.to_string(),
            old_quantity: a.old_quantity,
            new_quantity: a.new_quantity,
            delta: a.delta(),
            reason: a.reason.as_str(),
            actor: a.actor.0.clone(),
            at: a.at,
        }
    }
}

/// A page of the audit trail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdjustmentPage {
    pub(crate) items: Vec<AdjustmentView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_before: Option<i64>,
}

/// A page of a stock listing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockListPage {
    /// The rows, in product-id order.
    pub items: Vec<StockView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A bulk cycle count in JSON.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CountsRequest {
    /// CYCLE_COUNT, DAMAGED, SHRINKAGE, RECEIVED, CORRECTION or OTHER, for every line.
    #[schema(pattern = "^(CYCLE_COUNT|DAMAGED|SHRINKAGE|RECEIVED|CORRECTION|OTHER)$")]
    pub(crate) reason: String,
    /// 1 to 1,000 lines, one per product.
    #[schema(min_items = 1, max_items = 1000)]
    pub(crate) lines: Vec<CountRequestLine>,
}

/// One counted product.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CountRequestLine {
    #[schema(schema_with = crate::schemas::product_id_schema)]
    pub(crate) product_id: String,
    /// The count, 0 or more; refused below what is reserved.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "whole_number")]
    pub(crate) quantity: i64,
    /// The version the count was taken against; 409 when it moved on.
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub(crate) expected_version: Option<i64>,
}

/// What a bulk count did, or would do in a dry run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CountsResult {
    /// Nothing was changed.
    pub(crate) dry_run: bool,
    /// The reason every line was counted with.
    pub(crate) reason: &'static str,
    /// One per line, in the request's order.
    pub(crate) lines: Vec<CountedView>,
}

/// One product's count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CountedView {
    pub(crate) product_id: String,
    pub(crate) old_quantity: u32,
    pub(crate) new_quantity: u32,
    pub(crate) delta: i64,
    pub(crate) reserved: u32,
    /// The version after (in a dry run: as it is now).
    pub(crate) version: i64,
}
