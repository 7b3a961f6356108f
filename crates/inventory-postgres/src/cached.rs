//! The repository with the read cache in front of its stock reads: `stock` (the GET and `/check`)
//! answers from the cache what it can prove fresh and reads the rest in one query; every write this
//! instance commits updates the cache at once. Loads for a unit of work never use the cache: the
//! rules decide on the database's rows, and their optimistic versions are checked at commit.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_domain::{
    AddOutcome, AdjustmentRecord, ChangeSet, Inventory, InventoryRepository, LoadRequest, OrderId, ProductId,
    RepoError, Snapshot, StockAddition, StockListing, StockScan,
};

use crate::cache::StockCache;

/// `R` with the stock cache in front of its reads.
pub struct CachedRepository<R> {
    inner: Arc<R>,
    cache: Arc<StockCache>,
}

impl<R> Clone for CachedRepository<R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<R> CachedRepository<R> {
    /// Puts `cache` in front of `inner`.
    pub fn new(inner: Arc<R>, cache: Arc<StockCache>) -> Self {
        Self { inner, cache }
    }

    /// The repository behind the cache.
    pub fn inner(&self) -> &Arc<R> {
        &self.inner
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<StockCache> {
        &self.cache
    }
}

#[async_trait]
impl<R: InventoryRepository> InventoryRepository for CachedRepository<R> {
    async fn ping(&self) -> Result<(), RepoError> {
        self.inner.ping().await
    }

    async fn stock(&self, products: &[ProductId]) -> Result<Vec<Inventory>, RepoError> {
        let (mut found, missing, ticket) = self.cache.lookup(products);
        if !missing.is_empty() {
            let read = self.inner.stock(&missing).await?;
            self.cache.fill(ticket, &missing, &read);
            found.extend(read);
        }
        Ok(found)
    }

    async fn load(&self, request: &LoadRequest) -> Result<Snapshot, RepoError> {
        self.inner.load(request).await
    }

    /// Listings read the store: they walk rows the cache may never have held.
    async fn list_stock(&self, listing: &StockListing) -> Result<StockScan, RepoError> {
        self.inner.list_stock(listing).await
    }

    async fn save(&self, changes: &ChangeSet) -> Result<(), RepoError> {
        let ticket = self.cache.ticket();
        self.inner.save(changes).await?;
        if !changes.stock.is_empty() {
            let rows: Vec<Inventory> = changes.stock.iter().map(|w| w.inventory.clone()).collect();
            let products: Vec<ProductId> = rows.iter().map(|r| r.product_id().clone()).collect();
            self.cache.fill(ticket, &products, &rows);
        }
        Ok(())
    }

    async fn add_units(&self, addition: &StockAddition) -> Result<AddOutcome, RepoError> {
        let ticket = self.cache.ticket();
        let outcome = self.inner.add_units(addition).await?;
        if let AddOutcome::Added(row) = &outcome {
            self.cache.fill(
                ticket,
                std::slice::from_ref(&addition.product_id),
                std::slice::from_ref(row),
            );
        }
        Ok(outcome)
    }

    async fn expired_holds(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OrderId>, RepoError> {
        self.inner.expired_holds(now, limit).await
    }

    async fn adjustments(
        &self,
        product: &ProductId,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AdjustmentRecord>, RepoError> {
        self.inner.adjustments(product, limit, before).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use inventory_domain::ports::MockInventoryRepository;
    use uuid::Uuid;

    use super::*;
    use crate::cache::CacheConfig;
    use crate::cache::tests::{pid, row};

    fn fresh() -> Arc<StockCache> {
        let cache = Arc::new(StockCache::new(CacheConfig::default()));
        let epoch = cache.restart();
        cache.confirmed(epoch, Instant::now());
        cache
    }

    #[tokio::test]
    async fn reads_each_product_from_the_database_once_while_fresh() {
        let mut inner = MockInventoryRepository::new();
        inner
            .expect_stock()
            .times(1)
            .withf(|p| p == [pid("a"), pid("b")])
            .returning(|_| Ok(vec![row("a", 5, 1)]));
        inner
            .expect_stock()
            .times(1)
            .withf(|p| p == [pid("c")])
            .returning(|_| Ok(vec![]));
        let repo = CachedRepository::new(Arc::new(inner), fresh());
        assert_eq!(repo.stock(&[pid("a"), pid("b")]).await.unwrap(), vec![row("a", 5, 1)]);
        // a from the cache, b known absent, only c read.
        assert_eq!(
            repo.stock(&[pid("a"), pid("b"), pid("c")]).await.unwrap(),
            vec![row("a", 5, 1)]
        );
        let stats = repo.cache().stats();
        assert_eq!((stats.hits, stats.misses), (2, 3));
    }

    #[tokio::test]
    async fn reads_go_to_the_database_while_the_channel_is_not_proven() {
        let mut inner = MockInventoryRepository::new();
        inner.expect_stock().times(2).returning(|_| Ok(vec![row("a", 5, 1)]));
        let cache = Arc::new(StockCache::new(CacheConfig::default()));
        cache.restart();
        let repo = CachedRepository::new(Arc::new(inner), cache);
        repo.stock(&[pid("a")]).await.unwrap();
        repo.stock(&[pid("a")]).await.unwrap();
    }

    #[tokio::test]
    async fn an_own_write_is_read_back_at_once() {
        let mut inner = MockInventoryRepository::new();
        inner
            .expect_add_units()
            .times(1)
            .returning(|_| Ok(AddOutcome::Added(row("a", 8, 2))));
        inner.expect_stock().never();
        let repo = CachedRepository::new(Arc::new(inner), fresh());
        let addition = StockAddition {
            product_id: pid("a"),
            amount: inventory_domain::Quantity::new(3).unwrap(),
            actor: inventory_domain::Actor("t".into()),
            at: Utc::now(),
            new_id: Uuid::nil(),
            max_quantity: 10,
            idempotency: None,
            availability: Default::default(),
            request_id: None,
        };
        repo.add_units(&addition).await.unwrap();
        assert_eq!(repo.stock(&[pid("a")]).await.unwrap(), vec![row("a", 8, 2)]);
    }

    #[tokio::test]
    async fn a_failed_read_fills_nothing() {
        let mut inner = MockInventoryRepository::new();
        let mut seq = mockall::Sequence::new();
        inner
            .expect_stock()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Err(RepoError::unavailable("down")));
        inner
            .expect_stock()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(vec![row("a", 1, 0)]));
        let repo = CachedRepository::new(Arc::new(inner), fresh());
        assert!(repo.stock(&[pid("a")]).await.is_err());
        assert_eq!(repo.stock(&[pid("a")]).await.unwrap(), vec![row("a", 1, 0)]);
    }
}
