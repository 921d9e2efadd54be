//! Statements on any connection: the pool, a transaction of the pool, or a
//! synchronous connection a backend keeps for itself (SQLite's writer
//! thread, see `backend/sqlite/writer`).
//!
//! Every statement room writes its SQL once and runs it through [`Db`];
//! rows come back as [`Row`]s, read by the types the code declares
//! ([`Decode`]); transactions are [`Txn`]s, which report the failure of
//! their `BEGIN`, `COMMIT` or savepoint where it happens. Nothing here knows
//! which database runs: what differs lives in `crate::backend`.

mod decode;
mod direct;

pub(crate) use decode::{Cell, Decode, FromRow, OwnedRow};
pub(crate) use direct::Direct;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, Statement, TransactionTrait,
};
use std::sync::Arc;

/// Where a statement runs. Cheap to copy.
#[derive(Clone, Copy)]
pub(crate) enum Db<'a> {
    /// The pool: each statement on a connection of its own, in autocommit.
    Pool(&'a DatabaseConnection),
    /// A transaction of the pool.
    Txn(&'a DatabaseTransaction),
    /// A backend's own synchronous connection, inside whatever transaction
    /// it has open.
    Direct(&'a dyn Direct),
}

impl std::fmt::Debug for Db<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Pool(_) => "Db::Pool",
            Db::Txn(_) => "Db::Txn",
            Db::Direct(_) => "Db::Direct",
        })
    }
}

impl<'a> From<&'a DatabaseConnection> for Db<'a> {
    fn from(c: &'a DatabaseConnection) -> Self {
        Db::Pool(c)
    }
}

impl<'a> From<&'a DatabaseTransaction> for Db<'a> {
    fn from(t: &'a DatabaseTransaction) -> Self {
        Db::Txn(t)
    }
}

/// Makes every text value of `stmt` storable on every backend: a NUL
/// character (which PostgreSQL's text cannot hold, and which SQLite's C
/// interface cuts strings at) becomes U+FFFD. Names and keys with NUL are
/// refused before they reach the store (they must match exactly); what
/// gets here with one is free text, such as an error message a step built
/// from its input, and it is kept readable instead of making the write fail
/// (which would lose the step's result and skip the run's compensations).
/// Reads go through the same mapping, so a value matches itself.
fn storable(mut stmt: Statement) -> Statement {
    fn fix(v: &mut sea_orm::Value) {
        match v {
            sea_orm::Value::String(Some(s)) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
            sea_orm::Value::Array(_, Some(items)) => items.iter_mut().for_each(fix),
            _ => {}
        }
    }
    if let Some(values) = stmt.values.as_mut() {
        values.0.iter_mut().for_each(fix);
    }
    stmt
}

impl Db<'_> {
    /// Runs a statement and returns how many rows it changed (a statement
    /// with `RETURNING` runs whole; its rows are dropped).
    pub(crate) async fn exec(self, stmt: Statement) -> Result<u64, DbErr> {
        let stmt = storable(stmt);
        match self {
            Db::Pool(c) => Ok(c.execute_raw(stmt).await?.rows_affected()),
            Db::Txn(t) => Ok(t.execute_raw(stmt).await?.rows_affected()),
            Db::Direct(d) => d.execute(&stmt),
        }
    }

    /// Runs a query and returns its first row, if any.
    pub(crate) async fn one(self, stmt: Statement) -> Result<Option<Row>, DbErr> {
        let stmt = storable(stmt);
        match self {
            Db::Pool(c) => Ok(c.query_one_raw(stmt).await?.map(Row::Orm)),
            Db::Txn(t) => Ok(t.query_one_raw(stmt).await?.map(Row::Orm)),
            Db::Direct(d) => Ok(d.query(&stmt)?.into_iter().next().map(Row::Owned)),
        }
    }

    /// Runs a query and returns its rows.
    pub(crate) async fn all(self, stmt: Statement) -> Result<Vec<Row>, DbErr> {
        let stmt = storable(stmt);
        match self {
            Db::Pool(c) => Ok(c.query_all_raw(stmt).await?.into_iter().map(Row::Orm).collect()),
            Db::Txn(t) => Ok(t.query_all_raw(stmt).await?.into_iter().map(Row::Orm).collect()),
            Db::Direct(d) => Ok(d.query(&stmt)?.into_iter().map(Row::Owned).collect()),
        }
    }

    /// Runs statements without values, one after the other.
    #[cfg(test)]
    pub(crate) async fn batch(self, sql: &str) -> Result<(), DbErr> {
        match self {
            Db::Pool(c) => c.execute_unprepared(sql).await.map(|_| ()),
            Db::Txn(t) => t.execute_unprepared(sql).await.map(|_| ()),
            Db::Direct(d) => d.execute_batch(sql),
        }
    }
}

/// One row of a query's answer.
#[derive(Debug)]
pub(crate) enum Row {
    /// From the pool (sea-orm's row, read by its own conversions).
    Orm(QueryResult),
    /// From a direct connection.
    Owned(OwnedRow),
}

impl Row {
    /// Column `col` of this row as a `T` (the `pre` of sea-orm's API is
    /// kept so that calls read as they always did; it is always empty).
    pub(crate) fn try_get<T: Decode>(&self, pre: &str, col: &str) -> Result<T, DbErr> {
        match self {
            Row::Orm(r) => r.try_get::<T>(pre, col),
            Row::Owned(r) => r.get(col),
        }
    }

    /// The row as a `T` (an entity's model, read column by column).
    pub(crate) fn to<T: FromRow>(&self) -> Result<T, DbErr> {
        T::from_row(self)
    }
}

/// A write transaction: of the pool, or of a backend's direct connection.
/// Dropped without [`Txn::commit`], it rolls back.
#[derive(Debug)]
pub(crate) enum Txn {
    /// A transaction of the pool.
    Orm(DatabaseTransaction),
    /// A transaction (or savepoint) of a direct connection.
    Direct(DirectTxn),
}

impl From<DatabaseTransaction> for Txn {
    fn from(t: DatabaseTransaction) -> Self {
        Txn::Orm(t)
    }
}

impl Txn {
    /// Begins a transaction on a direct connection.
    pub(crate) fn begin_direct(conn: &Arc<dyn Direct>) -> Result<Txn, DbErr> {
        conn.begin()?;
        Ok(Txn::Direct(DirectTxn { conn: Arc::clone(conn), open: true }))
    }

    /// Where this transaction's statements run.
    pub(crate) fn db(&self) -> Db<'_> {
        match self {
            Txn::Orm(t) => Db::Txn(t),
            Txn::Direct(d) => Db::Direct(d.conn.as_ref()),
        }
    }

    /// A savepoint inside this transaction.
    pub(crate) async fn savepoint(&self) -> Result<Txn, DbErr> {
        match self {
            Txn::Orm(t) => Ok(Txn::Orm(t.begin().await?)),
            Txn::Direct(d) => Txn::begin_direct(&d.conn),
        }
    }

    /// Commits (or releases the savepoint); its failure is the answer.
    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        match self {
            Txn::Orm(t) => t.commit().await,
            Txn::Direct(mut d) => {
                d.open = false;
                d.conn.end(true)
            }
        }
    }

    /// Rolls back (to the savepoint).
    pub(crate) async fn rollback(self) -> Result<(), DbErr> {
        match self {
            Txn::Orm(t) => t.rollback().await,
            Txn::Direct(mut d) => {
                d.open = false;
                d.conn.end(false)
            }
        }
    }
}

/// A transaction level of a direct connection (see [`Txn::Direct`]).
pub(crate) struct DirectTxn {
    conn: Arc<dyn Direct>,
    open: bool,
}

impl std::fmt::Debug for DirectTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectTxn").field("open", &self.open).finish()
    }
}

impl Drop for DirectTxn {
    fn drop(&mut self) {
        if self.open {
            // As a dropped pool transaction: rolled back, its failure
            // left to the connection (which fails the job with it).
            let _ = self.conn.end(false);
        }
    }
}

// The store's futures hold these across awaits and must stay `Send`.
const _: () = {
    const fn send<T: Send>() {}
    const fn sync<T: Sync>() {}
    send::<Db<'static>>();
    sync::<Db<'static>>();
    send::<Txn>();
    send::<Row>();
};
