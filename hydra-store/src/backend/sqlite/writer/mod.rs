//! SQLite's writer thread: the write transactions of the hot path (group
//! commits, starts) run on one dedicated thread that owns a synchronous
//! connection to the file.
//!
//! Through the async driver every statement is a hand-off to the driver's
//! connection thread and back (two context switches, and the wake-ups of
//! both sides); a group commit of a dozen statements paid that a dozen
//! times. Here the whole transaction is one job: the caller sends it to the
//! writer thread, which runs the store's own async code for it on a
//! [`Direct`](crate::sql::Direct) connection ([`conn`]) whose statements
//! execute in place on its `rusqlite` connection, and sends back the answer
//! once the transaction ended. One hand-off per transaction instead of one
//! per statement, and prepared statements are cached by the connection.
//!
//! The writer's [`Store`] is the same code as any other (the statements are
//! written once), on a connection that never leaves its thread. Ordering and
//! exclusion are unchanged: the caller holds the store's write gate for
//! the whole job (the guard travels with the job and is released after the
//! transaction ended, even if the caller stopped waiting). Only SQLite
//! files get a writer; `sqlite::memory:` is one connection of the pool.
//! Other processes sharing the file meet the same busy timeout as before.
//! Everything else (reads, renewals, signals, operators' writes) still
//! goes through the pool.

mod checkpoint;
mod conn;

use crate::error::StoreError;
use crate::store::Store;
use sea_orm::DbErr;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use conn::SyncConn;

/// The store's code for one write transaction, run on the writer thread.
type JobFn<T> = Box<dyn for<'a> FnOnce(&'a Store) -> Pin<Box<dyn Future<Output = Result<T, StoreError>> + 'a>> + Send>;

type Job = Box<dyn FnOnce(&Store, &tokio::runtime::Runtime, &SyncConn) + Send>;

/// A handle on the writer thread; the thread ends when the last handle is
/// dropped.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread: `store` is the writer's store, whose
    /// connection is `conn`'s, to the file at `path`; and the thread that
    /// checkpoints that file's WAL for it ([`checkpoint`]).
    pub(crate) fn start(
        conn: Arc<SyncConn>,
        store: Store,
        path: &std::path::Path,
        busy: std::time::Duration,
    ) -> Result<Writer, StoreError> {
        let checkpointer = checkpoint::Checkpointer::start(path, busy);
        if checkpointer.is_some() {
            conn.checkpoint_elsewhere();
        }
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("hydra-sqlite-writer".into())
            .spawn(move || {
                // Built (and dropped) on this thread, never in async context.
                let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                while let Ok(job) = rx.recv() {
                    job(&store, &rt, &conn);
                    if let Some(c) = &checkpointer
                        && checkpoint::due()
                    {
                        c.poke();
                    }
                }
            })
            .map_err(|e| starting(&e.to_string()))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Writer { jobs }),
            Ok(Err(e)) => Err(starting(&e)),
            Err(_) => Err(starting("the thread ended")),
        }
    }

    /// Runs `job` on the writer thread while `gate` (the store's write
    /// gate) is held, and returns its answer. The transaction's own errors
    /// are the answer; a failure that ended the job's transaction behind
    /// its back (SQLite rolled it back itself) fails the job after
    /// everything was rolled back, whatever the job returned. A caller that
    /// stops waiting before the job commits makes it roll back (as a
    /// dropped transaction does on the pool).
    async fn run<T: Send + 'static>(
        &self,
        gate: Option<tokio::sync::OwnedMutexGuard<()>>,
        job: JobFn<T>,
    ) -> Result<T, StoreError> {
        use tracing::Instrument;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiting = Waiting { abandoned: Arc::new(AtomicBool::new(false)), done: false };
        let abandoned = Arc::clone(&waiting.abandoned);
        let span = tracing::Span::current();
        let job: Job = Box::new(move |store, rt, conn| {
            conn.start_job(abandoned);
            let ran =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(job(store).instrument(span))));
            // Whatever happened, no transaction stays open past its job.
            let failure = conn.end_job();
            drop(gate);
            let answer = match ran {
                Ok(r) => Ok(match failure {
                    Some(e) => Err(e.into()),
                    None => r,
                }),
                Err(panic) => Err(panic),
            };
            let _ = tx.send(answer);
        });
        if self.jobs.send(job).is_err() {
            return Err(stopped());
        }
        let answer = rx.await;
        waiting.done();
        match answer {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(stopped()),
        }
    }
}

impl crate::backend::Offload for Writer {
    fn run_job<'a>(
        &'a self,
        gate: Option<tokio::sync::OwnedMutexGuard<()>>,
        job: crate::backend::ErasedJob,
    ) -> crate::backend::Fut<'a, Result<Box<dyn std::any::Any + Send>, StoreError>> {
        Box::pin(self.run(gate, job))
    }
}

/// Raises its flag when dropped before [`Waiting::done`]: the caller of a
/// job stopped waiting for it.
struct Waiting {
    abandoned: Arc<AtomicBool>,
    done: bool,
}

impl Waiting {
    fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.done {
            self.abandoned.store(true, Ordering::Release);
        }
    }
}

fn starting(reason: &str) -> StoreError {
    StoreError::Database(DbErr::Custom(format!("starting the SQLite writer thread: {reason}")))
}

fn stopped() -> StoreError {
    StoreError::Database(DbErr::Conn(sea_orm::RuntimeErr::Internal("the SQLite writer thread has stopped".into())))
}

#[cfg(test)]
mod tests;
