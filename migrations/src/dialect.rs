//! What differs between databases in the schema's history: every
//! migration asks [`Manager::dialect`](crate::Manager::dialect) instead of
//! naming a database. (The migrations sit below the store, so the store's
//! own `backend` folder cannot serve them.)

use sea_orm::DbBackend;

/// The database a migration runs on, by what it can do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialect(DbBackend);

impl Dialect {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Dialect(backend)
    }

    /// Whether the database can tell other connections that runs became
    /// claimable or ended, from triggers (PostgreSQL's `NOTIFY`).
    pub(crate) fn notifies(self) -> bool {
        self.0 == DbBackend::Postgres
    }

    /// Whether a declared length of a text column is enforced (SQLite
    /// stores any length), so that widening it is a migration of its own.
    pub(crate) fn enforces_text_lengths(self) -> bool {
        self.0 != DbBackend::Sqlite
    }
}
