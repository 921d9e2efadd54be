//! A run's own writes that hand its lease back (parks), counted while in
//! flight and once done, so that the heartbeat can tell a lease the run
//! gave back from a lease another worker took (`RunState::stops.handing_back`,
//! read in `worker/lease.rs`).

/// One write counted in `RunState::stops.handing_back` while it is in flight;
/// kept counted once it parked the run, uncounted on every other way out
/// (a failure, a result that does not park, the write dropped part-way).
pub(super) struct HandBack<'a> {
    count: &'a std::sync::atomic::AtomicUsize,
    kept: bool,
}

impl<'a> HandBack<'a> {
    pub(super) fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        HandBack { count, kept: false }
    }

    pub(super) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for HandBack<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HandBack;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_write_is_counted_while_in_flight_and_kept_only_if_it_parked() {
        let count = AtomicUsize::new(0);
        let parked = HandBack::new(&count);
        let other = HandBack::new(&count);
        assert_eq!(count.load(Ordering::SeqCst), 2, "both in flight");
        // A write dropped part-way, or one that did not park: uncounted.
        drop(other);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        parked.keep();
        assert_eq!(count.load(Ordering::SeqCst), 1, "a park stays counted");
    }
}
