//! Runs created in a group commit (`BatchOp::Create`): they share the
//! commit of the writes around them, a claim in that commit can take them,
//! and a refused one leaves nothing in the commit it shared. And a start
//! the schema cannot hold is refused with a clear error on both backends.
//! `Engine::start_many`: many runs in one commit, each item answered alone.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::{EngineBuilderStoreExt as _, EngineStoreExt as _};
use hydra_runtime::{RunHandle, StartOptions, TriggerType};
use hydra_store::{BatchOp, BatchValue, ClaimRequest, Created, ExecutionId, NewExecution, Store, StoreError, WorkerId};
use hydra_tests::both_backends;

const NS: &str = "starts";

#[step]
async fn double(i: u32) -> Result<u32, StepError> {
    Ok(i * 2)
}

#[workflow(name = "starts-many")]
async fn many(ctx: WorkflowContext, i: u32) -> Result<u32, WorkflowError> {
    Ok(double(&ctx, i).await?)
}

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

    async fn start_many_writes_its_runs_in_one_commit_and_each_runs_once(db: TestDb) {
        let engine = Engine::builder().store(db.store().await).namespace(NS).build().await.unwrap();
        let commits = engine.write_commits();
        let answers = engine.start_many::<many>((0..100u32).map(|i| (i, StartOptions::new()))).await;
        assert_eq!(engine.write_commits(), commits + 1, "100 runs, one commit");
        // 300 more: two commits (256 per commit).
        let more = engine.start_many::<many>((100..400u32).map(|i| (i, StartOptions::new()))).await;
        assert_eq!(engine.write_commits(), commits + 3);
        let handles: Vec<_> = answers.into_iter().chain(more).map(Result::unwrap).collect();
        let mut ids: Vec<_> = handles.iter().map(|h| h.id().clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 400);
        let worker = Worker::builder(&engine).register(many).concurrency(64).start().await.unwrap();
        for (i, h) in handles.iter().enumerate() {
            // Each answer is the run of its own item.
            let out = tokio::time::timeout(std::time::Duration::from_secs(60), h.result()).await.unwrap().unwrap();
            assert_eq!(out, 2 * i as u32);
        }
        worker.shutdown(std::time::Duration::from_secs(5)).await;
        for id in &ids {
            let steps = engine.steps(id).await.unwrap();
            assert_eq!((steps.len(), steps[0].attempts), (1, 1), "each run's step ran once");
        }
    }

    async fn start_many_answers_each_item_alone(db: TestDb) {
        // JSON inputs: a tag byte and the number; 3 bytes hold 0..=99.
        let engine =
            Engine::builder().store(db.store().await).namespace(NS).max_payload_bytes(3).build().await.unwrap();
        let before = engine.start_with::<many>(9, StartOptions::new().idempotency_key("pre")).await.unwrap();
        let commits = engine.write_commits();
        let answers = engine
            .start_many::<many>([
                (1, StartOptions::new()),
                (2, StartOptions::new().idempotency_key("k")),
                (3, StartOptions::new().search_attribute("", "no name")),
                (4, StartOptions::new().idempotency_key("k")),
                (5, StartOptions::new().idempotency_key("x".repeat(256))),
                (12_345, StartOptions::new()),
                (6, StartOptions::new().idempotency_key("pre")),
                (7, StartOptions::new()),
            ])
            .await;
        assert_eq!(engine.write_commits(), commits + 1);
        let input_of = async |h: &Result<RunHandle<u32>, Error>| {
            let id = h.as_ref().unwrap().id().clone();
            let e = engine.get(&id).await.unwrap().unwrap();
            serde_json::from_slice::<u32>(&e.input[1..]).unwrap()
        };
        assert_eq!(input_of(&answers[0]).await, 1);
        assert_eq!(input_of(&answers[7]).await, 7);
        let (Ok(first), Ok(again)) = (&answers[1], &answers[3]) else { panic!("{answers:?}") };
        assert_eq!(first.id(), again.id(), "one run per idempotency key, also within one batch");
        assert_eq!(input_of(&answers[3]).await, 2, "the key's first item's run");
        assert!(matches!(answers[2], Err(Error::Config(_))), "{:?}", answers[2]);
        assert!(matches!(answers[4], Err(Error::Config(ref m)) if m.contains("255")), "{:?}", answers[4]);
        assert!(matches!(answers[5], Err(Error::TooLarge { .. })), "{:?}", answers[5]);
        assert_eq!(answers[6].as_ref().unwrap().id(), before.id(), "a key taken before the batch");
        assert_eq!(rows(engine.store()).await, 4, "the earlier run and three good items, nothing of the bad ones");
    }

    async fn concurrent_start_many_calls_with_the_same_keys_in_opposite_orders_do_not_deadlock(db: TestDb) {
        let a = Engine::builder().store(db.store().await).namespace(NS).build().await.unwrap();
        let b = Engine::builder().store(db.store().await).namespace(NS).build().await.unwrap();
        for round in 0..5 {
            let keys: Vec<String> = (0..200).map(|i| format!("r{round}-k{i:03}")).collect();
            let forward: Vec<_> = keys.iter().map(|k| (1u32, StartOptions::new().idempotency_key(k.clone()))).collect();
            let backward: Vec<_> = forward.iter().rev().cloned().collect();
            let (x, y) = tokio::join!(a.start_many::<many>(forward), b.start_many::<many>(backward));
            for (i, (p, q)) in x.iter().zip(y.iter().rev()).enumerate() {
                let (Ok(p), Ok(q)) = (p, q) else { panic!("round {round}, key {i}: {p:?} / {q:?}") };
                assert_eq!(p.id(), q.id(), "one run per key");
            }
        }
    }
}
