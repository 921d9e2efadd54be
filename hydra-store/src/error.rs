//! The store's error type.

use crate::ids::{ExecutionId, FencingToken, StepId};
use std::time::Duration;

/// Everything a [`crate::Store`] operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL could not be parsed.
    #[error("invalid database URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given (with any password removed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL names a database Hydra does not support.
    #[error(
        "unsupported database scheme `{scheme}` in `{url}`: use sqlite://PATH?mode=rwc, sqlite::memory: or postgres://…"
    )]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
        /// The URL as given (with any password removed).
        url: String,
    },
    /// The database could not be reached or opened within the connect timeout.
    #[error("could not connect to `{url}` within {timeout:?}: {reason}")]
    Connect {
        /// The URL as given (with any password removed).
        url: String,
        /// The connect timeout that applied.
        timeout: Duration,
        /// The underlying cause, as reported by the driver.
        reason: String,
    },
    /// Applying the schema migrations failed.
    #[error("schema migration failed: {0}")]
    Migration(#[source] sea_orm::DbErr),
    /// The caller no longer holds the lease of this execution: another worker
    /// claimed it (the fencing token moved on), or the run was ended or
    /// released. The write was not applied.
    #[error("lease lost on execution {execution} (token {token} is no longer current)")]
    LeaseLost {
        /// The execution.
        execution: ExecutionId,
        /// The token the caller presented.
        token: FencingToken,
    },
    /// A run's end was refused because a cancel was accepted for the run
    /// first (see `Checkpoint::unless_cancel_requested`): the lease holder
    /// ends it cancelled instead. Nothing was written.
    #[error("execution {execution}: a cancel was accepted before its end")]
    CancelRequested {
        /// The execution.
        execution: ExecutionId,
    },
    /// A result for this (execution, step) is already recorded; a step result
    /// is recorded once.
    #[error("step `{step}` of execution {execution} already has a recorded result")]
    StepAlreadyRecorded {
        /// The execution.
        execution: ExecutionId,
        /// The step.
        step: StepId,
    },
    /// Another step is already recorded at this position of the run.
    #[error("execution {execution} already has a different step recorded at position {position}")]
    PositionTaken {
        /// The execution.
        execution: ExecutionId,
        /// The position in the run's step sequence.
        position: u32,
    },
    /// No such execution in this namespace.
    #[error("execution {execution} not found in namespace `{namespace}`")]
    ExecutionNotFound {
        /// The namespace searched.
        namespace: String,
        /// The execution.
        execution: ExecutionId,
    },
    /// The run has ended: it takes no more signals.
    #[error("execution {execution} has ended ({status}) and takes no more signals")]
    RunEnded {
        /// The execution.
        execution: ExecutionId,
        /// How it ended.
        status: crate::model::ExecutionStatus,
    },
    /// An operation on a run that does not apply to it as it is (a retry
    /// of a running run, a fork past its history); nothing was changed.
    #[error("{reason}")]
    Refused {
        /// The execution.
        execution: ExecutionId,
        /// Why, in words for the operator.
        reason: String,
    },
    /// A move of a database that cannot go ahead (live leases in the
    /// source, a target in use) or whose copy did not verify; nothing was
    /// written.
    #[error("{0}")]
    MoveRefused(String),
    /// A value read from the database is not one this version understands
    /// (for example an unknown status written by a newer version).
    #[error("corrupt row in `{table}`: {reason}")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// This database was moved to another (`hydra move`, which seals its
    /// source): it refuses to be opened and every write. Nothing was
    /// written.
    #[error(
        "this database was moved to {to} (`hydra move` sealed it): point engines, workers and tools at that \
         database"
    )]
    Moved {
        /// The database it moved to (its URL, any password hidden).
        to: String,
    },
    /// The database returned an error.
    #[error("database error: {0}")]
    Database(sea_orm::DbErr),
    /// A transient failure (lost connection, locked database) that ended a
    /// group commit without applying it; retrying may succeed.
    #[error("transient database failure: {0}")]
    Transient(String),
}

impl From<sea_orm::DbErr> for StoreError {
    fn from(e: sea_orm::DbErr) -> Self {
        match crate::store::moved_in(&e.to_string()) {
            Some(to) => StoreError::Moved { to },
            None => StoreError::Database(e),
        }
    }
}

impl StoreError {
    /// True when the write was refused because the caller's lease is gone;
    /// the caller must stop working on that execution.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, StoreError::LeaseLost { .. })
    }

    /// True when the same call may succeed if tried again later: a lost or
    /// busy connection, a locked SQLite file, a serialization failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { .. } | StoreError::Transient(_) => true,
            StoreError::Database(e) => is_transient(e),
            _ => false,
        }
    }
}

/// Whether a database error is a unique-constraint violation, from the
/// pool's drivers or from the SQLite writer thread's connection (whose
/// errors sea-orm's `sql_err` does not recognise).
pub(crate) fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, SqlErr};
    if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
        return true;
    }
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(e.as_ref(), sea_orm::sqlx::Error::Database(d) if d.is_unique_violation())
        }
        _ => false,
    }
}

/// Whether a database error is transient (connection trouble, lock
/// contention) rather than a statement that will always fail.
pub(crate) fn is_transient(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            use sea_orm::sqlx::Error as SqlxError;
            match e.as_ref() {
                SqlxError::Io(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed
                | SqlxError::Protocol(_) => true,
                // Each backend's codes are in its folder.
                SqlxError::Database(d) => crate::backend::is_transient_code(&d.code().unwrap_or_default()),
                _ => false,
            }
        }
        DbErr::Exec(RuntimeErr::Internal(msg)) | DbErr::Query(RuntimeErr::Internal(msg)) => {
            msg.contains("connection") || msg.contains("closed")
        }
        _ => false,
    }
}
