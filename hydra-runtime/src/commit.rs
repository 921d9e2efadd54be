//! Group commit: a task of the engine (one on SQLite, up to four at once
//! on PostgreSQL) applies the checkpoint writes of many runs in one
//! database transaction.
//!
//! A run's write is queued and the run waits for its own result, which is
//! sent only after the transaction carrying it committed: a step's result
//! reaches its workflow only once it is durable. The committer takes the
//! first queued write and whatever else queued while the previous
//! transaction was committing; it never waits to fill a batch, so an idle
//! engine commits a lone write at once and a busy one commits many per
//! transaction.

use crate::clock::Clock;
use hydra_store::{BatchOp, BatchValue, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// The most writes in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<BatchValue, StoreError>>;

/// What a committer does with a batch: the store's group commit (or, in
/// tests, anything that answers like it).
type Apply = Arc<
    dyn for<'a> Fn(
            &'a [BatchOp],
            i64,
        )
            -> futures_util::future::BoxFuture<'a, Result<Vec<Result<BatchValue, StoreError>>, StoreError>>
        + Send
        + Sync,
>;

/// A handle on the engine's committer tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    queues: Arc<Vec<Queue>>,
}

/// One committer task's queue, and how many writes wait in it.
#[derive(Debug)]
struct Queue {
    tx: mpsc::UnboundedSender<(BatchOp, Reply)>,
    waiting: Arc<AtomicUsize>,
}

/// A write goes to the first committer with fewer writes than this waiting
/// for their turn, or else to the least loaded (see [`pick`]).
const SPILL: usize = 8;

/// The committer a write goes to, given how many writes wait in each: the
/// first with fewer than `spill` waiting, or else the least loaded. One
/// committer takes every write while it keeps up, so concurrent writes
/// share its commits (on PostgreSQL each commit is a WAL flush that a
/// start, committed on its own, waits behind); the others take the
/// overflow of a busy engine, whose round trips they overlap. Spread
/// evenly instead, a light load cost a commit per write: on PostgreSQL,
/// runs of one step started one at a time made 3.7 commits each instead of
/// about 1.5, and were 30-45 % slower.
fn pick(waiting: impl Iterator<Item = usize> + Clone, spill: usize) -> Option<usize> {
    waiting.clone().position(|n| n < spill).or_else(|| waiting.enumerate().min_by_key(|&(_, n)| n).map(|(i, _)| i))
}

impl Committer {
    /// Starts the committer tasks on the current runtime, as many as the
    /// database says pay ([`Store::committers`]): one on SQLite (one writer
    /// at a time anyway), four on PostgreSQL (concurrent transactions hide
    /// each other's round trips under load; see [`pick`]). A run has at
    /// most one write in flight, so spreading writes over committers keeps
    /// each run's order.
    pub(crate) fn start(store: Store, clock: Clock) -> Committer {
        let n = store.committers().max(1);
        let apply: Apply = Arc::new(move |ops, now| {
            let store = store.clone();
            Box::pin(async move { store.apply_batch(ops, now).await })
        });
        Committer::with(n, apply, clock)
    }

    fn with(n: usize, apply: Apply, clock: Clock) -> Committer {
        crate::metrics::committer_started();
        let queues = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let waiting = Arc::new(AtomicUsize::new(0));
                tokio::spawn(run(Arc::clone(&apply), clock.clone(), rx, Arc::clone(&waiting)));
                Queue { tx, waiting }
            })
            .collect();
        Committer { queues: Arc::new(queues) }
    }

    /// Queues one write and waits until the transaction carrying it ended.
    pub(crate) async fn submit(&self, op: BatchOp) -> Result<BatchValue, StoreError> {
        let (tx, rx) = oneshot::channel();
        // A committer that stopped is passed over while another runs.
        let waiting =
            self.queues.iter().map(|q| if q.tx.is_closed() { usize::MAX } else { q.waiting.load(Ordering::Relaxed) });
        let Some(queue) = pick(waiting, SPILL).and_then(|i| self.queues.get(i)) else { return Err(stopped()) };
        // Counted until the committer takes it into a batch; the count only
        // steers where writes go, so a stale read costs nothing but balance.
        queue.waiting.fetch_add(1, Ordering::Relaxed);
        if queue.tx.send((op, tx)).is_err() {
            queue.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Applies `op` through `committer` (group commit) or, without one, in a
/// transaction of its own; either way the store's answer for that write.
pub(crate) async fn write(
    committer: Option<&Committer>,
    store: &Store,
    op: BatchOp,
    now: i64,
) -> Result<BatchValue, StoreError> {
    match committer {
        Some(c) => c.submit(op).await,
        None => store.apply_write(&op, now).await,
    }
}

/// A reply of the wrong kind for the write that was sent.
pub(crate) fn unexpected(reply: BatchValue) -> StoreError {
    StoreError::Transient(format!("unexpected write reply {reply:?}"))
}

fn stopped() -> StoreError {
    StoreError::Database(hydra_store::sea_orm::DbErr::Custom("the engine's committer has stopped".into()))
}

async fn run(apply: Apply, clock: Clock, mut rx: mpsc::UnboundedReceiver<(BatchOp, Reply)>, waiting: Arc<AtomicUsize>) {
    use futures_util::FutureExt as _;
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Some((op, reply)) = rx.recv().await {
        ops.push(op);
        replies.push(reply);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((op, reply)) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        // Taken: these no longer wait for their turn.
        waiting.fetch_sub(ops.len(), Ordering::Relaxed);
        // A panic in the store's code fails this batch's writes (nothing of
        // it was committed: its transaction is rolled back when dropped)
        // and the committer goes on: a committer that died would leave
        // every later write of the engine without one.
        let applied = std::panic::AssertUnwindSafe(apply(&ops, clock.now_ms())).catch_unwind().await;
        let applied = applied.unwrap_or_else(|panic| {
            let message = crate::context::panic_message(&panic);
            tracing::error!(panic = %message, writes = ops.len(), "the group commit panicked; its writes failed");
            crate::metrics::committer_panicked();
            Err(StoreError::Database(hydra_store::sea_orm::DbErr::Custom(format!(
                "the group commit panicked (nothing of it was written): {message}"
            ))))
        });
        match applied {
            Ok(results) => {
                for (reply, r) in replies.drain(..).zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                // Nothing of this batch was applied; every writer sees the
                // (usually transient) error and decides whether to retry.
                let text = e.to_string();
                let transient = e.is_retryable();
                tracing::warn!(error = %text, writes = replies.len(), "group commit failed");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(if transient {
                        StoreError::Transient(text.clone())
                    } else {
                        StoreError::Database(hydra_store::sea_orm::DbErr::Custom(text.clone()))
                    }));
                }
            }
        }
        ops.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{Committer, Queue, pick};
    use hydra_store::{BatchOp, BatchValue, ClaimRequest, WorkerId};
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn a_write_passes_over_a_committer_that_stopped() {
        let (dead, rx) = mpsc::unbounded_channel();
        drop(rx);
        let (live, mut rx) = mpsc::unbounded_channel::<(BatchOp, super::Reply)>();
        tokio::spawn(async move {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(Ok(BatchValue::Claimed(Vec::new())));
            }
        });
        let queues = vec![
            Queue { tx: dead, waiting: Arc::new(AtomicUsize::new(0)) },
            Queue { tx: live, waiting: Arc::new(AtomicUsize::new(0)) },
        ];
        let committer = Committer { queues: Arc::new(queues) };
        let op = BatchOp::Claim(ClaimRequest::new("ns", vec!["wf".into()], WorkerId::generate(), 0, 1_000, 1));
        for _ in 0..3 {
            let r = committer.submit(op.clone()).await;
            assert!(matches!(r, Ok(BatchValue::Claimed(_))), "{r:?}");
        }
    }

    #[tokio::test]
    async fn a_panic_in_the_store_fails_its_batch_and_the_committer_goes_on() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let first = Arc::new(AtomicBool::new(true));
        let apply: super::Apply = Arc::new(move |ops, _now| {
            let first = Arc::clone(&first);
            let n = ops.len();
            Box::pin(async move {
                assert!(!first.swap(false, Ordering::SeqCst), "a bug in store code");
                Ok((0..n).map(|_| Ok(BatchValue::Claimed(Vec::new()))).collect())
            })
        });
        let committer = Committer::with(1, apply, crate::clock::Clock::default());
        let op = BatchOp::Claim(ClaimRequest::new("ns", vec!["wf".into()], WorkerId::generate(), 0, 1_000, 1));
        let failed = committer.submit(op.clone()).await.unwrap_err();
        assert!(failed.to_string().contains("the group commit panicked"), "{failed}");
        assert!(!failed.is_retryable());
        for _ in 0..3 {
            let r = committer.submit(op.clone()).await;
            assert!(matches!(r, Ok(BatchValue::Claimed(_))), "the committer died with the panic: {r:?}");
        }
    }

    #[test]
    fn writes_go_to_the_first_committer_until_it_falls_behind_then_to_the_least_loaded() {
        assert_eq!(pick([0, 0, 0, 0].into_iter(), 8), Some(0), "an idle engine uses one committer");
        assert_eq!(pick([7, 0, 0, 0].into_iter(), 8), Some(0), "it keeps up: its next commit takes this too");
        assert_eq!(pick([8, 3, 0, 0].into_iter(), 8), Some(1), "behind: the next one with room");
        assert_eq!(pick([9, 8, 12, 8].into_iter(), 8), Some(1), "all behind: the least loaded");
        assert_eq!(pick([0].into_iter(), 8), Some(0), "SQLite's one committer");
        assert_eq!(pick(std::iter::empty(), 8), None);
    }
}
