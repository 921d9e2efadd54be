//! The fault campaign: real worker processes SIGKILLed, SIGSTOPped past their
//! lease, fed poison, and started in a herd, on SQLite (one file shared by
//! several processes) and PostgreSQL. Every body execution is counted in a
//! log file outside the engine's tables. Seeds are printed; `HYDRA_FAULT_SEED`
//! replays one, `HYDRA_SOAK=1` runs ten times longer.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::StepStatus;
use hydra_runtime::prelude::*;
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use hydra_tests::campaign::{Campaign, kill_campaign, scale, stop_workers, workers};
use hydra_tests::fault::{BodyLog, Collector, FaultParent, FaultPlan, FaultSaga, Greeting, WorkerProc};
use hydra_tests::{DbKind, TestDb, both_backends};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Kills each campaign must land while a body is in flight (so the re-run
/// a kill forces is exercised, not only the claim after it).
const MID_BODY_KILLS: usize = 10;

/// The same for the campaigns of four runs per worker: one kill there
/// interrupts several bodies at once (a worker is idle between them less
/// often, but the work runs out sooner).
const BUSY_MID_BODY_KILLS: usize = 6;

/// The same for the transactional campaign: on SQLite a transactional body
/// holds the database's write lock, so while one runs the other workers
/// wait for the lock, outside any body.
const TX_MID_BODY_KILLS: usize = 6;

/// The same for the signals campaign, whose runs spend most of their time
/// parked waiting for the next signal.
const SIGNAL_MID_BODY_KILLS: usize = 4;

/// The worker processes' binary.
const BIN: &str = env!("CARGO_BIN_EXE_fault_worker");

/// Heavy scenarios run one at a time: the machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

both_backends! {
    async fn kill_mid_step_loses_and_duplicates_nothing(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let mut rng = fastrand::Rng::with_seed(Campaign::seed());
        let kind = db.kind;
        let c = Campaign::new(db, 1, BIN).await;
        let (n, steps) = (300 * scale(), 5);
        c.start(n, FaultPlan::steps(steps, 15)).await;
        let mut procs = workers(&c.cfg, 3).await;
        let kills = kill_campaign(&c, &mut procs, &mut rng, MID_BODY_KILLS * scale(), n).await;
        let runs = c.until_all_ended(n, Duration::from_secs(300)).await;
        stop_workers(procs);
        let lost = runs.iter().filter(|r| r.status != ExecutionStatus::Completed).count();
        let recorded = c.count("SELECT COUNT(*) FROM workflow_steps WHERE status = 'completed'").await;
        let log = BodyLog::read(&c.cfg.log);
        eprintln!("kill-mid-step [{kind:?}]: runs {n}, lost runs {lost}");
        kills.check(&format!("kill-mid-step [{kind:?}]"), &log, MID_BODY_KILLS * scale(), &c.cfg);
        assert_eq!(lost, 0, "every run completed");
        assert_eq!(recorded, (n * steps as usize) as i64, "exactly one recorded result per (run, step)");
        assert_eq!(log.steps().len(), n * steps as usize, "every step body ran");
    }

    async fn signals_sent_while_workers_are_killed_arrive_once_each_in_order(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let mut rng = fastrand::Rng::with_seed(Campaign::seed());
        let kind = db.kind;
        let c = Campaign::new(db, 4, BIN).await;
        let (runs_n, per_run) = (30 * scale(), 20u32);
        let mut handles = Vec::with_capacity(runs_n);
        for _ in 0..runs_n {
            handles.push(c.engine.start::<Collector>(per_run).await.unwrap());
        }
        let mut procs = workers(&c.cfg, 3).await;
        // The sender is a task of its own: the kill loop waits for each new
        // worker to be ready, and must not hold up a signal's transaction
        // meanwhile.
        let send = tokio::spawn({
            let (engine, ids) = (c.engine.clone(), handles.iter().map(|h| h.id().clone()).collect::<Vec<_>>());
            async move {
                for i in 0..per_run {
                    for id in &ids {
                        engine.signal(id, "n", &i).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let target = SIGNAL_MID_BODY_KILLS * scale();
        let kills = kill_campaign(&c, &mut procs, &mut rng, target, runs_n).await;
        send.await.unwrap();
        c.until_all_ended(runs_n, Duration::from_secs(300)).await;
        stop_workers(procs);
        let expected: Vec<u32> = (0..per_run).collect();
        let mut wrong = 0;
        for h in &handles {
            if h.result().await.unwrap() != expected {
                wrong += 1;
            }
        }
        let consumed = c.count("SELECT COUNT(*) FROM workflow_signals WHERE consumed_at IS NOT NULL").await;
        let sent = (runs_n * per_run as usize) as i64;
        eprintln!(
            "signals under kills [{kind:?}]: runs {runs_n}, signals {sent}, consumed {consumed}, \
             runs with a lost, repeated or reordered signal {wrong}"
        );
        kills.check(&format!("signals under kills [{kind:?}]"), &BodyLog::read(&c.cfg.log), target, &c.cfg);
        assert_eq!(wrong, 0, "every run received 0..{per_run} once each, in order");
        assert_eq!(consumed, sent, "every signal received once");
    }

    async fn children_under_kills_of_parents_and_children_start_once_and_finish(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let mut rng = fastrand::Rng::with_seed(Campaign::seed());
        let kind = db.kind;
        let c = Campaign::new(db, 4, BIN).await;
        let (n, steps) = (60 * scale(), 4u32);
        let mut parents = Vec::with_capacity(n);
        for _ in 0..n {
            parents.push(c.engine.start::<FaultParent>(FaultPlan::steps(steps, 150)).await.unwrap());
        }
        let mut procs = workers(&c.cfg, 3).await;
        let kills = kill_campaign(&c, &mut procs, &mut rng, BUSY_MID_BODY_KILLS * scale(), 2 * n).await;
        let runs = c.until_all_ended(2 * n, Duration::from_secs(300)).await;
        stop_workers(procs);
        let not_completed = runs.iter().filter(|r| r.status != ExecutionStatus::Completed).count();
        let mut wrong = 0;
        for p in &parents {
            let children = c.engine.children(p.id()).await.unwrap();
            let got = p.result().await.unwrap();
            let child_out = match children.as_slice() {
                [only] => c.engine.handle::<Vec<u32>>(only.id.clone()).result().await.unwrap(),
                _ => Vec::new(),
            };
            if children.len() != 1 || got != child_out || got.len() != steps as usize {
                wrong += 1;
            }
        }
        let child_steps = c
            .count("SELECT COUNT(*) FROM workflow_steps WHERE status = 'completed' AND step_id LIKE 's%' AND kind = 'step'")
            .await;
        let log = BodyLog::read(&c.cfg.log);
        eprintln!(
            "children under kills [{kind:?}]: parents {n}, runs {}, parents with a missing, second or mismatched \
             child {wrong}, not completed {not_completed}",
            runs.len(),
        );
        kills.check(&format!("children under kills [{kind:?}]"), &log, BUSY_MID_BODY_KILLS * scale(), &c.cfg);
        assert_eq!(runs.len(), 2 * n, "one child per parent, no more");
        assert_eq!(not_completed, 0, "every parent and child completed");
        assert_eq!(wrong, 0, "each parent has one child and returns its result");
        assert_eq!(child_steps, (n * steps as usize) as i64, "one recorded result per child step");
        assert_eq!(log.steps().len(), n * steps as usize, "every child step body ran");
    }

    async fn compensations_under_kills_run_once_each_and_every_saga_ends_compensated(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let mut rng = fastrand::Rng::with_seed(Campaign::seed());
        let kind = db.kind;
        let c = Campaign::new(db, 4, BIN).await;
        let (n, steps) = (60 * scale(), 3u32);
        for _ in 0..n {
            c.engine.start::<FaultSaga>(FaultPlan::steps(steps, 150)).await.unwrap();
        }
        let mut procs = workers(&c.cfg, 3).await;
        let kills = kill_campaign(&c, &mut procs, &mut rng, BUSY_MID_BODY_KILLS * scale(), n).await;
        let runs = c.until_all_ended(n, Duration::from_secs(300)).await;
        stop_workers(procs);
        let expected = format!("the last step refused (compensated: {})", (0..steps).rev().map(|i| format!("undo{i}")).collect::<Vec<_>>().join(", "));
        let wrong: Vec<_> = runs
            .iter()
            .filter(|r| r.status != ExecutionStatus::Failed || r.error.as_deref() != Some(expected.as_str()))
            .map(|r| (r.status, r.error.clone()))
            .collect();
        let undone = c.count("SELECT COUNT(*) FROM workflow_steps WHERE status = 'completed' AND step_id LIKE 'undo%'").await;
        let markers = c.count("SELECT COUNT(*) FROM workflow_steps WHERE status = 'completed' AND step_id LIKE 'hydra.compensate%'").await;
        let log = BodyLog::read(&c.cfg.log);
        let undo_bodies = log.started.iter().filter(|b| b.step.starts_with("undo")).count();
        eprintln!(
            "compensation under kills [{kind:?}]: sagas {n}, compensations recorded {undone} of {}, \
             compensation bodies {undo_bodies}, runs not ended compensated {}, reruns {}",
            n * steps as usize,
            wrong.len(),
            log.reruns()
        );
        kills.check(&format!("compensation under kills [{kind:?}]"), &log, BUSY_MID_BODY_KILLS * scale(), &c.cfg);
        assert!(wrong.is_empty(), "every saga ends failed and compensated: {wrong:?}");
        assert_eq!(undone, (n * steps as usize) as i64, "each compensation recorded once");
        assert_eq!(markers, n as i64, "one compensation marker per run");
        assert_eq!(log.steps().len(), 2 * n * steps as usize, "every step and compensation body ran");
    }

    async fn transactional_effects_are_exactly_once_under_kills(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let mut rng = fastrand::Rng::with_seed(Campaign::seed());
        let kind = db.kind;
        let c = Campaign::new(db, 1, BIN).await;
        let n = 250 * scale();
        let plan = FaultPlan { steps: 2, step_ms: 10, transactional: true, tx_pause_ms: 60, unencodable: false };
        c.start(n, plan).await;
        let mut procs = workers(&c.cfg, 3).await;
        let kills = kill_campaign(&c, &mut procs, &mut rng, TX_MID_BODY_KILLS * scale(), n).await;
        let runs = c.until_all_ended(n, Duration::from_secs(300)).await;
        stop_workers(procs);
        let effects = c.count("SELECT COUNT(*) FROM ledger").await;
        let distinct = c.count("SELECT COUNT(DISTINCT execution_id) FROM ledger").await;
        let log = BodyLog::read(&c.cfg.log);
        // A ledger body logs after its write: one that ran again was killed
        // between its write and the commit of its checkpoint.
        let ledger_bodies = log.started.iter().filter(|b| b.step == "ledger").count();
        eprintln!(
            "transactional kill campaign [{kind:?}]: runs {n}, ledger bodies {ledger_bodies} \
             ({} killed between the write and the commit), effect rows {effects}",
            ledger_bodies - n
        );
        kills.check(&format!("transactional kill campaign [{kind:?}]"), &log, TX_MID_BODY_KILLS * scale(), &c.cfg);
        assert!(ledger_bodies > n, "no kill landed between a ledger write and its commit");
        assert!(runs.iter().all(|r| r.status == ExecutionStatus::Completed));
        assert_eq!(effects, n as i64, "effect rows == runs exactly");
        assert_eq!(distinct, n as i64);
    }

    async fn a_kill_between_transactional_writes_and_commit_leaves_no_effect(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let c = Campaign::new(db, 1, BIN).await;
        let plan = FaultPlan { steps: 1, step_ms: 1, transactional: true, tx_pause_ms: 60_000, unencodable: false };
        let id = c.start(1, plan).await.remove(0);
        let a = WorkerProc::spawn(&c.cfg, 0).await;
        let give_up = Instant::now() + Duration::from_secs(30);
        while BodyLog::read(&c.cfg.log).started.is_empty() {
            assert!(Instant::now() < give_up, "the transactional body never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The body has written its ledger row and is pausing before the commit.
        a.kill();
        assert_eq!(c.count("SELECT COUNT(*) FROM ledger").await, 0, "no effect without its checkpoint");
        assert!(c.engine.steps(&id).await.unwrap().iter().all(|s| s.status != StepStatus::Completed));
        let b = WorkerProc::spawn(&c.cfg, 1).await;
        let runs = c.until_all_ended(1, Duration::from_secs(60)).await;
        drop(b);
        assert_eq!(runs[0].status, ExecutionStatus::Completed);
        assert_eq!(c.count("SELECT COUNT(*) FROM ledger").await, 1, "exactly one effect row in the end");
        let ledger = c.engine.steps(&id).await.unwrap().into_iter().find(|s| s.step_name == "ledger").unwrap();
        assert_eq!(ledger.attempts, 2, "the step ran again after the kill");
    }

    // Worker A is paused (SIGSTOP) mid-body past its lease; B takes the run
    // over and finishes it. Resumed, A notices it lost the lease (its guard
    // stops the run, or the fence refuses its write) and changes nothing.
    // The fence itself is tested in process by `partition.rs` and
    // `runtime.rs`.
    async fn a_worker_paused_past_its_lease_changes_nothing_after_resuming(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let kind = db.kind;
        let c = Campaign::new(db, 1, BIN).await;
        let id = c.start(1, FaultPlan::steps(1, 2_500)).await.remove(0);
        let a = WorkerProc::spawn(&c.cfg, 0).await;
        let give_up = Instant::now() + Duration::from_secs(30);
        while BodyLog::read(&c.cfg.log).started.is_empty() {
            assert!(Instant::now() < give_up);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.signal("STOP");
        let b = WorkerProc::spawn(&c.cfg, 1).await;
        let runs = c.until_all_ended(1, Duration::from_secs(60)).await;
        let after_b: Vec<_> = c.engine.steps(&id).await.unwrap();
        a.signal("CONT");
        // Wait until A has acted on its lost lease: it logs either way.
        let noticed = || a.stderr_count("lease lost") + a.stderr_count("lease not renewed in time");
        let give_up = Instant::now() + Duration::from_secs(30);
        while noticed() == 0 {
            assert!(Instant::now() < give_up, "A never noticed it had lost the lease; its stderr: {}", a.stderr.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every timer of A's (its body's sleep, its guard) expired while it
        // was stopped, so what it does after CONT it does at once; the grace
        // covers the scheduling of its last write attempt.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after_a = c.engine.steps(&id).await.unwrap();
        eprintln!("pause past the lease [{kind:?}]: A noticed the lost lease {} time(s)", noticed());
        assert_eq!(runs[0].status, ExecutionStatus::Completed);
        assert_eq!(after_a, after_b, "A changed nothing after resuming");
        let out: Vec<u32> = c.engine.handle::<Vec<u32>>(id.clone()).result().await.unwrap();
        assert_eq!(out, vec![b.pid], "the result is B's");
        drop(b);
    }

    async fn a_thundering_herd_claims_every_run_once(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let kind = db.kind;
        let mut c = Campaign::new(db, 8, BIN).await;
        c.cfg.ttl_ms = 30_000;
        c.cfg.heartbeat_ms = 1_000;
        let n = 1_000;
        c.start(n, FaultPlan::steps(1, 0)).await;
        let procs = workers(&c.cfg, 10).await;
        let runs = c.until_all_ended(n, Duration::from_secs(300)).await;
        drop(procs);
        let claimed_more_than_once = runs.iter().filter(|r| r.fencing_token.get() != 1).count();
        let bodies = BodyLog::read(&c.cfg.log).started.len();
        eprintln!("thundering herd [{kind:?}]: runs {n}, workers 10, runs claimed twice {claimed_more_than_once}, bodies {bodies}");
        assert!(runs.iter().all(|r| r.status == ExecutionStatus::Completed));
        assert_eq!(claimed_more_than_once, 0, "every run claimed exactly once");
        assert_eq!(bodies, n);
    }

    async fn poison_and_unencodable_runs_fail_cleanly_while_others_finish(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let c = Campaign::new(db, 2, BIN).await;
        let poisoned = c.start(1, FaultPlan::steps(1, 1)).await.remove(0);
        let c2 = c.engine.connection();
        let sql = match c2.get_database_backend() {
            hydra_store::sea_orm::DbBackend::Postgres => "UPDATE workflow_executions SET input_data = $1 WHERE id = $2",
            _ => "UPDATE workflow_executions SET input_data = ? WHERE id = ?",
        };
        c2.execute_raw(Statement::from_sql_and_values(
            c2.get_database_backend(),
            sql,
            [vec![1u8, 0xff, 0xfe].into(), poisoned.as_str().into()],
        ))
        .await
        .unwrap();
        let unencodable = c
            .start(1, FaultPlan { steps: 1, step_ms: 1, transactional: false, tx_pause_ms: 0, unencodable: true })
            .await
            .remove(0);
        // Bincode's tag, then a length prefix of 2^56 for a String: decoding
        // it unbounded allocated 2^56 bytes and aborted the worker process.
        let hostile = vec![1u8, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1];
        let options = hydra_runtime::WorkflowOptions::default().retry(RetryPolicy::attempts(1));
        let greeting = c.engine.start_encoded(Greeting::NAME, hostile, options, StartOptions::new()).await.unwrap().id;
        let greeted = c.engine.start::<Greeting>("campaign".into()).await.unwrap();
        c.start(20, FaultPlan::steps(2, 1)).await;
        let mut w = WorkerProc::spawn(&c.cfg, 0).await;
        let runs = c.until_all_ended(24, Duration::from_secs(60)).await;
        assert!(w.alive(), "the worker process survived the hostile input; see {}", w.stderr.display());
        drop(w);
        let by_id: HashMap<_, _> = runs.iter().map(|r| (r.id.clone(), r)).collect();
        let p = by_id[&poisoned];
        assert_eq!(p.status, ExecutionStatus::Failed);
        assert!(p.error.as_deref().unwrap().contains("decode the input") && p.error.as_deref().unwrap().contains(poisoned.as_str()));
        let g = by_id[&greeting];
        assert_eq!(g.status, ExecutionStatus::Failed);
        assert!(g.error.as_deref().unwrap().contains("decode the input"), "{:?}", g.error);
        assert_eq!(greeted.result().await.unwrap(), "hello, campaign", "the worker served the next run");
        let u = by_id[&unencodable];
        assert_eq!(u.status, ExecutionStatus::Failed);
        assert!(u.error.as_deref().unwrap().contains("could not encode the output of step `unencodable`"), "{:?}", u.error);
        let unencodable_bodies = BodyLog::read(&c.cfg.log).started.iter().filter(|b| b.step == "unencodable").count();
        assert_eq!(unencodable_bodies, 1, "the body's effect counted once, no re-run");
        assert_eq!(runs.iter().filter(|r| r.status == ExecutionStatus::Completed).count(), 21, "the worker kept serving");
    }
}

/// SQLite: another process holds the database file's write lock for a while;
/// workers wait (busy timeout) and retry rather than fail runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_briefly_locked_file_delays_but_fails_nothing() {
    let _serial = SERIAL.lock().await;
    let c = Campaign::new(TestDb::new(DbKind::Sqlite).await, 1, BIN).await;
    c.start(30, FaultPlan::steps(3, 30)).await;
    let procs = workers(&c.cfg, 2).await;
    let path = c.db.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_owned();
    let mut unfinished_at_lock = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        unfinished_at_lock.push(c.runs().await.iter().filter(|r| !r.status.is_terminal()).count());
        let status = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10); \
                 c.execute('BEGIN EXCLUSIVE'); time.sleep(1.5); c.execute('COMMIT')",
                &path,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "the locking process failed");
    }
    let runs = c.until_all_ended(30, Duration::from_secs(120)).await;
    stop_workers(procs);
    eprintln!("a locked file: runs not yet ended when each lock was taken: {unfinished_at_lock:?}");
    assert!(unfinished_at_lock.iter().all(|&n| n > 0), "every lock was taken while runs were still working");
    assert!(runs.iter().all(|r| r.status == ExecutionStatus::Completed), "no run failed because of the lock");
    assert_eq!(c.count("SELECT COUNT(*) FROM workflow_steps").await, 90);
}

/// PostgreSQL: the workers' connections are terminated in the middle of
/// their statements and transactions, repeatedly; every run still finishes
/// with one result per step, and the workers retried the failed writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_connections_mid_checkpoint_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let mut c = Campaign::new(TestDb::new(DbKind::Postgres).await, 4, BIN).await;
    // The workers name their connections, so the terminations below reach
    // theirs only (not this test's pool).
    let sep = if c.cfg.url.contains('?') { '&' } else { '?' };
    c.cfg.url = format!("{}{sep}application_name=hydra-fault-worker", c.cfg.url);
    let n = 120;
    c.start(n, FaultPlan::steps(4, 5)).await;
    let procs = workers(&c.cfg, 2).await;
    let db_name = c.db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let admin = hydra_store::sea_orm::Database::connect(hydra_tests::pg_admin_url()).await.unwrap();
    // Only backends inside a statement or a transaction: a checkpoint in flight.
    let (mut terminated, mut rounds) = (0i64, 0);
    let give_up = Instant::now() + Duration::from_secs(60);
    while terminated < 5 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(sweep_gap_ms(rounds))).await;
        rounds += 1;
        let row = admin
            .query_one_raw(Statement::from_sql_and_values(
                hydra_store::sea_orm::DbBackend::Postgres,
                // The victims are chosen first (a materialized CTE), then
                // terminated, counting only terminations that took effect.
                "WITH victims AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'hydra-fault-worker' AND state IN ('active', 'idle in transaction') \
                 AND pid <> pg_backend_pid()) SELECT COUNT(*) FROM victims WHERE pg_terminate_backend(pid)",
                [db_name.clone().into()],
            ))
            .await
            .unwrap()
            .unwrap();
        terminated += row.try_get_by_index::<i64>(0).unwrap();
        if c.runs().await.iter().all(|r| r.status.is_terminal()) {
            break;
        }
    }
    let runs = c.until_all_ended(n, Duration::from_secs(120)).await;
    // A terminated connection fails a write (a checkpoint, retried at once)
    // or a claim (retried by the next claim).
    let retried: usize =
        procs.iter().map(|p| p.stderr_count("transient failure") + p.stderr_count("claim failed")).sum();
    stop_workers(procs);
    eprintln!(
        "killed connections: {terminated} backends terminated mid-statement or mid-transaction in {rounds} rounds \
         during {n} runs; the workers logged {retried} retried writes"
    );
    assert!(terminated >= 5, "only {terminated} connections were caught in a statement or transaction");
    assert!(retried >= 1, "no worker retried a write after its connection was terminated");
    assert!(
        runs.iter().all(|r| r.status == ExecutionStatus::Completed),
        "{:?}",
        runs.iter().find(|r| r.status != ExecutionStatus::Completed)
    );
    assert_eq!(c.count("SELECT COUNT(*) FROM workflow_steps").await, (n * 4) as i64, "one result per step");
}

/// 5–25 ms between two sweeps, varied so they do not fall into step with
/// the workers' own rhythm.
fn sweep_gap_ms(round: u64) -> u64 {
    5 + (round * 7) % 21
}
