//! Value objects built by fallible constructors: once built, they are valid.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a text identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The identifier is empty.
    #[error("must not be empty")]
    Empty,
    /// The identifier has more characters than allowed.
    #[error("must be at most {max} characters, got {len}")]
    TooLong {
        /// Largest length allowed.
        max: usize,
        /// Length given.
        len: usize,
    },
    /// The identifier holds a control character.
    #[error("must contain printable characters only")]
    NotPrintable,
    /// The identifier starts or ends with whitespace.
    #[error("must not start or end with whitespace")]
    SurroundingWhitespace,
}

fn check_id(raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    let len = raw.chars().count();
    if len > max {
        return Err(IdError::TooLong { max, len });
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::NotPrintable);
    }
    if raw.trim() != raw {
        return Err(IdError::SurroundingWhitespace);
    }
    Ok(())
}

/// Defines a validated text identifier type.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest id accepted.
            pub const MAX_LEN: usize = $max;

            /// Validates `raw` as an id.
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check_id(&raw, Self::MAX_LEN)?;
                Ok(Self(raw))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id!(
    /// The catalogue's identifier of a product: 1 to 64 printable characters,
    /// no whitespace at either end.
    ProductId,
    64
);

text_id!(
    /// The Order Service's identifier of an order: 1 to 128 printable
    /// characters, no whitespace at either end.
    OrderId,
    128
);

/// A requested amount of one product: 1 to 1,000,000 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

/// Why a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("must be between {min} and {max}, got {got}")]
pub struct QuantityError {
    /// Smallest value allowed.
    pub min: i64,
    /// Largest value allowed.
    pub max: i64,
    /// Value given.
    pub got: i64,
}

impl Quantity {
    /// Largest amount one request may move.
    pub const MAX: u32 = 1_000_000;

    /// Validates a requested amount.
    pub fn new(raw: i64) -> Result<Self, QuantityError> {
        if (1..=i64::from(Self::MAX)).contains(&raw) {
            Ok(Self(raw as u32))
        } else {
            Err(QuantityError {
                min: 1,
                max: i64::from(Self::MAX),
                got: raw,
            })
        }
    }

    /// The amount.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(d)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

/// A counted physical stock level, as an audit sets it: 0 to [`StockCount::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StockCount(u32);

impl StockCount {
    /// Largest stock a product may hold; keeps every sum inside PostgreSQL's `integer`.
    pub const MAX: u32 = 1_000_000_000;

    /// Validates a counted stock level.
    pub fn new(raw: i64) -> Result<Self, QuantityError> {
        if (0..=i64::from(Self::MAX)).contains(&raw) {
            Ok(Self(raw as u32))
        } else {
            Err(QuantityError {
                min: 0,
                max: i64::from(Self::MAX),
                got: raw,
            })
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Why stock was adjusted by hand; kept in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AdjustmentReason {
    /// Stock added through the add endpoint.
    Add,
    /// Periodic physical count.
    CycleCount,
    /// Units found damaged.
    Damaged,
    /// Units lost or stolen.
    Shrinkage,
    /// Units received from a supplier.
    Received,
    /// Correction of an earlier mistake.
    Correction,
    /// Anything else.
    Other,
    /// The low-stock threshold changed (the count did not).
    Threshold,
}

impl AdjustmentReason {
    /// Stable text form, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::CycleCount => "CYCLE_COUNT",
            Self::Damaged => "DAMAGED",
            Self::Shrinkage => "SHRINKAGE",
            Self::Received => "RECEIVED",
            Self::Correction => "CORRECTION",
            Self::Other => "OTHER",
            Self::Threshold => "LOW_STOCK_THRESHOLD",
        }
    }

    /// Parses the stable text form.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Add,
            Self::CycleCount,
            Self::Damaged,
            Self::Shrinkage,
            Self::Received,
            Self::Correction,
            Self::Other,
            Self::Threshold,
        ]
        .into_iter()
        .find(|r| r.as_str() == raw)
    }
}

/// Who made a manual change (a token's subject, or a system name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(pub String);

/// Who asks for a manual change, and the id of the request it came in: the availability events
/// it causes carry that id, as the saga's carry the consumed event's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// Who.
    pub actor: Actor,
    /// The request's id (`X-Request-Id`), when there is one.
    pub request_id: Option<String>,
}

impl From<Actor> for Caller {
    fn from(actor: Actor) -> Self {
        Self {
            actor,
            request_id: None,
        }
    }
}

impl From<&Actor> for Caller {
    fn from(actor: &Actor) -> Self {
        actor.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_id_rules() {
        assert!(ProductId::parse("sku-1").is_ok());
        assert_eq!(ProductId::parse(""), Err(IdError::Empty));
        assert_eq!(ProductId::parse(" a"), Err(IdError::SurroundingWhitespace));
        assert_eq!(ProductId::parse("a\tb"), Err(IdError::NotPrintable));
        assert!(ProductId::parse("x".repeat(64)).is_ok());
        assert_eq!(
            ProductId::parse("x".repeat(65)),
            Err(IdError::TooLong { max: 64, len: 65 })
        );
        assert!(ProductId::parse("produit-é-ü").is_ok());
    }

    #[test]
    fn quantity_bounds() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::new(1_000_000).map(Quantity::get), Ok(1_000_000));
        assert!(Quantity::new(1_000_001).is_err());
        assert!(StockCount::new(0).is_ok());
        assert!(StockCount::new(-1).is_err());
    }

    #[test]
    fn reason_round_trip() {
        for r in [
            "ADD",
            "CYCLE_COUNT",
            "DAMAGED",
            "SHRINKAGE",
            "RECEIVED",
            "CORRECTION",
            "OTHER",
        ] {
            assert_eq!(AdjustmentReason::parse(r).map(AdjustmentReason::as_str), Some(r));
        }
        assert_eq!(AdjustmentReason::parse("cycle_count"), None);
    }
}
