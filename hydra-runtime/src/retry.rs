//! Retry policies: bounded attempts, capped exponential backoff with jitter.

use std::time::Duration;

/// How often and how fast a step (or a whole workflow) is retried.
///
/// The delay before attempt `n + 1` is `initial * multiplier^(n-1)`, capped
/// at `max`, then spread by ±`jitter` (a fraction of the delay). It is
/// computed without overflow for any attempt number.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts allowed in total, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failed attempt.
    pub initial: Duration,
    /// Growth factor per attempt (at least 1.0).
    pub multiplier: f64,
    /// Upper bound on any delay.
    pub max: Duration,
    /// Random spread, as a fraction of the delay, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms initial, ×2, at most 30 s, ±20 % jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_millis(200),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The default policy with `max_attempts` attempts.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy { max_attempts: max_attempts.max(1), ..RetryPolicy::default() }
    }

    /// Sets the attempts allowed (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the first delay.
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// Sets the growth factor (values below 1.0, or not finite, mean 1.0).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = if m.is_finite() && m >= 1.0 { m } else { 1.0 };
        self
    }

    /// Sets the cap on any delay.
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// Sets the jitter fraction (clamped to `0.0..=1.0`).
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = if j.is_finite() { j.clamp(0.0, 1.0) } else { 0.0 };
        self
    }

    /// The delay after failed attempt `attempt` (1-based), before jitter.
    /// Never overflows: huge attempt numbers give `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exp);
        let secs = self.initial.as_secs_f64() * factor;
        let cap = self.max.as_secs_f64();
        if !secs.is_finite() || secs >= cap {
            self.max
        } else {
            Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(self.max)
        }
    }

    /// The delay after failed attempt `attempt`, with jitter from `unit`, a
    /// random number in `0.0..1.0`. Never above `max`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let jitter = if self.jitter.is_finite() { self.jitter.clamp(0.0, 1.0) } else { 0.0 };
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
        let spread = jitter * base * (2.0 * unit - 1.0);
        let secs = (base + spread).clamp(0.0, self.max.as_secs_f64());
        // Seconds as f64 may round above `Duration::MAX` (as with `max =
        // Duration::MAX`); anything not representable is the cap.
        Duration::try_from_secs_f64(secs).map_or(self.max, |d| d.min(self.max))
    }

    /// The delay after failed attempt `attempt` with fresh random jitter.
    pub fn next_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        let p = RetryPolicy::default().jitter(0.0);
        assert_eq!(p.base_delay(1), Duration::from_millis(200));
        assert_eq!(p.base_delay(2), Duration::from_millis(400));
        assert_eq!(p.base_delay(3), Duration::from_millis(800));
        assert_eq!(p.base_delay(20), Duration::from_secs(30));
    }

    #[test]
    fn backoff_does_not_overflow_at_huge_attempt_numbers() {
        let p = RetryPolicy::default().multiplier(10.0).max(Duration::from_secs(60));
        for attempt in [64, 1_000, 10_000, u32::MAX] {
            assert_eq!(p.base_delay(attempt), Duration::from_secs(60), "attempt {attempt}");
            for unit in [0.0, 0.5, 0.999] {
                let d = p.delay(attempt, unit);
                assert!(d <= Duration::from_secs(60) && d > Duration::ZERO, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy::default().jitter(0.5);
        let base = p.base_delay(2).as_secs_f64();
        let (low, high) = (p.delay(2, 0.0).as_secs_f64(), p.delay(2, 1.0).as_secs_f64());
        assert!((low - base * 0.5).abs() < 1e-9, "{low} vs {base}");
        assert!((high - base * 1.5).abs() < 1e-9, "{high} vs {base}");
    }

    #[test]
    fn nonsense_settings_are_clamped() {
        let p = RetryPolicy::default().multiplier(f64::NAN).jitter(7.0).max_attempts(0);
        assert_eq!((p.multiplier, p.jitter, p.max_attempts), (1.0, 1.0, 1));
    }

    proptest::proptest! {
        /// Any policy, any attempt number, any jitter draw: no panic, and
        /// the delay never exceeds the cap.
        #[test]
        fn no_policy_or_attempt_panics_and_every_delay_is_capped(
            initial_ns in proptest::prelude::any::<u64>(),
            initial_secs in proptest::prelude::any::<u64>(),
            max_secs in proptest::prelude::any::<u64>(),
            max_nanos in 0u32..1_000_000_000,
            multiplier in proptest::prelude::any::<f64>(),
            jitter in proptest::prelude::any::<f64>(),
            unit in proptest::prelude::any::<f64>(),
            attempt in proptest::prelude::any::<u32>(),
            huge_max in proptest::prelude::any::<bool>(),
        ) {
            let max = if huge_max { Duration::MAX } else { Duration::new(max_secs, max_nanos) };
            let initial = Duration::new(initial_secs, 0).saturating_add(Duration::from_nanos(initial_ns));
            let p = RetryPolicy::default().initial(initial).max(max).multiplier(multiplier).jitter(jitter);
            for a in [0, 1, 2, attempt, u32::MAX] {
                proptest::prop_assert!(p.base_delay(a) <= max);
                proptest::prop_assert!(p.delay(a, unit) <= max);
                proptest::prop_assert!(p.next_delay(a) <= max);
            }
        }
    }

    #[test]
    fn an_unbounded_cap_gives_a_delay_instead_of_a_panic() {
        let p = RetryPolicy::default().max(Duration::MAX);
        for attempt in [1, 100, 2_000, u32::MAX] {
            // No panic, whatever the attempt.
            let _ = p.next_delay(attempt);
        }
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(200), "the first backoff, at the middle of its jitter");
        assert_eq!(p.base_delay(u32::MAX), Duration::MAX, "doubling saturates at the cap");
    }
}
