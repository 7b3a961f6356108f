//! The inventory domain: stock that is never sold twice.
//!
//! Holds the [`Inventory`] aggregate, per-order [`Reservation`]s, the rules
//! that move stock between them ([`Ledger`]), the use cases with optimistic
//! retry ([`InventoryService`]) and the ports adapters implement. It does no
//! I/O and knows no framework.

pub mod availability;
pub mod events;
pub mod inventory;
pub mod ledger;
pub mod ports;
pub mod reservation;
pub mod service;
pub mod usecases;
pub mod values;

pub use availability::{AvailabilityCause, AvailabilityConfig, AvailabilityKind, StockLevel};
pub use events::{
    AvailabilityChange, Echo, EventMeta, FailureReason, IncomingEvent, InventoryEvent, LineItem, OrderCommand,
    OrderLine, OrderLines, OutboxEvent, ReleaseReason, ShortLine, TooManyLines,
};
pub use inventory::{InvalidStockRow, Inventory, StockError};
pub use ledger::{AdjustError, Inconsistency, Ledger, Outcome};
pub use ports::{
    AddOutcome, Adjustment, AdjustmentRecord, Cause, ChangeSet, Clock, CountLine, CountedLine, ErrorChain,
    EventPublisher, IdempotencyRecord, IdempotentRequest, InventoryRepository, LoadRequest, OutboxBacklog, OutboxStore,
    PendingEvent, ProcessedEvent, PublishError, Relayed, RepoError, ReservationWrite, Snapshot, StockAddition,
    StockFilter, StockListing, StockScan, StockWrite,
};
pub use reservation::{Reservation, ReservationStatus};
pub use service::{
    InventoryService, MAX_PAGE, MAX_SCAN, Prepared, ServiceConfig, ServiceError, ServiceMetrics, StockPage,
};
pub use usecases::StockUseCases;
pub use values::{Actor, AdjustmentReason, Caller, IdError, OrderId, ProductId, Quantity, QuantityError, StockCount};
