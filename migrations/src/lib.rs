//! Schema migrations for Hydra.
//!
//! One file per migration, named `mYYYYMMDD_HHMMSS_what.rs`; a file name is the
//! migration's identity in the `seaql_migrations` table and is never renamed
//! once released. The table keeps the layout SeaORM's migrator gave it
//! (`version` text primary key, `applied_at` seconds), so databases made by
//! earlier versions, which used that migrator, carry on unchanged.
//!
//! [`migrate`] applies what is pending inside the caller's transaction:
//! `hydra_store::Store` opens it write-locked (an advisory lock on
//! PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so concurrent migrators queue and
//! a failed migration leaves nothing behind. Migrations only go up: there is
//! no rollback.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use sea_orm::sea_query::{ColumnDef, Query, Table};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement};

mod dialect;
mod m20261122_000001_create_schema;
mod m20261122_000002_notify_runs;
mod m20261201_000003_notify_ended;
mod m20261201_000004_worker_rows_text_key;
mod m20261201_000005_signals;
mod m20261201_000006_events;
mod m20261201_000007_children;
mod m20261201_000008_child_policy;
mod m20261201_000009_typed_errors_and_compensation;
mod m20261201_000010_versions;
mod m20261201_000011_operations;
mod m20261207_000012_partial_indexes;
mod m20261207_000013_notify_cancel;

/// What every migration file uses.
mod prelude {
    pub(crate) use crate::Manager;
    pub(crate) use sea_orm::sea_query::*;
    pub(crate) use sea_orm::{ConnectionTrait, DbErr, DeriveIden};
}

/// The table that records applied migrations.
pub const MIGRATIONS_TABLE: &str = "seaql_migrations";

type Up = for<'a> fn(&'a Manager<'a>) -> Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + 'a>>;

macro_rules! migrations {
    ($($m:ident),* $(,)?) => {
        /// Every migration of the Hydra schema, in order: its name and its `up`.
        const MIGRATIONS: &[(&str, Up)] = &[$((stringify!($m), |m| Box::pin($m::up(m)))),*];
    };
}

migrations!(
    m20261122_000001_create_schema,
    m20261122_000002_notify_runs,
    m20261201_000003_notify_ended,
    m20261201_000004_worker_rows_text_key,
    m20261201_000005_signals,
    m20261201_000006_events,
    m20261201_000007_children,
    m20261201_000008_child_policy,
    m20261201_000009_typed_errors_and_compensation,
    m20261201_000010_versions,
    m20261201_000011_operations,
    m20261207_000012_partial_indexes,
    m20261207_000013_notify_cancel,
);

/// The names of every migration this version knows, in order.
pub fn names() -> impl Iterator<Item = &'static str> {
    MIGRATIONS.iter().map(|(name, _)| *name)
}

/// The connection a migration runs its statements on.
#[derive(Debug)]
pub(crate) struct Manager<'c> {
    db: &'c DatabaseTransaction,
}

impl Manager<'_> {
    /// What the database can do (see `dialect.rs`).
    pub(crate) fn dialect(&self) -> dialect::Dialect {
        dialect::Dialect::new(self.db.get_database_backend())
    }

    pub(crate) fn get_connection(&self) -> &DatabaseTransaction {
        self.db
    }

    async fn run<S: sea_orm::StatementBuilder + Sync>(&self, stmt: S) -> Result<(), DbErr> {
        self.db.execute(&stmt).await.map(|_| ())
    }

    pub(crate) async fn create_table(&self, stmt: sea_orm::sea_query::TableCreateStatement) -> Result<(), DbErr> {
        self.run(stmt).await
    }

    pub(crate) async fn alter_table(&self, stmt: sea_orm::sea_query::TableAlterStatement) -> Result<(), DbErr> {
        self.run(stmt).await
    }

    pub(crate) async fn create_index(&self, stmt: sea_orm::sea_query::IndexCreateStatement) -> Result<(), DbErr> {
        self.run(stmt).await
    }

    pub(crate) async fn drop_index(&self, stmt: sea_orm::sea_query::IndexDropStatement) -> Result<(), DbErr> {
        self.run(stmt).await
    }
}

/// The versions recorded in the migrations table (an error when the table
/// does not exist yet or cannot be read). A row whose version is not text
/// names no migration of any version and is passed over.
pub async fn applied<C: ConnectionTrait>(db: &C) -> Result<HashSet<String>, DbErr> {
    let sql = format!("SELECT version FROM {MIGRATIONS_TABLE}");
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<String>("", "version").ok()).collect())
}

/// Why [`migrate`] failed: the database's error as it came (so a caller can
/// tell a transient one, such as a lost connection or a deadlock, and try
/// again), and the migration that was running, if one was.
#[derive(Debug)]
pub struct MigrateError {
    /// The migration that failed; `None` for the bookkeeping around them.
    pub migration: Option<&'static str>,
    /// The database's error.
    pub source: DbErr,
}

impl From<DbErr> for MigrateError {
    fn from(source: DbErr) -> Self {
        MigrateError { migration: None, source }
    }
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.migration {
            Some(name) => write!(f, "migration {name}: {}", self.source),
            None => self.source.fmt(f),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Applies every pending migration, in order, on `txn`, recording each in the
/// migrations table (made if missing). A database that records a migration
/// this version does not know, while missing one it does, was migrated by
/// another line of versions: that is refused, and nothing changes.
pub async fn migrate(txn: &DatabaseTransaction) -> Result<(), MigrateError> {
    let mut create = Table::create();
    create
        .table(MIGRATIONS_TABLE)
        .if_not_exists()
        .col(ColumnDef::new("version").string().not_null().primary_key())
        .col(ColumnDef::new("applied_at").big_integer().not_null());
    txn.execute(&create).await?;
    let done = applied(txn).await?;
    let unknown: Vec<&String> = done.iter().filter(|v| !names().any(|n| n == v.as_str())).collect();
    let pending: Vec<&(&str, Up)> = MIGRATIONS.iter().filter(|(name, _)| !done.contains(*name)).collect();
    if pending.is_empty() {
        return Ok(());
    }
    if !unknown.is_empty() {
        return Err(MigrateError::from(DbErr::Custom(format!(
            "the database records migrations this version of Hydra does not know ({unknown:?}) \
             and lacks {:?}: it was migrated by another line of versions",
            pending.iter().map(|(name, _)| *name).collect::<Vec<_>>()
        ))));
    }
    let manager = Manager { db: txn };
    for (name, up) in pending {
        tracing::info!(migration = name, "applying migration");
        up(&manager).await.map_err(|source| MigrateError { migration: Some(name), source })?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut insert = Query::insert();
        insert
            .into_table(MIGRATIONS_TABLE)
            .columns(["version", "applied_at"])
            .values([(*name).into(), i64::try_from(now).unwrap_or(i64::MAX).into()])
            .map_err(|e| DbErr::Custom(format!("recording migration {name}: {e}")))?;
        txn.execute(&insert).await?;
    }
    Ok(())
}
