//! Step attempts stay exact across workflow retries and durable backoffs:
//! each step gets exactly its configured attempts, numbered from 1.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::Clock;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::both_backends;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;
const WAIT: Duration = Duration::from_secs(30);

/// Step `zero` fails permanently in the first workflow attempt (the
/// workflow turns that into a retryable error); in the second it fails its
/// first three attempts, each with a 5 s backoff (parked durably), then
/// succeeds. Step `one` (3 attempts) fails twice, then succeeds. Records
/// the attempt numbers each body saw.
#[derive(Clone, Default)]
struct Trace(Arc<Mutex<Vec<(String, u32, u32)>>>);

impl Workflow for Trace {
    const NAME: &'static str = "trace";
    type Input = ();
    type Output = u32;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().retry(RetryPolicy::attempts(3).initial(Duration::from_millis(1)))
    }

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        let wf_attempt = ctx.attempt();
        let log = Arc::clone(&self.0);
        let zero = StepOptions::new("zero").retry(RetryPolicy::attempts(5).initial(Duration::from_secs(5)).jitter(0.0));
        let zero = ctx
            .step_with(zero, move |s| {
                let log = Arc::clone(&log);
                async move {
                    log.lock().unwrap().push(("zero".into(), wf_attempt, s.attempt()));
                    match (wf_attempt, s.attempt()) {
                        (1, _) => Err(StepError::permanent("declined")),
                        (_, a) if a <= 3 => Err(StepError::retryable("busy")),
                        _ => Ok(0u32),
                    }
                }
            })
            .await;
        if let Err(e) = zero {
            return Err(WorkflowError::retryable(format!("zero failed: {e}")));
        }
        let log = Arc::clone(&self.0);
        let one = StepOptions::new("one").retry(RetryPolicy::attempts(3).initial(Duration::from_millis(1)));
        Ok(ctx
            .step_with(one, move |s| {
                let log = Arc::clone(&log);
                async move {
                    log.lock().unwrap().push(("one".into(), wf_attempt, s.attempt()));
                    if s.attempt() < 3 { Err(StepError::retryable("flaky")) } else { Ok(s.attempt()) }
                }
            })
            .await?)
    }
}

both_backends! {
    async fn after_a_workflow_retry_and_parked_backoffs_the_next_step_gets_exactly_its_attempts(db: TestDb) {
        let clock = Clock::manual(T0);
        let engine =
            Engine::builder().store(db.store().await).namespace("attempts").clock(clock.clone()).build().await.unwrap();
        let trace = Trace::default();
        let w = Worker::builder(&engine)
            .register(trace.clone())
            .poll_interval(Duration::from_millis(20))
            .heartbeat_interval(Duration::from_secs(100))
            .lease_ttl(Duration::from_secs(3600))
            .start()
            .await
            .unwrap();
        let h = engine.start::<Trace>(()).await.unwrap();
        let result = tokio::time::timeout(WAIT, async {
            loop {
                let e = engine.get(h.id()).await.unwrap().unwrap();
                if e.status.is_terminal() {
                    return e;
                }
                // Wake whatever is parked on a backoff.
                clock.advance(Duration::from_secs(6));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
        .await
        .expect("the run ended");
        let seen = trace.0.lock().unwrap().clone();
        let one: Vec<u32> = seen.iter().filter(|(s, _, _)| s == "one").map(|(_, _, a)| *a).collect();
        assert_eq!(one, [1, 2, 3], "step one runs exactly its three attempts, numbered from 1 (trace: {seen:?})");
        let zero: Vec<(u32, u32)> = seen.iter().filter(|(s, _, _)| s == "zero").map(|(_, w, a)| (*w, *a)).collect();
        assert_eq!(zero, [(1, 1), (2, 1), (2, 2), (2, 3), (2, 4)], "trace: {seen:?}");
        assert_eq!(result.status, ExecutionStatus::Completed, "{:?}", result.error);
        w.shutdown(Duration::from_secs(2)).await;
    }
}
