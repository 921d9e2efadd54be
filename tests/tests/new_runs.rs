//! One road into the run table (`hydra-runtime/src/new_run.rs`): every way
//! a run is made (a typed start, a start by name, a cron tick, a schedule
//! triggered by hand, a child, a fork) carries its workflow's version where
//! a worker of the engine registers it, and holds its input to the
//! engine's payload limit.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Clock, CronSchedule, Execution, ExecutionFilter, TriggerType};
use hydra_tests::flow::{Act, StepPlan};
use hydra_tests::{TestDb, both_backends};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// 2026-01-01T00:00:30Z: thirty seconds before a minute's tick.
const T0: i64 = 1_767_225_630_000;

/// A workflow at version 3 that returns its input's length.
struct Report;

impl Workflow for Report {
    const NAME: &'static str = "report";
    const VERSION: u32 = 3;
    type Input = String;
    type Output = usize;

    async fn run(&self, _ctx: WorkflowContext, input: String) -> Result<usize, WorkflowError> {
        Ok(input.len())
    }
}

/// Starts a child `Report` with an input of the length it is given, and
/// returns what the child's start answered.
struct Parent;

impl Workflow for Parent {
    const NAME: &'static str = "parent";
    type Input = usize;
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, len: usize) -> Result<String, WorkflowError> {
        Ok(match ctx.child::<Report>("x".repeat(len)).await {
            Ok(n) => format!("child read {n} bytes"),
            Err(e) => format!("child refused: {}", e.message()),
        })
    }
}

async fn engine(db: &TestDb, clock: &Clock, limit: usize) -> Engine {
    Engine::builder()
        .store(db.store().await)
        .namespace("roads")
        .clock(clock.clone())
        .max_payload_bytes(limit)
        .build()
        .await
        .unwrap()
}

async fn worker(e: &Engine) -> Worker {
    Worker::builder(e).register(Report).register(Parent).poll_interval(Duration::from_millis(20)).start().await.unwrap()
}

async fn runs_of(e: &Engine, trigger: TriggerType) -> Vec<Execution> {
    let all = e.list(ExecutionFilter::new("roads").workflow("report")).await.unwrap();
    all.into_iter().filter(|r| r.trigger_type == trigger).collect()
}

both_backends! {
    async fn every_road_gives_a_run_its_workflows_version(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock, 1024).await;
        let w = worker(&e).await;
        let typed = e.start::<Report>("typed".into()).await.unwrap();
        let input = e.codecs().encode(hydra_runtime::Codec::Json, &"by name".to_owned()).unwrap();
        let by_name = e.start_encoded("report", input, Default::default(), StartOptions::new()).await.unwrap();
        e.register_cron(CronSchedule::workflow::<Report>("nightly", "* * * * *", "cron".into())).await.unwrap();
        let triggered = e.trigger_cron("nightly").await.unwrap();
        clock.advance(Duration::from_secs(31));
        let tick = tokio::time::timeout(WAIT, async {
            loop {
                let ticks: Vec<_> = runs_of(&e, TriggerType::Cron)
                    .await
                    .into_iter()
                    .filter(|r| r.idempotency_key.is_some())
                    .collect();
                if let Some(t) = ticks.into_iter().next() {
                    return t;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the tick started a run");
        for (road, id) in [("a typed start", typed.id().clone()), ("a start by name", by_name.id), ("a trigger", triggered.id), ("a tick", tick.id)] {
            let run = e.get(&id).await.unwrap().unwrap();
            assert_eq!(run.workflow_version, Some(3), "{road} carries the version of its workflow's code");
        }
        let child = e.start::<Parent>(13).await.unwrap();
        assert_eq!(child.result_timeout(WAIT).await.unwrap(), "child read 13 bytes");
        let children = runs_of(&e, TriggerType::Child).await;
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].workflow_version, Some(3), "a child carries its version");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn every_road_holds_its_input_to_the_payload_limit(db: TestDb) {
        let clock = Clock::manual(T0);
        // Room for the parent's answer (its output is held to the limit too).
        let e = engine(&db, &clock, 256).await;
        let w = worker(&e).await;
        let big = "x".repeat(300);
        // A start.
        let err = e.start::<Report>(big.clone()).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        // A child: its start is refused with the limit named, nothing is stored.
        let parent = e.start::<Parent>(300).await.unwrap();
        let out = parent.result_timeout(WAIT).await.unwrap();
        assert!(out.starts_with("child refused") && out.contains("256"), "{out}");
        assert!(runs_of(&e, TriggerType::Child).await.is_empty(), "no child run was stored");
        // A schedule: refused at registration, so no tick and no trigger starts it.
        let err = e.register_cron(CronSchedule::workflow::<Report>("big", "* * * * *", big.clone())).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(e.list_crons().await.unwrap().is_empty());
        // A fork with a new input.
        let small = e.start::<Report>("ok".into()).await.unwrap();
        small.result_timeout(WAIT).await.unwrap();
        let input = e.codecs().encode(hydra_runtime::Codec::Json, &big).unwrap();
        let err = e.fork(small.id(), 0, Some(input)).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_callers_key_may_not_take_the_form_of_a_cron_ticks(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock, 1024).await;
        let err = e
            .start_with::<Report>("x".into(), StartOptions::new().idempotency_key("cron:nightly:1767225660000"))
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.contains("cron")), "{err}");
    }

    async fn an_input_stored_earlier_is_not_refused_again_by_a_lower_limit(db: TestDb) {
        // A schedule and a run stored under a limit of 1,024 bytes ...
        let clock = Clock::manual(T0);
        let roomy = engine(&db, &clock, 1024).await;
        let big = "x".repeat(100);
        roomy.register_cron(CronSchedule::workflow::<Report>("big", "* * * * *", big.clone())).await.unwrap();
        let w = worker(&roomy).await;
        let done = roomy.start::<Report>(big.clone()).await.unwrap();
        assert_eq!(done.result_timeout(WAIT).await.unwrap(), 100);
        w.shutdown(Duration::from_secs(5)).await;
        // ... are run and forked by engines whose limit is 64 bytes: the tick
        // is not lost, the fork keeps the origin's input.
        let tight = engine(&db, &clock, 64).await;
        let w = worker(&tight).await;
        clock.advance(Duration::from_secs(31));
        let tick = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(r) = runs_of(&tight, TriggerType::Cron).await.into_iter().next() {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the tick started its run");
        assert_eq!(tick.input.len(), done.execution().await.unwrap().input.len());
        let fork = tight.fork(done.id(), 0, None).await.unwrap();
        assert_eq!(tight.handle::<usize>(fork.id).result_timeout(WAIT).await.unwrap(), 100);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_step_recorded_under_a_reserved_id_before_the_rule_still_replays(db: TestDb) {
        use hydra_runtime::unstable::EngineStoreExt as _;
        use hydra_tests::flow::Flow;
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock, 1024).await;
        // A run whose history, written by an earlier version, holds a user
        // step named `event:x` at position 0.
        let h = e.start::<Flow>(vec![StepPlan::new("event:x", Act::Ok)]).await.unwrap();
        let store = e.store().clone();
        let now = clock.now_ms();
        let mut req = hydra_store::ClaimRequest::new("roads", vec!["flow".into()], hydra_store::WorkerId::from_string("old"), now, 30_000, 10);
        req.lease_ttl_ms = 30_000;
        let lease = store.claim(&req).await.unwrap().remove(0).lease;
        let output = e.codecs().encode(hydra_runtime::Codec::Json, &"from the old version".to_owned()).unwrap();
        let rec = hydra_store::StepRecord::new(hydra_store::StepId::new("event:x", 1), "event:x", 0, hydra_store::StepKind::Step, 3, hydra_store::StepOutcome::Completed(output));
        store.record_step_result(&lease, rec, now).await.unwrap();
        store.release(&lease, now).await.unwrap();
        let (flow, probe) = Flow::new();
        let w = Worker::builder(&e).register(flow).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        let out = h.result_timeout(WAIT).await.unwrap();
        assert_eq!(out, vec!["from the old version".to_owned()], "answered from its history");
        assert_eq!(probe.bodies("event:x"), 0);
        w.shutdown(Duration::from_secs(5)).await;
    }
}
