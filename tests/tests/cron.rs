//! Cron: exactly one run per tick across workers, restarts, missed ticks,
//! validation, trigger columns, pause/resume, plain handlers; on SQLite and
//! PostgreSQL with the test clock.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Clock, CronSchedule, Execution, ExecutionFilter, MissedTicks, TriggerType};
use hydra_tests::flow::{Act, Flow, StepPlan};
use hydra_tests::{TestDb, both_backends};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// 2023-11-14T22:13:20Z; the next minute tick is 40 s later.
const T0: i64 = 1_700_000_000_000;
const FIRST_TICK: i64 = T0 + 40_000;
const WAIT: Duration = Duration::from_secs(30);

async fn engine(db: &TestDb, clock: &Clock) -> Engine {
    Engine::builder().store(db.store().await).namespace("cron").clock(clock.clone()).build().await.unwrap()
}

async fn worker(engine: &Engine, flow: Flow) -> Worker {
    Worker::builder(engine)
        .register(flow)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        // Long in test-clock time: jumping a minute must not expire leases.
        .lease_ttl(Duration::from_secs(3600))
        .start()
        .await
        .unwrap()
}

fn report() -> CronSchedule {
    CronSchedule::workflow::<Flow>("report", "* * * * *", vec![StepPlan::new("report", Act::Ok)])
}

async fn cron_runs(engine: &Engine) -> Vec<Execution> {
    engine
        .list(ExecutionFilter::new("cron").limit(10_000))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.trigger_type == TriggerType::Cron)
        .collect()
}

/// The runs schedule `name` started.
async fn runs_of(engine: &Engine, name: &str) -> Vec<Execution> {
    cron_runs(engine).await.into_iter().filter(|r| r.trigger_source.as_deref() == Some(name)).collect()
}

/// Waits until schedule `name` has started `n` runs, all ended.
async fn until_runs_of(engine: &Engine, name: &str, n: usize) -> Vec<Execution> {
    until_runs_where(engine, n, |r| r.trigger_source.as_deref() == Some(name)).await
}

/// Waits until there are `n` cron runs, all ended.
async fn until_runs(engine: &Engine, n: usize) -> Vec<Execution> {
    until_runs_where(engine, n, |_| true).await
}

/// Waits until `n` cron runs that `keep` holds of exist, all ended.
async fn until_runs_where(engine: &Engine, n: usize, keep: impl Fn(&Execution) -> bool) -> Vec<Execution> {
    tokio::time::timeout(WAIT, async {
        loop {
            let runs: Vec<Execution> = cron_runs(engine).await.into_iter().filter(&keep).collect();
            if runs.len() >= n && runs.iter().all(|r| r.status.is_terminal()) {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never saw {n} finished cron runs of those asked for"))
}

/// Lets every scheduler run a few rounds.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

both_backends! {
    async fn three_workers_over_ten_ticks_start_exactly_ten_runs(db: TestDb) {
        let clock = Clock::manual(T0);
        let engines = [engine(&db, &clock).await, engine(&db, &clock).await, engine(&db, &clock).await];
        let (flow, probe) = Flow::new();
        let mut workers = Vec::new();
        for e in &engines {
            workers.push(worker(e, flow.clone()).await);
        }
        let job = engines[0].register_cron(report()).await.unwrap();
        assert_eq!(job.next_run_at, FIRST_TICK);
        for tick in 1..=10 {
            clock.advance(Duration::from_secs(60));
            until_runs(&engines[0], tick).await;
        }
        settle().await;
        let runs = cron_runs(&engines[1]).await;
        assert_eq!(runs.len(), 10, "exactly one run per tick");
        let keys: HashSet<_> = runs.iter().map(|r| r.idempotency_key.clone().unwrap()).collect();
        assert_eq!(keys.len(), 10);
        for r in &runs {
            assert_eq!(r.status, ExecutionStatus::Completed);
            assert_eq!(r.trigger_source.as_deref(), Some("report"), "trigger_source is the schedule");
            assert!(r.idempotency_key.as_deref().unwrap().starts_with("cron:report:"));
        }
        assert_eq!(probe.bodies("report"), 10);
        let job = engines[2].list_crons().await.unwrap().remove(0);
        assert_eq!(job.last_tick_at, Some(FIRST_TICK + 9 * 60_000));
        for w in workers {
            w.shutdown(Duration::from_secs(1)).await;
        }
    }

    async fn restarting_every_worker_keeps_the_next_tick(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, _probe) = Flow::new();
        let w = worker(&e, flow.clone()).await;
        e.register_cron(report()).await.unwrap();
        clock.advance(Duration::from_secs(60));
        until_runs(&e, 1).await;
        let before = e.list_crons().await.unwrap().remove(0);
        drop(w);
        drop(e);
        // The application restarts (and re-registers its schedule) 30 s later.
        clock.advance(Duration::from_secs(30));
        let e = engine(&db, &clock).await;
        let again = e.register_cron(report()).await.unwrap();
        assert_eq!(again.next_run_at, before.next_run_at, "re-registering does not reset a valid schedule");
        let w = worker(&e, flow).await;
        clock.advance(Duration::from_secs(30));
        until_runs(&e, 2).await;
        settle().await;
        assert_eq!(cron_runs(&e).await.len(), 2);
        // A changed expression does reset it.
        let changed = e
            .register_cron(CronSchedule::workflow::<Flow>("report", "0 * * * *", vec![StepPlan::new("report", Act::Ok)]))
            .await
            .unwrap();
        assert_eq!(changed.spec, "0 * * * *");
        assert_eq!(changed.next_run_at % 3_600_000, 0, "next full hour");
        w.shutdown(Duration::from_secs(1)).await;
    }

    async fn missed_ticks_run_once_by_default(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        e.register_cron(report()).await.unwrap();
        // Every worker is down for three hours: 180 ticks pass.
        clock.advance(Duration::from_secs(3 * 3600));
        let (flow, _probe) = Flow::new();
        let w = worker(&e, flow).await;
        let runs = until_runs(&e, 1).await;
        settle().await;
        assert_eq!(cron_runs(&e).await.len(), 1, "one run for the missed interval");
        assert_eq!(runs[0].idempotency_key.as_deref(), Some(format!("cron:report:{}", T0 + 3 * 3600 * 1000 - 20_000).as_str()));
        let job = e.list_crons().await.unwrap().remove(0);
        assert!(job.next_run_at > clock.now_ms(), "continues with the next future tick");
        w.shutdown(Duration::from_secs(1)).await;
    }

    async fn missed_ticks_can_be_skipped(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        // Hourly: after three hours down, the latest tick (01:00) is 13 minutes old.
        let hourly = CronSchedule::workflow::<Flow>("report", "0 * * * *", vec![StepPlan::new("report", Act::Ok)]);
        e.register_cron(hourly.missed_ticks(MissedTicks::Skip)).await.unwrap();
        clock.advance(Duration::from_secs(3 * 3600));
        let (flow, _probe) = Flow::new();
        let w = worker(&e, flow).await;
        tokio::time::timeout(WAIT, async {
            while e.list_crons().await.unwrap()[0].next_run_at <= clock.now_ms() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        settle().await;
        assert!(cron_runs(&e).await.is_empty(), "missed ticks were skipped");
        clock.advance(Duration::from_secs(47 * 60));
        until_runs(&e, 1).await;
        w.shutdown(Duration::from_secs(1)).await;
    }

    async fn invalid_schedules_are_rejected_and_nothing_is_stored(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, _probe) = Flow::new();
        let w = worker(&e, flow).await;
        for spec in ["61 * * * *", "every day at noon", "", "* * *"] {
            let err = e
                .register_cron(CronSchedule::workflow::<Flow>("bad", spec, vec![]))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidCron { .. }), "{spec:?}: {err}");
        }
        let err = e.register_cron(report().timezone("Nowhere/Land")).await.unwrap_err();
        assert!(err.to_string().contains("unknown time zone `Nowhere/Land`"), "{err}");
        let err = e
            .register_cron(CronSchedule::workflow_named("r", "* * * * *", "no-such-workflow", ()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownWorkflow(ref n) if n == "no-such-workflow"), "{err}");
        assert!(e.list_crons().await.unwrap().is_empty(), "nothing was stored");
        // A known workflow by name is accepted.
        e.register_cron(CronSchedule::workflow_named("r", "@hourly", "flow", Vec::<StepPlan>::new())).await.unwrap();
        assert!(matches!(e.pause_cron("missing").await, Err(Error::CronNotFound(_))));
        w.shutdown(Duration::from_secs(1)).await;
    }

    async fn paused_schedules_fire_nothing_until_resumed(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, _probe) = Flow::new();
        let w = worker(&e, flow).await;
        e.register_cron(report()).await.unwrap();
        // A schedule on the same minutes that is never paused: its runs show
        // the scheduler has acted on the ticks the paused one skips.
        let witness = CronSchedule::workflow::<Flow>("witness", "* * * * *", vec![StepPlan::new("witness", Act::Ok)]);
        e.register_cron(witness).await.unwrap();
        e.pause_cron("report").await.unwrap();
        assert!(!e.list_crons().await.unwrap().iter().find(|c| c.name == "report").unwrap().enabled);
        clock.advance(Duration::from_secs(120));
        let seen = until_runs_of(&e, "witness", 1).await;
        assert!(runs_of(&e, "report").await.is_empty(), "a paused schedule fired");
        // Re-registering (a restart) keeps it paused.
        assert!(!e.register_cron(report()).await.unwrap().enabled);
        e.resume_cron("report").await.unwrap();
        let resumed = e.list_crons().await.unwrap().into_iter().find(|c| c.name == "report").unwrap();
        assert!(resumed.next_run_at > clock.now_ms(), "resumed at a tick that passed while it was paused");
        // The next tick: the witness fires it, the resumed schedule fires
        // it and nothing for the ticks that passed while it was paused.
        clock.advance(Duration::from_secs(60));
        until_runs_of(&e, "witness", seen.len() + 1).await;
        let report = until_runs_of(&e, "report", 1).await;
        assert_eq!(report.len(), 1, "ticks passed while paused are not fired");
        e.delete_cron("report").await.unwrap();
        assert!(e.list_crons().await.unwrap().iter().all(|c| c.name != "report"));
        w.shutdown(Duration::from_secs(1)).await;
    }

    async fn a_plain_handler_runs_once_per_tick(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let calls = Arc::new(AtomicU32::new(0));
        let mut workers = Vec::new();
        for _ in 0..2 {
            let calls = Arc::clone(&calls);
            workers.push(
                Worker::builder(&e)
                    .cron_handler("daily-report", "* * * * *", move |_s| {
                        let calls = Arc::clone(&calls);
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                    })
                    .poll_interval(Duration::from_millis(50))
                    .heartbeat_interval(Duration::from_millis(100))
                    .lease_ttl(Duration::from_secs(3600))
                    .start()
                    .await
                    .unwrap(),
            );
        }
        for tick in 1..=3 {
            clock.advance(Duration::from_secs(60));
            until_runs(&e, tick).await;
        }
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let runs = cron_runs(&e).await;
        assert!(runs.iter().all(|r| r.workflow_name == "hydra.cron.daily-report"));
        for w in workers {
            w.shutdown(Duration::from_secs(1)).await;
        }
    }
}
