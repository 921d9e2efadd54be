//! Claiming: the poll loop, the `LISTEN` loop (PostgreSQL), and claims of
//! due runs in batches as large as the free slots.

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
/// process, not at the next poll: on PostgreSQL through `LISTEN` (see
/// [`hydra_store::RunListener`]), on a SQLite file by watching for other
/// connections' commits ([`hydra_store::CommitWatcher`]). In-process
/// wake-ups and polling remain in any case.
pub(super) async fn listen_loop(s: Arc<Shared>) {
    if s.engine.store().backend() == hydra_store::Backend::Sqlite {
        return watch_loop(s).await;
    }
    let mut listener = loop {
        let attempt = tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            l = s.engine.store().listen_for_runs() => l,
        };
        match attempt {
            Ok(Some(l)) => {
                // Anything made claimable before the LISTEN took effect.
                s.wake.notify_one();
                break l;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(worker_id = %s.id, error = %e, "cannot listen for new runs; polling only for now");
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(s.config.poll_interval.max(Duration::from_secs(1))) => {}
                }
            }
        }
    };
    loop {
        let received = tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            n = listener.recv() => n,
        };
        match received {
            Ok(namespace) if namespace == s.engine.namespace() => s.wake.notify_one(),
            Ok(_) => {}
            Err(e) => {
                // Reconnects on the next call; what was sent meanwhile is lost.
                tracing::warn!(worker_id = %s.id, error = %e, "lost the LISTEN connection; reconnecting");
                s.wake.notify_one();
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// SQLite file: claims when any connection committed (a run started or
/// made due by another process), at most once per
/// [`hydra_store::COMMIT_WATCH_INTERVAL`], and only with a free slot.
async fn watch_loop(s: Arc<Shared>) {
    loop {
        let attempt = tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            w = s.engine.store().watch_commits() => w,
        };
        let mut watcher = match attempt {
            Ok(Some(w)) => w,
            // An in-memory database: no other process can write to it.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(worker_id = %s.id, error = %e, "cannot watch the database for other processes' commits; polling only for now");
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(s.config.poll_interval.max(Duration::from_secs(1))) => {}
                }
                continue;
            }
        };
        let store = s.engine.store();
        let mut own = store.write_commits();
        let mut last_wake = tokio::time::Instant::now();
        // A change held back (see below), to be acted on when the gap is over.
        let mut deferred = false;
        loop {
            let changed = tokio::select! {
                _ = s.stop_claiming.cancelled() => return,
                c = watcher.changed() => Some(c),
                _ = tokio::time::sleep_until(last_wake + SELF_WAKE_GAP), if deferred => None,
            };
            // A commit of this process moves the counter too. Claim only
            // with a free slot, where a claim could start something; and
            // when this process committed meanwhile (the change may be its
            // own), at most once per gap, but never later than that.
            let now_own = store.write_commits();
            let maybe_ours = std::mem::replace(&mut own, now_own) != now_own;
            let free = s.slots.available_permits() > 0;
            if free && (changed.is_none() || !maybe_ours || last_wake.elapsed() >= SELF_WAKE_GAP) {
                last_wake = tokio::time::Instant::now();
                deferred = false;
                s.wake.notify_one();
            } else {
                // Held back while a slot is free; with none free, the next
                // slot to free claims anyway (and a deadline in the past
                // must not spin this loop).
                deferred = free;
            }
            if let Some(Err(e)) = changed {
                tracing::warn!(worker_id = %s.id, error = %e, "stopped watching the database; watching again");
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                break;
            }
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
            s.names.clone(),
            s.id.clone(),
            s.engine.clock().now_ms(),
            duration_ms(s.config.lease_ttl),
            limit,
        );
        // Only runs of versions this code replays.
        req.versions = s.versions.clone();
        crate::metrics::poll(s.engine.namespace(), s.id.as_str());
        // The lease's local clock starts before the claim is sent.
        let claim_sent = tokio::time::Instant::now();
        // Through the group committer when there is one: the claim shares a
        // commit with the step writes of running runs.
        let op = hydra_store::BatchOp::Claim(req.clone());
        let claimed = match crate::commit::write(s.engine.inner.committer.as_ref(), s.engine.store(), op, req.now).await
        {
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
