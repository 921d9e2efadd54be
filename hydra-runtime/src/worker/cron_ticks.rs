//! Firing due cron ticks from every worker (the store makes each fire once).

use super::Shared;
use std::sync::Arc;
use std::time::Duration;

/// Fires due cron ticks. Every worker runs one; the store makes sure each
/// tick fires once.
pub(super) async fn cron_loop(s: Arc<Shared>) {
    let mut ticks = s.engine.clock().subscribe();
    let every = s.config.poll_interval.min(Duration::from_secs(1));
    loop {
        if let Err(e) = crate::cron::fire_due(&s.engine).await {
            tracing::warn!(worker_id = %s.id, error = %e, "cron scheduling failed");
        }
        tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = ticks.changed() => {}
        }
    }
}
