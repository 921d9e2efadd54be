//! Waiting for a run's result: bounded waits.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::both_backends;
use hydra_tests::flow::{Act, Flow, StepPlan};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

both_backends! {
    async fn a_bounded_wait_for_a_result_gives_up_and_the_run_goes_on(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("results").build().await.unwrap();
        let (flow, probe) = Flow::new();
        let w = Worker::builder(&e).register(flow).poll_interval(Duration::from_millis(50)).start().await.unwrap();
        let h = e.start::<Flow>(vec![StepPlan::new("wait", Act::Gate("g".into()))]).await.unwrap();
        let err = h.result_timeout(Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(&err, Error::WaitTimedOut { execution, .. } if execution == h.id()), "{err}");
        probe.open("g");
        let out = h.result_timeout(WAIT).await.unwrap();
        assert_eq!(out.len(), 1, "the run went on after the caller gave up waiting");
        w.shutdown(Duration::from_secs(5)).await;
    }
}
