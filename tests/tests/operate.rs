//! Operating runs through the engine: retry and fork refusals (a running
//! run, a compensated run, a run changed under the repair), retention in
//! bounded batches and by the workers' upkeep, search attribute limits, the
//! query plans of every list filter (index-backed on both backends) and of
//! a group commit's lock statement, and the run table's partial indexes.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineStoreExt as _;
use hydra_runtime::{ExecutionStatus, Retention, StartOptions};
use hydra_store::{Backend, ExecutionFilter, Store};
use hydra_tests::store_ops::{Costs, plan_of};
use hydra_tests::{TestDb, both_backends};
use sea_orm::{ConnectionTrait, Statement};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The inputs whose `slow` step is held (one per test instance: both
/// backends' instances run at once).
static HELD: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

#[step(id = "slow", retry(max_attempts = 1))]
async fn slow(n: u32) -> Result<u32, StepError> {
    while HELD.lock().unwrap().contains(&n) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(n)
}

#[step(id = "take", retry(max_attempts = 1))]
async fn take(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

/// The numbers given back, once per undo that ran.
static GIVEN_BACK: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

#[step(id = "give-back", retry(max_attempts = 1))]
async fn give_back(n: u32) -> Result<(), StepError> {
    GIVEN_BACK.lock().unwrap().push(n);
    Ok(())
}

#[step(id = "boom", retry(max_attempts = 1))]
async fn boom(n: u32) -> Result<u32, StepError> {
    Err(StepError::permanent(format!("boom {n}")))
}

#[workflow(name = "held")]
async fn held(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(slow(&ctx, n).await?)
}

#[workflow(name = "saga")]
async fn saga(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    take(&ctx, n).await?;
    ctx.compensate(give_back::later(n));
    Ok(boom(&ctx, n).await?)
}

/// Takes `n` (undone by giving it back), waits for signal `go`, then fails.
#[workflow(name = "saga-wait")]
async fn saga_wait(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    take(&ctx, n).await?;
    ctx.compensate(give_back::later(n));
    let _: u32 = ctx.recv("go").await?;
    Ok(boom(&ctx, n).await?)
}

#[workflow(name = "quick")]
async fn quick(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(take(&ctx, n).await?)
}

/// Kids 8 and 9 fail until their number is listed here (one per backend:
/// the two run at once).
static KIDS_FIXED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

#[workflow(name = "kid")]
async fn kid(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    if n == 7 || ((n == 8 || n == 9) && !KIDS_FIXED.lock().unwrap().contains(&n)) {
        return Ok(boom(&ctx, n).await?);
    }
    Ok(take(&ctx, n).await?)
}

/// Starts a child, waits for its end (a failure reads as 0), then for
/// signal `done`. Positions: 0 the child's start, 1 its end, 2 `done`.
#[workflow(name = "family")]
async fn family(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let child = ctx.start_child::<kid>(n).await?;
    let got = ctx.await_child(&child).await.unwrap_or(0);
    let more: u32 = ctx.recv("done").await?;
    Ok(got + more)
}

/// Starts a child, waits for signal `go`, then for the child's end.
#[workflow(name = "patient")]
async fn patient(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let child = ctx.start_child::<kid>(n).await?;
    let _: u32 = ctx.recv("go").await?;
    Ok(ctx.await_child(&child).await?)
}

/// Waits for a signal with a 300 ms timeout: 99 when none came.
#[workflow(name = "impatient")]
async fn impatient(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    let got: Option<u32> = ctx.recv_timeout("x", Duration::from_secs(3_600)).await?;
    Ok(got.unwrap_or(99))
}

/// Makes an awakeable, waits for it, then for signal `done`.
#[workflow(name = "token")]
async fn token(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    let a = ctx.awakeable::<u32>().await?;
    let v = ctx.await_awakeable(&a).await?;
    let more: u32 = ctx.recv("done").await?;
    Ok(v + more)
}

async fn engine(db: &TestDb) -> Engine {
    Engine::builder().database_url(&db.url).build().await.unwrap()
}

async fn worker(e: &Engine) -> Worker {
    Worker::builder(e)
        .register(held)
        .register(saga)
        .register(saga_wait)
        .register(quick)
        .register(kid)
        .register(family)
        .register(patient)
        .register(impatient)
        .register(token)
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap()
}

both_backends! {
    async fn retry_and_fork_refuse_what_they_cannot_repair(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        // A running run: a retry is refused and changes nothing.
        let n = if db.kind == hydra_tests::DbKind::Sqlite { 1 } else { 2 };
        HELD.lock().unwrap().push(n);
        let running = held::start(&e, n).await.unwrap();
        let waited = tokio::time::timeout(WAIT, async {
            while e.get(running.id()).await.unwrap().unwrap().status != ExecutionStatus::Running {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "waited too long");
        let before = e.get(running.id()).await.unwrap().unwrap();
        let err = e.retry(running.id()).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("is running")), "{err}");
        assert_eq!(e.get(running.id()).await.unwrap().unwrap().fencing_token, before.fencing_token);
        // Its step has no result: a fork that keeps it is refused.
        let err = e.fork(running.id(), 1, None).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("0 recorded step(s)")), "{err}");
        HELD.lock().unwrap().retain(|h| *h != n);
        assert_eq!(running.result_timeout(WAIT).await.unwrap(), n);

        // A run whose compensations ran: no retry past its undo; a fork from
        // before the marker is allowed.
        let compensated = saga::start(&e, 7).await.unwrap();
        assert!(compensated.result_timeout(WAIT).await.is_err());
        let err = e.retry(compensated.id()).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("ran its compensations")), "{err}");
        let steps = e.steps(compensated.id()).await.unwrap();
        let marker = steps.iter().find(|s| s.step_id.base() == hydra_store::COMPENSATION_MARKER).unwrap();
        // Its kept steps' effects were undone: a fork keeps none of them
        // (their compensations would run twice), only a fresh start.
        for from in [1, marker.position, marker.position + 1] {
            let err = e.fork(compensated.id(), from, None).await.unwrap_err();
            assert!(matches!(err, Error::Refused(ref m) if m.contains("fork from position 0")), "{err}");
        }
        assert!(e.fork(compensated.id(), 0, None).await.is_ok());

        // Unknown runs.
        let nobody = ExecutionId::from_string("0190a8f2-0000-7000-8000-00000000abcd");
        assert!(matches!(e.retry(&nobody).await.unwrap_err(), Error::NotFound(_)));
        assert!(matches!(e.fork(&nobody, 0, None).await.unwrap_err(), Error::NotFound(_)));
        // A fork input over the engine's limit.
        let err = e.fork(running.id(), 0, Some(vec![2; 9 * 1024 * 1024])).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_retry_answers_with_what_its_commit_wrote_while_a_claimer_takes_the_run_at_once(db: TestDb) {
        // A claimer on its own connection takes the run the moment it is
        // pending again. The retry's answer is the row its commit wrote
        // (pending, the token moved on by one), not a later read of it.
        let e = engine(&db).await;
        let w = worker(&e).await;
        let run = kid::start(&e, 7).await.unwrap();
        assert!(run.result_timeout(WAIT).await.is_err());
        w.shutdown(Duration::from_secs(5)).await;
        let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
        let backend = conn.get_database_backend();
        let p = |n: usize| if db.kind == hydra_tests::DbKind::Sqlite { "?".to_owned() } else { format!("${n}") };
        let claim = Statement::from_sql_and_values(
            backend,
            format!(
                "UPDATE workflow_executions SET status = 'running', fencing_token = fencing_token + 1 WHERE id = {} \
                 AND status = 'pending'",
                p(1)
            ),
            [run.id().as_str().into()],
        );
        let fail = Statement::from_sql_and_values(
            backend,
            format!("UPDATE workflow_executions SET status = 'failed' WHERE id = {}", p(1)),
            [run.id().as_str().into()],
        );
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let claimer = tokio::spawn({
            let (conn, claim, stop) = (conn.clone(), claim.clone(), stop.clone());
            async move {
                let mut taken = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    if conn.execute_raw(claim.clone()).await.is_ok_and(|r| r.rows_affected() == 1) {
                        taken += 1;
                    }
                }
                taken
            }
        });
        let rounds = 40;
        for round in 0..rounds {
            let before = e.get(run.id()).await.unwrap().unwrap();
            let answer = e.retry(run.id()).await.unwrap();
            assert_eq!(answer.status, ExecutionStatus::Pending, "round {round}: answered with a later state");
            assert_eq!(answer.fencing_token.get(), before.fencing_token.get() + 1, "round {round}");
            tokio::time::timeout(WAIT, async {
                while e.get(run.id()).await.unwrap().unwrap().status != ExecutionStatus::Running {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap();
            conn.execute_raw(fail.clone()).await.unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        assert_eq!(claimer.await.unwrap(), rounds, "the claimer took every retried run");
    }

    async fn a_moved_database_refuses_every_write_and_every_engine_naming_its_successor(db: TestDb) {
        let target = match db.kind {
            hydra_tests::DbKind::Sqlite => TestDb::new(hydra_tests::DbKind::Postgres).await,
            hydra_tests::DbKind::Postgres => TestDb::sqlite(),
        };
        let e = engine(&db).await;
        let w = worker(&e).await;
        let ended = quick::start(&e, 2).await.unwrap();
        ended.result_timeout(WAIT).await.unwrap();
        w.shutdown(Duration::from_secs(5)).await;
        // A worker that claimed a run and lost its lease before the move
        // (it expired: the move proceeds).
        let stale = quick::start(&e, 5).await.unwrap();
        let claim = hydra_store::ClaimRequest::new(
            e.namespace(),
            vec!["quick".into()],
            hydra_store::WorkerId::generate(),
            e.clock().now_ms(),
            1,
            1,
        );
        let claimed = e.store().claim(&claim).await.unwrap();
        let stale_lease = claimed.into_iter().find(|c| &c.execution.id == stale.id()).unwrap().lease;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pending = quick::start(&e, 3).await.unwrap();
        let report = e.move_to(&target.url).await.unwrap();
        assert!(report.verified());
        let named = |err: Error| {
            let text = err.to_string();
            assert!(text.contains(&format!("moved to {}", target.url)), "{text}");
        };
        // The engine still open on the source: every write refused.
        named(quick::start(&e, 4).await.unwrap_err());
        named(e.signal(pending.id(), "x", &1u32).await.unwrap_err());
        named(e.cancel(pending.id()).await.unwrap_err());
        named(e.prune(&Retention::keep(Duration::ZERO)).await.unwrap_err());
        // The stale holder's step write is refused as moved (not as a
        // database error, which would fail its attempt and run its
        // compensations on the source).
        let rec = hydra_store::StepRecord::new(
            hydra_store::StepId::new("s", 1),
            "s",
            0,
            hydra_store::StepKind::Step,
            3,
            hydra_store::StepOutcome::Completed(vec![1]),
        );
        let refused = e.store().record_step_result(&stale_lease, rec, e.clock().now_ms()).await.unwrap_err();
        assert!(matches!(refused, hydra_store::StoreError::Moved { .. }), "{refused:?}");
        // Reads still answer (what was moved, as it was).
        assert_eq!(e.get(pending.id()).await.unwrap().unwrap().status, ExecutionStatus::Pending);
        // No engine opens it again, so no worker runs its runs a second time.
        named(Engine::builder().database_url(&db.url).build().await.unwrap_err());
        // The run goes on in the new database.
        let t = engine(&target).await;
        let w = worker(&t).await;
        assert_eq!(t.handle::<u32>(pending.id().clone()).result_timeout(WAIT).await.unwrap(), 3);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn an_ended_runs_open_wait_reads_as_closed_and_hydras_records_read_as_words(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let run = family::start(&e, 5).await.unwrap();
        wait_for(&e, run.id(), |steps| steps == 2).await;
        tokio::time::timeout(WAIT, async {
            while e.get(run.id()).await.unwrap().unwrap().status != ExecutionStatus::Sleeping {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        let child = e.children(run.id()).await.unwrap().remove(0);
        let labels = |steps: &[hydra_store::Step]| steps.iter().map(|s| s.label()).collect::<Vec<_>>();
        let open = e.steps(run.id()).await.unwrap();
        let want = ["child `kid`".to_owned(), format!("end of child run {}", child.id), "signal `done`".to_owned()];
        assert_eq!(labels(&open), want);
        assert_eq!(open[2].state_label(), "waiting");
        e.cancel(run.id()).await.unwrap();
        assert!(run.result_timeout(WAIT).await.is_err());
        // Ended: the wait that will never finish reads as closed, with why.
        for steps in [e.steps(run.id()).await.unwrap(), e.run_detail(run.id()).await.unwrap().steps.into_iter().map(|s| s.row).collect()] {
            assert_eq!(labels(&steps), want);
            assert_eq!(steps[2].status, hydra_store::StepStatus::Failed);
            assert_eq!(steps[2].error.as_deref(), Some("the wait did not finish: the run ended cancelled"));
            assert_eq!(steps[0].status, hydra_store::StepStatus::Completed, "finished steps read as they are");
        }
        // The row itself is kept: a retry resumes the wait.
        e.retry(run.id()).await.unwrap();
        e.signal(run.id(), "done", &1u32).await.unwrap();
        assert_eq!(run.result_timeout(WAIT).await.unwrap(), 6);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_fork_that_keeps_steps_owns_their_compensations_so_one_charge_is_refunded_once(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let n = if db.kind == hydra_tests::DbKind::Sqlite { 101 } else { 202 };
        let origin = saga_wait::start(&e, n).await.unwrap();
        wait_for(&e, origin.id(), |steps| steps >= 1).await;
        // Live, the origin can still fail and give back: a fork keeping the
        // take is refused (position 0 keeps nothing and is allowed).
        let err = e.fork(origin.id(), 1, None).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("fork it once it has ended")), "{err}");
        // Ended without compensating (terminated): the fork takes the step
        // over, and the origin can be neither retried nor forked past 0 again.
        e.terminate(origin.id()).await.unwrap();
        let fork = e.fork(origin.id(), 1, None).await.unwrap();
        let err = e.retry(origin.id()).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains(&format!("was forked into run {}", fork.id))), "{err}");
        let err = e.fork(origin.id(), 1, None).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains(&format!("fork run {} instead", fork.id))), "{err}");
        // The fork fails and gives the take back: once.
        e.signal(&fork.id, "go", &1u32).await.unwrap();
        assert!(e.handle::<u32>(fork.id.clone()).result_timeout(WAIT).await.is_err());
        assert_eq!(GIVEN_BACK.lock().unwrap().iter().filter(|g| **g == n).count(), 1);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn children_are_kept_whole_by_fork_retry_and_prune(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let ok = family::start(&e, 5).await.unwrap();
        let failed = family::start(&e, 7).await.unwrap();
        for run in [&ok, &failed] {
            wait_for(&e, run.id(), |steps| steps == 2).await;
        }
        let kids = e.children(ok.id()).await.unwrap();
        let bad_kids = e.children(failed.id()).await.unwrap();
        assert_eq!((kids.len(), bad_kids.len()), (1, 1));
        // The parent waits: its ended child is not pruned (a replay of the
        // parent could start it again), and a retry of the failed child is
        // refused (its parent was told already).
        let pruned = e.prune(&Retention::keep(Duration::ZERO)).await.unwrap();
        assert_eq!(pruned.runs, 0, "a child of a waiting parent was pruned");
        let err = e.retry(&bad_kids[0].id).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("is a child of run")), "{err}");
        // A fork keeping the child's start but not its end would wait for
        // ever: refused.
        let err = e.fork(ok.id(), 1, None).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("whose end the kept history does not take")), "{err}");
        // A fork that keeps steps takes them over: not while the origin can
        // still end on its own (and compensate them).
        let err = e.fork(ok.id(), 2, None).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("fork it once it has ended")), "{err}");
        e.signal(ok.id(), "done", &1u32).await.unwrap();
        e.signal(failed.id(), "done", &1u32).await.unwrap();
        assert_eq!(ok.result_timeout(WAIT).await.unwrap(), 6);
        assert_eq!(failed.result_timeout(WAIT).await.unwrap(), 1);
        // Ended, it forks keeping both; a fork of the fork keeps them too.
        let fork = e.fork(ok.id(), 2, None).await.unwrap();
        e.signal(&fork.id, "done", &1u32).await.unwrap();
        assert_eq!(e.handle::<u32>(fork.id.clone()).result_timeout(WAIT).await.unwrap(), 6);
        let fork2 = e.fork(&fork.id, 2, None).await.unwrap();
        e.signal(&fork2.id, "done", &1u32).await.unwrap();
        assert_eq!(e.handle::<u32>(fork2.id.clone()).result_timeout(WAIT).await.unwrap(), 6);
        for f in [&fork, &fork2] {
            assert_eq!(e.children(&f.id).await.unwrap().len(), 0, "the fork started a second child");
        }
        let pruned = e.prune(&Retention::keep(Duration::ZERO)).await.unwrap();
        assert_eq!(pruned.runs, 6, "{pruned:?}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_child_retried_before_its_parent_took_the_news_tells_it_again(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let n = if db.kind == hydra_tests::DbKind::Sqlite { 8 } else { 9 };
        let parent = patient::start(&e, n).await.unwrap();
        wait_for(&e, parent.id(), |steps| steps >= 1).await;
        let child = e.children(parent.id()).await.unwrap().remove(0);
        e.handle::<u32>(child.id.clone()).result_timeout(WAIT).await.unwrap_err();
        KIDS_FIXED.lock().unwrap().push(n);
        e.retry(&child.id).await.unwrap();
        assert_eq!(e.handle::<u32>(child.id.clone()).result_timeout(WAIT).await.unwrap(), n);
        e.signal(parent.id(), "go", &1u32).await.unwrap();
        assert_eq!(parent.result_timeout(WAIT).await.unwrap(), n, "the parent heard the old failure");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_retried_wait_keeps_its_deadline_and_awakeables_stay_with_their_run(db: TestDb) {
        // On a manual clock: the wait's hour passes only when the test says.
        let clock = hydra_runtime::Clock::manual(1_800_000_000_000);
        let e = Engine::builder().database_url(&db.url).clock(clock.clone()).build().await.unwrap();
        let w = worker(&e).await;
        let run = impatient::start(&e, 0).await.unwrap();
        let waited = tokio::time::timeout(WAIT, async {
            while e.get(run.id()).await.unwrap().unwrap().status != ExecutionStatus::Sleeping {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the run never began its wait");
        e.cancel(run.id()).await.unwrap();
        run.result_timeout(WAIT).await.unwrap_err();
        // Past the wait's deadline, then the retry: a kept deadline has
        // passed, so the wait times out at once; a fresh one would be an
        // hour away on a clock nobody moves again.
        clock.advance(Duration::from_secs(7_200));
        e.retry(run.id()).await.unwrap();
        let got = run.result_timeout(Duration::from_secs(10)).await;
        assert_eq!(got.ok(), Some(99), "the retried wait did not keep its deadline");

        let t = token::start(&e, 0).await.unwrap();
        wait_for(&e, t.id(), |steps| steps >= 1).await;
        let err = e.fork(t.id(), 1, None).await.unwrap_err();
        assert!(matches!(err, Error::Refused(ref m) if m.contains("made an awakeable")), "{err}");
        assert!(e.fork(t.id(), 0, None).await.is_ok());
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn search_attribute_names_and_values_are_checked_alike(db: TestDb) {
        let e = engine(&db).await;
        for (name, value) in [
            ("a#2", "v"),
            ("with space", "v"),
            (&"n".repeat(hydra_store::MAX_SEARCH_NAME_BYTES + 1)[..], "v"),
            ("k", "nul\0inside"),
        ] {
            let err = quick::start_with(&e, 1, StartOptions::new().search_attribute(name, value)).await.unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{name:?}={value:?}: {err}");
        }
        let longest = "n".repeat(hydra_store::MAX_SEARCH_NAME_BYTES);
        let run = quick::start_with(&e, 1, StartOptions::new().search_attribute(&longest, "v")).await.unwrap();
        let w = worker(&e).await;
        run.result_timeout(WAIT).await.unwrap();
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_retried_run_gets_fresh_attempts_and_a_new_token(db: TestDb) {
        let e = engine(&db).await;
        // Cancelled before it ran, then retried: it runs, under a new token.
        let run = quick::start(&e, 3).await.unwrap();
        e.cancel(run.id()).await.unwrap();
        let cancelled = e.get(run.id()).await.unwrap().unwrap();
        assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
        let retried = e.retry(run.id()).await.unwrap();
        assert_eq!(retried.status, ExecutionStatus::Pending);
        assert_eq!(retried.attempts, 0);
        assert!(retried.error.is_none() && retried.completed_at.is_none());
        assert!(retried.fencing_token.get() > cancelled.fencing_token.get());
        let w = worker(&e).await;
        assert_eq!(run.result_timeout(WAIT).await.unwrap(), 3);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn prune_goes_in_bounded_batches(db: TestDb) {
        let e = engine(&db).await;
        let store = e.store().clone();
        seed_finished(&store, 1_200).await;
        let cutoff = i64::MAX / 2;
        let first = store.prune_batch("default", cutoff, &[], 500).await.unwrap();
        assert_eq!(first.runs, 500);
        assert_eq!(first.steps, 500);
        let total = e.prune(&Retention::keep(Duration::from_millis(0)).batch(500)).await.unwrap();
        assert_eq!(total.runs, 700);
        assert_eq!(e.list(ExecutionFilter::new("default")).await.unwrap().len(), 0);
        // Only the statuses asked for.
        seed_finished(&store, 10).await;
        let none = e.prune(&Retention::keep(Duration::ZERO).statuses([ExecutionStatus::TimedOut])).await.unwrap();
        assert_eq!(none.runs, 0);
    }

    async fn workers_prune_by_the_engines_retention(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let old = quick::start(&e, 1).await.unwrap();
        old.result_timeout(WAIT).await.unwrap();
        let parked = held::start_with(&e, 2, StartOptions::new().delay(Duration::from_secs(3600))).await.unwrap();
        w.shutdown(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let kept = Engine::builder()
            .database_url(&db.url)
            .retention(Retention::keep(Duration::from_millis(1)))
            .build()
            .await
            .unwrap();
        let w = worker(&kept).await;
        let waited = tokio::time::timeout(WAIT, async {
            while kept.get(old.id()).await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the worker's upkeep did not prune");
        assert_eq!(kept.get(parked.id()).await.unwrap().unwrap().status, ExecutionStatus::Pending);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn search_attribute_limits_are_refused(db: TestDb) {
        let e = engine(&db).await;
        let long = "x".repeat(hydra_store::MAX_SEARCH_VALUE_BYTES + 1);
        let err = quick::start_with(&e, 1, StartOptions::new().search_attribute("k", long)).await.unwrap_err();
        assert!(matches!(err, Error::Config(ref m) if m.contains("at most 1024 bytes")), "{err}");
        let err = quick::start_with(&e, 1, StartOptions::new().search_attribute("", "v")).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert_eq!(e.list(ExecutionFilter::new("default")).await.unwrap().len(), 0, "a refused start left a run");
        let ok = quick::start_with(&e, 1, StartOptions::new().search_attribute("k", "v")).await.unwrap();
        assert_eq!(e.search_attributes(ok.id()).await.unwrap(), vec![("k".to_owned(), "v".to_owned())]);
    }

    async fn every_list_filter_is_index_backed(db: TestDb) {
        let e = engine(&db).await;
        let store = e.store().clone();
        seed_finished(&store, 2_000).await;
        store.connection().execute_unprepared("ANALYZE").await.unwrap();
        // Each filter of `runs list` (and the prune's selection), and the
        // index it must be served by.
        let ns = || ExecutionFilter::new("default").limit(50);
        let lists = [
            ("namespace", ns(), "idx_executions_ns_created"),
            ("workflow", ns().workflow("wf-3"), "idx_workflow_executions_list"),
            ("status", ns().status(ExecutionStatus::Failed), "idx_workflow_executions_status"),
            ("key", ns().idempotency_key("k-1"), "idx_executions_ns_key"),
            ("search list", ns().search("order_id", "o-1"), "idx_search_attributes_lookup"),
            ("search list", ns().search("order_id", "o-1").search("order_id", "o-1"), "idx_search_attributes_lookup"),
        ];
        let mut filters: Vec<(&str, Statement, &str)> =
            lists.into_iter().map(|(what, f, index)| (what, store.list_statement(&f), index)).collect();
        // The prune's selection.
        filters.push((
            "prune",
            store.prune_statement("default", 100, &[ExecutionStatus::Completed, ExecutionStatus::Failed], 500),
            "idx_executions_ns_completed",
        ));
        // A run's children and the ended-runs chart.
        let parent = ExecutionId::generate(0);
        filters.push(("children", store.children_statement("default", &parent), "idx_workflow_executions_parent"));
        filters.push(("ended chart", store.ended_statement("default", 1_990, 10), "idx_executions_ns_completed"));
        for (what, stmt, index) in &filters {
            let (what, index) = (*what, *index);
            let plan = plan_of(&store, stmt, Costs::IndexIfUsable).await;
            println!("{what} ({:?}): {plan}", store.backend());
            assert!(plan.contains(index), "{what} is not served by {index}: {plan}");
            if what == "search list" {
                // The runs are found by ID from the attribute's index; only
                // the matching runs are sorted.
                let by_id = if store.backend() == Backend::Sqlite { "(id=?)" } else { "workflow_executions_pkey" };
                assert!(plan.contains(by_id), "{what}: runs not found by ID: {plan}");
            } else if store.backend() == Backend::Sqlite && what != "ended chart" {
                assert!(!plan.contains("USE TEMP B-TREE FOR ORDER BY"), "{what} sorts every row: {plan}");
            }
        }
        // PostgreSQL at its own costs, over the 2,000 runs: each filter's
        // runs are found through its index, not by reading the whole table,
        // and a page of a list is read in order from the index, not sorted
        // from every matching row. (The prune's selection is bounded by its
        // cutoff and may be sorted; its check for live parents is planned
        // from the live runs' count, none here.)
        if store.backend() == Backend::Postgres {
            for (what, stmt, index) in &filters {
                let plan = plan_of(&store, stmt, Costs::Normal).await;
                println!("{what} at normal costs: {plan}");
                let whole_table = plan
                    .split("; ")
                    .any(|node| node.contains("Seq Scan on workflow_executions") && !node.contains("workflow_executions p "));
                assert!(!whole_table, "{what} reads every run: {plan}");
                assert!(plan.contains(index), "{what} is not served by {index} at normal costs: {plan}");
                if ["namespace", "workflow", "status", "key", "children"].contains(what) {
                    assert!(!plan.contains("Sort "), "{what} sorts its matching rows: {plan}");
                }
            }
        }
    }

    async fn indexes_on_columns_most_runs_leave_null_hold_only_runs_that_set_them(db: TestDb) {
        let e = engine(&db).await;
        let store = e.store();
        let conn = store.connection();
        // Every partial index of the run table, by name.
        let partial: Vec<String> = match store.backend() {
            Backend::Sqlite => {
                let rows = conn.query_all_raw(Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT name FROM pragma_index_list('workflow_executions') WHERE \"partial\" = 1 ORDER BY name",
                ))
                .await
                .unwrap();
                rows.iter().map(|r| r.try_get::<String>("", "name").unwrap()).collect()
            }
            _ => {
                let rows = conn.query_all_raw(Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'workflow_executions' \
                     AND indexdef LIKE '%WHERE%' ORDER BY indexname",
                ))
                .await
                .unwrap();
                rows.iter().map(|r| r.try_get::<String>("", "indexname").unwrap()).collect()
            }
        };
        assert_eq!(
            partial,
            [
                "idx_executions_ns_completed",
                "idx_executions_ns_key",
                "idx_workflow_executions_claim",
                "idx_workflow_executions_parent"
            ],
            "a run without a key, a parent or an end is written to these indexes"
        );
        // The queries they serve still use them: `every_list_filter_is_index_backed`.
    }
}

/// Waits until run `id` has a history of which `done` holds.
async fn wait_for(e: &Engine, id: &ExecutionId, done: impl Fn(usize) -> bool) {
    let waited = tokio::time::timeout(WAIT, async {
        while !done(e.steps(id).await.unwrap().iter().filter(|s| s.status != hydra_store::StepStatus::Running).count())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "run {id} did not get there");
}

/// PostgreSQL: a prune that meets a run being retried (its row locked and
/// made pending by another transaction) leaves the run and its steps, and
/// does not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_prune_does_not_take_a_run_retried_under_it() {
    let db = TestDb::new(hydra_tests::DbKind::Postgres).await;
    let e = engine(&db).await;
    let store = e.store().clone();
    seed_finished(&store, 3).await;
    let runs = e.list(ExecutionFilter::new("default")).await.unwrap();
    let target = runs.last().unwrap().id.clone();
    let conn = store.connection();
    let txn = sea_orm::TransactionTrait::begin(conn).await.unwrap();
    txn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "UPDATE workflow_executions SET status = 'pending', completed_at = NULL, due_at = 9000000000000 WHERE id = $1",
        [target.as_str().into()],
    ))
    .await
    .unwrap();
    // The prune skips the run another transaction holds (it waits for no
    // lock, so it cannot be part of a lock cycle).
    let pruned = tokio::time::timeout(WAIT, e.prune(&Retention::keep(Duration::ZERO))).await.unwrap().unwrap();
    assert_eq!(pruned.runs, 2, "{pruned:?}");
    txn.commit().await.unwrap();
    assert_eq!(e.get(&target).await.unwrap().unwrap().status, ExecutionStatus::Pending);
    assert_eq!(e.steps(&target).await.unwrap().len(), 1, "the retried run lost its steps");
}

/// PostgreSQL: the statement that locks a group commit's runs (and the
/// parents of those it ends) finds them by ID, whatever the history: the
/// whole run table is not read on every batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_group_commit_locks_its_runs_through_the_primary_key() {
    let db = TestDb::new(hydra_tests::DbKind::Postgres).await;
    let e = engine(&db).await;
    let store = e.store().clone();
    seed_finished(&store, 2_000).await;
    store.connection().execute_unprepared("ANALYZE").await.unwrap();
    let ids: Vec<String> =
        e.list(ExecutionFilter::new("default").limit(3)).await.unwrap().iter().map(|r| r.id.to_string()).collect();
    let stmt = store.lock_runs_statement(ids[..2].to_vec(), ids[2..].to_vec());
    // At the planner's usual costs (priced-out scans would show a scan only
    // when no index can serve).
    let plan = plan_of(&store, &stmt, Costs::Normal).await;
    println!("{plan}");
    assert!(!plan.contains("Seq Scan"), "the lock statement reads the whole run table: {plan}");
    assert!(plan.contains("workflow_executions_pkey"), "the runs are not found by ID: {plan}");
}

/// `n` finished runs with one step each, ended at time 1..=n: of ten
/// workflows (`quick` for every tenth, else `wf-{i % 10}`), one in ten
/// failed, each with its own idempotency key and `order_id` search
/// attribute.
async fn seed_finished(store: &Store, n: u32) {
    let conn = store.connection();
    let backend = conn.get_database_backend();
    for i in 0..n {
        let id = ExecutionId::generate(i64::from(i)).to_string();
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            match store.backend() {
                Backend::Sqlite => "INSERT INTO workflow_executions (id, namespace, workflow_name, status, input_data, max_attempts, attempts, trigger_type, created_at, updated_at, completed_at, fencing_token, cancel_requested, open_position, open_attempts, idempotency_key) VALUES (?, 'default', ?, ?, X'02', 1, 1, 'api', ?, ?, ?, 1, FALSE, 1, 0, ?)",
                _ => "INSERT INTO workflow_executions (id, namespace, workflow_name, status, input_data, max_attempts, attempts, trigger_type, created_at, updated_at, completed_at, fencing_token, cancel_requested, open_position, open_attempts, idempotency_key) VALUES ($1, 'default', $2, $3, '\\x02', 1, 1, 'api', $4, $5, $6, 1, FALSE, 1, 0, $7)",
            },
            [
                id.clone().into(),
                if i % 10 == 0 { "quick".to_owned() } else { format!("wf-{}", i % 10) }.into(),
                if i % 10 == 5 { "failed" } else { "completed" }.into(),
                i64::from(i).into(),
                i64::from(i).into(),
                (i64::from(i) + 1).into(),
                format!("k-{i}").into(),
            ],
        ))
        .await
        .unwrap();
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            match store.backend() {
                Backend::Sqlite => "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, kind, status, attempts, max_attempts, started_at, fencing_token) VALUES (?, 'default', 'take', 'take', 0, 'step', 'completed', 1, 1, 0, 1)",
                _ => "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, kind, status, attempts, max_attempts, started_at, fencing_token) VALUES ($1, 'default', 'take', 'take', 0, 'step', 'completed', 1, 1, 0, 1)",
            },
            [id.clone().into()],
        ))
        .await
        .unwrap();
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            match store.backend() {
                Backend::Sqlite => "INSERT INTO workflow_search_attributes (execution_id, name, namespace, value) VALUES (?, 'order_id', 'default', ?)",
                _ => "INSERT INTO workflow_search_attributes (execution_id, name, namespace, value) VALUES ($1, 'order_id', 'default', $2)",
            },
            [id.into(), format!("o-{i}").into()],
        ))
        .await
        .unwrap();
    }
}
