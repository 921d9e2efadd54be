//! Macro tests: pass cases, and compile-fail cases whose committed `.stderr`
//! shows each error pointing at the user's token; and the run-time half of
//! the duplicate step ID check, for code the macros cannot see.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Execution, RunHandle};
use hydra_tests::TestDb;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[test]
fn macro_ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}

static ROOM_BODIES: AtomicU32 = AtomicU32::new(0);
static HAND_BODIES: AtomicU32 = AtomicU32::new(0);

#[step(id = "reserve")]
async fn reserve_stock(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[step(id = "reserve")]
async fn reserve_room(n: u32) -> Result<u32, StepError> {
    ROOM_BODIES.fetch_add(1, Ordering::SeqCst);
    Ok(n + 1)
}

/// What a hand-written workflow calls; `#[workflow]` would reject the
/// duplicate at compile time, these bodies are not seen by any macro.
#[derive(serde::Serialize, serde::Deserialize)]
enum Calls {
    /// `reserve_stock` twice: the same step, fine.
    SameStepTwice,
    /// `reserve_stock` then `reserve_room`: two steps, one ID.
    TwoStepsOneId,
    /// `ctx.step("reserve", …)` then `reserve_stock`.
    HandWrittenFirst,
    /// `reserve_stock` then `ctx.step("reserve", …)`.
    HandWrittenAfter,
}

struct Booking;

impl Workflow for Booking {
    const NAME: &'static str = "booking";
    type Input = Calls;
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, calls: Calls) -> Result<u32, WorkflowError> {
        Ok(match calls {
            Calls::SameStepTwice => reserve_stock(&ctx, 1).await? + reserve_stock(&ctx, 2).await?,
            Calls::TwoStepsOneId => reserve_stock(&ctx, 1).await? + reserve_room(&ctx, 2).await?,
            Calls::HandWrittenFirst => {
                ctx.step("reserve", |_s| async { Ok::<u32, StepError>(1) }).await? + reserve_stock(&ctx, 2).await?
            }
            Calls::HandWrittenAfter => {
                let first = reserve_stock(&ctx, 1).await?;
                let bodies = &HAND_BODIES;
                first
                    + ctx
                        .step("reserve", move |_s| async move {
                            bodies.fetch_add(1, Ordering::SeqCst);
                            Ok::<u32, StepError>(1)
                        })
                        .await?
            }
        })
    }
}

async fn ended(handle: &RunHandle<u32>) -> Execution {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = handle.execution().await.unwrap();
            if e.status.is_terminal() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap()
}

/// Two different step functions with one ID in one run fail the run, before
/// the second one's body runs, with an error naming both; one step called
/// twice is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_step_ids_fail_the_run_at_run_time() {
    let db = TestDb::sqlite();
    let engine = Engine::builder().store(db.store().await).namespace("macros").build().await.unwrap();
    let worker =
        Worker::builder(&engine).register(Booking).poll_interval(Duration::from_millis(50)).start().await.unwrap();

    let fine = engine.start::<Booking>(Calls::SameStepTwice).await.unwrap();
    assert_eq!(fine.result().await.unwrap(), 3);

    let clash = engine.start::<Booking>(Calls::TwoStepsOneId).await.unwrap();
    let e = ended(&clash).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    let error = e.error.unwrap_or_default();
    assert!(
        error.contains("duplicate step ID `reserve` in workflow `booking`")
            && error.contains("`macros::reserve_stock` and `macros::reserve_room`"),
        "{error}"
    );
    assert_eq!(ROOM_BODIES.load(Ordering::SeqCst), 0, "the clashing step's body must not run");

    let hand = engine.start::<Booking>(Calls::HandWrittenFirst).await.unwrap();
    let e = ended(&hand).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    let error = e.error.unwrap_or_default();
    assert!(
        error.contains("a step or sleep called without `#[step]`") && error.contains("macros::reserve_stock"),
        "{error}"
    );

    let after = engine.start::<Booking>(Calls::HandWrittenAfter).await.unwrap();
    let e = ended(&after).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    let error = e.error.unwrap_or_default();
    assert!(error.contains("a step called without `#[step]`") && error.contains("macros::reserve_stock"), "{error}");
    assert_eq!(HAND_BODIES.load(Ordering::SeqCst), 0, "the hand-written step's body must not run");

    worker.shutdown(Duration::from_secs(5)).await;
}
