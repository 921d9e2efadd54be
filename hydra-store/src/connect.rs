//! Opening a database by URL, with bounded connect time, and migrating it:
//! what every backend shares (each backend's own settings live in
//! `crate::backend`).

use crate::backend::Dialect;
use crate::error::StoreError;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use std::time::Duration;

/// How to open a [`crate::Store`]. Build with [`StoreOptions::new`] and the
/// setters; defaults suit a laptop and a production worker alike.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreOptions {
    pub(crate) url: String,
    pub(crate) max_connections: Option<u32>,
    pub(crate) connect_timeout: Duration,
    pub(crate) busy_timeout: Duration,
    pub(crate) writer_thread: bool,
    pub(crate) durability: Durability,
    pub(crate) create_if_missing: bool,
}

/// What an acknowledged write survives. Hydra answers a caller (a start, a
/// signal, a recorded step) only after the database committed the write;
/// this says what that commit is worth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The default: an acknowledged write survives a crash of the process,
    /// of the operating system and a power loss. SQLite: `synchronous =
    /// FULL` on every connection (each commit syncs the WAL before it
    /// returns). PostgreSQL: the server's `synchronous_commit`, which is
    /// `on` unless its administrator turned it off (then this store reports
    /// [`Durability::Relaxed`] from [`crate::Store::durability`]).
    #[default]
    Full,
    /// Faster commits that a power loss or an operating-system crash can
    /// roll back: the last writes acknowledged before it may be gone
    /// afterwards (starts, signals, step results: a step body then runs
    /// again). A crash of the process alone loses nothing. The database is
    /// never corrupted. SQLite: `synchronous = NORMAL` (the WAL is synced at
    /// checkpoints only). PostgreSQL: `synchronous_commit = off` for this
    /// store's connections (the server acknowledges before its WAL is
    /// flushed; at most about three times `wal_writer_delay`, 600 ms by
    /// default, of commits can be lost in a server crash).
    Relaxed,
    /// What [`crate::Store::durability`] reports for a database in memory
    /// (`sqlite::memory:`): nothing survives the process. Asked for as an
    /// option, it is taken as [`Durability::Relaxed`].
    Volatile,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Full => "full",
            Durability::Relaxed => "relaxed",
            Durability::Volatile => "volatile",
        })
    }
}

impl StoreOptions {
    /// Options for `url`: `sqlite://PATH?mode=rwc` (a file, created if
    /// missing), `sqlite::memory:`, or `postgres://user:pass@host:port/db`.
    ///
    /// Defaults: connect timeout 5 s; SQLite busy timeout 5 s; pool size 8
    /// for a SQLite file, 1 for `sqlite::memory:` (each connection to an
    /// in-memory database would see its own empty database), 16 for
    /// PostgreSQL; a SQLite file's group commits and starts on its writer
    /// thread ([`StoreOptions::writer_thread`]); durable commits
    /// ([`Durability::Full`]).
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: None,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            writer_thread: true,
            durability: Durability::Full,
            create_if_missing: true,
        }
    }

    /// The most pooled connections (ignored for `sqlite::memory:`, which is
    /// always 1). Workers and their concurrency do not need a connection
    /// each (a run holds one only while a statement runs; PostgreSQL's
    /// `LISTEN` uses one connection per store, outside the pool); each
    /// transactional step holds one while its body runs.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// How long connecting may take before it fails with
    /// [`StoreError::Connect`]. Also bounds waiting for a pooled connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a SQLite statement waits for another process's write lock
    /// before failing with a retryable busy error.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// SQLite file: whether the hot write transactions (group commits,
    /// starts) run on a dedicated thread with a synchronous connection of
    /// its own, one hand-off per transaction, rather than through the pool,
    /// one hand-off per statement. Default on; off is for comparing the two.
    /// Ignored by PostgreSQL, `sqlite::memory:`, read-only files and file
    /// URLs with parameters other than `mode`.
    pub fn writer_thread(mut self, on: bool) -> Self {
        self.writer_thread = on;
        self
    }

    /// SQLite file: whether a missing file is created (default on, as the
    /// embedded default should). Off, opening a file that does not exist
    /// is [`StoreError::InvalidUrl`] saying so: for tools that read an
    /// existing database (a move's source), where a mistyped path must not
    /// become a new empty database. PostgreSQL never creates a database.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// What an acknowledged write survives (default
    /// [`Durability::Full`]: a power loss). [`Durability::Relaxed`] trades
    /// the last acknowledged writes before a power loss or an
    /// operating-system crash for faster commits.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// The URL with any password replaced, safe for error messages and logs.
pub fn redact_url(url: &str) -> String {
    redact(url)
}

pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// An invalid-URL error for `url`.
pub(crate) fn invalid(url: &str, reason: &str) -> StoreError {
    StoreError::InvalidUrl { url: redact(url), reason: reason.to_owned() }
}

/// Connects with `co` within the options' connect timeout. With
/// `retry_transient`, a transient failure is tried again until then (a
/// brand-new SQLite file switched to WAL by several processes at once
/// reports "locked" for a moment). Returns the pool and the deadline
/// the connect was held to (migrations get a bound past it).
pub(crate) async fn connect(
    co: ConnectOptions,
    opts: &StoreOptions,
    retry_transient: bool,
) -> Result<(DatabaseConnection, tokio::time::Instant), StoreError> {
    let timeout = opts.connect_timeout;
    let shown = redact(&opts.url);
    let connect_err = |reason: String| StoreError::Connect { url: shown.clone(), timeout, reason };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // The driver's own timeout covers refused and silent servers; the
        // outer one is a backstop so no path can hang past the deadline.
        let attempt = tokio::time::timeout_at(deadline + Duration::from_secs(1), Database::connect(co.clone())).await;
        match attempt {
            Ok(Ok(db)) => return Ok((db, deadline)),
            Ok(Err(e))
                if retry_transient && crate::error::is_transient(&e) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => return Err(connect_err(describe(&e))),
            Err(_) => return Err(connect_err("timed out".into())),
        }
    }
}

fn describe(e: &sea_orm::DbErr) -> String {
    explain(e.to_string())
}

/// A connect error's text, with what to do about it where that is known.
fn explain(text: String) -> String {
    if text.contains("PoolTimedOut") || text.contains("pool timed out") {
        format!("{text} (the server did not accept a connection in time: is it running and reachable?)")
    } else if text.contains("without TLS support") {
        format!("{text} (the URL asks for TLS: build hydra-runtime or hydra-store with the `tls` feature)")
    } else {
        text
    }
}

/// Applies pending migrations. Several processes may start at once, so the
/// migrator runs inside a write transaction holding the backend's
/// migration lock (see [`Dialect::migration_lock`]).
pub(crate) async fn migrate(
    db: &DatabaseConnection,
    dialect: &dyn Dialect,
    deadline: tokio::time::Instant,
) -> Result<(), StoreError> {
    // A database a move sealed is refused before anything touches it.
    if let Some(to) = crate::store::moved_to(db, dialect).await? {
        return Err(StoreError::Moved { to });
    }
    // The usual case, a worker starting on a migrated database, reads and
    // takes no write lock (on SQLite the write lock is the whole database's).
    if all_applied(db).await {
        return Ok(());
    }
    let once = || async {
        let txn = dialect.begin(db).await?;
        dialect.migration_lock(&txn).await?;
        hydra_migrations::migrate(&txn).await?;
        Ok::<(), hydra_migrations::MigrateError>(txn.commit().await?)
    };
    // SQLite's busy handler is not fair: under a steady stream of writers
    // (other workers), one `BEGIN IMMEDIATE` can wait out its whole busy
    // timeout. Such a failure is transient: try again until the bound.
    let run = async {
        loop {
            match once().await {
                Err(e) if crate::error::is_transient(&e.source) => {
                    tracing::debug!(error = %e, "migration lock busy; trying again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    };
    // Migration may legitimately wait for another process's migration; allow
    // it a generous bound, not an unbounded one.
    match tokio::time::timeout_at(deadline + Duration::from_secs(30), run).await {
        Ok(Ok(())) => Ok(()),
        // Not transient: the migration that failed goes into the text.
        Ok(Err(e)) if e.migration.is_some() => Err(StoreError::Migration(sea_orm::DbErr::Custom(e.to_string()))),
        Ok(Err(e)) => Err(StoreError::Migration(e.source)),
        Err(_) => Err(StoreError::Migration(sea_orm::DbErr::Custom("timed out waiting for the migration lock".into()))),
    }
}

/// Whether every migration of this version is recorded as applied (false
/// on any doubt, such as a database without the migrations table).
async fn all_applied(db: &DatabaseConnection) -> bool {
    match hydra_migrations::applied(db).await {
        Ok(applied) => hydra_migrations::names().all(|name| applied.contains(name)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_needs_tls_in_a_build_without_it_says_which_feature() {
        let sqlx = "error communicating with database: TLS upgrade required by connect options \
                    but SQLx was built without TLS support enabled";
        assert!(explain(sqlx.to_owned()).contains("the `tls` feature"), "{}", explain(sqlx.to_owned()));
        assert_eq!(explain("password authentication failed".to_owned()), "password authentication failed");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
    }
}
