//! A worker's upkeep, at its start and every minute: it takes up again the
//! runs of its workflows that other code suspended (non-determinism),
//! cancels the children a cancelled parent left running (its worker died
//! between the parent's end and their cancel),
//! counts the runs of its namespace that no live worker can run (a gauge),
//! and deletes old finished runs if the engine has a retention period
//! ([`crate::EngineBuilder::retention`]).

use super::Shared;
use std::sync::Arc;
use std::time::Duration;

/// How often the upkeep runs.
const EVERY: Duration = Duration::from_secs(60);

/// Runs the upkeep until the worker stops claiming.
pub(super) async fn upkeep_loop(s: Arc<Shared>) {
    let mut gauges: Vec<String> = Vec::new();
    loop {
        resume_suspended(&s).await;
        cancel_orphans(&s).await;
        match s.engine.runs().unclaimable().await {
            Ok(list) => {
                let ns = s.engine.namespace();
                for old in &gauges {
                    if !list.iter().any(|u| &u.workflow_name == old) {
                        crate::metrics::unclaimable(ns, old, 0);
                    }
                }
                gauges = list.iter().map(|u| u.workflow_name.clone()).collect();
                gauges.dedup();
                for name in &gauges {
                    let runs = list.iter().filter(|u| &u.workflow_name == name).map(|u| u.runs).sum();
                    crate::metrics::unclaimable(ns, name, runs);
                }
                for u in &list {
                    tracing::warn!(
                        workflow = %u.workflow_name,
                        version = ?u.workflow_version,
                        runs = u.runs,
                        waited_ms = u.waited_ms,
                        "runs are due that no live worker registers"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not count unclaimable runs"),
        }
        if let Some(retention) = &s.engine.inner.retention {
            // A stop drops the prune where it is: a batch's transaction not
            // yet committed rolls back, and the next upkeep goes on.
            tokio::select! {
                _ = s.stop_claiming.cancelled() => return,
                r = s.engine.prune(retention) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "could not prune finished runs");
                    }
                }
            }
        }
        tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Cancels the children whose parent ended cancelled without cancelling
/// them (the cascade at a cancelled run's end is a second write: a crash
/// between the two leaves them running).
async fn cancel_orphans(s: &Shared) {
    let ns = s.engine.namespace();
    match s.engine.inner.store.children_left_by_cancelled_parents(ns, 500).await {
        Ok(ids) => {
            for id in ids {
                match s.engine.cancel(&id).await {
                    Ok(_) => tracing::info!(execution_id = %id, "cancelled a child its cancelled parent left running"),
                    Err(e) => {
                        tracing::warn!(execution_id = %id, error = %e, "could not cancel a child of a cancelled run")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not look for children of cancelled runs"),
    }
}

/// Takes up again the suspended runs of this worker's workflows that other
/// code suspended.
async fn resume_suspended(s: &Shared) {
    let now = s.engine.clock().now_ms();
    for (name, w) in &s.registry {
        let (to, from, code) = w.version();
        match s.engine.inner.store.resume_suspended(s.engine.namespace(), name, (from, to), code, now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(workflow = %name, runs = n, "took up suspended runs again: other code suspended them");
                s.engine.inner.work.send_modify(|n| *n = n.wrapping_add(1));
            }
            Err(e) => tracing::warn!(workflow = %name, error = %e, "could not take up suspended runs"),
        }
    }
}
