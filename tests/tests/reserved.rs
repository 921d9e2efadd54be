//! Hydra's own names (`hydra_store::reserved`): a user's step may not take
//! the ID of one of Hydra's own records, which replays, retries and forks
//! would read as Hydra's (`#[step(id = ...)]` refuses them at compile time:
//! `tests/ui/fail/reserved_step_id.rs`).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::{EngineBuilderStoreExt as _, EngineStoreExt as _};
use hydra_tests::both_backends;
use hydra_tests::flow::{Act, Flow, StepPlan};
use std::time::Duration;

both_backends! {
    async fn a_step_that_takes_a_reserved_id_fails_its_run_and_runs_no_body(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("reserved").build().await.unwrap();
        let (flow, probe) = Flow::new();
        let w = Worker::builder(&e).register(flow).poll_interval(Duration::from_millis(50)).start().await.unwrap();
        for id in ["hydra.compensate", "signal:approval", "event:x"] {
            let h = e.start::<Flow>(vec![StepPlan::new(id, Act::Ok)]).await.unwrap();
            let err = h.result_timeout(Duration::from_secs(30)).await.unwrap_err();
            let run = e.get(h.id()).await.unwrap().unwrap();
            assert_eq!(run.status, ExecutionStatus::Failed, "{err}");
            let message = run.error.unwrap_or_default();
            assert!(message.contains("reserved for Hydra"), "the reason names the rule: {message}");
            assert_eq!(probe.bodies(id), 0, "the body of a step with a reserved ID never ran");
            assert!(e.store().steps("reserved", h.id()).await.unwrap().is_empty(), "nothing recorded under it");
        }
        w.shutdown(Duration::from_secs(5)).await;
    }
}
