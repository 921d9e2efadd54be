//! A store call dropped part-way (a timeout around it, a cancelled
//! request, a run its worker stopped) leaves no transaction open on the
//! pooled connection it used: the next call on that connection commits on
//! its own, and what it acknowledged is there.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_store::{ClaimRequest, ExecutionId, NewExecution, WorkerId};
use hydra_tests::both_backends;
use std::time::Duration;

const NS: &str = "cancel";
const WF: &str = "wf";
const ROUNDS: u64 = 300;

both_backends! {
    async fn a_call_dropped_mid_transaction_loses_nothing_acknowledged_after_it(db: TestDb) {
        // One connection: the call after a dropped one gets the same connection.
        let store = db.store_with(|o| o.max_connections(1)).await;
        let other = db.store().await;
        let w = WorkerId::from_string("w");
        let id = ExecutionId::generate(1_000);
        store.create_execution(NewExecution::new(id.clone(), NS, WF, vec![1], 1_000)).await.unwrap();
        let req = ClaimRequest::new(NS, vec![WF.to_owned()], w.clone(), 1_000, 3_600_000, 1);
        let lease = store.claim(&req).await.unwrap().pop().unwrap().lease;
        let mut acknowledged = Vec::new();
        for round in 0..ROUNDS {
            // A renewal (a transaction) given from 0 to ~1.5 ms: dropped at
            // every point of its life, `BEGIN` in flight included.
            let budget = Duration::from_micros((round * 37) % 1_500);
            let _ = tokio::time::timeout(budget, store.renew_leases(std::slice::from_ref(&lease), 2_000, 3_600_000)).await;
            let new = ExecutionId::generate(2_000 + round as i64);
            let created = store.create_execution(NewExecution::new(new.clone(), NS, WF, vec![2], 2_000)).await;
            if created.is_ok() {
                acknowledged.push(new);
            }
        }
        assert!(acknowledged.len() as u64 > ROUNDS / 2, "most creates succeed: {}", acknowledged.len());
        // Let anything left open on the connection end.
        drop(store);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut lost = Vec::new();
        for id in &acknowledged {
            if other.get_execution(NS, id).await.unwrap().is_none() {
                lost.push(id.clone());
            }
        }
        assert!(lost.is_empty(), "{} of {} acknowledged starts were lost: {lost:?}", lost.len(), acknowledged.len());
    }
}
