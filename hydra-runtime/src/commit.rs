//! Group commit: one task per engine applies the checkpoint writes of many
//! runs in one database transaction.
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
use tokio::sync::{mpsc, oneshot};

/// The most writes in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<BatchValue, StoreError>>;

/// A handle on the engine's committer tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    queues: std::sync::Arc<Vec<mpsc::UnboundedSender<(BatchOp, Reply)>>>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Committer {
    /// Starts the committer tasks on the current runtime: one on SQLite (one
    /// writer at a time anyway), four on PostgreSQL (concurrent transactions
    /// hide each other's round trips). A run has at most one write in
    /// flight, so spreading writes over committers keeps each run's order.
    pub(crate) fn start(store: Store, clock: Clock) -> Committer {
        let n = match store.backend() {
            hydra_store::Backend::Postgres => 4,
            _ => 1,
        };
        let queues = (0..n)
            .map(|_| {
                let (queue, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(store.clone(), clock.clone(), rx));
                queue
            })
            .collect();
        Committer { queues: std::sync::Arc::new(queues), next: Default::default() }
    }

    /// Queues one write and waits until the transaction carrying it ended.
    pub(crate) async fn submit(&self, op: BatchOp) -> Result<BatchValue, StoreError> {
        let (tx, rx) = oneshot::channel();
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.queues.len();
        if self.queues[i].send((op, tx)).is_err() {
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

async fn run(store: Store, clock: Clock, mut rx: mpsc::UnboundedReceiver<(BatchOp, Reply)>) {
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
        match store.apply_batch(&ops, clock.now_ms()).await {
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
