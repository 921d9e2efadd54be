//! The writer's WAL checkpoints, on a thread of their own.
//!
//! SQLite checkpoints a WAL-mode file on the connection whose commit left
//! the log longer than 1,000 pages: it copies the logged pages into the
//! file and syncs it, inside that `COMMIT`. On the writer thread that is a
//! stall of every start and group commit queued behind it (5-6 ms on this
//! machine: the p99 of a start). Here the writer's commits only note how
//! long the log is, and a second thread with its own connection runs the
//! same checkpoint (`PASSIVE`: it never waits for, nor blocks, the writer
//! or readers) when the log has grown past the same length.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, SyncSender};

/// Pages in the WAL past which a checkpoint is due (SQLite's automatic
/// checkpoint threshold).
const DUE_PAGES: i32 = 1000;

thread_local! {
    /// Pages in the WAL after this thread's last commit (the writer thread
    /// is the only one whose connection reports here).
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: records the log's length after each
/// commit instead of checkpointing.
pub(super) fn committed(_wal: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// Whether this thread's last commit left the log long enough for a
/// checkpoint (then forgotten until the next commit reports).
pub(super) fn due() -> bool {
    WAL_PAGES.with(|p| p.replace(0)) >= DUE_PAGES
}

/// The checkpoint thread; it ends when this is dropped (with the writer
/// thread that owns it).
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the thread; `None`
    /// if either fails (the writer then keeps SQLite's own checkpoints).
    pub(super) fn start(path: &std::path::Path, busy: std::time::Duration) -> Option<Checkpointer> {
        let conn = match super::conn::open_file(path, busy) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the SQLite checkpoint connection; the writer checkpoints itself");
                return None;
            }
        };
        // One pending wake-up is enough: a checkpoint covers the whole log.
        let (wake, rx) = std::sync::mpsc::sync_channel(1);
        match std::thread::Builder::new().name("hydra-sqlite-checkpoint".into()).spawn(move || run(&conn, &rx)) {
            Ok(_) => Some(Checkpointer { wake }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the SQLite checkpoint thread; the writer checkpoints itself");
                None
            }
        }
    }

    /// Asks for a checkpoint; never blocks (one already asked for will do,
    /// and a thread that ended has nothing to do).
    pub(super) fn poke(&self) {
        let _ = self.wake.try_send(());
    }
}

fn run(conn: &rusqlite::Connection, wake: &Receiver<()>) {
    while wake.recv().is_ok() {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match done {
            Ok((_, log, copied)) => tracing::trace!(log, copied, "checkpointed the SQLite WAL"),
            // Busy (another checkpoint ran) or an I/O error: the log stays
            // (readable and durable) until the next checkpoint.
            Err(e) => tracing::debug!(error = %e, "SQLite WAL checkpoint failed"),
        }
    }
}
