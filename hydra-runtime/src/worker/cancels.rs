//! A cancel accepted for a run this worker holds is heard at once, not at
//! the run's next lease renewal: the run's step bodies are told (their
//! token is cancelled) and it stops at its next durable call, where its
//! compensations run.
//!
//! - From this process's engine: `Engine::cancel` tells every local worker
//!   directly (`LocalWorker::hear_cancel`).
//! - From another process: through the store's wake-ups. On PostgreSQL a
//!   trigger sends the run's ID on `hydra_cancel` when the cancel commits;
//!   on a SQLite file, whose wake-ups name no run, a worker that holds runs
//!   looks for cancels among them when the file changes, at most once per
//!   [`CHECK_GAP`] (one query by primary key).
//!
//! Hearing late is never wrong, only slower: the lease renewal still
//! reports the cancel, and a run's end is written only if no cancel was
//! accepted first (`worker/drive.rs`).

use super::Shared;
use hydra_store::{ExecutionId, WakeUp};
use std::sync::Arc;
use std::time::Duration;

/// The shortest time between two checks for cancels on a store whose
/// wake-ups name no run.
const CHECK_GAP: Duration = Duration::from_millis(25);

/// A cancel accepted for run `id`: if this worker holds the run, it hears
/// it now.
pub(super) fn hear_cancel(s: &Shared, id: &ExecutionId) {
    let run = s.active().get(id).map(|a| Arc::clone(&a.run));
    if let Some(run) = run {
        tracing::debug!(execution_id = %id, "cancel heard");
        run.hear_cancel();
    }
}

/// Follows the store's wake-ups for cancels of runs this worker holds,
/// until the worker stops claiming.
pub(super) async fn cancel_watch_loop(s: Arc<Shared>) {
    loop {
        let Some(mut wake_ups) = super::claim::open_wake_ups(&s, "cancels from other processes").await else {
            return;
        };
        let mut last_check = tokio::time::Instant::now() - CHECK_GAP;
        let mut failures = 0u32;
        loop {
            let next = tokio::select! {
                _ = s.stop_claiming.cancelled() => return,
                n = wake_ups.next() => n,
            };
            match next {
                Ok(WakeUp::CancelRequested(id)) => hear_cancel(&s, &ExecutionId::from_string(id)),
                Ok(WakeUp::Changed) => {
                    failures = 0;
                    if s.active().is_empty() {
                        continue;
                    }
                    // Commits that come meanwhile are folded into this check.
                    tokio::time::sleep_until(last_check + CHECK_GAP).await;
                    last_check = tokio::time::Instant::now();
                    check(&s).await;
                }
                Ok(_) => failures = 0,
                Err(_) => {
                    // Cancels sent meanwhile may be lost: look once.
                    failures += 1;
                    check(&s).await;
                    if failures >= 3 {
                        break;
                    }
                    tokio::select! {
                        _ = s.stop_claiming.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }
}

/// Looks for accepted cancels among the runs this worker holds.
async fn check(s: &Shared) {
    let ids: Vec<ExecutionId> = s.active().keys().cloned().collect();
    if ids.is_empty() {
        return;
    }
    match s.engine.inner.store.cancels_requested(s.engine.namespace(), &ids).await {
        Ok(cancelled) => {
            for id in &cancelled {
                hear_cancel(s, id);
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not look for cancels; the lease renewal will report them"),
    }
}
