//! The `hydra` binary against real databases (SQLite and PostgreSQL): list,
//! show, retry, fork, cancel, signal, stats, workers, cron, prune and move,
//! each checked by what the database and a worker do afterwards; and bad
//! input (unknown IDs, malformed URLs, a fork past the history, pruning with
//! live runs) answered with a non-zero exit and a clear message.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::ConnectionTrait;
use hydra_runtime::{CronSchedule, ExecutionFilter, ExecutionStatus, StartOptions, TriggerType};
use hydra_tests::{DbKind, TestDb, both_backends};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Orders whose charge fails (a processor outage the test ends).
static BROKEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Step bodies run, by "step:order".
static BODIES: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn body(step: &str, order: &str) {
    let mut m = BODIES.lock().unwrap();
    *m.get_or_insert_with(HashMap::new).entry(format!("{step}:{order}")).or_default() += 1;
}

fn bodies(step: &str, order: &str) -> u32 {
    BODIES.lock().unwrap().as_ref().and_then(|m| m.get(&format!("{step}:{order}")).copied()).unwrap_or(0)
}

#[step(id = "reserve")]
async fn reserve(order: String) -> Result<String, StepError> {
    body("reserve", &order);
    Ok(format!("hold-{order}"))
}

#[step(id = "charge")]
async fn charge(order: String) -> Result<u32, StepError> {
    body("charge", &order);
    if BROKEN.lock().unwrap().contains(&order) {
        return Err(StepError::permanent("card processor down"));
    }
    Ok(4200)
}

#[workflow(name = "pay")]
async fn pay(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    ctx.set_search_attribute("order_id", &order).await?;
    let hold = reserve(&ctx, order.clone()).await?;
    let cents = charge(&ctx, order).await?;
    Ok(format!("{hold} paid {cents}"))
}

/// Waits for a signal `go` and publishes what it got as event `answer`, or
/// sleeps, as its input says.
#[workflow(name = "parked")]
async fn parked(ctx: WorkflowContext, how: String) -> Result<String, WorkflowError> {
    if how == "sleep" {
        ctx.sleep(Duration::from_secs(3)).await;
        return Ok("slept".into());
    }
    let v: String = ctx.recv("go").await?;
    ctx.set_event("answer", &v).await?;
    Ok(format!("got {v}"))
}

/// Runs `hydra` with `args` against `url`; (exit success, stdout, stderr).
fn hydra(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hydra"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env_remove("HYDRA_DATABASE_URL")
        .env_remove("HYDRA_CONSOLE_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hydra … --json`, parsed; panics on failure.
fn hydra_json(url: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = hydra(url, &all);
    assert!(ok, "hydra {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("hydra {args:?} printed no JSON ({e}): {out}"))
}

async fn engine(db: &TestDb) -> Engine {
    Engine::builder().database_url(&db.url).build().await.unwrap()
}

async fn worker(engine: &Engine) -> Worker {
    Worker::builder(engine)
        .register(pay)
        .register(parked)
        .poll_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap()
}

fn unique(prefix: &str, db: &TestDb) -> String {
    format!("{prefix}-{:?}-{}", db.kind, uuid_like())
}

fn uuid_like() -> String {
    hydra_runtime::ExecutionId::generate(0).to_string()
}

both_backends! {
    async fn list_show_retry_and_show_completed(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let good = unique("good", &db);
        let bad = unique("bad", &db);
        BROKEN.lock().unwrap().push(bad.clone());
        let ok_run = pay::start(&e, good.clone()).await.unwrap();
        let failed = pay::start(&e, bad.clone()).await.unwrap();
        ok_run.result_timeout(WAIT).await.unwrap();
        assert!(failed.result_timeout(WAIT).await.is_err());

        // list: the failed run, and only it, by status.
        let listed = hydra_json(&db.url, &["runs", "list", "--status", "failed"]);
        let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec![failed.id().as_str()]);
        let (ok, table, _) = hydra(&db.url, &["runs", "list"]);
        assert!(ok && table.starts_with("ID") && table.contains("failed") && table.contains("completed"), "{table}");

        // show: the timeline names the failed step and its error.
        let (ok, shown, err) = hydra(&db.url, &["runs", "show", failed.id().as_str()]);
        assert!(ok, "{err}");
        assert!(shown.contains("status     failed"), "{shown}");
        let charge_line = shown.lines().find(|l| l.contains("charge")).unwrap();
        assert!(charge_line.contains("failed") && charge_line.contains("card processor down"), "{shown}");
        assert!(shown.contains(&format!("search     order_id = {bad}")), "{shown}");

        // retry after the outage: the run completes, the recorded reserve step is not run again.
        BROKEN.lock().unwrap().retain(|o| *o != bad);
        let (ok, said, err) = hydra(&db.url, &["runs", "retry", failed.id().as_str()]);
        assert!(ok, "{err}");
        assert!(said.contains("pending again"), "{said}");
        assert_eq!(failed.result_timeout(WAIT).await.unwrap(), format!("hold-{bad} paid 4200"));
        assert_eq!(bodies("reserve", &bad), 1, "a recorded step ran again");
        assert_eq!(bodies("charge", &bad), 2);
        let shown = hydra_json(&db.url, &["runs", "show", failed.id().as_str()]);
        assert_eq!(shown["status"], "completed");
        assert_eq!(shown["steps"].as_array().unwrap().len(), 3);
        assert_eq!(shown["output"], Value::from(format!("hold-{bad} paid 4200")));

        // A page of one step from position 1, payloads over 4 bytes unread:
        // the reserve step's output is sized, not read; the total is whole.
        let id = failed.id().as_str();
        let page = hydra_json(&db.url, &["runs", "show", id, "--from", "1", "--rows", "1", "--payload-bytes", "4"]);
        let steps = page["steps"].as_array().unwrap();
        assert_eq!((steps.len(), page["steps_total"].as_u64()), (1, Some(3)), "{page}");
        assert_eq!(steps[0]["position"], 1, "{page}");
        assert_eq!(steps[0]["output"]["not_read"], true, "{page}");
        let (ok, table, err) = hydra(&db.url, &["runs", "show", id, "--rows", "2", "--payload-bytes", "4"]);
        assert!(ok, "{err}");
        assert!(table.contains("not read") && table.contains("3 steps in all; the next page: --from 2"), "{table}");
        // A list reads no payloads unless asked.
        let listed = hydra_json(&db.url, &["runs", "list", "--status", "completed"]);
        assert!(listed.as_array().unwrap().iter().all(|r| r.get("input").is_none() && r.get("output").is_none()));
        let listed = hydra_json(&db.url, &["runs", "list", "--status", "completed", "--payloads"]);
        assert!(listed.as_array().unwrap().iter().all(|r| r["input"].is_string()), "{listed}");

        // A retry of a completed run is refused, with the reason.
        let (ok, _, err) = hydra(&db.url, &["runs", "retry", failed.id().as_str()]);
        assert!(!ok);
        assert!(err.contains("is completed: only a failed, timed-out or cancelled run can be retried"), "{err}");
        let (ok, _, err) = hydra(&db.url, &["runs", "resume", failed.id().as_str()]);
        assert!(!ok && err.contains("is completed: only a suspended run can be resumed"), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn fork_keeps_the_history_before_a_step(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let order = unique("fork", &db);
        let run = pay::start(&e, order.clone()).await.unwrap();
        run.result_timeout(WAIT).await.unwrap();

        // Positions: 0 search attribute, 1 reserve, 2 charge. Keep 0 and 1.
        let forked = hydra_json(&db.url, &["runs", "fork", run.id().as_str(), "--from-step", "2"]);
        let fork_id = ExecutionId::from_string(forked["id"].as_str().unwrap());
        assert_eq!(forked["trigger"], "fork");
        assert_eq!(forked["trigger_source"], Value::from(run.id().as_str()));
        let out = e.handle::<String>(fork_id.clone()).result_timeout(WAIT).await.unwrap();
        assert_eq!(out, format!("hold-{order} paid 4200"));
        assert_eq!(bodies("reserve", &order), 1, "the kept step ran again");
        assert_eq!(bodies("charge", &order), 2);
        assert_eq!(e.search_attributes(&fork_id).await.unwrap(), vec![("order_id".to_owned(), order.clone())]);

        // A new input from the start: everything runs for it.
        let other = unique("fork-input", &db);
        let forked = hydra_json(
            &db.url,
            &["runs", "fork", run.id().as_str(), "--from-step", "0", "--input", &format!("\"{other}\"")],
        );
        let fork2 = e.handle::<String>(ExecutionId::from_string(forked["id"].as_str().unwrap()));
        assert_eq!(fork2.result_timeout(WAIT).await.unwrap(), format!("hold-{other} paid 4200"));

        // Past the history: refused, nothing created.
        let before = e.list(ExecutionFilter::new("default")).await.unwrap().len();
        let (ok, _, err) = hydra(&db.url, &["runs", "fork", run.id().as_str(), "--from-step", "9"]);
        assert!(!ok);
        assert!(err.contains("has 3 recorded step(s)") && err.contains("from 0 to 3, not 9"), "{err}");
        assert_eq!(e.list(ExecutionFilter::new("default")).await.unwrap().len(), before);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn search_attributes_and_keys_find_runs(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let a = unique("a", &db);
        let b = unique("b", &db);
        let ra = pay::start_with(&e, a.clone(), StartOptions::new().search_attribute("customer", "ana").idempotency_key("k-a"))
            .await
            .unwrap();
        let rb = pay::start_with(&e, b.clone(), StartOptions::new().search_attribute("customer", "bo")).await.unwrap();
        ra.result_timeout(WAIT).await.unwrap();
        rb.result_timeout(WAIT).await.unwrap();
        let found = hydra_json(&db.url, &["runs", "list", "--search", &format!("order_id={a}")]);
        assert_eq!(found.as_array().unwrap().len(), 1);
        assert_eq!(found[0]["id"], Value::from(ra.id().as_str()));
        let found = hydra_json(&db.url, &["runs", "list", "--search", "customer=bo", "--search", &format!("order_id={b}")]);
        assert_eq!(found[0]["id"], Value::from(rb.id().as_str()));
        let found = hydra_json(&db.url, &["runs", "list", "--search", "customer=bo", "--search", &format!("order_id={a}")]);
        assert_eq!(found.as_array().unwrap().len(), 0);
        let found = hydra_json(&db.url, &["runs", "list", "--key", "k-a"]);
        assert_eq!(found[0]["id"], Value::from(ra.id().as_str()));

        // Paging: two pages of one run each are the unpaged list's first two
        // runs, in order.
        let all = hydra_json(&db.url, &["runs", "list"]);
        let ids = |v: &Value| v.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let all = ids(&all);
        assert!(all.len() >= 2, "{all:?}");
        let page1 = ids(&hydra_json(&db.url, &["runs", "list", "--limit", "1"]));
        let page2 = ids(&hydra_json(&db.url, &["runs", "list", "--limit", "1", "--after", &page1[0]]));
        assert_eq!([page1, page2].concat(), all[..2], "two pages are the list's first two runs");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn cancel_signal_stats_workers_and_cron(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let waiting = parked::start(&e, "wait".to_owned()).await.unwrap();
        let other = parked::start(&e, "wait".to_owned()).await.unwrap();
        wait_status(&e, waiting.id(), ExecutionStatus::Sleeping).await;

        let sent = hydra_json(&db.url, &["runs", "signal", waiting.id().as_str(), "go", "--payload", "\"yes\""]);
        assert_eq!(sent["signal"], "go");
        assert_eq!(waiting.result_timeout(WAIT).await.unwrap(), "got yes");
        let (ok, said, err) = hydra(&db.url, &["runs", "cancel", other.id().as_str()]);
        assert!(ok, "{err}");
        assert!(said.contains("cancel"), "{said}");
        assert!(other.result_timeout(WAIT).await.is_err());
        assert_eq!(e.get(other.id()).await.unwrap().unwrap().status, ExecutionStatus::Cancelled);

        let stats = hydra_json(&db.url, &["stats"]);
        let counts = stats["counts"].as_array().unwrap();
        assert!(counts.iter().any(|c| c["workflow"] == "parked" && c["status"] == "completed" && c["runs"] == 1), "{stats}");
        assert!(counts.iter().any(|c| c["workflow"] == "parked" && c["status"] == "cancelled" && c["runs"] == 1), "{stats}");
        let workers = hydra_json(&db.url, &["workers"]);
        assert_eq!(workers.as_array().unwrap().len(), 1, "{workers}");

        e.register_cron(CronSchedule::workflow::<parked>("nightly", "0 3 * * *", "sleep".to_owned())).await.unwrap();
        let (ok, said, err) = hydra(&db.url, &["cron", "pause", "nightly"]);
        assert!(ok && said.contains("paused"), "{err}");
        let crons = hydra_json(&db.url, &["cron", "list"]);
        assert_eq!(crons[0]["enabled"], false);
        let triggered = hydra_json(&db.url, &["cron", "trigger", "nightly"]);
        assert_eq!(triggered["trigger"], "cron");
        let run = e.handle::<String>(ExecutionId::from_string(triggered["id"].as_str().unwrap()));
        assert_eq!(run.result_timeout(WAIT).await.unwrap(), "slept");
        let (ok, _, _) = hydra(&db.url, &["cron", "resume", "nightly"]);
        assert!(ok);
        assert_eq!(hydra_json(&db.url, &["cron", "list"])[0]["enabled"], true);
        let (ok, _, err) = hydra(&db.url, &["cron", "pause", "no-such"]);
        assert!(!ok && err.contains("no-such"), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn bad_input_exits_non_zero_and_says_why(db: TestDb) {
        let _e = engine(&db).await;
        let (ok, _, err) = hydra(&db.url, &["runs", "show", "0190a8f2-0000-7000-8000-000000000000"]);
        assert!(!ok && err.contains("not found"), "{err}");
        let (ok, _, err) = hydra(&db.url, &["runs", "show", "../etc/passwd"]);
        assert!(!ok && err.contains("is not a run ID"), "{err}");
        let out = Command::new(env!("CARGO_BIN_EXE_hydra"))
            .args(["--database-url", &db.url, "runs", "list", "--status", "exploded"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "a wrong command line exits 2");
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown status `exploded`"));
        let (ok, _, err) = hydra(&db.url, &["runs", "list", "--since", "yesterday-ish"]);
        assert!(!ok && err.contains("neither a time"), "{err}");
        let (ok, _, err) = hydra(&db.url, &["prune", "--older-than", "5 parsecs"]);
        assert!(!ok && err.contains("`5 parsecs`: unknown unit"), "{err}");
        let (ok, _, err) = hydra(&db.url, &["prune", "--older-than", "soon"]);
        assert!(!ok && err.contains("not a duration"), "{err}");
        let (ok, _, err) = hydra(&db.url, &["prune", "--older-than", "1d", "--status", "running"]);
        assert!(!ok && err.contains("only finished runs are pruned"), "{err}");
        let (ok, _, err) = hydra("mysql://nope", &["runs", "list"]);
        assert!(!ok && err.contains("mysql"), "{err}");
        let (ok, _, err) = hydra("not a url", &["stats"]);
        assert!(!ok && err.contains("hydra: error:"), "{err}");
        let out = Command::new(env!("CARGO_BIN_EXE_hydra")).args(["stats"]).env_remove("HYDRA_DATABASE_URL").output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--database-url"));
        let (ok, _, err) = hydra(&db.url, &["runs", "signal", "0190a8f2-0000-7000-8000-000000000000", "go", "--payload", "{"]);
        assert!(!ok && err.contains("--payload is not JSON"), "{err}");
    }

    async fn prune_deletes_old_finished_runs_only(db: TestDb) {
        let e = engine(&db).await;
        let w = worker(&e).await;
        let done = pay::start(&e, unique("old", &db)).await.unwrap();
        done.result_timeout(WAIT).await.unwrap();
        let late = e.signal(done.id(), "late", &1u32).await.unwrap_err();
        assert!(late.to_string().contains("takes no more signals"), "{late}");
        // An ended run with a signal (taken), a wait step and an event.
        let answered = parked::start(&e, "wait".to_owned()).await.unwrap();
        wait_status(&e, answered.id(), ExecutionStatus::Sleeping).await;
        e.signal(answered.id(), "go", &"yes".to_owned()).await.unwrap();
        assert_eq!(answered.result_timeout(WAIT).await.unwrap(), "got yes");
        let waiting = parked::start(&e, "wait".to_owned()).await.unwrap();
        let sleeping = parked::start_with(&e, "sleep".to_owned(), StartOptions::new().delay(Duration::from_secs(3600)))
            .await
            .unwrap();
        wait_status(&e, waiting.id(), ExecutionStatus::Sleeping).await;
        tokio::time::sleep(Duration::from_millis(20)).await;

        let answered_steps = e.steps(answered.id()).await.unwrap().len() as u64;
        let dry = hydra_json(&db.url, &["prune", "--older-than", "1ms", "--dry-run"]);
        assert_eq!(dry["runs"], 2, "{dry}");
        assert_eq!(dry["steps"].as_u64(), Some(3 + answered_steps), "{dry}");
        assert_eq!(dry["signals"], 1, "{dry}");
        assert_eq!(dry["events"], 1, "{dry}");
        assert_eq!(dry["search_attributes"], 1, "{dry}");
        assert!(e.get(done.id()).await.unwrap().is_some(), "a dry run deleted");
        let pruned = hydra_json(&db.url, &["prune", "--older-than", "1ms"]);
        assert_eq!(pruned["runs"], 2, "{pruned}");
        assert_eq!(pruned["signals"], 1, "{pruned}");
        assert_eq!(pruned["events"], 1, "{pruned}");
        let left = |table: &str| {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE execution_id = '{}'", answered.id());
            let c = e.connection().clone();
            async move {
                let row = c.query_one_raw(hydra_runtime::sea_orm::Statement::from_string(c.get_database_backend(), sql));
                row.await.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap()
            }
        };
        assert_eq!((left("workflow_signals").await, left("workflow_events").await), (0, 0), "the rows are gone");
        assert!(e.get(done.id()).await.unwrap().is_none());
        assert!(e.get(answered.id()).await.unwrap().is_none());
        assert!(e.steps(done.id()).await.unwrap().is_empty());
        assert!(e.search_attributes(done.id()).await.unwrap().is_empty());
        // The runs that have not ended are where they were, and go on.
        assert_eq!(e.get(waiting.id()).await.unwrap().unwrap().status, ExecutionStatus::Sleeping);
        assert_eq!(e.get(sleeping.id()).await.unwrap().unwrap().status, ExecutionStatus::Pending);
        e.signal(waiting.id(), "go", &"after".to_owned()).await.unwrap();
        assert_eq!(waiting.result_timeout(WAIT).await.unwrap(), "got after");
        w.shutdown(Duration::from_secs(5)).await;
    }
}

/// Waits until run `id` is in `status`.
async fn wait_status(e: &Engine, id: &ExecutionId, status: ExecutionStatus) {
    let waited = tokio::time::timeout(WAIT, async {
        while e.get(id).await.unwrap().unwrap().status != status {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "run {id} never reached {status}");
}

/// A SQLite database with runs in every state moves to PostgreSQL, where
/// they go on: a sleeping run wakes, a waiting one takes its signal, a
/// failed one is retried, a pending one runs. The move refuses while a
/// worker is live and into a database in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_sqlite_to_postgres_and_finish_there() {
    let from = TestDb::new(DbKind::Sqlite).await;
    let to = TestDb::new(DbKind::Postgres).await;
    let e = engine(&from).await;
    let w = worker(&e).await;
    let bad = unique("move-bad", &from);
    BROKEN.lock().unwrap().push(bad.clone());
    let failed = pay::start(&e, bad.clone()).await.unwrap();
    let completed = pay::start(&e, unique("move-good", &from)).await.unwrap();
    let waiting = parked::start(&e, "wait".to_owned()).await.unwrap();
    let sleeping = parked::start(&e, "sleep".to_owned()).await.unwrap();
    assert!(failed.result_timeout(WAIT).await.is_err());
    completed.result_timeout(WAIT).await.unwrap();
    wait_status(&e, waiting.id(), ExecutionStatus::Sleeping).await;
    wait_status(&e, sleeping.id(), ExecutionStatus::Sleeping).await;
    e.signal(waiting.id(), "unrelated", &1u32).await.unwrap();
    e.register_cron(CronSchedule::workflow::<parked>("nightly", "0 3 * * *", "sleep".to_owned())).await.unwrap();

    // A live worker: refused.
    let (ok, _, err) = hydra(&from.url, &["move", "--from", &from.url, "--to", &to.url]);
    assert!(!ok && err.contains("live leases"), "{err}");
    w.shutdown(Duration::from_secs(5)).await;
    let pending = parked::start(&e, "sleep".to_owned()).await.unwrap();

    let report = hydra_json(&from.url, &["move", "--from", &from.url, "--to", &to.url]);
    assert_eq!(report["verified"], true, "{report}");
    let rows =
        |t: &str| report["tables"].as_array().unwrap().iter().find(|x| x["table"] == t).unwrap()["target_rows"].clone();
    assert_eq!(rows("workflow_executions"), 5, "{report}");
    assert_eq!(rows("cron_jobs"), 1, "{report}");
    assert_eq!(rows("workflow_signals"), 1, "{report}");
    assert_eq!(rows("workflow_search_attributes"), 2, "{report}");

    // The source is sealed: the engine still open on it is refused every
    // write, naming the new database; no engine or tool opens it again (a
    // worker restarted on the old URL would run every copied run again).
    let named = |err: String| assert!(err.contains(&format!("moved to {}", to.url)), "{err}");
    named(pay::start(&e, "late-order".to_owned()).await.unwrap_err().to_string());
    named(e.signal(waiting.id(), "go", &"late".to_owned()).await.unwrap_err().to_string());
    named(e.cancel(sleeping.id()).await.unwrap_err().to_string());
    named(Engine::builder().database_url(&from.url).build().await.unwrap_err().to_string());
    let (ok, _, err) = hydra(&from.url, &["runs", "list"]);
    assert!(!ok);
    named(err);
    // Again from the sealed source: refused, nothing doubled.
    let (ok, _, err) = hydra(&from.url, &["move", "--from", &from.url, "--to", &to.url]);
    assert!(!ok);
    named(err);
    // Another database into the same (now used) one: refused.
    let other = TestDb::new(DbKind::Sqlite).await;
    pay::start(&engine(&other).await, "other".to_owned()).await.unwrap();
    let (ok, _, err) = hydra(&other.url, &["move", "--from", &other.url, "--to", &to.url]);
    assert!(!ok && err.contains("not empty"), "{err}");

    // On PostgreSQL every run goes on.
    let pg = engine(&to).await;
    let pw = worker(&pg).await;
    BROKEN.lock().unwrap().retain(|o| *o != bad);
    pg.signal(waiting.id(), "go", &"moved".to_owned()).await.unwrap();
    assert_eq!(pg.handle::<String>(waiting.id().clone()).result_timeout(WAIT).await.unwrap(), "got moved");
    assert_eq!(pg.handle::<String>(sleeping.id().clone()).result_timeout(WAIT).await.unwrap(), "slept");
    assert_eq!(pg.handle::<String>(pending.id().clone()).result_timeout(WAIT).await.unwrap(), "slept");
    pg.retry(failed.id()).await.unwrap();
    assert_eq!(
        pg.handle::<String>(failed.id().clone()).result_timeout(WAIT).await.unwrap(),
        format!("hold-{bad} paid 4200")
    );
    assert_eq!(bodies("reserve", &bad), 1);
    assert_eq!(pg.get(completed.id()).await.unwrap().unwrap().status, ExecutionStatus::Completed);
    assert_eq!(pg.list_crons().await.unwrap().len(), 1);
    // New rows get IDs past the copied ones (sequences moved on).
    let more = pay::start(&pg, unique("after-move", &to)).await.unwrap();
    more.result_timeout(WAIT).await.unwrap();
    assert_eq!(pg.get(more.id()).await.unwrap().unwrap().trigger_type, TriggerType::Api);
    pw.shutdown(Duration::from_secs(5)).await;
}

/// A mistyped `--from` is an error that names the path; no file is
/// created and nothing is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_from_a_missing_file_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let url = format!("sqlite://{}", missing.display());
    let to = TestDb::new(DbKind::Postgres).await;
    let (ok, out, err) = hydra(&url, &["move", "--from", &url, "--to", &to.url]);
    assert!(!ok && err.contains("no database file at"), "{out}{err}");
    assert!(!missing.exists(), "the mistyped source was created");
    assert!(engine(&to).await.list(ExecutionFilter::new("default")).await.unwrap().is_empty());
}

/// A source table with a column this version does not know (a newer
/// version wrote it): the move is refused and the target stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_refuses_columns_it_does_not_know() {
    let from = TestDb::new(DbKind::Sqlite).await;
    let to = TestDb::new(DbKind::Postgres).await;
    let e = engine(&from).await;
    pay::start(&e, "o-1".to_owned()).await.unwrap();
    e.connection()
        .execute_unprepared("ALTER TABLE workflow_steps ADD COLUMN written_by_a_newer_version INTEGER")
        .await
        .unwrap();
    let (ok, _, err) = hydra(&from.url, &["move", "--from", &from.url, "--to", &to.url]);
    assert!(!ok && err.contains("`written_by_a_newer_version` this version of Hydra does not know"), "{err}");
    let target = engine(&to).await;
    assert!(target.list(ExecutionFilter::new("default")).await.unwrap().is_empty());
}

/// `hydra console` as a process: it prints its address, serves the runs
/// (a GET of a run's page over HTTP), ends on SIGTERM with exit 0; bound
/// beyond loopback without a token it refuses to start, with exit 1 and
/// the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_command_serves_and_refuses_an_open_bind() {
    use std::io::BufRead;
    let db = TestDb::new(DbKind::Sqlite).await;
    let e = engine(&db).await;
    let run = e
        .start_encoded(
            "pay",
            Codec::Json.encode(&"console-order".to_owned()).unwrap(),
            WorkflowOptions::default(),
            StartOptions::new(),
        )
        .await
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hydra"))
        .args(["--database-url", &db.url, "console", "--bind", "127.0.0.1:0"])
        .env_remove("HYDRA_DATABASE_URL")
        .env_remove("HYDRA_CONSOLE_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A failed assertion below must not leave the console serving.
    let reaper = Reaper(child.id());
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(WAIT, line).await.unwrap().unwrap();
    let url = line.trim().strip_prefix("hydra console: listening on ").unwrap_or_else(|| panic!("{line:?}"));
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let http = hydra_tests::http::Http::new(addr);
    let page = http.get(&format!("/runs/{}", run.id)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("console-order"));
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "hydra console ends cleanly on SIGTERM: {status}");
    std::mem::forget(reaper);

    let (ok, _, err) = hydra(&db.url, &["console", "--bind", "0.0.0.0:0"]);
    assert!(!ok);
    assert!(err.contains("token"), "{err}");
}

/// Kills a child process when dropped (a test that fails part-way).
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}
