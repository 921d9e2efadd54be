//! Opening a database by URL, with bounded connect time, and migrating it.

use crate::error::StoreError;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, TransactionOptions,
    TransactionTrait,
};
use std::time::Duration;

/// Which database a [`crate::Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite: a file in WAL mode, or in memory.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

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
}

impl StoreOptions {
    /// Options for `url`: `sqlite://PATH?mode=rwc` (a file, created if
    /// missing), `sqlite::memory:`, or `postgres://user:pass@host:port/db`.
    ///
    /// Defaults: connect timeout 5 s; SQLite busy timeout 5 s; pool size 8
    /// for a SQLite file, 1 for `sqlite::memory:` (each connection to an
    /// in-memory database would see its own empty database), 16 for
    /// PostgreSQL; a SQLite file's group commits and starts on its writer
    /// thread ([`StoreOptions::writer_thread`]).
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: None,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            writer_thread: true,
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
}

/// What a URL points at.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `url` normalised (a mode always given); `plain` when the path has no
    /// escapes and the only parameter is a read-write `mode`, so that the
    /// store's writer thread can open `path` itself.
    SqliteFile {
        url: String,
        path: String,
        plain: bool,
    },
    SqliteMemory,
    Postgres,
}

/// The URL with any password replaced, safe for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn classify(url: &str) -> Result<Target, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl { url: redact(url), reason: reason.to_owned() };
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(invalid("the URL is empty"));
    }
    if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        if rest == ":memory:" || rest.contains("mode=memory") || rest == "//:memory:" {
            return Ok(Target::SqliteMemory);
        }
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(invalid("no file path after `sqlite://`"));
        }
        let parent = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent
            && !dir.is_dir()
        {
            return Err(invalid(&format!("directory `{}` does not exist", dir.display())));
        }
        // A file URL without a mode creates the file, as the embedded default should.
        let query = if query.split('&').any(|kv| kv.starts_with("mode=")) {
            query.to_owned()
        } else if query.is_empty() {
            "mode=rwc".to_owned()
        } else {
            format!("{query}&mode=rwc")
        };
        let plain = !path.contains('%')
            && query.split('&').filter(|kv| !kv.is_empty()).all(|kv| kv == "mode=rwc" || kv == "mode=rw");
        return Ok(Target::SqliteFile { url: format!("sqlite://{path}?{query}"), path: path.to_owned(), plain });
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let parsed = url::Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        return Ok(Target::Postgres);
    }
    match trimmed.split_once(':') {
        Some((scheme, _)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => {
            Err(StoreError::UnsupportedScheme { scheme: scheme.to_owned(), url: redact(url) })
        }
        _ => Err(invalid("expected sqlite://PATH?mode=rwc, sqlite::memory: or postgres://…")),
    }
}

/// The file of a SQLite URL that the store's writer thread opens itself;
/// `None` for URLs it leaves to the pool (in-memory, read-only, escaped
/// paths, parameters other than `mode`).
pub(crate) fn writer_file(url: &str) -> Option<std::path::PathBuf> {
    match classify(url) {
        Ok(Target::SqliteFile { path, plain: true, .. }) => Some(path.into()),
        _ => None,
    }
}

/// Whether `url` names a SQLite file (not an in-memory database).
pub(crate) fn is_sqlite_file(url: &str) -> bool {
    matches!(classify(url), Ok(Target::SqliteFile { .. }))
}

/// Opens the database, applies migrations and returns the connection.
pub(crate) async fn open(opts: &StoreOptions) -> Result<(DatabaseConnection, Backend), StoreError> {
    let target = classify(&opts.url)?;
    let timeout = opts.connect_timeout;
    let busy = opts.busy_timeout;
    let (mut co, backend) = match &target {
        Target::SqliteFile { url, .. } => {
            let mut co = ConnectOptions::new(url.clone());
            co.max_connections(opts.max_connections.unwrap_or(8)).map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(busy)
                    .foreign_keys(true)
            });
            (co, Backend::Sqlite)
        }
        Target::SqliteMemory => {
            let mut co = ConnectOptions::new("sqlite::memory:");
            // One connection that never idles out: the database lives as long as it does.
            co.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .map_sqlx_sqlite_opts(move |o| o.busy_timeout(busy).foreign_keys(true));
            (co, Backend::Sqlite)
        }
        Target::Postgres => {
            let mut co = ConnectOptions::new(opts.url.trim().to_owned());
            co.max_connections(opts.max_connections.unwrap_or(16));
            (co, Backend::Postgres)
        }
    };
    co.connect_timeout(timeout).acquire_timeout(timeout).sqlx_logging(false);

    let shown = redact(&opts.url);
    let connect_err = |reason: String| StoreError::Connect { url: shown.clone(), timeout, reason };
    let deadline = tokio::time::Instant::now() + timeout;
    let db = loop {
        // The driver's own timeout covers refused and silent servers; the
        // outer one is a backstop so no path can hang past the deadline.
        let attempt = tokio::time::timeout_at(deadline + Duration::from_secs(1), Database::connect(co.clone())).await;
        match attempt {
            Ok(Ok(db)) => break db,
            // A brand-new SQLite file being switched to WAL by several
            // processes at once can report "locked"; that clears in moments.
            Ok(Err(e)) if crate::error::is_transient(&e) && tokio::time::Instant::now() < deadline => {
                if backend == Backend::Postgres {
                    return Err(connect_err(describe(&e)));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => return Err(connect_err(describe(&e))),
            Err(_) => return Err(connect_err("timed out".into())),
        }
    };
    migrate(&db, backend, deadline).await?;
    Ok((db, backend))
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
/// migrator runs inside a write-locked transaction: an advisory lock on
/// PostgreSQL, `BEGIN IMMEDIATE` on SQLite.
async fn migrate(db: &DatabaseConnection, backend: Backend, deadline: tokio::time::Instant) -> Result<(), StoreError> {
    const MIGRATION_LOCK: i64 = 0x0048_7964_7261; // "Hydra"
    // The usual case, a worker starting on a migrated database, reads and
    // takes no write lock (on SQLite the write lock is the whole database's).
    if all_applied(db).await {
        return Ok(());
    }
    let once = || async {
        let txn = begin(db, immediate()).await?;
        if backend == Backend::Postgres {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
        }
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

/// Begins a transaction on a task of its own, so that a caller dropped
/// while `BEGIN` is in flight (a timeout, a cancelled request, a run
/// stopped by its worker) cannot hand the connection back to the pool
/// inside a transaction nobody owns. sqlx 0.9 counts a transaction only
/// once the server's reply to `BEGIN` is read, so a `BEGIN` cancelled
/// before then is never rolled back: the next user of the connection then
/// writes inside it, and its writes are lost with it at that transaction's
/// eventual rollback, after they were acknowledged. Here the task always
/// reads the reply; if the caller is gone, the transaction it returns is
/// dropped and rolled back.
///
/// SQLite's driver needs none of this (its connection thread rolls back a
/// `BEGIN` whose caller is gone), and there the caller's in-process write
/// gate must cover the `BEGIN IMMEDIATE` itself: it begins in place.
pub(crate) async fn begin(
    db: &DatabaseConnection,
    options: TransactionOptions,
) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    use tracing::Instrument;
    if db.get_database_backend() != DbBackend::Postgres {
        return db.begin_with_options(options).await;
    }
    let db = db.clone();
    match tokio::spawn(async move { db.begin_with_options(options).await }.in_current_span()).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down: as transient as a lost connection.
        Err(e) => Err(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(format!("beginning a transaction: {e}")))),
    }
}

/// `BEGIN IMMEDIATE` on SQLite (takes the write lock up front, so a
/// transaction that reads then writes never fails with BUSY_SNAPSHOT); a
/// plain `BEGIN` on PostgreSQL.
pub(crate) fn immediate() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

pub(crate) fn db_backend(backend: Backend) -> DbBackend {
    match backend {
        Backend::Sqlite => DbBackend::Sqlite,
        Backend::Postgres => DbBackend::Postgres,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        assert_eq!(classify("sqlite::memory:").ok(), Some(Target::SqliteMemory));
        assert_eq!(
            classify("sqlite://x.db").ok(),
            Some(Target::SqliteFile { url: "sqlite://x.db?mode=rwc".into(), path: "x.db".into(), plain: true })
        );
        assert_eq!(
            classify("sqlite://x.db?mode=ro").ok(),
            Some(Target::SqliteFile { url: "sqlite://x.db?mode=ro".into(), path: "x.db".into(), plain: false })
        );
        assert_eq!(classify("postgres://u@localhost/db").ok(), Some(Target::Postgres));
        assert!(matches!(classify("mysql://u@h/db"), Err(StoreError::UnsupportedScheme { .. })));
        assert!(matches!(classify(""), Err(StoreError::InvalidUrl { .. })));
        assert!(matches!(classify("not a url"), Err(StoreError::InvalidUrl { .. })));
        assert!(matches!(classify("postgres://"), Err(StoreError::InvalidUrl { .. })));
        assert!(matches!(classify("sqlite:///no/such/dir/x.db"), Err(StoreError::InvalidUrl { .. })));
    }

    #[test]
    fn only_plain_read_write_files_get_a_writer() {
        assert_eq!(writer_file("sqlite:///tmp/y.db?mode=rwc"), Some("/tmp/y.db".into()));
        assert_eq!(writer_file("sqlite:///tmp/y.db?mode=rw"), Some("/tmp/y.db".into()));
        assert_eq!(writer_file("sqlite://y.db"), Some("y.db".into()), "a mode is added: rwc");
        assert_eq!(writer_file("sqlite://y.db?mode=ro"), None);
        assert_eq!(writer_file("sqlite://y.db?mode=rwc&cache=shared"), None);
        assert_eq!(writer_file("sqlite://a%20b.db?mode=rwc"), None);
        assert_eq!(writer_file("sqlite::memory:"), None);
    }

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
