//! One limit for every stored payload (`EngineBuilder::max_payload_bytes`):
//! a step's output, an event, a run's output and a typed error over it are
//! refused with an error that names the limit, and nothing over it is
//! stored. (Inputs, signals and children's inputs: `starts.rs`,
//! `new_runs.rs`, `runtime.rs`.)

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::{TestDb, both_backends};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const LIMIT: usize = 4096;

/// What the run stores, by size: its step's output, an event, its own
/// output (each `n` characters).
#[derive(Clone)]
struct Sizes(Arc<AtomicU32>);

impl Workflow for Sizes {
    const NAME: &'static str = "sizes";
    type Input = (usize, usize, usize);
    type Output = String;

    async fn run(
        &self,
        ctx: WorkflowContext,
        (step, event, output): (usize, usize, usize),
    ) -> Result<String, WorkflowError> {
        let bodies = Arc::clone(&self.0);
        let out = ctx
            .step("out", move |_| {
                let bodies = Arc::clone(&bodies);
                async move {
                    bodies.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, StepError>("s".repeat(step))
                }
            })
            .await;
        if let Err(e) = out {
            return Ok(format!("step: {}", e.message()));
        }
        if let Err(e) = ctx.set_event("e", &"e".repeat(event)).await {
            return Ok(format!("event: {}", e.message()));
        }
        Ok("o".repeat(output))
    }
}

async fn setup(db: &TestDb) -> (Engine, Worker, Arc<AtomicU32>) {
    let e =
        Engine::builder().store(db.store().await).namespace("limits").max_payload_bytes(LIMIT).build().await.unwrap();
    let bodies = Arc::new(AtomicU32::new(0));
    let w = Worker::builder(&e)
        .register(Sizes(Arc::clone(&bodies)))
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    (e, w, bodies)
}

fn names_the_limit(message: &str, what: &str) {
    assert!(message.contains(what), "{message}");
    assert!(message.contains(&format!("above the payload limit of {LIMIT} bytes")), "{message}");
    assert!(message.contains("max_payload_bytes"), "{message}");
}

both_backends! {
    async fn a_step_output_over_the_limit_fails_the_step_once_and_is_not_stored(db: TestDb) {
        let (e, w, bodies) = setup(&db).await;
        let h = e.start::<Sizes>((LIMIT * 2, 1, 1)).await.unwrap();
        let out = h.result_timeout(WAIT).await.unwrap();
        names_the_limit(&out, "the output of step `out`");
        assert_eq!(bodies.load(Ordering::SeqCst), 1, "a refused output is not a reason to run the body again");
        let steps = e.steps(h.id()).await.unwrap();
        let step = steps.iter().find(|s| s.step_id.base() == "out").unwrap();
        assert_eq!(step.status, hydra_runtime::StepStatus::Failed);
        assert!(step.output.as_ref().is_none_or(|o| o.len() <= LIMIT), "the output was stored");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn an_event_over_the_limit_is_refused(db: TestDb) {
        let (e, w, _) = setup(&db).await;
        let h = e.start::<Sizes>((1, LIMIT * 2, 1)).await.unwrap();
        let out = h.result_timeout(WAIT).await.unwrap();
        names_the_limit(&out, "event `e`");
        assert!(e.event::<String>(h.id(), "e").await.unwrap().is_none(), "the event was stored");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_run_output_over_the_limit_fails_the_run_naming_the_limit(db: TestDb) {
        let (e, w, _) = setup(&db).await;
        let h = e.start::<Sizes>((1, 1, LIMIT * 2)).await.unwrap();
        let err = h.result_timeout(WAIT).await.unwrap_err();
        let Error::RunEnded { status, message, .. } = err else { panic!("{err}") };
        assert_eq!(status, ExecutionStatus::Failed);
        names_the_limit(&message, "the output of `sizes`");
        assert!(e.get(h.id()).await.unwrap().unwrap().output.is_none());
        // Under the limit, all three are stored.
        let h = e.start::<Sizes>((100, 100, 100)).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "o".repeat(100));
        w.shutdown(Duration::from_secs(5)).await;
    }
}
