//! The use cases the HTTP adapter drives, as a port: the service implements it, and the
//! adapter's handlers are unit-tested against a mock of it (status codes, problem codes, role
//! checks, what reaches the use case), while the end-to-end tests keep the real path covered.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::inventory::Inventory;
use crate::ports::{
    AdjustmentRecord, Clock, CountLine, CountedLine, IdempotentRequest, InventoryRepository, RepoError, StockFilter,
};
use crate::service::{InventoryService, ServiceError, StockPage};
use crate::values::{AdjustmentReason, Caller, ProductId, Quantity, StockCount};

/// What the REST API asks of the inventory. Arguments are owned where a mock needs them so.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StockUseCases: Send + Sync {
    /// Whether the store answers (readiness).
    async fn ping_store(&self) -> Result<(), RepoError>;
    /// Stock of one product, if it has a record.
    async fn get_stock(&self, product: ProductId) -> Result<Option<Inventory>, ServiceError>;
    /// Units available per product id (0 for an unknown product).
    async fn availability(&self, products: Vec<ProductId>) -> Result<HashMap<ProductId, u32>, ServiceError>;
    /// Adds received units (under an idempotency key when given).
    async fn add_stock(
        &self,
        product: ProductId,
        amount: Quantity,
        caller: Caller,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Inventory, ServiceError>;
    /// Sets the counted physical stock.
    async fn audit_stock(
        &self,
        product: ProductId,
        count: StockCount,
        reason: AdjustmentReason,
        caller: Caller,
        expected_version: Option<i64>,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Inventory, ServiceError>;
    /// Sets or clears a product's low-stock threshold.
    async fn set_low_stock_threshold(
        &self,
        product: ProductId,
        threshold: Option<u32>,
        caller: Caller,
        expected_version: Option<i64>,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Inventory, ServiceError>;
    /// A product's audit trail, newest first.
    async fn adjustments(
        &self,
        product: ProductId,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AdjustmentRecord>, ServiceError>;
    /// A page of stock rows.
    async fn list_stock(
        &self,
        filter: StockFilter,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<StockPage, ServiceError>;
    /// A bulk cycle count, all lines or none.
    async fn audit_many(
        &self,
        lines: Vec<CountLine>,
        reason: AdjustmentReason,
        caller: Caller,
        dry_run: bool,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Vec<CountedLine>, ServiceError>;
}

#[async_trait]
impl<R: InventoryRepository, C: Clock> StockUseCases for InventoryService<R, C> {
    async fn ping_store(&self) -> Result<(), RepoError> {
        self.repository().ping().await
    }
    async fn get_stock(&self, product: ProductId) -> Result<Option<Inventory>, ServiceError> {
        InventoryService::get_stock(self, &product).await
    }
    async fn availability(&self, products: Vec<ProductId>) -> Result<HashMap<ProductId, u32>, ServiceError> {
        InventoryService::availability(self, &products).await
    }
    async fn add_stock(
        &self,
        product: ProductId,
        amount: Quantity,
        caller: Caller,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Inventory, ServiceError> {
        self.add_stock_once(&product, amount, caller, idempotency.as_ref())
            .await
    }
    async fn audit_stock(
        &self,
        product: ProductId,
        count: StockCount,
        reason: AdjustmentReason,
        caller: Caller,
        expected_version: Option<i64>,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Inventory, ServiceError> {
        self.audit_stock_once(&product, count, reason, caller, expected_version, idempotency.as_ref())
            .await
    }
    async fn set_low_stock_threshold(
        &self,
        product: ProductId,
        threshold: Option<u32>,
        caller: Caller,
        expected_version: Option<i64>,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Inventory, ServiceError> {
        self.set_low_stock_threshold_once(&product, threshold, caller, expected_version, idempotency.as_ref())
            .await
    }
    async fn adjustments(
        &self,
        product: ProductId,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AdjustmentRecord>, ServiceError> {
        InventoryService::adjustments(self, &product, limit, before).await
    }
    async fn list_stock(
        &self,
        filter: StockFilter,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<StockPage, ServiceError> {
        InventoryService::list_stock(self, filter, after, limit).await
    }
    async fn audit_many(
        &self,
        lines: Vec<CountLine>,
        reason: AdjustmentReason,
        caller: Caller,
        dry_run: bool,
        idempotency: Option<IdempotentRequest>,
    ) -> Result<Vec<CountedLine>, ServiceError> {
        InventoryService::audit_many(self, &lines, reason, caller, dry_run, idempotency.as_ref()).await
    }
}
