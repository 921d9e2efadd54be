//! Deploying changed code while runs are in flight: patches (old and new
//! runs side by side across a restart; a deprecated patch), versions (old
//! runs only on old workers), non-determinism that suspends a run until
//! other code takes it up (never again the code that suspended it, in a
//! mixed fleet) or an operator resumes or fails it, and runs nobody can
//! run made visible. Each "deploy" is a worker started with other code.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{CancelOutcome, Execution, OnNondeterminism};
use hydra_tests::{TestDb, both_backends};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn noop(ctx: &WorkflowContext, id: &'static str) -> Result<(), StepError> {
    ctx.step(id, |_s| async { Ok::<_, StepError>(()) }).await
}

/// Which code a workflow of this file runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    /// `a`, signal `go`, `b`, signal `done`.
    Old,
    /// `a`, signal `go`, patch `add-check` (`check`), `b`, signal `done`.
    Patched,
    /// `a`, signal `go`, deprecated patch, `check`, `b`, signal `done`.
    Deprecated,
}

/// The "same" workflow in three deploys.
struct Shop(Code);

impl Workflow for Shop {
    const NAME: &'static str = "shop";
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
        noop(&ctx, "a").await?;
        ctx.recv::<u32>("go").await?;
        match self.0 {
            Code::Old => {}
            Code::Patched => {
                if ctx.patched("add-check").await {
                    noop(&ctx, "check").await?;
                }
            }
            Code::Deprecated => {
                ctx.deprecate_patch("add-check").await;
                noop(&ctx, "check").await?;
            }
        }
        noop(&ctx, "b").await?;
        ctx.recv::<u32>("done").await?;
        Ok(())
    }
}

async fn worker<W: Workflow>(e: &Engine, w: W) -> Worker {
    Worker::builder(e).register(w).poll_interval(Duration::from_millis(20)).start().await.unwrap()
}

async fn until(e: &Engine, id: &ExecutionId, what: &str, done: impl Fn(&Execution) -> bool) -> Execution {
    tokio::time::timeout(WAIT, async {
        loop {
            let r = e.get(id).await.unwrap().unwrap();
            if done(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"))
}

fn parked(r: &Execution) -> bool {
    r.status == ExecutionStatus::Sleeping
}

async fn steps(e: &Engine, id: &ExecutionId) -> Vec<String> {
    e.steps(id).await.unwrap().into_iter().map(|s| s.step_id.to_string()).collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Version 1 and version 2 of one workflow: each says which ran it.
struct Tagged<const V: u32>;

impl<const V: u32> Workflow for Tagged<V> {
    const NAME: &'static str = "tagged";
    const VERSION: u32 = V;
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        Ok(ctx.step("tag", |_s| async { Ok::<_, StepError>(V) }).await?)
    }
}

#[step]
async fn reserve() -> Result<(), StepError> {
    Ok(())
}

#[step]
async fn allocate() -> Result<(), StepError> {
    Ok(())
}

#[workflow(name = "nde")]
async fn nde_v1(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    reserve(&ctx).await?;
    Ok(ctx.recv::<u32>("go").await?)
}

/// A deploy that renamed the first step: runs of v1 do not replay.
#[workflow(name = "nde")]
async fn nde_v2(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    allocate(&ctx).await?;
    Ok(ctx.recv::<u32>("go").await?)
}

/// The fix: v1's sequence again (other code than v2).
#[workflow(name = "nde")]
async fn nde_v3(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    reserve(&ctx).await?;
    let go = ctx.recv::<u32>("go").await?;
    let _ = n;
    Ok(go)
}

/// A bad deploy of `nde` during which a cancel is accepted: the cancel is
/// written straight into the run's row (as another process's would be,
/// before this worker hears of it), then the body meets the renamed step.
struct CancelThenDiverge(hydra_store::sea_orm::DatabaseConnection);

impl Workflow for CancelThenDiverge {
    const NAME: &'static str = "nde";
    type Input = u32;
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
        use hydra_store::sea_orm::{ConnectionTrait, Statement, Value};
        let backend = self.0.get_database_backend();
        let sql = match backend {
            hydra_store::sea_orm::DbBackend::Postgres => {
                "UPDATE workflow_executions SET cancel_requested = TRUE WHERE id = $1"
            }
            _ => "UPDATE workflow_executions SET cancel_requested = TRUE WHERE id = ?",
        };
        let id = Value::from(ctx.execution_id().as_str());
        self.0.execute_raw(Statement::from_sql_and_values(backend, sql, [id])).await.unwrap();
        allocate(&ctx).await?;
        Ok(ctx.recv::<u32>("go").await?)
    }
}

/// v2 with the old behaviour: non-determinism fails the run.
struct NdeFails;

impl Workflow for NdeFails {
    const NAME: &'static str = "nde";
    type Input = u32;
    type Output = u32;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().on_nondeterminism(OnNondeterminism::Fail)
    }

    async fn run(&self, ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
        allocate(&ctx).await?;
        Ok(ctx.recv::<u32>("go").await?)
    }
}

#[step(id = "charge", retry(max_attempts = 1))]
async fn charge_once() -> Result<String, StepError> {
    Ok("charged".into())
}

/// A sleep, then a step allowed one attempt.
#[workflow(name = "attempts")]
async fn att_v1(ctx: WorkflowContext, _n: u32) -> Result<String, WorkflowError> {
    reserve(&ctx).await?;
    ctx.sleep(Duration::from_millis(200)).await;
    Ok(charge_once(&ctx).await?)
}

#[workflow(name = "attempts")]
async fn att_v2(ctx: WorkflowContext, _n: u32) -> Result<String, WorkflowError> {
    allocate(&ctx).await?;
    ctx.sleep(Duration::from_millis(200)).await;
    Ok(charge_once(&ctx).await?)
}

/// A second bad build: its own code (the sleep moved first), which no
/// more replays the history than `att_v2` does.
#[workflow(name = "attempts")]
async fn att_v2b(ctx: WorkflowContext, _n: u32) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_millis(200)).await;
    allocate(&ctx).await?;
    Ok(charge_once(&ctx).await?)
}

#[workflow(name = "attempts")]
async fn att_v3(ctx: WorkflowContext, n: u32) -> Result<String, WorkflowError> {
    let _ = n;
    reserve(&ctx).await?;
    ctx.sleep(Duration::from_millis(200)).await;
    Ok(charge_once(&ctx).await?)
}

#[step(id = "quote")]
async fn quote_text() -> Result<String, StepError> {
    Ok("12".into())
}

#[step(id = "quote")]
async fn quote_number() -> Result<u64, StepError> {
    Ok(12)
}

#[workflow(name = "typed-step")]
async fn quote_v1(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    quote_text(&ctx).await?;
    Ok(ctx.recv::<u32>("go").await?)
}

/// The step's output type changed: a recorded output does not decode.
#[workflow(name = "typed-step")]
async fn quote_v2(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    quote_number(&ctx).await?;
    Ok(ctx.recv::<u32>("go").await?)
}

/// Version 2 of `pinned` (and a build of it that does not replay its runs).
struct Pinned<const V: u32, const BAD: bool>;

impl<const V: u32, const BAD: bool> Workflow for Pinned<V, BAD> {
    const NAME: &'static str = "pinned";
    const VERSION: u32 = V;
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        noop(&ctx, if BAD { "b" } else { "a" }).await?;
        Ok(ctx.recv::<u32>("go").await?)
    }
}

#[workflow(name = "patch-marker")]
async fn marker_flow(ctx: WorkflowContext, _n: u32) -> Result<bool, WorkflowError> {
    reserve(&ctx).await?;
    ctx.sleep(Duration::from_millis(200)).await;
    Ok(ctx.patched("p").await)
}

async fn sql(e: &Engine, sql: &str, id: &ExecutionId) {
    use hydra_runtime::sea_orm::{ConnectionTrait, DbBackend, Statement};
    let c = e.connection();
    let backend = c.get_database_backend();
    let sql = if backend == DbBackend::Postgres { sql.replace('?', "$1") } else { sql.to_owned() };
    c.execute_raw(Statement::from_sql_and_values(backend, &sql, [id.as_str().into()])).await.unwrap();
}

async fn engine(db: &TestDb, ns: &str) -> Engine {
    Engine::builder().store(db.store().await).namespace(ns).build().await.unwrap()
}

both_backends! {
    async fn patched_and_unpatched_runs_replay_side_by_side_across_a_restart(db: TestDb) {
        let e = engine(&db, "patches").await;
        // Old code: the run passes the patch point (records `b`) and waits.
        let w = worker(&e, Shop(Code::Old)).await;
        let old = e.start::<Shop>(()).await.unwrap();
        until(&e, old.id(), "old run parks on go", parked).await;
        e.signal(old.id(), "go", &1u32).await.unwrap();
        until(&e, old.id(), "old run parks on done", |r| parked(r) && r.open_step.position >= 3).await;
        w.shutdown(Duration::from_secs(5)).await;
        // Deploy: the patched code. A new run takes the new branch; the old
        // one replays its history (the old branch) across the restart.
        let w = worker(&e, Shop(Code::Patched)).await;
        let new = e.start::<Shop>(()).await.unwrap();
        until(&e, new.id(), "new run parks on go", parked).await;
        e.signal(new.id(), "go", &1u32).await.unwrap();
        until(&e, new.id(), "new run parks on done", |r| parked(r) && r.open_step.position >= 5).await;
        for h in [&old, &new] {
            e.signal(h.id(), "done", &1u32).await.unwrap();
            h.result_timeout(WAIT).await.unwrap();
        }
        assert_eq!(steps(&e, old.id()).await, names(&["a", "signal:go", "b", "signal:done"]), "unpatched");
        assert_eq!(
            steps(&e, new.id()).await,
            names(&["a", "signal:go", "hydra.patch:add-check", "check", "b", "signal:done"]),
            "patched"
        );
        // A patched run still waiting when the patch is deprecated.
        let mid = e.start::<Shop>(()).await.unwrap();
        until(&e, mid.id(), "run parks on go", parked).await;
        e.signal(mid.id(), "go", &1u32).await.unwrap();
        until(&e, mid.id(), "run parks on done", |r| parked(r) && r.open_step.position >= 5).await;
        w.shutdown(Duration::from_secs(5)).await;
        // Deploy: the old branch is gone, the patch deprecated.
        let w = worker(&e, Shop(Code::Deprecated)).await;
        e.signal(mid.id(), "done", &1u32).await.unwrap();
        mid.result_timeout(WAIT).await.unwrap();
        let fresh = e.start::<Shop>(()).await.unwrap();
        until(&e, fresh.id(), "fresh run parks on go", parked).await;
        e.signal(fresh.id(), "go", &1u32).await.unwrap();
        e.signal(fresh.id(), "done", &1u32).await.unwrap();
        fresh.result_timeout(WAIT).await.unwrap();
        assert_eq!(steps(&e, fresh.id()).await, names(&["a", "signal:go", "check", "b", "signal:done"]), "no marker");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn versioned_workers_claim_only_the_versions_they_replay(db: TestDb) {
        let e = engine(&db, "versions").await;
        let v1 = worker(&e, Tagged::<1>).await;
        let v2 = Worker::builder(&e)
            .register(Tagged::<2>)
            .poll_interval(Duration::from_millis(20))
            .worker_id(hydra_runtime::WorkerId::from_string("v2"))
            .start()
            .await
            .unwrap();
        let mut runs = Vec::new();
        for _ in 0..10 {
            runs.push((1, e.start::<Tagged<1>>(()).await.unwrap()));
            runs.push((2, e.start::<Tagged<2>>(()).await.unwrap()));
        }
        for (version, h) in &runs {
            assert_eq!(h.result_timeout(WAIT).await.unwrap(), *version, "a v{version} run ran on v{version} code");
            assert_eq!(h.execution().await.unwrap().workflow_version, Some(*version));
        }
        v1.shutdown(Duration::from_secs(5)).await;
        // v1 runs left with no v1 worker: visible, and not run by v2.
        let stranded = e.start::<Tagged<1>>(()).await.unwrap();
        let unknown = e.start_encoded("retired", b"\x01null".to_vec(), WorkflowOptions::default(), StartOptions::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stranded.status().await.unwrap(), ExecutionStatus::Pending, "v2 code does not claim a v1 run");
        let list = e.unclaimable().await.unwrap();
        let seen: Vec<(String, Option<u32>, u64)> =
            list.iter().map(|u| (u.workflow_name.clone(), u.workflow_version, u.runs)).collect();
        assert_eq!(seen, vec![("retired".to_owned(), None, 1), ("tagged".to_owned(), Some(1), 1)]);
        assert!(list.iter().all(|u| u.waited_ms >= 0));
        assert!(e.get(&unknown.id).await.unwrap().is_some());
        v2.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_cancel_accepted_just_before_a_suspend_ends_the_run_cancelled(db: TestDb) {
        let e = engine(&db, "nde-cancel").await;
        let w = worker(&e, nde_v1).await;
        let h = nde_v1::start(&e, 1).await.unwrap();
        until(&e, h.id(), "v1 parks", parked).await;
        w.shutdown(Duration::from_secs(5)).await;
        let conn = db.store().await.connection().clone();
        let w = worker(&e, CancelThenDiverge(conn)).await;
        e.signal(h.id(), "go", &7u32).await.unwrap();
        let r = until(&e, h.id(), "the run ends", |r| r.status.is_terminal() || r.status == ExecutionStatus::Suspended).await;
        assert_eq!(r.status, ExecutionStatus::Cancelled, "a suspended run would keep the cancel for ever: {:?}", r.error);
        let error = r.error.unwrap_or_default();
        assert!(error.contains("not compensated") && error.contains("non-determinism"), "{error}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn non_determinism_suspends_until_other_code_takes_it_up_or_an_operator_fails_it(db: TestDb) {
        let e = engine(&db, "nde").await;
        let w = worker(&e, nde_v1).await;
        let keep = nde_v1::start(&e, 1).await.unwrap();
        let drop_it = nde_v1::start(&e, 2).await.unwrap();
        for h in [&keep, &drop_it] {
            until(&e, h.id(), "v1 runs park", parked).await;
        }
        w.shutdown(Duration::from_secs(5)).await;
        // A bad deploy: the runs wake, do not replay, and are suspended,
        // not failed.
        let w = worker(&e, nde_v2).await;
        for h in [&keep, &drop_it] {
            e.signal(h.id(), "go", &7u32).await.unwrap();
            let r = until(&e, h.id(), "the run is suspended", |r| r.status == ExecutionStatus::Suspended).await;
            let error = r.error.clone().unwrap_or_default();
            eprintln!("after the bad deploy: {} is {}: {error}", r.id, r.status);
            assert!(
                error.contains("non-determinism") && error.contains("position 0") && error.contains("`reserve`")
                    && error.contains("`allocate`"),
                "{error}"
            );
            assert_eq!((r.due_at, r.lease_owner), (None, None));
        }
        // The same code does not take them up again.
        w.shutdown(Duration::from_secs(5)).await;
        let w = worker(&e, nde_v2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(keep.status().await.unwrap(), ExecutionStatus::Suspended);
        // An operator gives one up.
        e.fail(drop_it.id(), "abandoned after the bad deploy").await.unwrap();
        eprintln!("an operator fails {}: {}", drop_it.id(), drop_it.status().await.unwrap());
        let err = drop_it.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::Failed, .. }), "{err}");
        assert!(e.fail(drop_it.id(), "again").await.is_err(), "an ended run is not failed again");
        w.shutdown(Duration::from_secs(5)).await;
        // The fix is deployed: the suspended run resumes by itself and ends.
        let w = worker(&e, nde_v3).await;
        assert_eq!(keep.result_timeout(WAIT).await.unwrap(), 7);
        eprintln!("the fix is deployed: {} resumed by itself and is {}", keep.id(), keep.status().await.unwrap());
        w.shutdown(Duration::from_secs(5)).await;
        // The old behaviour, per workflow: fail at once.
        let w = worker(&e, nde_v1).await;
        let h = nde_v1::start(&e, 3).await.unwrap();
        until(&e, h.id(), "parks", parked).await;
        w.shutdown(Duration::from_secs(5)).await;
        let w = worker(&e, NdeFails).await;
        e.signal(h.id(), "go", &1u32).await.unwrap();
        let err = h.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::Failed, .. }), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn in_a_mixed_fleet_the_code_that_suspended_a_run_never_takes_it_again_and_an_operator_can_resume_it(db: TestDb) {
        let e = engine(&db, "fleet").await;
        let v3_code = <nde_v3 as Workflow>::code_fingerprint();
        let w = worker(&e, nde_v1).await;
        let h = nde_v1::start(&e, 1).await.unwrap();
        let h2 = nde_v1::start(&e, 2).await.unwrap();
        let h3 = nde_v1::start(&e, 3).await.unwrap();
        for h in [&h, &h2, &h3] {
            until(&e, h.id(), "v1 runs park", parked).await;
        }
        w.shutdown(Duration::from_secs(5)).await;
        // The bad code suspends them.
        let bad = worker(&e, nde_v2).await;
        let mut suspended = Vec::new();
        for h in [&h, &h2, &h3] {
            e.signal(h.id(), "go", &7u32).await.unwrap();
            suspended.push(until(&e, h.id(), "suspended", |r| r.status == ExecutionStatus::Suspended).await);
        }
        // The fix starts on another machine: its upkeep takes the runs up
        // (as a worker's does at its start) ...
        let store = db.store().await;
        let versions = (<nde_v3 as Workflow>::REPLAYS_FROM, <nde_v3 as Workflow>::VERSION);
        let now = e.clock().now_ms();
        let taken = store.resume_suspended("fleet", "nde", versions, v3_code, now).await.unwrap();
        assert_eq!(taken, 3);
        // ... and the bad code, still running beside it, takes none again
        // (it used to claim them and suspend them again, back and forth
        // with every upkeep of the fix's workers).
        tokio::time::sleep(Duration::from_millis(600)).await;
        for (h, before) in [&h, &h2, &h3].into_iter().zip(&suspended) {
            let r = e.get(h.id()).await.unwrap().unwrap();
            assert_eq!(r.status, ExecutionStatus::Sleeping, "{:?}", r.error);
            assert_eq!(r.fencing_token, before.fencing_token, "claimed again by the code that suspended it");
        }
        // The fix's worker is gone before it claimed them: a cancel still
        // lands (the bad code takes a run with a cancel, and ends it as code
        // that does not replay it does) ...
        assert_eq!(e.cancel(h3.id()).await.unwrap(), CancelOutcome::Requested);
        let r = until(&e, h3.id(), "the cancel lands", |r| r.status.is_terminal()).await;
        assert_eq!(r.status, ExecutionStatus::Cancelled, "{:?}", r.error);
        // ... and an operator may let the bad code try one again: it is
        // suspended again.
        e.resume(h2.id()).await.unwrap();
        until(&e, h2.id(), "suspended again", |r| r.status == ExecutionStatus::Suspended).await;
        bad.shutdown(Duration::from_secs(5)).await;
        // A fix whose fingerprint is the suspending code's (a payload type's
        // definition changed): pretend its own code suspended the second
        // run. It does not take it up by itself; an operator
        // resumes it.
        sql(&e, &format!("UPDATE workflow_executions SET status = 'suspended', due_at = NULL, suspended_code = {v3_code} WHERE id = ?"), h2.id()).await;
        let fix = worker(&e, nde_v3).await;
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), 7, "the first run is the fix's");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h2.status().await.unwrap(), ExecutionStatus::Suspended);
        e.resume(h2.id()).await.unwrap();
        assert_eq!(h2.result_timeout(WAIT).await.unwrap(), 7);
        let err = e.resume(h2.id()).await.unwrap_err();
        assert!(err.to_string().contains("is completed: only a suspended run can be resumed"), "{err}");
        fix.shutdown(Duration::from_secs(5)).await;
    }

    async fn suspending_and_resuming_uses_up_no_attempt(db: TestDb) {
        let e = engine(&db, "attempts").await;
        let w = worker(&e, att_v1).await;
        let h = att_v1::start(&e, 1).await.unwrap();
        until(&e, h.id(), "sleeps", parked).await;
        w.shutdown(Duration::from_secs(5)).await;
        // The bad deploy wakes it, suspends it; a second build of bad code
        // (another code) takes it up and suspends it again: neither may cost
        // the one attempt `charge` has.
        let w = worker(&e, att_v2).await;
        let first = until(&e, h.id(), "suspended", |r| r.status == ExecutionStatus::Suspended).await;
        w.shutdown(Duration::from_secs(5)).await;
        let w = worker(&e, att_v2b).await;
        let second = until(&e, h.id(), "suspended by the second build", |r| {
            r.status == ExecutionStatus::Suspended && r.suspended_code.is_some() && r.suspended_code != first.suspended_code
        })
        .await;
        assert!(second.fencing_token > first.fencing_token, "the second build claimed the run");
        w.shutdown(Duration::from_secs(5)).await;
        let w = worker(&e, att_v3).await;
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "charged");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_change_of_a_steps_output_type_suspends_too(db: TestDb) {
        let e = engine(&db, "typed-step").await;
        let w = worker(&e, quote_v1).await;
        let h = quote_v1::start(&e, 1).await.unwrap();
        until(&e, h.id(), "parks", parked).await;
        w.shutdown(Duration::from_secs(5)).await;
        let w = worker(&e, quote_v2).await;
        e.signal(h.id(), "go", &1u32).await.unwrap();
        let r = until(&e, h.id(), "suspended", |r| r.status == ExecutionStatus::Suspended).await;
        assert!(r.error.unwrap_or_default().contains("stored output of step `quote`"));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_cancel_of_a_run_its_code_does_not_replay_ends_it(db: TestDb) {
        let e = engine(&db, "nde-cancel").await;
        let w = worker(&e, nde_v1).await;
        let h = nde_v1::start(&e, 1).await.unwrap();
        until(&e, h.id(), "parks", parked).await;
        w.shutdown(Duration::from_secs(5)).await;
        let w = worker(&e, nde_v2).await;
        assert_eq!(h.cancel().await.unwrap(), hydra_runtime::CancelOutcome::Requested);
        let err = h.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(&err, Error::RunEnded { status: ExecutionStatus::Cancelled, message, .. } if message.contains("not compensated")), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_worker_takes_up_again_only_runs_of_versions_it_replays(db: TestDb) {
        let e = engine(&db, "pinned").await;
        let w = worker(&e, Pinned::<2, false>).await;
        let h = e.start::<Pinned<2, false>>(()).await.unwrap();
        until(&e, h.id(), "parks", parked).await;
        w.shutdown(Duration::from_secs(5)).await;
        let w = worker(&e, Pinned::<2, true>).await;
        e.signal(h.id(), "go", &1u32).await.unwrap();
        until(&e, h.id(), "suspended", |r| r.status == ExecutionStatus::Suspended).await;
        w.shutdown(Duration::from_secs(5)).await;
        // Other code, but of version 1: it cannot run a version-2 run, so it
        // leaves it suspended (no wake-up it could not claim).
        let w = worker(&e, Pinned::<1, false>).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = e.get(h.id()).await.unwrap().unwrap();
        assert_eq!((r.status, r.open_step.attempts), (ExecutionStatus::Suspended, 0));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_crash_before_a_patch_marker_is_recorded_does_not_fail_the_run(db: TestDb) {
        let e = engine(&db, "patch-marker").await;
        let w = worker(&e, marker_flow).await;
        let h = marker_flow::start(&e, 1).await.unwrap();
        until(&e, h.id(), "sleeps", parked).await;
        // As if a claim after the sleep had died before the marker: its
        // attempt of the marker's position is counted.
        sql(&e, "UPDATE workflow_executions SET open_attempts = 1 WHERE id = ?", h.id()).await;
        assert!(h.result_timeout(WAIT).await.unwrap(), "the run reached the patch on this code");
        w.shutdown(Duration::from_secs(5)).await;
    }
}
