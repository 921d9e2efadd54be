//! Claiming: the poll loop, the loop that follows other processes' wake-ups,
//! and claims of due runs in batches as large as the free slots.

use super::Shared;
use super::drive::{drive, hand_back};
use crate::clock::duration_ms;
use hydra_store::ClaimRequest;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn poll_loop(s: Arc<Shared>) {
    let mut work = s.engine.inner.work.subscribe();
    let mut ticks = s.engine.clock().subscribe();
    loop {
        claim_available(&s).await;
        tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep(s.config.poll_interval) => {}
            _ = work.changed() => {}
            _ = ticks.changed() => {}
            _ = s.wake.notified() => {}
        }
    }
}

/// Claims as soon as a run of this namespace becomes claimable in any
/// process, not at the next poll, through the store's wake-ups
/// ([`hydra_store::WakeUps`]: `LISTEN` on PostgreSQL, a SQLite file's
/// commits). In-process wake-ups and polling remain in any case.
pub(super) async fn listen_loop(s: Arc<Shared>) {
    loop {
        let Some(mut wake_ups) = open_wake_ups(&s, "new runs (polling only meanwhile)").await else { return };
        if wake_ups.names_runs() {
            // Anything made claimable before the listening took effect.
            s.wake.notify_one();
        }
        if !follow(&s, &mut wake_ups).await {
            return;
        }
    }
}

/// Opens the store's wake-ups for this worker, trying again while it
/// cannot (`what` it follows them for goes in the warning); `None` if the
/// worker stops claiming first, or no other process can write to the
/// database (in memory).
pub(super) async fn open_wake_ups(s: &Shared, what: &str) -> Option<hydra_store::WakeUps> {
    loop {
        let attempt = tokio::select! {
            _ = s.stop_claiming.cancelled() => return None,
            w = s.engine.inner.store.wake_ups() => w,
        };
        match attempt {
            Ok(w) => return w,
            Err(e) => {
                tracing::warn!(worker_id = %s.id, error = %e, "cannot follow the database's wake-ups for {what}");
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return None,
                    _ = tokio::time::sleep(s.config.poll_interval.max(Duration::from_secs(1))) => {}
                }
            }
        }
    }
}

/// Wakes the claim loop at the wake-ups that may concern it, until they
/// fail (then `true`: listen again) or the worker stops claiming (`false`).
///
/// A wake-up that names a namespace wakes the claim loop for this one. One
/// that only says something was committed (a SQLite file) wakes it only
/// with a free slot, where a claim could start something; and since a
/// commit of this very process shows too, while this process committed
/// meanwhile at most once per [`SELF_WAKE_GAP`], but never later than that.
async fn follow(s: &Arc<Shared>, wake_ups: &mut hydra_store::WakeUps) -> bool {
    let store = &s.engine.inner.store;
    let mut own = store.write_commits();
    let mut last_wake = tokio::time::Instant::now();
    // A change held back (see above), to be acted on when the gap is over.
    let mut deferred = false;
    // Failures in a row.
    let mut failures = 0u32;
    loop {
        let next = tokio::select! {
            _ = s.stop_claiming.cancelled() => return false,
            n = wake_ups.next() => Some(n),
            _ = tokio::time::sleep_until(last_wake + SELF_WAKE_GAP), if deferred => None,
        };
        if matches!(next, Some(Ok(_))) {
            failures = 0;
        }
        match next {
            Some(Ok(hydra_store::WakeUp::Runs(namespace))) => {
                if namespace == s.engine.namespace() {
                    s.wake.notify_one();
                }
                continue;
            }
            // Cancels are followed by `cancels.rs`.
            Some(Ok(hydra_store::WakeUp::Ended(_) | hydra_store::WakeUp::CancelRequested(_))) => continue,
            Some(Err(e)) => {
                // Wake-ups sent meanwhile may be lost: claim once. A source
                // that fails again and again (its watching task ended) is
                // opened anew; one that recovers by itself (a lost `LISTEN`
                // connection, a receiver that fell behind) is kept.
                failures += 1;
                tracing::warn!(worker_id = %s.id, error = %e, failures, "lost wake-ups from other processes");
                s.wake.notify_one();
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                if failures >= 3 {
                    return true;
                }
                continue;
            }
            Some(Ok(_)) | None => {}
        }
        let changed = next.is_some();
        let now_own = store.write_commits();
        let maybe_ours = std::mem::replace(&mut own, now_own) != now_own;
        let free = s.slots.available_permits() > 0;
        if free && (!changed || !maybe_ours || last_wake.elapsed() >= SELF_WAKE_GAP) {
            last_wake = tokio::time::Instant::now();
            deferred = false;
            s.wake.notify_one();
        } else {
            // Held back while a slot is free; with none free, the next
            // slot to free claims anyway (and a deadline in the past must
            // not spin this loop).
            deferred = free;
        }
    }
}

/// The shortest time between two wake-ups by a change that may have been
/// this process's own commit.
const SELF_WAKE_GAP: Duration = Duration::from_millis(25);

/// Claims as many due runs as there are free slots, batch by batch.
async fn claim_available(s: &Arc<Shared>) {
    loop {
        if s.stop_claiming.is_cancelled() {
            return;
        }
        // Until this claim answers, starts do not take slots directly: they
        // would overtake what it finds, and the slots it counts on.
        s.drained.store(false, std::sync::atomic::Ordering::Release);
        let free = s.slots.available_permits();
        if free == 0 {
            // Whether runs are due is not known until the next claim.
            return;
        }
        let limit = u32::try_from(free).unwrap_or(u32::MAX).min(s.config.claim_batch);
        let mut req = ClaimRequest::new(
            s.engine.namespace(),
            Vec::new(),
            s.id.clone(),
            s.engine.clock().now_ms(),
            duration_ms(s.config.lease_ttl),
            limit,
        );
        // The worker's rule: its workflows, at the versions this code replays.
        req.admission = s.admission.clone();
        crate::metrics::poll(s.engine.namespace(), s.id.as_str());
        // The lease's local clock starts before the claim is sent.
        let claim_sent = tokio::time::Instant::now();
        // Through the group committer when there is one: the claim shares a
        // commit with the step writes of running runs.
        let op = hydra_store::BatchOp::Claim(req.clone());
        let claimed =
            match crate::commit::write(s.engine.inner.committer.as_ref(), &s.engine.inner.store, op, req.now).await {
                Ok(hydra_store::BatchValue::Claimed(v)) => Ok(v),
                Ok(other) => Err(crate::commit::unexpected(other)),
                Err(e) => Err(e),
            };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(worker_id = %s.id, error = %e, "claim failed");
                return;
            }
        };
        if let Some(d) = s.config.claim_delay {
            // The test hook: an answer that arrives late.
            tokio::time::sleep(d).await;
        }
        let n = claimed.len();
        for c in claimed {
            if s.stop_claiming.is_cancelled() {
                // Stopped (or dropped) while this claim was in flight: start
                // nothing, hand the run back so another worker resumes it.
                let _ = hand_back(&s.engine, &c.execution, &c.lease).await;
                continue;
            }
            crate::metrics::lease_acquired(s.engine.namespace(), s.id.as_str(), &c.execution.workflow_name);
            if c.execution.started_at == Some(req.now) && c.execution.attempts == 1 {
                let waited = req.now.saturating_sub(c.execution.created_at).max(0) as f64 / 1000.0;
                crate::metrics::queue_time(s.engine.namespace(), &c.execution.workflow_name, waited);
            }
            let Ok(permit) = Arc::clone(&s.slots).try_acquire_owned() else {
                // Rare: a start took a slot directly just as this claim was
                // sent (see `direct`); give the run back, due at once.
                if hand_back(&s.engine, &c.execution, &c.lease).await.is_ok() {
                    s.engine.inner.work.send_modify(|n| *n = n.wrapping_add(1));
                }
                continue;
            };
            let shared = Arc::clone(s);
            // Checked again under the lock Drop takes after cancelling: either
            // this spawn happens first (and Drop aborts it) or it is skipped.
            let (lease, execution) = (c.lease.clone(), c.execution.clone());
            let spawned = {
                let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
                if s.stop_claiming.is_cancelled() {
                    false
                } else {
                    runs.spawn(drive(shared, c, permit, claim_sent));
                    true
                }
            };
            if !spawned {
                let _ = hand_back(&s.engine, &execution, &lease).await;
            }
        }
        // Fewer than asked for: nothing else was due, and starts may take
        // the slots still free directly (see `direct`).
        let drained = n < limit as usize && s.slots.available_permits() > 0;
        s.drained.store(drained, std::sync::atomic::Ordering::SeqCst);
        if drained && s.slots.available_permits() == 0 {
            // A start took the last slot in between (its clearing may have
            // come before this store): the next freed slot claims first.
            s.drained.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        // Reap finished tasks so the set does not grow.
        {
            let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
            while runs.try_join_next().is_some() {}
        }
        if n < limit as usize {
            return;
        }
    }
}
