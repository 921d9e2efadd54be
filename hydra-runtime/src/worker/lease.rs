//! Liveness of the worker's leases: the heartbeat renews every active
//! run's lease (and the worker's liveness row), and the lease guard stops a
//! run before its lease can expire when renewals do not get through.

use super::Shared;
use crate::clock::duration_ms;
use crate::context::{EndCause, RunEnd, RunState};
use hydra_store::Lease;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn heartbeat_loop(s: Arc<Shared>) {
    let ttl = s.config.lease_ttl;
    let hb = s.config.heartbeat_interval;
    loop {
        tokio::select! {
            _ = s.stop_all.cancelled() => return,
            _ = tokio::time::sleep(hb) => {}
        }
        // Taken before the calls: the database computes the new expiry from
        // `now`, so the local deadline must not start any later.
        let started = tokio::time::Instant::now();
        let now = s.engine.clock().now_ms();
        let ttl_ms = duration_ms(ttl);
        // No call may hold the heartbeat up for longer than one interval.
        let beat = tokio::time::timeout(
            hb,
            s.engine.inner.store.heartbeat_worker_with(
                s.engine.namespace(),
                &s.id,
                now,
                ttl_ms,
                Some(&s.registrations),
            ),
        )
        .await;
        let ok = matches!(beat, Ok(Ok(())));
        crate::metrics::heartbeat(s.engine.namespace(), s.id.as_str(), ok);
        if !ok {
            tracing::warn!(worker_id = %s.id, "worker heartbeat failed or timed out");
        }
        let runs: Vec<(Lease, Arc<RunState>)> =
            s.active().values().map(|a| (a.run.lease.clone(), Arc::clone(&a.run))).collect();
        if runs.is_empty() {
            continue;
        }
        let leases: Vec<Lease> = runs.iter().map(|(l, _)| l.clone()).collect();
        match tokio::time::timeout(hb, s.engine.inner.store.renew_leases(&leases, now, ttl_ms)).await {
            Ok(Ok(results)) => {
                let mut active = s.active();
                for ((lease, run), result) in runs.iter().zip(results) {
                    match result {
                        Ok(r) => {
                            if let Some(a) = active.get_mut(&lease.execution_id)
                                && a.run.lease.token == lease.token
                            {
                                a.renewed_at = started;
                            }
                            if r.cancel_requested {
                                run.hear_cancel();
                            }
                        }
                        // The run's own park handed the lease back: not a loss.
                        Err(_) if run.stops.handing_back.load(std::sync::atomic::Ordering::SeqCst) > 0 => {}
                        Err(e) => {
                            tracing::warn!(execution_id = %lease.execution_id, error = %e, "lease lost at heartbeat; stopping the run");
                            run.interrupt(RunEnd::LeaseLost);
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(worker_id = %s.id, error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!(worker_id = %s.id, "lease renewal timed out"),
        }
    }
}

/// Stops runs before their leases can expire, and runs past their
/// deadline. Separate from the heartbeat, on its own timer, so that no slow
/// or hung database call can delay it: a run whose lease went
/// `lease_ttl - heartbeat_interval` without a renewal is stopped within half
/// a heartbeat interval more, which is before the lease expires.
pub(super) async fn lease_guard_loop(s: Arc<Shared>) {
    let hb = s.config.heartbeat_interval;
    let local_limit = s.config.lease_ttl.saturating_sub(hb);
    let every = (hb / 2).max(Duration::from_millis(1));
    let ttl_ms = duration_ms(s.config.lease_ttl);
    loop {
        tokio::select! {
            _ = s.stop_all.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let real_now = tokio::time::Instant::now();
        let now = s.engine.clock().now_ms();
        for a in s.active().values() {
            if real_now.saturating_duration_since(a.renewed_at) >= local_limit {
                tracing::warn!(execution_id = %a.run.lease.execution_id, "lease not renewed in time; stopping the run before it expires");
                a.run.interrupt(RunEnd::LeaseLost);
            }
            // A run's compensations run past its deadline (they are why it ends).
            if let Some(d) = a.run.deadline_at
                && now >= d
                && !a.run.undo.compensating.load(std::sync::atomic::Ordering::SeqCst)
            {
                let why = "the run passed its deadline";
                if a.run.replaying() && now < d.saturating_add(ttl_ms) {
                    // Stopped now, it would end before its replay had
                    // registered the compensations of its recorded steps;
                    // it stops at its first new durable call instead, or
                    // here once a lease's length has passed without one.
                    let mut stop = a.run.stops.stop.lock().unwrap_or_else(|p| p.into_inner());
                    if stop.is_none() {
                        *stop = Some(EndCause::TimedOut(why.into()));
                    }
                } else {
                    a.run.interrupt_past_deadline(RunEnd::TimeOut(why.into()));
                }
            }
        }
    }
}
