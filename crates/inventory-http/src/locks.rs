//! This instance's HTTP audits of one product, one at a time: audits of a product would otherwise
//! race on its optimistic lock, and a burst of them (a flash-sale correction) would exhaust the
//! retries of some and answer 503. Queued here in arrival order (tokio's mutex is fair), they only
//! meet other instances' writes on the lock. (Adds need no turn: each is one increment.)
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// A lock per product, kept while someone holds or waits for it.
#[derive(Default)]
pub struct ProductLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl ProductLocks {
    /// Waits for `product`'s turn; the turn lasts as long as the guard.
    pub async fn lock(&self, product: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if locks.len() > 4096 {
                locks.retain(|_, lock| lock.strong_count() > 0);
            }
            match locks.get(product).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(product.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_product_waits_another_does_not() {
        let locks = ProductLocks::default();
        let held = locks.lock("p").await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("p"))
                .await
                .is_err(),
            "a second writer of p waits"
        );
        let _other = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("q"))
            .await
            .expect("q is free");
        drop(held);
        let _again = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("p"))
            .await
            .expect("p is free once released");
    }
}
