//! Reading a run: a bounded wait for its result; its story read in
//! pages, payloads over a size left unread, every table counted whole.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::ShowLimits;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::both_backends;
use hydra_tests::flow::{Act, Flow, StepPlan};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A step whose output is `bytes` long.
#[step(id = "big")]
async fn big(i: u32, bytes: usize) -> Result<String, StepError> {
    Ok(format!("{i}:{}", "x".repeat(bytes)))
}

/// `steps` steps, large outputs at even positions, an event of each size,
/// then a wait for signal `done`.
#[workflow(name = "long-story")]
async fn long_story(ctx: WorkflowContext, steps: u32) -> Result<u32, WorkflowError> {
    for i in 0..steps {
        big(&ctx, i, if i % 2 == 0 { 20_000 } else { 10 }).await?;
    }
    ctx.set_event("small", &"s".to_owned()).await?;
    ctx.set_event("large", &"l".repeat(20_000)).await?;
    let _: String = ctx.recv("done").await?;
    Ok(steps)
}

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

    async fn a_runs_story_is_read_a_page_at_a_time_without_payloads_over_the_limit(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("results").build().await.unwrap();
        let w = Worker::builder(&e).register(long_story).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        let h = long_story::start(&e, 30).await.unwrap();
        for i in 0..4 {
            let payload = if i % 2 == 0 { "p".repeat(20_000) } else { "q".to_owned() };
            e.signal(h.id(), "note", &payload).await.unwrap();
        }
        let runs = e.runs();
        tokio::time::timeout(WAIT, async {
            while runs.detail(h.id()).await.unwrap().steps_total < 33 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the run records its steps, publishes its events and waits");

        let limits = ShowLimits::new().rows(10).payload_bytes(1_000);
        let d = runs.detail_within(h.id(), limits).await.unwrap();
        assert_eq!(d.steps.len(), 10, "one page of steps");
        assert_eq!(d.steps_total, 33, "30 steps, 2 events and the wait, counted whole");
        assert_eq!(d.steps.iter().map(|s| s.position).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        for s in &d.steps {
            let output = s.output.as_deref().unwrap_or_default();
            if s.position % 2 == 0 {
                assert_eq!(s.left_out(), Some(s.stored_bytes), "step {}", s.position);
                assert!(s.stored_bytes > 20_000, "its stored size: {}", s.stored_bytes);
                assert!(output.is_empty(), "step {}'s output was read ({} bytes)", s.position, output.len());
            } else {
                assert_eq!(s.left_out(), None);
                assert_eq!(s.stored_bytes, output.len() as u64);
                assert!(!output.is_empty());
            }
        }
        let next = runs.detail_within(h.id(), limits.steps_from(10)).await.unwrap();
        assert_eq!(next.steps.first().map(|s| s.position), Some(10), "the next page starts where asked");
        assert_eq!(next.steps.len(), 10);

        assert_eq!(d.signals_total, 4);
        assert_eq!(d.signals.iter().map(|s| s.left_out().is_some()).collect::<Vec<_>>(), [true, false, true, false]);
        assert!(d.signals.iter().all(|s| s.left_out().is_none() || s.payload.is_empty()));
        assert_eq!(d.events_total, 2);
        let large = d.events.iter().find(|v| v.key == "large").unwrap();
        assert!(large.left_out().is_some() && large.value.is_empty());
        let small = d.events.iter().find(|v| v.key == "small").unwrap();
        assert_eq!(small.left_out(), None);
        assert!(!small.value.is_empty());

        // Few rows: the signals' page, and the default limits read all.
        let two = runs.detail_within(h.id(), ShowLimits::new().rows(2)).await.unwrap();
        assert_eq!((two.signals.len(), two.signals_total), (2, 4));
        let whole = runs.detail(h.id()).await.unwrap();
        assert_eq!(whole.steps.len(), 33);
        assert!(whole.steps.iter().any(|s| s.left_out().is_some()), "20 KB outputs are over the default 4 KiB");
        let everything = runs.detail_within(h.id(), ShowLimits::new().payload_bytes(u32::MAX)).await.unwrap();
        assert!(everything.steps.iter().all(|s| s.left_out().is_none()), "no limit: every output read");

        e.signal(h.id(), "done", &"end".to_owned()).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), 30);
        w.shutdown(Duration::from_secs(5)).await;
    }
}
