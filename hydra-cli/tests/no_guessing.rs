//! The `hydra` binary never guesses: a mistyped database path is an error
//! (nothing is created), output into a pipe the reader closed ends quietly,
//! and what it prints is words, not Rust's debug forms or internal limits.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::Compensation;
use hydra_runtime::prelude::*;
use hydra_tests::{DbKind, TestDb, both_backends};
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// One step whose compensation undoes it, then a permanent failure: every
/// run ends compensated.
#[workflow(name = "undone")]
async fn undone(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    ctx.step("book", |_s| async { Ok::<_, StepError>(1u32) }).await?;
    ctx.compensate(Compensation::new("unbook", |undo| async move {
        undo.step("unbook", |_s| async { Ok::<_, StepError>(()) }).await.map(|_| ())
    }));
    Err(WorkflowError::permanent("refused"))
}

/// Waits for signal `go`.
#[workflow(name = "waits")]
async fn waits(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    Ok(ctx.recv::<u32>("go").await?)
}

/// Draws an awakeable, publishes its token as event `token`, and returns
/// the value it is completed with.
#[workflow(name = "token")]
async fn token_flow(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    let a = ctx.awakeable::<u32>().await?;
    ctx.set_event("token", &a.token().to_owned()).await?;
    Ok(ctx.await_awakeable(&a).await?)
}

/// Draws an awakeable and fails with its token in the error: the token is
/// then in columns every view cuts to its width.
#[workflow(name = "token-error")]
async fn token_error(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    let a = ctx.awakeable::<u32>().await?;
    Err(WorkflowError::permanent(format!("gave up on {}", a.token())))
}

/// `hydra --database-url url args…`, not yet run.
fn hydra_cmd(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hydra"));
    cmd.arg("--database-url").arg(url).args(args).env_remove("HYDRA_DATABASE_URL");
    cmd
}

fn hydra(url: &str, args: &[&str]) -> std::process::Output {
    hydra_cmd(url, args).output().unwrap()
}

/// A worker for every workflow of these tests.
async fn worker(e: &Engine) -> Worker {
    Worker::builder(e)
        .register(undone)
        .register(waits)
        .register(token_flow)
        .register(token_error)
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A mistyped SQLite path: every command fails with the path named, exit
/// 1, and no file appears (before, a read created an empty database and
/// showed an empty table).
#[test]
fn a_mistyped_database_path_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("hydar.db");
    let url = format!("sqlite://{}", typo.display());
    for args in [&["runs", "list"][..], &["stats"], &["workers"], &["cron", "list"], &["runs", "list", "--json"]] {
        let out = hydra(&url, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("no database file at") && err.contains("hydar.db"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
}

/// `hydra … --json | head -c0`: the reader is gone before the first line.
/// The tool ends quietly with success, as a pipe's writer does, instead of
/// panicking on the broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_pipe_whose_reader_left_ends_quietly() {
    let db = TestDb::new(DbKind::Sqlite).await;
    let e = Engine::builder().database_url(&db.url).build().await.unwrap();
    for i in 0..3 {
        waits::start(&e, i).await.unwrap();
    }
    for args in [&["runs", "list", "--json"][..], &["runs", "list"], &["stats"]] {
        let mut child = hydra_cmd(&db.url, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

both_backends! {
    async fn awakeable_secrets_are_never_shown_whole(db: TestDb) {
        use hydra_console::{EngineBuilderExt as _, EngineExt as _};
        let e = Engine::builder().database_url(&db.url).console("127.0.0.1:0".parse().unwrap()).build().await.unwrap();
        let w = worker(&e).await;
        let h = token_flow::start(&e, 1).await.unwrap();
        let token: String = e.wait_event(h.id(), "token", WAIT).await.unwrap().unwrap();
        let secret = token.rsplit_once('.').unwrap().1.to_owned();
        assert_eq!(secret.len(), 32);
        e.complete(&token, 5u32).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), 5);
        let cut = format!("{}…", &secret[..4]);
        // The token is in the drawn step's output and the event; the secret
        // in the completion's signal name too.
        for args in [&["runs", "show", h.id().as_str()][..], &["runs", "show", h.id().as_str(), "--json"]] {
            let out = hydra(&db.url, args);
            let shown = text(&out.stdout);
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert!(!shown.contains(&secret), "{args:?} printed the secret: {shown}");
            assert!(shown.contains(&cut), "{args:?}: {shown}");
        }
        let http = hydra_tests::http::Http::new(e.console_addr().unwrap());
        let page = http.get(&format!("/runs/{}", h.id())).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains(&secret), "the console showed the secret");
        assert!(page.body.contains(&cut));
        // A failed run whose error holds a token: the error columns cut it
        // to their width, and must not leave more of the secret than four
        // characters (five would be a leak, whatever the cut).
        let failed = token_error::start(&e, 1).await.unwrap();
        let error = failed.result_timeout(WAIT).await.unwrap_err().to_string();
        let other = error.rsplit_once('.').unwrap().1.chars().take(32).collect::<String>();
        assert_eq!(other.len(), 32, "{error}");
        let views = [
            text(&hydra(&db.url, &["runs", "list"]).stdout),
            text(&hydra(&db.url, &["runs", "list", "--json"]).stdout),
            text(&hydra(&db.url, &["runs", "show", failed.id().as_str()]).stdout),
            http.get("/runs").await.body,
            http.get(&format!("/runs/{}", failed.id())).await.body,
        ];
        for (i, view) in views.iter().enumerate() {
            assert!(view.contains(&other[..4]), "view {i} does not show the run's error: {view}");
            assert!(!view.contains(&other[..5]), "view {i} shows more than four characters of a secret: {view}");
        }
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_namespace_without_runs_names_those_with_runs(db: TestDb) {
        let e = Engine::builder().database_url(&db.url).build().await.unwrap();
        waits::start(&e, 1).await.unwrap();
        let other = Engine::builder().database_url(&db.url).namespace("billing").build().await.unwrap();
        waits::start(&other, 2).await.unwrap();
        for args in [&["--namespace", "dfault", "runs", "list"][..], &["--namespace", "dfault", "runs", "list", "--json"], &["--namespace", "dfault", "stats"]] {
            let out = hydra(&db.url, args);
            let err = text(&out.stderr);
            assert!(out.status.success(), "{args:?}: {err}");
            assert!(
                err.contains("no runs in namespace `dfault`; namespaces with runs: `billing`, `default`"),
                "{args:?}: {err}"
            );
        }
        let json = hydra(&db.url, &["--namespace", "dfault", "runs", "list", "--json"]);
        assert_eq!(text(&json.stdout).trim(), "[]", "the JSON stays what a script parses");
        // A namespace with runs, filtered to none: no hint, even when it
        // sorts after the twenty namespaces a hint names.
        let store = db.store().await;
        for i in 0..20 {
            hydra_tests::store_ops::create(&store, &format!("a{i:02}"), 1).await;
        }
        let last = Engine::builder().database_url(&db.url).namespace("zz").build().await.unwrap();
        waits::start(&last, 3).await.unwrap();
        for ns in ["default", "zz"] {
            let quiet = hydra(&db.url, &["--namespace", ns, "runs", "list", "--status", "failed"]);
            assert!(!text(&quiet.stderr).contains("no runs in namespace"), "{ns}: {}", text(&quiet.stderr));
        }
        let many = text(&hydra(&db.url, &["--namespace", "nope", "runs", "list"]).stderr);
        assert!(many.contains("`a00`, `a01`") && many.contains("`a19`, …"), "twenty named, and more: {many}");
    }

    async fn signals_and_attempts_are_told_in_words(db: TestDb) {
        let e = Engine::builder().database_url(&db.url).build().await.unwrap();
        let w = worker(&e).await;
        // A signal: accepted, then the same key again.
        let h = waits::start(&e, 1).await.unwrap();
        let id = h.id().to_string();
        let send = |key: &str| hydra(&db.url, &["runs", "signal", &id, "go", "--payload", "7", "--key", key]);
        let first = send("k-1");
        assert!(first.status.success(), "{}", text(&first.stderr));
        assert_eq!(text(&first.stdout).trim(), format!("signal `go` to run {id}: accepted"));
        let again = send("k-1");
        assert_eq!(
            text(&again.stdout).trim(),
            format!("signal `go` to run {id}: a signal with this idempotency key was accepted before; nothing was done")
        );
        let json = hydra(&db.url, &["runs", "signal", &id, "go", "--payload", "7", "--key", "k-1", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["sent"], "duplicate", "{v}");
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), 7);
        // A compensated run: its compensation marker has no attempt limit
        // to show.
        let s = undone::start(&e, 1).await.unwrap();
        s.result_timeout(WAIT).await.unwrap_err();
        let show = hydra(&db.url, &["runs", "show", s.id().as_str()]);
        let shown = text(&show.stdout);
        assert!(show.status.success(), "{}", text(&show.stderr));
        assert!(shown.contains("compensations begin"), "{shown}");
        assert!(!shown.contains("1000000"), "an internal limit shown as the attempts: {shown}");
        w.shutdown(Duration::from_secs(5)).await;
    }
}
