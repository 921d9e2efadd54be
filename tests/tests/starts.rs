//! Runs created in a group commit (`BatchOp::Create`): they share the
//! commit of the writes around them, a claim in that commit can take them,
//! and a refused one leaves nothing in the commit it shared. And a start
//! the schema cannot hold is refused with a clear error on both backends.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::{StartOptions, TriggerType};
use hydra_store::{BatchOp, BatchValue, ClaimRequest, Created, ExecutionId, NewExecution, Store, StoreError, WorkerId};
use hydra_tests::both_backends;

const NS: &str = "starts";

fn new_run(now: i64) -> NewExecution {
    NewExecution::new(ExecutionId::generate(now), NS, "w", vec![2, b'1'], now)
}

async fn rows(store: &Store) -> usize {
    store.list_executions(&hydra_store::ExecutionFilter::new(NS)).await.unwrap().len()
}

both_backends! {
    async fn a_start_and_the_claim_that_takes_it_share_one_commit(db: TestDb) {
        let store = db.store().await;
        let commits = store.write_commits();
        let a = new_run(1_000);
        let b = new_run(1_000);
        let claim = ClaimRequest::new(NS, vec!["w".into()], WorkerId::generate(), 1_000, 30_000, 10);
        // The claim is given first: creates are applied before it anyway.
        let ops = [BatchOp::Claim(claim), BatchOp::Create(Box::new(a.clone())), BatchOp::Create(Box::new(b.clone()))];
        let results = store.apply_batch(&ops, 1_000).await.unwrap();
        assert_eq!(store.write_commits(), commits + 1, "one commit for two starts and a claim");
        let Ok(BatchValue::Claimed(claimed)) = &results[0] else { panic!("{:?}", results[0]) };
        let mut ids: Vec<_> = claimed.iter().map(|c| c.execution.id.clone()).collect();
        ids.sort();
        let mut want = vec![a.id.clone(), b.id.clone()];
        want.sort();
        assert_eq!(ids, want, "the claim took both runs created in its commit");
        for (r, new) in results[1..].iter().zip([&a, &b]) {
            let Ok(BatchValue::Created(c)) = r else { panic!("{r:?}") };
            let Created::New(e) = c.as_ref() else { panic!("{c:?}") };
            let stored = store.get_execution(NS, &new.id).await.unwrap().unwrap();
            assert_eq!((e.id.clone(), e.input.clone(), e.created_at), (stored.id, stored.input, stored.created_at));
        }
    }

    async fn a_refused_start_leaves_nothing_in_the_commit_it_shared(db: TestDb) {
        let store = db.store().await;
        let good = new_run(2_000);
        let mut bad = new_run(2_000);
        bad.search_attributes = vec![("ok".into(), "v".into()), (String::new(), "no name".into())];
        let ops = [BatchOp::Create(Box::new(good.clone())), BatchOp::Create(Box::new(bad.clone()))];
        let results = store.apply_batch(&ops, 2_000).await.unwrap();
        assert!(matches!(results[0], Ok(BatchValue::Created(_))), "{:?}", results[0]);
        assert!(matches!(results[1], Err(StoreError::Refused { .. })), "{:?}", results[1]);
        assert!(store.get_execution(NS, &bad.id).await.unwrap().is_none(), "no row of the refused start");
        assert!(store.search_attributes(NS, &bad.id).await.unwrap().is_empty(), "no attribute of it either");
        assert!(store.get_execution(NS, &good.id).await.unwrap().is_some());
        assert_eq!(rows(&store).await, 1);
    }

    async fn a_start_the_schema_cannot_hold_is_refused_alone(db: TestDb) {
        let engine = Engine::builder().store(db.store().await).namespace(NS).build().await.unwrap();
        let long = "x".repeat(256);
        for options in [
            StartOptions::new().trigger(TriggerType::Api, long.clone()),
            StartOptions::new().idempotency_key(long.clone()),
            StartOptions::new().trigger(TriggerType::Api, "nul\0inside"),
        ] {
            let r = engine.start_encoded("w", vec![2, b'1'], WorkflowOptions::default(), options).await;
            assert!(matches!(r, Err(Error::Config(ref m)) if m.contains("255 characters")), "{r:?}");
        }
        let r = engine.start_encoded(&long, vec![2, b'1'], WorkflowOptions::default(), StartOptions::new()).await;
        assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
        // 255 characters are fine.
        let ok = engine
            .start_encoded("w", vec![2, b'1'], WorkflowOptions::default(), StartOptions::new().idempotency_key("k".repeat(255)))
            .await;
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(rows(engine.store()).await, 1);
    }
}
