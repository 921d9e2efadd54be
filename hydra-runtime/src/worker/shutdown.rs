//! Stopping a worker: graceful shutdown hands leases back; drop abandons
//! runs to lease expiry.

use super::Worker;
use crate::context::RunEnd;
use std::sync::Arc;
use std::time::Duration;

impl Worker {
    /// Stops claiming, lets running executions reach their next checkpoint
    /// (at most `grace`), then releases the leases of any still running so
    /// another worker resumes them at once.
    pub async fn shutdown(mut self, grace: Duration) {
        let s = Arc::clone(&self.shared);
        s.stop_claiming.cancel();
        if let Some(p) = self.poll.take() {
            let _ = p.await;
        }
        if let Some(c) = self.cron.take() {
            let _ = c.await;
        }
        for a in s.active().values() {
            a.run.stops.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let deadline = crate::clock::instant_after(grace);
        while !s.active().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for a in s.active().values() {
            a.run.interrupt(RunEnd::Release);
        }
        // Until every drive task has ended, not only left the active set: a
        // drive hands its lease back after it stops running the workflow.
        loop {
            let (next, left) = {
                let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
                (runs.try_join_next(), runs.len())
            };
            match next {
                Some(_) => continue,
                None if left == 0 && s.active().is_empty() => break,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        s.stop_all.cancel();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.await;
        }
        if let Err(e) = s.engine.inner.store.remove_worker(s.engine.namespace(), &s.id).await {
            tracing::warn!(error = %e, "could not remove worker liveness row");
        }
        crate::metrics::concurrency(s.engine.namespace(), s.id.as_str(), 0);
        crate::metrics::active(s.engine.namespace(), s.id.as_str(), 0);
        tracing::info!(worker_id = %s.id, "worker stopped");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.stop_claiming.cancel();
        self.shared.stop_all.cancel();
        self.shared.runs.lock().unwrap_or_else(|p| p.into_inner()).abort_all();
    }
}
