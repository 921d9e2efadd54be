//! The engine's one source of time.
//!
//! Every timestamp the runtime writes (creation, lease expiry, wake-up,
//! deadline) comes from one [`Clock`]; nothing reads the system time behind
//! its back. Tests use [`Clock::manual`] and [`Clock::advance`] to wake
//! sleeping runs and expire leases at once, in process.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// A clock giving milliseconds since the Unix epoch. Cheap to clone; clones
/// share the same time.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    manual: Option<AtomicI64>,
    /// Bumped on every manual change, so sleepers re-check the time.
    ticks: watch::Sender<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { inner: Arc::new(Inner { manual: None, ticks: watch::channel(0).0 }) }
    }

    /// A clock that stands still at `start_ms` until moved with
    /// [`Clock::advance`] or [`Clock::set`].
    pub fn manual(start_ms: i64) -> Self {
        Clock { inner: Arc::new(Inner { manual: Some(AtomicI64::new(start_ms)), ticks: watch::channel(0).0 }) }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.inner.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        }
    }

    /// True for a clock made by [`Clock::manual`].
    pub fn is_manual(&self) -> bool {
        self.inner.manual.is_some()
    }

    /// Moves a manual clock forward by `by` and wakes everything waiting on
    /// it. Has no effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.inner.manual {
            t.fetch_add(duration_ms(by), Ordering::SeqCst);
            self.inner.ticks.send_modify(|n| *n += 1);
        }
    }

    /// Sets a manual clock to `ms`. Has no effect on the system clock.
    pub fn set(&self, ms: i64) {
        if let Some(t) = &self.inner.manual {
            t.store(ms, Ordering::SeqCst);
            self.inner.ticks.send_modify(|n| *n += 1);
        }
    }

    /// A receiver that changes whenever a manual clock moves.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.ticks.subscribe()
    }

    /// Waits until this clock reads at least `deadline_ms`, or `max_wait`
    /// passes in real time, whichever is first.
    pub(crate) async fn sleep_until(&self, deadline_ms: i64, max_wait: Duration) {
        let mut rx = self.subscribe();
        let real_deadline = instant_after(max_wait);
        loop {
            let now = self.now_ms();
            if now >= deadline_ms {
                return;
            }
            let wait = Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now)).unwrap_or(0));
            let until = instant_after(wait).min(real_deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    if tokio::time::Instant::now() >= real_deadline || !self.is_manual() {
                        return;
                    }
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A duration in whole milliseconds, saturating at `i64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The monotonic instant `d` from now, saturating far in the future
/// instead of overflowing (`Instant + Duration` panics on overflow).
pub(crate) fn instant_after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = Clock::manual(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(Duration::from_secs(48 * 3600));
        assert_eq!(c.now_ms(), 1_000 + 48 * 3600 * 1000);
        c.set(5);
        assert_eq!(c.now_ms(), 5);
        let shared = c.clone();
        c.advance(Duration::from_millis(1));
        assert_eq!(shared.now_ms(), 6);
    }

    #[tokio::test]
    async fn manual_sleep_wakes_on_advance() {
        let c = Clock::manual(0);
        let sleeper = {
            let c = c.clone();
            tokio::spawn(async move { c.sleep_until(10_000, Duration::from_secs(60)).await })
        };
        tokio::task::yield_now().await;
        c.advance(Duration::from_secs(10));
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.expect("woke on advance").expect("joined");
    }
}
