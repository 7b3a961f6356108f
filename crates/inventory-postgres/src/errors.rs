//! The one fault table: every PostgreSQL and pool failure classified once,
//! into the domain's store errors.
//!
//! - **Connection-level** failures (SQLSTATE class 08, 57P01/57P02/57P03,
//!   53300, a read-only node after a failover, a closed or reset connection,
//!   a pool that found no connection in time) are [`RepoError::Unavailable`]:
//!   transient, retried by the consumer for as long as they last, 503 over HTTP.
//! - **Concurrency** failures (40001, 40P01, 55P03 and a duplicate key, which
//!   means another writer created the row first) are [`RepoError::Conflict`]:
//!   the use case reloads and tries again.
//! - Anything else is [`RepoError::Failure`]: retrying will not fix it.
//!
//! diesel-async keeps the SQLSTATE only for the codes diesel has a kind for;
//! for the others it hands on the server's message alone. Those rows are
//! therefore matched on PostgreSQL's own (untranslated, `lc_messages=C`)
//! message text, which the server has kept stable across releases.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use inventory_domain::RepoError;

/// What a failure means for whoever asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The connection or the server is (for now) unusable: try again later, elsewhere.
    Connection,
    /// A race with another transaction: reload and try again.
    Concurrency,
    /// The request or the data is at fault: retrying changes nothing.
    Permanent,
}

/// Failures diesel reports as `DatabaseErrorKind::Unknown`: SQLSTATE (for the
/// reader), how the server's message begins, and the class.
pub(crate) const BY_MESSAGE: &[(&str, &str, Fault)] = &[
    (
        "57P01",
        "terminating connection due to administrator command",
        Fault::Connection,
    ),
    (
        "57P01",
        "terminating connection due to conflict with recovery",
        Fault::Connection,
    ),
    (
        "57P01",
        "terminating connection due to immediate shutdown command",
        Fault::Connection,
    ),
    (
        "57P01",
        "terminating connection due to unexpected postmaster exit",
        Fault::Connection,
    ),
    (
        "57P05",
        "terminating connection due to idle-session timeout",
        Fault::Connection,
    ),
    (
        "57P02",
        "terminating connection because of crash of another server process",
        Fault::Connection,
    ),
    ("57P03", "the database system is starting up", Fault::Connection),
    ("57P03", "the database system is shutting down", Fault::Connection),
    ("57P03", "the database system is in recovery mode", Fault::Connection),
    (
        "57P03",
        "the database system is not yet accepting connections",
        Fault::Connection,
    ),
    (
        "57P03",
        "the database system is not accepting connections",
        Fault::Connection,
    ),
    ("53300", "sorry, too many clients already", Fault::Connection),
    ("53300", "remaining connection slots are reserved", Fault::Connection),
    ("08006", "connection to server", Fault::Connection),
    ("08P01", "server closed the connection unexpectedly", Fault::Connection),
    ("40P01", "deadlock detected", Fault::Concurrency),
    ("55P03", "canceling statement due to lock timeout", Fault::Concurrency),
    ("55P03", "could not obtain lock on row", Fault::Concurrency),
];

/// The class of a diesel error.
pub(crate) fn classify(e: &DieselError) -> Fault {
    match e {
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure => Fault::Concurrency,
            // No SQLSTATE at all: the socket failed (tokio-postgres' I/O errors, "connection closed").
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => Fault::Connection,
            // 25006: the node was demoted (or is a standby); a new connection finds the primary.
            DatabaseErrorKind::ReadOnlyTransaction => Fault::Connection,
            DatabaseErrorKind::Unknown => BY_MESSAGE
                .iter()
                .find(|(_, message, _)| info.message().starts_with(message))
                .map_or(Fault::Permanent, |(_, _, fault)| *fault),
            _ => Fault::Permanent,
        },
        // A transaction whose connection died mid-way cannot be rolled back: the connection is gone.
        DieselError::BrokenTransactionManager => Fault::Connection,
        _ => Fault::Permanent,
    }
}

/// An error inside a write transaction: a database error, or a row count
/// that shows another writer got there first.
#[derive(Debug)]
pub(crate) enum TxError {
    Db(DieselError),
    Conflict,
    Invalid(String),
    /// The broker did not take the events: as transient as a database outage.
    Publish(inventory_domain::PublishError),
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
            TxError::Invalid(m) => RepoError::failure(m),
            TxError::Publish(e) => RepoError::Unavailable(Box::new(e)),
        }
    }
}

/// A connection that answered "read-only" (25006) is on a standby, or on a primary demoted since
/// it was opened: it must not go back to the pool. Marking its transaction state broken makes the
/// pool drop it (`has_broken`), and the next connection finds the primary again
/// (`target_session_attrs=read-write`).
pub(crate) fn discard_if_read_only(conn: &mut diesel_async::AsyncPgConnection, e: &TxError) {
    use diesel_async::TransactionManager;
    if let TxError::Db(DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _)) = e {
        tracing::warn!("the database answered read-only (a standby or a demoted primary): dropping the connection");
        metrics::counter!("db_pool_broken_connections_total").increment(1);
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::TransactionManager::transaction_manager_status_mut(conn)
            .set_in_error();
    }
}

/// A check constraint's refusal, with the constraint's name in front.
#[derive(Debug, thiserror::Error)]
#[error("check constraint {constraint} refused the change")]
struct CheckRefused {
    constraint: String,
    #[source]
    cause: DieselError,
}

pub(crate) fn db_error(e: DieselError) -> RepoError {
    match classify(&e) {
        Fault::Connection => RepoError::Unavailable(Box::new(e)),
        Fault::Concurrency => RepoError::Conflict,
        Fault::Permanent => match &e {
            DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info) => {
                let constraint = info.constraint_name().unwrap_or("?").to_owned();
                RepoError::Failure(Box::new(CheckRefused { constraint, cause: e }))
            }
            _ => RepoError::Failure(Box::new(e)),
        },
    }
}

/// No connection within the pool's acquire timeout.
#[derive(Debug, thiserror::Error)]
#[error("no database connection within {} ms", .0.as_millis())]
pub(crate) struct AcquireTimeout(pub(crate) std::time::Duration);

pub(crate) fn pool_error(
    e: bb8::RunError<diesel_async::pooled_connection::PoolError>,
    timeout: std::time::Duration,
) -> RepoError {
    // Either way no connection could be had: the server is down, refusing
    // (57P03, 53300) or slower than the acquire timeout.
    match e {
        bb8::RunError::TimedOut => RepoError::Unavailable(Box::new(AcquireTimeout(timeout))),
        bb8::RunError::User(e) => RepoError::Unavailable(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn every_message_row_classifies_as_its_table_says() {
        for (code, message, fault) in BY_MESSAGE {
            // As the server words it, with the rest of its sentence.
            let e = db(DatabaseErrorKind::Unknown, &format!("{message} (detail)"));
            assert_eq!(classify(&e), *fault, "{code} {message}");
        }
    }

    #[test]
    fn kinds_diesel_maps_classify_by_kind() {
        let table = [
            (DatabaseErrorKind::SerializationFailure, Fault::Concurrency),
            (DatabaseErrorKind::UniqueViolation, Fault::Concurrency),
            (DatabaseErrorKind::ClosedConnection, Fault::Connection),
            (DatabaseErrorKind::UnableToSendCommand, Fault::Connection),
            (DatabaseErrorKind::ReadOnlyTransaction, Fault::Connection),
            (DatabaseErrorKind::CheckViolation, Fault::Permanent),
            (DatabaseErrorKind::ForeignKeyViolation, Fault::Permanent),
            (DatabaseErrorKind::NotNullViolation, Fault::Permanent),
        ];
        for (kind, fault) in table {
            assert_eq!(classify(&db(kind, "whatever")), fault, "{kind:?}");
        }
        assert_eq!(classify(&DieselError::BrokenTransactionManager), Fault::Connection);
        assert_eq!(classify(&DieselError::NotFound), Fault::Permanent);
        assert_eq!(
            classify(&db(DatabaseErrorKind::Unknown, "column \"x\" does not exist")),
            Fault::Permanent
        );
    }

    #[test]
    fn classes_become_the_domain_errors_with_their_cause() {
        let e = db_error(db(
            DatabaseErrorKind::Unknown,
            "terminating connection due to administrator command",
        ));
        assert!(matches!(e, RepoError::Unavailable(_)), "{e:?}");
        assert_eq!(
            inventory_domain::ErrorChain(&e).to_string(),
            "store unavailable: terminating connection due to administrator command"
        );
        assert!(matches!(
            db_error(db(DatabaseErrorKind::Unknown, "deadlock detected")),
            RepoError::Conflict
        ));
        let e = db_error(db(DatabaseErrorKind::CheckViolation, "new row violates"));
        assert_eq!(
            inventory_domain::ErrorChain(&e).to_string(),
            "store failure: check constraint ? refused the change: new row violates"
        );
        let timeout = std::time::Duration::from_millis(250);
        let e = pool_error(bb8::RunError::TimedOut, timeout);
        assert_eq!(
            inventory_domain::ErrorChain(&e).to_string(),
            "store unavailable: no database connection within 250 ms"
        );
    }
}
