//! The stock aggregate: one product's physical count and what is on hold.

use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

use crate::values::{ProductId, Quantity, StockCount};

/// A change that would break a stock invariant.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StockError {
    /// Not enough unreserved stock.
    #[error("insufficient stock: requested {requested}, available {available}")]
    Insufficient {
        /// Units asked for.
        requested: u64,
        /// Units free (quantity - reserved).
        available: u32,
    },
    /// The counted stock is lower than what is on hold for orders.
    #[error("count {count} is below the {reserved} units reserved")]
    BelowReserved {
        /// Count given.
        count: u32,
        /// Units on hold.
        reserved: u32,
    },
    /// The stock would exceed [`StockCount::MAX`].
    #[error("stock would exceed {max}")]
    Overflow {
        /// Largest stock allowed.
        max: u32,
    },
    /// Releasing or committing more than is on hold (a bug upstream).
    #[error("cannot take {requested} from {reserved} reserved units")]
    NotReserved {
        /// Units to take off hold.
        requested: u32,
        /// Units on hold.
        reserved: u32,
    },
}

/// A stored row that breaks an invariant; the store must never hold one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("stored stock of {product_id} is invalid: quantity {quantity}, reserved {reserved}")]
pub struct InvalidStockRow {
    /// Product of the row.
    pub product_id: String,
    /// Stored quantity.
    pub quantity: i64,
    /// Stored reserved.
    pub reserved: i64,
}

/// Stock of one product. Fields are private: every change goes through a
/// method that keeps `0 <= reserved <= quantity <= StockCount::MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    id: Uuid,
    product_id: ProductId,
    quantity: u32,
    reserved: u32,
    version: i64,
    updated_at: DateTime<Utc>,
    low_stock_threshold: Option<u32>,
}

impl Inventory {
    /// A new, empty record for a product never stocked before.
    pub fn new(id: Uuid, product_id: ProductId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            product_id,
            quantity: 0,
            reserved: 0,
            version: 0,
            updated_at: now,
            low_stock_threshold: None,
        }
    }

    /// Rebuilds a record from storage, refusing one that breaks an invariant.
    pub fn restore(
        id: Uuid,
        product_id: ProductId,
        quantity: i64,
        reserved: i64,
        version: i64,
        updated_at: DateTime<Utc>,
    ) -> Result<Self, InvalidStockRow> {
        let valid = (0..=i64::from(StockCount::MAX)).contains(&quantity) && (0..=quantity).contains(&reserved);
        if !valid {
            return Err(InvalidStockRow {
                product_id: product_id.to_string(),
                quantity,
                reserved,
            });
        }
        Ok(Self {
            id,
            product_id,
            quantity: quantity as u32,
            reserved: reserved as u32,
            version,
            updated_at,
            low_stock_threshold: None,
        })
    }

    /// The record with its stored low-stock threshold.
    pub fn with_low_stock_threshold(mut self, threshold: Option<u32>) -> Self {
        self.low_stock_threshold = threshold;
        self
    }

    /// Below this many available units the product is low on stock; none: the
    /// configured default applies.
    pub fn low_stock_threshold(&self) -> Option<u32> {
        self.low_stock_threshold
    }

    /// Sets (or clears, for the default) the low-stock threshold.
    pub fn set_low_stock_threshold(&mut self, threshold: Option<u32>, now: DateTime<Utc>) {
        self.low_stock_threshold = threshold;
        self.updated_at = now;
    }

    /// Record id.
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// Product the record counts.
    pub fn product_id(&self) -> &ProductId {
        &self.product_id
    }
    /// Physical units on the shelf.
    pub fn quantity(&self) -> u32 {
        self.quantity
    }
    /// Units on hold for orders.
    pub fn reserved(&self) -> u32 {
        self.reserved
    }
    /// Units that can still be promised: `quantity - reserved`.
    pub fn available(&self) -> u32 {
        self.quantity - self.reserved
    }
    /// Optimistic-lock version of the stored row.
    pub fn version(&self) -> i64 {
        self.version
    }
    /// Time of the last change.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// Adds received units.
    pub fn add(&mut self, amount: Quantity, now: DateTime<Utc>) -> Result<(), StockError> {
        let next = u64::from(self.quantity) + u64::from(amount.get());
        if next > u64::from(StockCount::MAX) {
            return Err(StockError::Overflow { max: StockCount::MAX });
        }
        self.quantity = next as u32;
        self.updated_at = now;
        Ok(())
    }

    /// Sets the physical count; refused below what is reserved.
    pub fn audit(&mut self, count: StockCount, now: DateTime<Utc>) -> Result<(), StockError> {
        if count.get() < self.reserved {
            return Err(StockError::BelowReserved {
                count: count.get(),
                reserved: self.reserved,
            });
        }
        self.quantity = count.get();
        self.updated_at = now;
        Ok(())
    }

    /// Puts `amount` units on hold.
    pub fn reserve(&mut self, amount: u32, now: DateTime<Utc>) -> Result<(), StockError> {
        if amount > self.available() {
            return Err(StockError::Insufficient {
                requested: u64::from(amount),
                available: self.available(),
            });
        }
        self.reserved += amount;
        self.updated_at = now;
        Ok(())
    }

    /// Takes `amount` units off hold, back into the free pool.
    pub fn release(&mut self, amount: u32, now: DateTime<Utc>) -> Result<(), StockError> {
        if amount > self.reserved {
            return Err(StockError::NotReserved {
                requested: amount,
                reserved: self.reserved,
            });
        }
        self.reserved -= amount;
        self.updated_at = now;
        Ok(())
    }

    /// Turns `amount` held units into a deduction: they leave the shelf.
    pub fn commit(&mut self, amount: u32, now: DateTime<Utc>) -> Result<(), StockError> {
        if amount > self.reserved {
            return Err(StockError::NotReserved {
                requested: amount,
                reserved: self.reserved,
            });
        }
        self.reserved -= amount;
        self.quantity -= amount;
        self.updated_at = now;
        Ok(())
    }

    /// The record as it is once stored with the next version.
    pub(crate) fn with_version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(quantity: u32) -> Inventory {
        let mut inv = Inventory::new(Uuid::nil(), ProductId::parse("p").unwrap(), Utc::now());
        if quantity > 0 {
            inv.add(Quantity::new(i64::from(quantity)).unwrap(), Utc::now())
                .unwrap();
        }
        inv
    }

    #[test]
    fn reserve_release_commit_keep_counts() {
        let mut inv = stock(10);
        inv.reserve(4, Utc::now()).unwrap();
        assert_eq!((inv.quantity(), inv.reserved(), inv.available()), (10, 4, 6));
        inv.commit(3, Utc::now()).unwrap();
        assert_eq!((inv.quantity(), inv.reserved(), inv.available()), (7, 1, 6));
        inv.release(1, Utc::now()).unwrap();
        assert_eq!((inv.quantity(), inv.reserved(), inv.available()), (7, 0, 7));
    }

    #[test]
    fn cannot_reserve_more_than_available() {
        let mut inv = stock(5);
        inv.reserve(3, Utc::now()).unwrap();
        assert_eq!(
            inv.reserve(3, Utc::now()),
            Err(StockError::Insufficient {
                requested: 3,
                available: 2
            })
        );
        assert_eq!(inv.reserved(), 3);
    }

    #[test]
    fn audit_refused_below_reserved() {
        let mut inv = stock(5);
        inv.reserve(4, Utc::now()).unwrap();
        let err = inv.audit(StockCount::new(3).unwrap(), Utc::now());
        assert_eq!(err, Err(StockError::BelowReserved { count: 3, reserved: 4 }));
        inv.audit(StockCount::new(4).unwrap(), Utc::now()).unwrap();
        assert_eq!(inv.available(), 0);
    }

    #[test]
    fn add_refuses_overflow() {
        let mut inv = stock(0);
        inv.audit(StockCount::new(i64::from(StockCount::MAX)).unwrap(), Utc::now())
            .unwrap();
        assert!(matches!(
            inv.add(Quantity::new(1).unwrap(), Utc::now()),
            Err(StockError::Overflow { .. })
        ));
    }

    #[test]
    fn restore_refuses_broken_rows() {
        let p = ProductId::parse("p").unwrap();
        assert!(Inventory::restore(Uuid::nil(), p.clone(), 3, 4, 0, Utc::now()).is_err());
        assert!(Inventory::restore(Uuid::nil(), p.clone(), -1, 0, 0, Utc::now()).is_err());
        assert!(Inventory::restore(Uuid::nil(), p, 4, 4, 7, Utc::now()).is_ok());
    }

    #[test]
    fn release_more_than_held_is_refused() {
        let mut inv = stock(5);
        inv.reserve(2, Utc::now()).unwrap();
        assert!(inv.release(3, Utc::now()).is_err());
        assert!(inv.commit(3, Utc::now()).is_err());
        assert_eq!((inv.quantity(), inv.reserved()), (5, 2));
    }
}
