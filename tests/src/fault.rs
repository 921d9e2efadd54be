//! The fault campaign's workflow and process harness: worker processes that
//! tests kill, pause and resume, and the side records (a body log file, a
//! ledger table) that count real effects independently of the engine.

use hydra_runtime::prelude::*;
use hydra_store::sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Reads an environment variable, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a fault-campaign run does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Ordinary steps, each logging its body and sleeping `step_ms`.
    pub steps: u32,
    /// Time spent in each body.
    pub step_ms: u64,
    /// First, a transactional step writing one `ledger` row.
    pub transactional: bool,
    /// How long the transactional body pauses after its write, on its first
    /// attempt only (the window in which tests kill the worker).
    pub tx_pause_ms: u64,
    /// Last, a step whose output cannot be encoded.
    pub unencodable: bool,
}

impl FaultPlan {
    /// `steps` ordinary steps of `step_ms` each.
    pub fn steps(steps: u32, step_ms: u64) -> Self {
        FaultPlan { steps, step_ms, transactional: false, tx_pause_ms: 0, unencodable: false }
    }
}

/// A value whose serialization always fails.
#[derive(Debug, Deserialize)]
pub struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be encoded"))
    }
}

/// A workflow with a `String` input and no steps: a target for hostile
/// input bytes (a length prefix far beyond the payload).
#[derive(Clone, Copy, Debug, Default)]
pub struct Greeting;

impl Workflow for Greeting {
    const NAME: &'static str = "greeting";
    type Input = String;
    type Output = String;

    async fn run(&self, _ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
        Ok(format!("hello, {name}"))
    }
}

/// Receives `n` signals named `n`, one at a time, with a logged step of
/// `BETWEEN_MS` between two receives, and returns them in the order
/// received.
#[derive(Clone, Debug)]
pub struct Collector {
    log: PathBuf,
}

impl Collector {
    /// How long the step between two receives takes.
    pub const BETWEEN_MS: u64 = 20;

    /// A collector logging bodies to `HYDRA_FAULT_LOG`.
    pub fn from_env() -> Result<Self, std::env::VarError> {
        Ok(Collector { log: PathBuf::from(std::env::var("HYDRA_FAULT_LOG")?) })
    }
}

impl Workflow for Collector {
    const NAME: &'static str = "collector";
    type Input = u32;
    type Output = Vec<u32>;

    async fn run(&self, ctx: WorkflowContext, n: u32) -> Result<Vec<u32>, WorkflowError> {
        let mut got = Vec::with_capacity(n as usize);
        for i in 0..n {
            got.push(ctx.recv::<u32>("n").await?);
            logged_step(&ctx, format!("between{i}"), self.log.clone(), Self::BETWEEN_MS).await?;
        }
        Ok(got)
    }
}

/// Starts a [`FaultFlow`] child with its plan, awaits it, then runs one
/// step of its own; returns the child's output. Kills land on parents
/// while children run, on children mid-step, and on both.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultParent;

impl Workflow for FaultParent {
    const NAME: &'static str = "fault-parent";
    type Input = FaultPlan;
    type Output = Vec<u32>;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().retry(RetryPolicy::attempts(1_000).initial(Duration::from_millis(10)))
    }

    async fn run(&self, ctx: WorkflowContext, plan: FaultPlan) -> Result<Vec<u32>, WorkflowError> {
        let pids = ctx.child::<FaultFlow>(plan).await?;
        ctx.step_with(StepOptions::new("after").retry(policy()), |_s| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, StepError>(())
        })
        .await?;
        Ok(pids)
    }
}

/// A saga: `steps` steps, each registering a compensation step that undoes
/// it, then a permanent failure, so every run compensates; kills land in
/// steps and in compensations. Ends failed, "compensated: undo2, undo1, …".
#[derive(Clone, Debug)]
pub struct FaultSaga {
    log: PathBuf,
}

impl FaultSaga {
    /// A saga logging bodies to `HYDRA_FAULT_LOG`.
    pub fn from_env() -> Result<Self, std::env::VarError> {
        Ok(FaultSaga { log: PathBuf::from(std::env::var("HYDRA_FAULT_LOG")?) })
    }
}

/// A logged step of `ms` that returns the worker's PID.
async fn logged_step(ctx: &WorkflowContext, id: String, log: PathBuf, ms: u64) -> Result<u32, StepError> {
    ctx.step_with(StepOptions::new(id).retry(policy()), move |s| {
        let log = log.clone();
        async move {
            log_body(&log, "start", &s)?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            log_body(&log, "end", &s)?;
            Ok(std::process::id())
        }
    })
    .await
}

impl Workflow for FaultSaga {
    const NAME: &'static str = "fault-saga";
    type Input = FaultPlan;
    type Output = Vec<u32>;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().retry(RetryPolicy::attempts(1_000).initial(Duration::from_millis(10)))
    }

    async fn run(&self, ctx: WorkflowContext, plan: FaultPlan) -> Result<Vec<u32>, WorkflowError> {
        for i in 0..plan.steps {
            logged_step(&ctx, format!("s{i}"), self.log.clone(), plan.step_ms).await?;
            let (log, ms) = (self.log.clone(), plan.step_ms);
            ctx.compensate(hydra_runtime::Compensation::new(format!("undo{i}"), move |ctx| async move {
                logged_step(&ctx, format!("undo{i}"), log, ms).await.map(|_| ())
            }));
        }
        Err(WorkflowError::permanent("the last step refused"))
    }
}

/// The campaign's workflow.
#[derive(Clone, Debug)]
pub struct FaultFlow {
    log: PathBuf,
}

impl FaultFlow {
    /// A workflow logging bodies to `HYDRA_FAULT_LOG`.
    pub fn from_env() -> Result<Self, std::env::VarError> {
        Ok(FaultFlow { log: PathBuf::from(std::env::var("HYDRA_FAULT_LOG")?) })
    }

    /// A workflow logging bodies to `log`.
    pub fn new(log: PathBuf) -> Self {
        FaultFlow { log }
    }
}

/// Appends one line to the body log (one `write` call, `O_APPEND`: lines
/// from several processes do not interleave): `start` when a body begins,
/// `end` when it is about to return, so a reader can tell which bodies a
/// killed process had in flight.
fn log_body(log: &Path, phase: &str, s: &StepContext) -> Result<(), StepError> {
    let line = format!("{phase} {} {} {} {}\n", s.execution_id(), s.step_id(), s.attempt(), std::process::id());
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    f.write_all(line.as_bytes())?;
    Ok(())
}

fn policy() -> RetryPolicy {
    RetryPolicy::attempts(1_000).initial(Duration::from_millis(10)).max(Duration::from_millis(200))
}

impl Workflow for FaultFlow {
    const NAME: &'static str = "fault-flow";
    type Input = FaultPlan;
    type Output = Vec<u32>;

    fn options() -> WorkflowOptions {
        // Crashes count as workflow attempts; the campaign crashes a lot.
        WorkflowOptions::default().retry(RetryPolicy::attempts(1_000).initial(Duration::from_millis(10)))
    }

    async fn run(&self, ctx: WorkflowContext, plan: FaultPlan) -> Result<Vec<u32>, WorkflowError> {
        let mut pids = Vec::new();
        if plan.transactional {
            let log = self.log.clone();
            let pause = plan.tx_pause_ms;
            let pid: u32 = ctx
                .transactional_step(StepOptions::new("ledger").retry(policy()), move |tx, s| {
                    let log = log.clone();
                    async move {
                        let backend = tx.get_database_backend();
                        let sql = match backend {
                            DbBackend::Postgres => "INSERT INTO ledger (execution_id, pid) VALUES ($1, $2)",
                            _ => "INSERT INTO ledger (execution_id, pid) VALUES (?, ?)",
                        };
                        let pid = std::process::id();
                        tx.execute_raw(Statement::from_sql_and_values(
                            backend,
                            sql,
                            [s.execution_id().as_str().into(), i64::from(pid).into()],
                        ))
                        .await?;
                        // Logged after the write: a kill from here on falls
                        // between the step's writes and its commit.
                        log_body(&log, "start", &s)?;
                        if s.attempt() == 1 && pause > 0 {
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                        log_body(&log, "end", &s)?;
                        Ok(pid)
                    }
                })
                .await?;
            pids.push(pid);
        }
        for i in 0..plan.steps {
            let log = self.log.clone();
            let ms = plan.step_ms;
            let pid: u32 = ctx
                .step_with(StepOptions::new(format!("s{i}")).retry(policy()), move |s| {
                    let log = log.clone();
                    async move {
                        log_body(&log, "start", &s)?;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        log_body(&log, "end", &s)?;
                        Ok(std::process::id())
                    }
                })
                .await?;
            pids.push(pid);
        }
        if plan.unencodable {
            let log = self.log.clone();
            let _: Unencodable = ctx
                .step_with(StepOptions::new("unencodable").retry(policy()), move |s| {
                    let log = log.clone();
                    async move {
                        log_body(&log, "start", &s)?;
                        log_body(&log, "end", &s)?;
                        Ok(Unencodable)
                    }
                })
                .await?;
        }
        Ok(pids)
    }
}

/// Creates the side table the transactional step writes.
pub async fn create_ledger(conn: &impl ConnectionTrait) {
    let sql = match conn.get_database_backend() {
        DbBackend::Postgres => {
            "CREATE TABLE IF NOT EXISTS ledger (id BIGSERIAL PRIMARY KEY, execution_id TEXT NOT NULL, pid BIGINT NOT NULL)"
        }
        _ => {
            "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL, pid BIGINT NOT NULL)"
        }
    };
    conn.execute_unprepared(sql).await.expect("create ledger");
}

/// One body execution, as the body log records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Body {
    /// The run.
    pub execution: String,
    /// The step ID.
    pub step: String,
    /// The attempt the engine counted for it.
    pub attempt: u32,
    /// The worker process that ran it.
    pub pid: u32,
}

/// The body log, read back: which bodies began, and which of them reached
/// their end.
#[derive(Debug, Default)]
pub struct BodyLog {
    /// Every body that began, in the order the log holds them.
    pub started: Vec<Body>,
    ended: HashSet<Body>,
}

impl BodyLog {
    /// Reads the log (empty if no body has run yet).
    pub fn read(path: &Path) -> BodyLog {
        let Ok(text) = std::fs::read_to_string(path) else { return BodyLog::default() };
        let mut log = BodyLog::default();
        // A line still being written (read while workers run) is skipped.
        for line in text.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')) {
            let mut p = line.split(' ');
            let (Some(phase), Some(execution), Some(step), Some(attempt), Some(pid)) =
                (p.next(), p.next(), p.next(), p.next(), p.next())
            else {
                panic!("a body log line the harness did not write: {line:?}");
            };
            let body = Body {
                execution: execution.to_owned(),
                step: step.to_owned(),
                attempt: attempt.parse().expect("attempt"),
                pid: pid.parse().expect("pid"),
            };
            match phase {
                "start" => log.started.push(body),
                "end" => {
                    log.ended.insert(body);
                }
                other => panic!("unknown body log phase {other:?}"),
            }
        }
        log
    }

    /// Bodies `pid` began and did not end: after the process is killed and
    /// reaped, the bodies the kill interrupted.
    pub fn in_flight(&self, pid: u32) -> usize {
        self.started.iter().filter(|b| b.pid == pid && !self.ended.contains(*b)).count()
    }

    /// The distinct (run, step) pairs that ran.
    pub fn steps(&self) -> HashSet<(&str, &str)> {
        self.started.iter().map(|b| (b.execution.as_str(), b.step.as_str())).collect()
    }

    /// Bodies beyond the first of their (run, step).
    pub fn reruns(&self) -> usize {
        self.started.len() - self.steps().len()
    }

    /// Bodies that ran under an attempt another body of the same step had
    /// already run under: the engine counts an attempt durably before its
    /// body runs, so two bodies under one attempt mean two holders at once.
    pub fn repeated_attempts(&self) -> Vec<&Body> {
        let mut seen = HashSet::new();
        self.started.iter().filter(|b| !seen.insert((&b.execution, &b.step, b.attempt))).collect()
    }

    /// Bodies that ran again without an explanation: for each (run, step)
    /// that ran more than once, every execution but the last is passed to
    /// `explained` with the position in [`BodyLog::started`] of the
    /// execution that followed it. A body runs again only when its process
    /// died, or lost the run's lease, before the result was committed.
    pub fn unexplained_reruns(&self, mut explained: impl FnMut(&Body, usize) -> bool) -> Vec<&Body> {
        let mut by_step: HashMap<(&str, &str), Vec<(usize, &Body)>> = HashMap::new();
        for (i, b) in self.started.iter().enumerate() {
            by_step.entry((b.execution.as_str(), b.step.as_str())).or_default().push((i, b));
        }
        let mut wrong = Vec::new();
        for mut runs in by_step.into_values().filter(|r| r.len() > 1) {
            runs.sort_by_key(|(_, b)| b.attempt);
            for pair in runs.windows(2) {
                let ((_, earlier), (next_at, _)) = (pair[0], pair[1]);
                if !explained(earlier, next_at) {
                    wrong.push(earlier);
                }
            }
        }
        wrong
    }
}

/// Whether worker process `pid` (its stderr in `dir`) said it let the lease
/// of run `execution` go on its own: its renewals stalled (the guard stopped
/// the run before the lease expired), the database stayed unreachable, or a
/// failed commit handed the run back. These are the reasons other than a
/// kill for a body to run again. "Lease lost" alone is not one: a worker
/// says it also when another took the run while its lease was live.
pub fn said_it_lost(dir: &Path, pid: u32, execution: &str) -> bool {
    const LET_GO: [&str; 3] = ["lease not renewed in time", "giving up on", "transactional step commit failed"];
    let text = std::fs::read_to_string(WorkerProc::stderr_path(dir, pid)).unwrap_or_default();
    text.lines().any(|l| l.contains(execution) && LET_GO.iter().any(|n| l.contains(n)))
}

/// One worker process.
#[derive(Debug)]
pub struct WorkerProc {
    child: Child,
    /// Its PID.
    pub pid: u32,
    /// Its stderr file.
    pub stderr: PathBuf,
}

/// Settings for worker processes.
#[derive(Clone, Debug)]
pub struct ProcConfig {
    /// The `fault_worker` binary (`env!("CARGO_BIN_EXE_fault_worker")` in a test).
    pub bin: PathBuf,
    /// Database URL.
    pub url: String,
    /// Namespace.
    pub namespace: String,
    /// Body log file.
    pub log: PathBuf,
    /// Directory for stderr files.
    pub dir: PathBuf,
    /// Runs per worker.
    pub concurrency: usize,
    /// Lease TTL (ms).
    pub ttl_ms: u64,
    /// Heartbeat interval (ms).
    pub heartbeat_ms: u64,
}

impl WorkerProc {
    /// Where the stderr of worker process `pid` is kept, in `dir`.
    pub fn stderr_path(dir: &Path, pid: u32) -> PathBuf {
        dir.join(format!("worker-{pid}.stderr"))
    }

    /// Starts a worker process and waits until it is claiming (blocking:
    /// async callers use [`WorkerProc::spawn`]).
    fn start(cfg: &ProcConfig, n: usize) -> WorkerProc {
        let stderr = cfg.dir.join(format!("starting-{n}-{}.stderr", uuid::Uuid::new_v4().simple()));
        let err = std::fs::File::create(&stderr).expect("stderr file");
        let mut child = Command::new(&cfg.bin)
            .env("HYDRA_FAULT_URL", &cfg.url)
            .env("HYDRA_FAULT_NS", &cfg.namespace)
            .env("HYDRA_FAULT_LOG", &cfg.log)
            .env("HYDRA_FAULT_CONCURRENCY", cfg.concurrency.to_string())
            .env("HYDRA_FAULT_TTL_MS", cfg.ttl_ms.to_string())
            .env("HYDRA_FAULT_HEARTBEAT_MS", cfg.heartbeat_ms.to_string())
            .env("HYDRA_FAULT_TRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn fault_worker");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read ready line");
        if line.trim() != "ready" {
            let _ = child.wait();
            let said = std::fs::read_to_string(&stderr).unwrap_or_default();
            panic!("worker {n} did not start (stdout {line:?}); its stderr:\n{said}");
        }
        let pid = child.id();
        // Named by its PID from now on (the process keeps writing to it).
        let named = WorkerProc::stderr_path(&cfg.dir, pid);
        std::fs::rename(&stderr, &named).expect("name the stderr file");
        WorkerProc { child, pid, stderr: named }
    }

    /// [`WorkerProc::start`] on a blocking thread: waiting for the new
    /// process's `ready` must not stall the caller's runtime (a write
    /// transaction of the caller's, held open across the wait, would keep
    /// the new worker from its first write, and every other worker with it).
    pub async fn spawn(cfg: &ProcConfig, n: usize) -> WorkerProc {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || WorkerProc::start(&cfg, n)).await.expect("worker start")
    }

    /// Whether the process is still running (it did not exit or abort).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid.to_string()).status().expect("kill(1)");
        assert!(ok.success(), "kill -{sig} {} failed", self.pid);
    }

    /// Lines of its stderr containing `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.stderr).map_or(0, |t| t.lines().filter(|l| l.contains(needle)).count())
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
