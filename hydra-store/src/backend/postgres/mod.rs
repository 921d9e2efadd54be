//! PostgreSQL: many workers on many machines against one server.
//!
//! What is PostgreSQL's own:
//! - `$n` placeholders;
//! - row locks: claims and prunes take rows `FOR UPDATE SKIP LOCKED`, so
//!   concurrent workers take disjoint sets and wait for none; a fenced
//!   insert updates (and so locks) the run's row in the same statement;
//! - a `BEGIN` runs on a task of its own (see [`Postgres::begin`]);
//! - migrations wait for each other on an advisory lock;
//! - wake-ups across processes by `LISTEN`/`NOTIFY` (`listen.rs`);
//! - the step results of a group commit written as arrays after one
//!   ordered lock of their runs (`steps.rs`), by four committers at once.

pub(crate) mod listen;
mod steps;

use super::{Backend, Dialect, Fut, HotStep, StepAnswers, WakeUps};
use crate::connect::{self, Durability, StoreOptions};
use crate::error::StoreError;
use crate::sql::Db;
use crate::store::Store;
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionOptions, TransactionTrait, Value,
};
use std::sync::Arc;

/// PostgreSQL, for one store.
#[derive(Debug, Default)]
pub(crate) struct Postgres {
    /// The one `LISTEN` connection of this store (and its clones), shared
    /// by every listener (see `listen.rs`).
    listener: tokio::sync::Mutex<std::sync::Weak<listen::SharedListener>>,
}

/// The most output bytes written in one statement of arrays; a batch with
/// more writes its steps one statement each (PostgreSQL takes at most
/// 1 GB per field).
const HOT_BYTES: usize = 64 << 20;

/// Opens a PostgreSQL database (see [`super::open`]).
pub(crate) async fn open(opts: &StoreOptions) -> Result<(DatabaseConnection, Arc<dyn Dialect>), StoreError> {
    let url = opts.url.trim();
    let parsed = url::Url::parse(url).map_err(|e| connect::invalid(&opts.url, &e.to_string()))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(connect::invalid(&opts.url, "no host"));
    }
    let mut co = ConnectOptions::new(url.to_owned());
    if opts.durability == Durability::Relaxed {
        co.map_sqlx_postgres_opts(|o| o.options([("synchronous_commit", "off")]));
    }
    co.max_connections(opts.max_connections.unwrap_or(16))
        .connect_timeout(opts.connect_timeout)
        .acquire_timeout(opts.connect_timeout)
        .sqlx_logging(false);
    let (db, deadline) = connect::connect(co, opts, false).await?;
    let pg = Postgres::default();
    connect::migrate(&db, &pg, deadline).await?;
    Ok((db, Arc::new(pg)))
}

/// The advisory lock migrations take ("Hydra").
const MIGRATION_LOCK: i64 = 0x0048_7964_7261;

/// PostgreSQL's transient SQLSTATEs: 40001 serialization failure, 40P01
/// deadlock, 57P01..03 an administrator's or a crash's shutdown, 53300 too
/// many connections, class 08 connection exceptions.
pub(crate) fn is_transient_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300") || code.starts_with("08")
}

impl Dialect for Postgres {
    fn kind(&self) -> Backend {
        Backend::Postgres
    }

    fn db_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Statement::from_sql_and_values(DbBackend::Postgres, out, values)
    }

    /// Begins a transaction on a task of its own, so that a caller dropped
    /// while `BEGIN` is in flight (a timeout, a cancelled request, a run
    /// stopped by its worker) cannot hand the connection back to the pool
    /// inside a transaction nobody owns. sqlx 0.9 counts a transaction only
    /// once the server's reply to `BEGIN` is read, so a `BEGIN` cancelled
    /// before then is never rolled back: the next user of the connection
    /// then writes inside it, and its writes are lost with it at that
    /// transaction's eventual rollback, after they were acknowledged. Here
    /// the task always reads the reply; if the caller is gone, the
    /// transaction it returns is dropped and rolled back.
    fn begin<'a>(&'a self, db: &'a DatabaseConnection) -> Fut<'a, Result<DatabaseTransaction, DbErr>> {
        Box::pin(spawned_begin(db, TransactionOptions::default()))
    }

    fn begin_snapshot<'a>(
        &'a self,
        db: &'a DatabaseConnection,
        tables: &'a [&'a str],
    ) -> Fut<'a, Result<DatabaseTransaction, DbErr>> {
        Box::pin(async move {
            let options = TransactionOptions {
                isolation_level: Some(sea_orm::IsolationLevel::RepeatableRead),
                ..Default::default()
            };
            let txn = spawned_begin(db, options).await?;
            txn.execute_unprepared(&format!("LOCK TABLE {} IN SHARE MODE", tables.join(", "))).await?;
            Ok(txn)
        })
    }

    fn migration_lock<'a>(&'a self, txn: &'a DatabaseTransaction) -> Fut<'a, Result<(), DbErr>> {
        Box::pin(async move {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await.map(|_| ())
        })
    }

    fn committers(&self) -> usize {
        4
    }

    fn wake_ups_name_runs(&self) -> bool {
        true
    }

    fn wake_ups<'a>(&'a self, store: &'a Store) -> Fut<'a, Result<Option<WakeUps>, StoreError>> {
        Box::pin(async move { listen::listen(&self.listener, store).await.map(|l| Some(WakeUps::new(l))) })
    }

    fn greatest(&self) -> &'static str {
        "GREATEST"
    }

    fn for_update(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn for_update_skip_locked(&self, alias: Option<&str>) -> String {
        match alias {
            Some(a) => format!(" FOR UPDATE OF {a} SKIP LOCKED"),
            None => " FOR UPDATE SKIP LOCKED".to_owned(),
        }
    }

    fn fenced_insert(&self, fence: &str, open: &str, insert: &str, select: &str, tail: &str) -> String {
        // A data-modifying CTE updates (and so locks) the run's row first,
        // so no claim can slip in before the commit; it also moves the
        // run's open step.
        format!(
            "WITH fence AS (UPDATE workflow_executions SET updated_at = ?{open} {fence} RETURNING id) \
             {insert} SELECT {select} FROM fence {tail}"
        )
    }

    fn fenced_values(&self, fence: [Value; 3], now: i64, open: Vec<Value>, row: Vec<Value>) -> Vec<Value> {
        // The CTE comes first.
        let mut v: Vec<Value> = vec![now.into()];
        v.extend(open);
        v.extend(fence);
        v.extend(row);
        v
    }

    fn steps_together_pays(&self, hot: &[(usize, HotStep<'_>)]) -> bool {
        // A statement locking the runs comes first: worth it from two.
        hot.len() >= 2 && steps::output_bytes(hot) <= HOT_BYTES
    }

    fn lock_runs<'a>(
        &'a self,
        store: &'a Store,
        db: Db<'a>,
        ids: Vec<String>,
        ending: Vec<String>,
    ) -> Fut<'a, Result<(), StoreError>> {
        Box::pin(async move {
            db.exec(steps::lock_runs_statement(store, ids, ending)).await?;
            Ok(())
        })
    }

    fn steps_together<'a>(
        &'a self,
        store: &'a Store,
        db: Db<'a>,
        items: &'a [HotStep<'a>],
        now: i64,
    ) -> Fut<'a, Result<Option<StepAnswers>, StoreError>> {
        Box::pin(steps::steps_in(store, db, items, now))
    }

    fn refusal_spoils_batch(&self) -> bool {
        // A taken position aborts the transaction; a step found already
        // recorded by a fenced insert was refused after its fence had
        // updated the run (the data-modifying CTE).
        true
    }

    fn seal(&self, message: &str, tables: &[&str]) -> Vec<String> {
        let mut out = vec![
            "CREATE OR REPLACE FUNCTION hydra_moved_refuse() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RAISE \
             EXCEPTION '%', TG_ARGV[0]; END $f$"
                .to_owned(),
        ];
        for table in tables {
            out.push(format!(
                "CREATE TRIGGER hydra_moved BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} FOR EACH \
                 STATEMENT EXECUTE FUNCTION hydra_moved_refuse('{message}')"
            ));
        }
        out
    }

    fn durability<'a>(&'a self, db: Db<'a>) -> Fut<'a, Result<Durability, DbErr>> {
        Box::pin(async move {
            // `on`, `remote_write`, `remote_apply` and `local` all flush
            // the server's own WAL before the commit returns; `off` does not.
            let row = db.one(self.statement("SELECT current_setting('synchronous_commit') AS v", vec![])).await?;
            let level: String = match row {
                Some(r) => r.try_get("", "v")?,
                None => String::new(),
            };
            Ok(if level == "off" { Durability::Relaxed } else { Durability::Full })
        })
    }

    fn columns_query(&self) -> &'static str {
        "SELECT column_name::text AS name FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = ?"
    }

    fn after_copy<'a>(&'a self, db: Db<'a>, table: &'a str) -> Fut<'a, Result<(), DbErr>> {
        Box::pin(async move {
            db.exec(self.statement(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                ),
                Vec::new(),
            ))
            .await
            .map(|_| ())
        })
    }
}

/// See [`Postgres::begin`].
async fn spawned_begin(db: &DatabaseConnection, options: TransactionOptions) -> Result<DatabaseTransaction, DbErr> {
    use tracing::Instrument;
    let db = db.clone();
    match tokio::spawn(async move { db.begin_with_options(options).await }.in_current_span()).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down: as transient as a lost connection.
        Err(e) => Err(DbErr::Conn(sea_orm::RuntimeErr::Internal(format!("beginning a transaction: {e}")))),
    }
}
