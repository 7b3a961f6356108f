//! SQLSTATE and pool failures translated to the domain's store errors.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use inventory_domain::RepoError;

/// An error inside a write transaction: a database error, or a row count
/// that shows another writer got there first.
#[derive(Debug)]
pub(crate) enum TxError {
    Db(DieselError),
    Conflict,
    Invalid(String),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

impl From<TxError> for RepoError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Db(e) => db_error(e),
            TxError::Conflict => RepoError::Conflict,
            TxError::Invalid(m) => RepoError::Failure(m),
        }
    }
}

pub(crate) fn db_error(e: DieselError) -> RepoError {
    match e {
        DieselError::DatabaseError(kind, info) => match kind {
            // A duplicate key means another writer created the row first;
            // serialization failures and deadlocks are lost races too.
            DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure => RepoError::Conflict,
            DatabaseErrorKind::Unknown if info.message().contains("deadlock detected") => RepoError::Conflict,
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                RepoError::Unavailable(info.message().to_owned())
            }
            DatabaseErrorKind::CheckViolation => RepoError::Failure(format!(
                "check constraint {} refused the change: {}",
                info.constraint_name().unwrap_or("?"),
                info.message()
            )),
            _ => RepoError::Failure(info.message().to_owned()),
        },
        DieselError::BrokenTransactionManager => RepoError::Unavailable("broken transaction".into()),
        other => RepoError::Failure(other.to_string()),
    }
}

pub(crate) fn pool_error(
    e: bb8::RunError<diesel_async::pooled_connection::PoolError>,
    timeout: std::time::Duration,
) -> RepoError {
    match e {
        bb8::RunError::TimedOut => RepoError::Unavailable(crate::pool::acquire_timeout_message(timeout)),
        bb8::RunError::User(e) => RepoError::Unavailable(e.to_string()),
    }
}
