//! Wake-ups across processes on a SQLite file: `PRAGMA data_version`.
//!
//! SQLite has no notifications. What it has is a counter per connection,
//! `PRAGMA data_version`, that changes whenever another connection (of this
//! process or any other) committed to the file since the last time the
//! connection looked. Reading it touches only the WAL index in shared
//! memory (and a read mark for the moment of the read): no disk read, no
//! write, and no snapshot held between reads.
//!
//! A store (with its clones) runs at most one watching task, on one
//! connection of its own outside the pool, that reads the counter every
//! [`COMMIT_WATCH_INTERVAL`] and tells every [`CommitWatcher`] when it
//! changed. A worker with free slots claims then, so a run started by
//! another process begins within about one interval instead of at the next
//! poll. A commit of this very process also moves the counter; the worker
//! then claims once more than it had to, at most once per interval.

use crate::backend::{Fut, WakeSource, WakeUp};
use crate::error::StoreError;
use crate::store::Store;
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::sqlx::{Connection, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the watching task reads `PRAGMA data_version`.
pub(crate) const COMMIT_WATCH_INTERVAL: Duration = Duration::from_millis(10);

/// The one watching task of a store; it ends with its last watcher.
#[derive(Debug)]
pub(crate) struct SharedWatch {
    changes: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SharedWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Commits to a SQLite file by any connection, of this process or another.
#[derive(Debug)]
pub(crate) struct CommitWatcher {
    /// Keeps the watching task alive while this watcher lives.
    _shared: Arc<SharedWatch>,
    changes: watch::Receiver<u64>,
}

impl CommitWatcher {
    /// Waits until some connection commits to the file (changes since the
    /// last call count; several commits wake this once). An error means the
    /// watching task ended (its connection failed): look once anyway, and
    /// rely on polling from then on.
    pub(crate) async fn changed(&mut self) -> Result<(), StoreError> {
        self.changes
            .changed()
            .await
            .map_err(|_| StoreError::Transient("PRAGMA data_version: the watching task ended".into()))
    }
}

impl WakeSource for CommitWatcher {
    fn next(&mut self) -> Fut<'_, Result<WakeUp, StoreError>> {
        Box::pin(async move { self.changed().await.map(|()| WakeUp::Changed) })
    }

    fn names_runs(&self) -> bool {
        false
    }
}

/// Watches the store's file for commits of any process. The first watcher
/// of a store opens its connection (outside the pool), kept in `slot`; the
/// others share it.
pub(super) async fn watch(
    slot: &tokio::sync::Mutex<std::sync::Weak<SharedWatch>>,
    store: &Store,
) -> Result<CommitWatcher, StoreError> {
    let mut slot = slot.lock().await;
    // A task that ended (its connection failed) is replaced.
    if let Some(shared) = slot.upgrade().filter(|s| !s.task.is_finished()) {
        let changes = shared.changes.clone();
        return Ok(CommitWatcher { _shared: shared, changes });
    }
    let transient = |e: sea_orm::sqlx::Error| StoreError::Transient(format!("PRAGMA data_version: {e}"));
    let options = store.connection().get_sqlite_connection_pool().connect_options();
    let mut conn = SqliteConnection::connect_with(&options).await.map_err(transient)?;
    let first = data_version(&mut conn).await.map_err(transient)?;
    let (tx, changes) = watch::channel(0u64);
    let task = tokio::spawn(watch_loop(conn, first, tx));
    let shared = Arc::new(SharedWatch { changes: changes.clone(), task });
    *slot = Arc::downgrade(&shared);
    Ok(CommitWatcher { _shared: shared, changes })
}

async fn data_version(conn: &mut SqliteConnection) -> Result<i64, sea_orm::sqlx::Error> {
    let row = sea_orm::sqlx::query("PRAGMA data_version").fetch_one(&mut *conn).await?;
    row.try_get::<i64, _>(0)
}

/// Reads the counter every interval and bumps the channel when it moved.
/// Ends (and so tells every watcher) after the connection failed ten times
/// in a row, or when no watcher is left.
async fn watch_loop(mut conn: SqliteConnection, mut last: i64, tx: watch::Sender<u64>) {
    let mut failures = 0u32;
    let mut tick = tokio::time::interval(COMMIT_WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        match data_version(&mut conn).await {
            Ok(v) => {
                failures = 0;
                if v != last {
                    last = v;
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, failures, "PRAGMA data_version failed");
                if failures >= 10 {
                    tracing::warn!(error = %e, "stopped watching the SQLite file for other processes' commits");
                    return;
                }
            }
        }
    }
}
