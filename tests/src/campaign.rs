//! The kill campaign's harness: a campaign's database and engine, its
//! worker processes, the kill loop, and the accounting that says what the
//! kills did (mid-body kills, re-runs each explained by a kill or by the
//! process's own word, no attempt run twice).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use crate::TestDb;
use crate::fault::{BodyLog, FaultFlow, FaultPlan, ProcConfig, WorkerProc, create_ledger, env_or, said_it_lost};
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Execution, ExecutionFilter};
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A campaign's database, its test engine (namespace `faults`, with the
/// ledger table) and the settings of its worker processes.
#[derive(Debug)]
pub struct Campaign {
    /// The database.
    pub db: TestDb,
    /// The test's own engine.
    pub engine: Engine,
    /// How worker processes are started.
    pub cfg: ProcConfig,
    _dir: tempfile::TempDir,
}

impl Campaign {
    /// A campaign on `db` whose workers (the `fault_worker` binary `bin`)
    /// run `concurrency` runs each.
    pub async fn new(db: TestDb, concurrency: usize, bin: &str) -> Campaign {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::builder().store(db.store().await).namespace("faults").build().await.unwrap();
        create_ledger(engine.connection()).await;
        let cfg = ProcConfig {
            bin: bin.into(),
            url: db.url.clone(),
            namespace: "faults".into(),
            log: dir.path().join("bodies.log"),
            dir: dir.path().to_owned(),
            concurrency,
            ttl_ms: 1_500,
            heartbeat_ms: 250,
        };
        Campaign { db, engine, cfg, _dir: dir }
    }

    /// Starts `n` runs of [`FaultFlow`] with `plan`.
    pub async fn start(&self, n: usize, plan: FaultPlan) -> Vec<ExecutionId> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(self.engine.start::<FaultFlow>(plan.clone()).await.unwrap().id().clone());
        }
        ids
    }

    /// Every run of the campaign.
    pub async fn runs(&self) -> Vec<Execution> {
        self.engine.list(ExecutionFilter::new("faults").limit(100_000)).await.unwrap()
    }

    /// Waits (at most `limit`) until `n` runs exist and all have ended.
    pub async fn until_all_ended(&self, n: usize, limit: Duration) -> Vec<Execution> {
        let give_up = Instant::now() + limit;
        loop {
            let runs = self.runs().await;
            if runs.len() == n && runs.iter().all(|r| r.status.is_terminal()) {
                return runs;
            }
            assert!(Instant::now() < give_up, "runs did not all end within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first column of `sql`'s first row, as a count.
    pub async fn count(&self, sql: &str) -> i64 {
        let c = self.engine.connection();
        let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), sql)).await.unwrap().unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// The campaign's random seed, printed (or `HYDRA_FAULT_SEED`).
    pub fn seed() -> u64 {
        let seed = env_or("HYDRA_FAULT_SEED", fastrand::u64(..));
        eprintln!("fault campaign seed: {seed} (replay with HYDRA_FAULT_SEED={seed})");
        seed
    }
}

/// 10 under `HYDRA_SOAK`, else 1.
pub fn scale() -> usize {
    if std::env::var_os("HYDRA_SOAK").is_some() { 10 } else { 1 }
}

/// What a kill campaign did, told apart from what it merely attempted.
#[derive(Debug, Default)]
pub struct Kills {
    /// Kills whose victim had a body in flight (begun, not ended).
    mid_body: usize,
    /// Bodies those kills interrupted.
    interrupted: usize,
    /// Each process killed (one kill each), with the length of the body log
    /// when it was dead: a body that ran again because of the kill began
    /// after it.
    killed_at: HashMap<u32, usize>,
    /// Runs not yet ended when the campaign stopped killing (how much work
    /// was left past the target: the campaign's margin).
    work_left: usize,
}

impl Kills {
    /// Checks the campaign against the body log: at least `min_mid_body`
    /// kills landed mid-body, no attempt ran twice, and every body that ran
    /// again did so because the process that ran it before was killed.
    pub fn check(&self, name: &str, log: &BodyLog, min_mid_body: usize, cfg: &ProcConfig) {
        let twice = log.repeated_attempts();
        // A re-run is explained by its earlier process's death before it
        // began, or by that process's own word that it lost the lease.
        let mut lost = 0;
        let unexplained = log.unexplained_reruns(|earlier, next_at| {
            if self.killed_at.get(&earlier.pid).is_some_and(|&at| next_at >= at) {
                return true;
            }
            let said = said_it_lost(&cfg.dir, earlier.pid, &earlier.execution);
            lost += usize::from(said);
            said
        });
        eprintln!(
            "{name}: kills {}, of which mid-body {} (bodies interrupted {}); bodies {}, reruns {} ({} after a lease \
             lost without a kill); runs left when the kills stopped {}",
            self.killed_at.len(),
            self.mid_body,
            self.interrupted,
            log.started.len(),
            log.reruns(),
            lost,
            self.work_left
        );
        assert!(
            self.mid_body >= min_mid_body,
            "{name}: only {} of {} kills landed while a body was in flight (at least {min_mid_body} needed)",
            self.mid_body,
            self.killed_at.len()
        );
        assert!(twice.is_empty(), "{name}: bodies under an attempt that had already run: {twice:?}");
        assert!(
            unexplained.is_empty(),
            "{name}: bodies that ran again without their process being killed: {unexplained:?}; the workers said:\n{}",
            workers_said(cfg)
        );
        assert!(
            log.reruns() >= self.interrupted,
            "{name}: {} interrupted bodies but only {} reruns: an interrupted body's step was recorded without running again",
            self.interrupted,
            log.reruns()
        );
    }
}

/// Every warning in the campaign's worker stderr files, for a failure's message.
fn workers_said(cfg: &ProcConfig) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(&cfg.dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "stderr") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")) {
                out.push_str(&format!("{}: {line}\n", path.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    out
}

/// Kills a random worker every 150–350 ms and restarts it, until
/// `mid_body_target` kills have landed while their victim had a body in
/// flight, or the work is finished (then the campaign's check tells whether
/// enough kills landed). A victim found dead before its kill died on its
/// own: that fails the campaign.
pub async fn kill_campaign(
    c: &Campaign,
    procs: &mut Vec<WorkerProc>,
    rng: &mut fastrand::Rng,
    mid_body_target: usize,
    n: usize,
) -> Kills {
    let mut kills = Kills::default();
    let give_up = Instant::now() + Duration::from_secs(240);
    loop {
        tokio::time::sleep(Duration::from_millis(rng.u64(150..=350))).await;
        let runs = c.runs().await;
        let ended = runs.iter().filter(|r| r.status.is_terminal()).count();
        let finished = runs.len() == n && ended == n;
        if finished || kills.mid_body >= mid_body_target || Instant::now() > give_up {
            kills.work_left = n - ended.min(n);
            return kills;
        }
        let i = rng.usize(..procs.len());
        let mut victim = procs.remove(i);
        assert!(victim.alive(), "worker {} died on its own; its stderr: {}", victim.pid, victim.stderr.display());
        let pid = victim.pid;
        victim.kill();
        // Reaped: the log holds everything the victim will ever write.
        let log = BodyLog::read(&c.cfg.log);
        let in_flight = log.in_flight(pid);
        kills.killed_at.insert(pid, log.started.len());
        if in_flight > 0 {
            kills.mid_body += 1;
            kills.interrupted += in_flight;
        }
        procs.insert(i, WorkerProc::spawn(&c.cfg, i).await);
    }
}

/// Starts `n` worker processes (waiting for each on a blocking thread).
pub async fn workers(cfg: &ProcConfig, n: usize) -> Vec<WorkerProc> {
    let mut procs = Vec::with_capacity(n);
    for i in 0..n {
        procs.push(WorkerProc::spawn(cfg, i).await);
    }
    procs
}

/// Stops the campaign's workers, each of which must still be alive: a worker
/// that aborted by itself is a failure, not a kill.
pub fn stop_workers(procs: Vec<WorkerProc>) {
    for mut p in procs {
        assert!(p.alive(), "worker {} died on its own; its stderr: {}", p.pid, p.stderr.display());
    }
}
