//! The web console over HTTP, on both backends: pages and their status
//! codes, filters and paging, escaping of everything a run stores, the
//! actions (retry, fork, cancel, signal, cron pause/resume), and every
//! refusal: another origin, a missing form token, a foreign `Host`, a
//! missing or wrong access token, a non-loopback bind without a token.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::console::{Console, ConsoleConfig};
use hydra_runtime::prelude::*;
use hydra_runtime::{CronSchedule, ExecutionStatus};
use hydra_tests::http::{Http, form_token};
use hydra_tests::{TestDb, both_backends};
use sea_orm::ConnectionTrait;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const HOSTILE: &str = "<script>alert(1)</script>";

/// Customers whose card works again (each test uses its own names: the
/// tests run at once).
static RECOVERED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn recover(who: &str) {
    RECOVERED.lock().unwrap().get_or_insert_with(HashSet::new).insert(who.to_owned());
}

fn declined(who: &str) -> bool {
    who.starts_with("fail") && !RECOVERED.lock().unwrap().as_ref().is_some_and(|r| r.contains(who))
}

#[step(id = "charge", retry(max_attempts = 1))]
async fn charge(who: String) -> Result<String, StepError> {
    if declined(&who) {
        return Err(StepError::permanent(format!("card of {who} declined {HOSTILE}")));
    }
    Ok(format!("paid {who}"))
}

#[workflow(name = "console-pay")]
async fn pay(ctx: WorkflowContext, who: String) -> Result<String, WorkflowError> {
    ctx.set_search_attribute("customer", &who).await?;
    Ok(charge(&ctx, who).await?)
}

#[workflow(name = "console-wait")]
async fn wait_for(ctx: WorkflowContext, _n: u32) -> Result<String, WorkflowError> {
    let v: String = ctx.recv("go").await?;
    Ok(v)
}

async fn setup(db: &TestDb) -> (Engine, Worker, Http) {
    let e = Engine::builder().database_url(&db.url).console("127.0.0.1:0".parse().unwrap()).build().await.unwrap();
    let w = Worker::builder(&e)
        .register(pay)
        .register(wait_for)
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let http = Http::new(e.console_addr().unwrap());
    (e, w, http)
}

async fn ended(e: &Engine, id: &ExecutionId) -> ExecutionStatus {
    tokio::time::timeout(WAIT, async {
        loop {
            let s = e.get(id).await.unwrap().unwrap().status;
            if s.is_terminal() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap()
}

both_backends! {
    async fn pages_answer_and_escape_what_runs_store(db: TestDb) {
        let (e, _w, http) = setup(&db).await;
        let ok = pay::start(&e, "ana".to_owned()).await.unwrap();
        let bad = pay::start(&e, format!("fail-{HOSTILE}")).await.unwrap();
        assert_eq!(ended(&e, ok.id()).await, ExecutionStatus::Completed);
        assert_eq!(ended(&e, bad.id()).await, ExecutionStatus::Failed);

        let list = http.get("/runs").await;
        assert_eq!(list.status, 200);
        assert!(list.header("content-type").starts_with("text/html"), "{}", list.header("content-type"));
        assert!(list.header("content-security-policy").contains("default-src 'none'"));
        assert_eq!(list.header("x-frame-options"), "DENY");
        assert!(list.body.contains(ok.id().as_str()) && list.body.contains(bad.id().as_str()));

        let failed = http.get("/runs?status=failed").await;
        assert_eq!(failed.status, 200);
        assert!(failed.body.contains(bad.id().as_str()) && !failed.body.contains(ok.id().as_str()));
        let by_attr = http.get("/runs?attr=customer%3Dana").await;
        assert!(by_attr.body.contains(ok.id().as_str()) && !by_attr.body.contains(bad.id().as_str()));
        let by_name = http.get("/runs?workflow=console-wait").await;
        assert!(by_name.body.contains("No runs match"));
        let since = http.get("/runs?since=1h").await;
        assert!(since.body.contains(ok.id().as_str()));

        // The hostile input, error and attribute show as text, never as markup.
        let page = http.get(&format!("/runs/{}", bad.id())).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("<script"), "an unescaped script tag in the run page");
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.body.contains("<svg"), "the timeline chart");
        assert!(page.body.contains("Retry run"));
        assert!(!http.get("/runs?attr=customer%3D%3Cscript%3E").await.body.contains("<script"));

        for path in ["/summary", "/cron", "/workers", "/assets/console.css", "/login"] {
            assert_eq!(http.get(path).await.status, 200, "{path}");
        }
        assert_eq!(http.get("/").await.status, 303);
        let summary = http.get("/summary").await;
        assert!(summary.body.contains("console-pay"));
        let workers = http.get("/workers").await;
        assert!(workers.body.contains("console-pay"), "the live worker and its workflows");
        assert!(http.get("/assets/console.css").await.header("content-type").starts_with("text/css"));

        // Bad input gets a clear status, never a 500.
        assert_eq!(http.get("/runs/01a0-no-such-run").await.status, 404);
        assert_eq!(http.get("/runs/%3Cscript%3E").await.status, 400);
        assert!(!http.get("/runs/%3Cscript%3E").await.body.contains("<script"));
        assert_eq!(http.get("/runs?status=bogus").await.status, 400);
        assert_eq!(http.get("/runs?since=yesterday").await.status, 400);
        assert_eq!(http.get("/runs?attr=noequals").await.status, 400);
        assert_eq!(http.get("/runs?limit=many").await.status, 400);
        assert_eq!(http.get("/runs?after=01a0-gone").await.status, 400);
        assert_eq!(http.get("/nowhere").await.status, 404);
    }

    async fn the_list_pages_through_every_run_once(db: TestDb) {
        let (e, _w, http) = setup(&db).await;
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(pay::start(&e, format!("p{i}")).await.unwrap().id().clone());
        }
        let mut seen = Vec::new();
        let mut path = "/runs?workflow=console-pay&limit=3".to_owned();
        for _ in 0..5 {
            let page = http.get(&path).await;
            assert_eq!(page.status, 200);
            for id in &ids {
                if page.body.contains(&format!(">{id}</a>")) {
                    seen.push(id.clone());
                }
            }
            let Some(at) = page.body.find("class=\"next\" href=\"") else { break };
            let rest = &page.body[at + "class=\"next\" href=\"".len()..];
            path = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
        }
        seen.sort();
        let mut all = ids.clone();
        all.sort();
        assert_eq!(seen, all, "every run on exactly one page");
    }

    async fn actions_retry_fork_cancel_signal_and_pause(db: TestDb) {
        let (e, _w, http) = setup(&db).await;
        let origin = http.origin();
        let who = format!("fail-b-{}", fastrand::u64(..));
        let bad = pay::start(&e, who.clone()).await.unwrap();
        assert_eq!(ended(&e, bad.id()).await, ExecutionStatus::Failed);
        let page = http.get(&format!("/runs/{}", bad.id())).await;
        let token = form_token(&page.body).unwrap();
        let with_origin = [("origin", origin.as_str())];

        // Fork from 0 while the outage lasts: a new run, the origin untouched.
        let forked = http
            .post_form(&format!("/runs/{}/fork", bad.id()), &[("form_token", &token), ("position", "0"), ("input", "")], &with_origin)
            .await;
        assert_eq!(forked.status, 303, "{}", forked.body);
        assert!(forked.header("location").ends_with("?done=forked"));
        let bad_fork = http
            .post_form(&format!("/runs/{}/fork", bad.id()), &[("form_token", &token), ("position", "99")], &with_origin)
            .await;
        assert_eq!(bad_fork.status, 409, "a position past the history is refused");
        let not_json = http
            .post_form(&format!("/runs/{}/fork", bad.id()), &[("form_token", &token), ("position", "0"), ("input", "{")], &with_origin)
            .await;
        assert_eq!(not_json.status, 400);

        // Retry after the outage: the run completes.
        recover(&who);
        let retried = http.post_form(&format!("/runs/{}/retry", bad.id()), &[("form_token", &token)], &with_origin).await;
        assert_eq!(retried.status, 303, "{}", retried.body);
        assert_eq!(ended(&e, bad.id()).await, ExecutionStatus::Completed);
        let again = http.post_form(&format!("/runs/{}/retry", bad.id()), &[("form_token", &token)], &with_origin).await;
        assert_eq!(again.status, 409, "a completed run is not retried");
        let shown = http.get(retried.header("location")).await;
        assert!(shown.body.contains("Retried"));

        // Signal a waiting run; cancel another.
        let waiting = wait_for::start(&e, 1).await.unwrap();
        let sent = http
            .post_form(&format!("/runs/{}/signal", waiting.id()), &[("form_token", &token), ("name", "go"), ("payload", "\"yes\"")], &with_origin)
            .await;
        assert_eq!(sent.status, 303, "{}", sent.body);
        assert_eq!(waiting.result_timeout(WAIT).await.unwrap(), "yes");
        let to_cancel = wait_for::start(&e, 2).await.unwrap();
        let cancelled = http.post_form(&format!("/runs/{}/cancel", to_cancel.id()), &[("form_token", &token)], &with_origin).await;
        assert_eq!(cancelled.status, 303, "{}", cancelled.body);
        assert_eq!(ended(&e, to_cancel.id()).await, ExecutionStatus::Cancelled);
        let twice = http.post_form(&format!("/runs/{}/cancel", to_cancel.id()), &[("form_token", &token)], &with_origin).await;
        assert_eq!(twice.status, 409);

        // Cron: pause and resume.
        e.register_cron(CronSchedule::workflow::<pay>("nightly", "0 3 * * *", "cron".to_owned())).await.unwrap();
        let paused = http.post_form("/cron/nightly/pause", &[("form_token", &token)], &with_origin).await;
        assert_eq!(paused.status, 303);
        assert!(!e.list_crons().await.unwrap()[0].enabled);
        assert!(http.get("/cron").await.body.contains("paused"));
        let resumed = http.post_form("/cron/nightly/resume", &[("form_token", &token)], &with_origin).await;
        assert_eq!(resumed.status, 303);
        assert!(e.list_crons().await.unwrap()[0].enabled);
        assert_eq!(http.post_form("/cron/nope/pause", &[("form_token", &token)], &with_origin).await.status, 404);
    }

    async fn state_changes_need_the_same_origin_and_the_form_token(db: TestDb) {
        let (e, _w, http) = setup(&db).await;
        let bad = pay::start(&e, "fail-c".to_owned()).await.unwrap();
        assert_eq!(ended(&e, bad.id()).await, ExecutionStatus::Failed);
        let token = form_token(&http.get("/runs").await.body).unwrap_or_default();
        let token = if token.is_empty() { form_token(&http.get(&format!("/runs/{}", bad.id())).await.body).unwrap() } else { token };
        let path = format!("/runs/{}/retry", bad.id());
        let origin = http.origin();
        let refusals = [
            ("another origin", http.post_form(&path, &[("form_token", &token)], &[("origin", "http://evil.example")]).await),
            ("no origin at all", http.post_form(&path, &[("form_token", &token)], &[]).await),
            ("a cross-site fetch", http.post_form(&path, &[("form_token", &token)], &[("sec-fetch-site", "cross-site")]).await),
            ("an opaque origin", http.post_form(&path, &[("form_token", &token)], &[("origin", "null")]).await),
            ("a foreign origin that claims same-origin", http.post_form(&path, &[("form_token", &token)], &[("origin", "http://evil.example"), ("sec-fetch-site", "same-origin")]).await),
            ("our origin from a cross-site fetch", http.post_form(&path, &[("form_token", &token)], &[("origin", origin.as_str()), ("sec-fetch-site", "cross-site")]).await),
            ("no form token", http.post_form(&path, &[], &[("origin", origin.as_str())]).await),
            ("a wrong form token", http.post_form(&path, &[("form_token", "0000")], &[("origin", origin.as_str())]).await),
            ("a foreign Host", http.post_form(&path, &[("form_token", &token)], &[("origin", "http://evil.example"), ("host", "evil.example")]).await),
        ];
        for (what, reply) in &refusals {
            assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        }
        // A page read under a foreign Host name (DNS rebinding) is refused too.
        assert_eq!(http.get_with("/runs", &[("host", "evil.example:80")]).await.status, 403);
        assert_eq!(e.get(bad.id()).await.unwrap().unwrap().status, ExecutionStatus::Failed, "nothing was retried");
        let ok = http.post_form(&path, &[("form_token", &token)], &[("sec-fetch-site", "same-origin")]).await;
        assert_eq!(ok.status, 303, "a same-origin form with the token is obeyed");
    }

    async fn a_token_guards_every_page(db: TestDb) {
        let e = Engine::builder().database_url(&db.url).build().await.unwrap();
        let secret = "s3cret-token-of-the-console";
        let console = Console::start(e.clone(), ConsoleConfig::new("127.0.0.1:0".parse().unwrap()).token(secret)).await.unwrap();
        let http = Http::new(console.addr());
        let run = e.start_by_name_json("console-pay", "x").await;
        let anon = http.get("/runs").await;
        assert_eq!(anon.status, 303);
        assert_eq!(anon.header("location"), "/login");
        assert_eq!(http.get(&format!("/runs/{run}")).await.status, 303);
        assert_eq!(http.get_with("/runs", &[("authorization", "Bearer wrong-token-wrong-token")]).await.status, 303);
        assert_eq!(http.get_with("/runs", &[("cookie", "hydra_console=wrong")]).await.status, 303);
        assert_eq!(http.get_with("/runs", &[("authorization", &format!("Bearer {secret}"))]).await.status, 200);
        let origin = http.origin();
        let wrong = http.post_form("/login", &[("token", "nope")], &[("origin", origin.as_str())]).await;
        assert_eq!(wrong.status, 401);
        let login = http.post_form("/login", &[("token", secret)], &[("origin", origin.as_str())]).await;
        assert_eq!(login.status, 303);
        let cookie = login.header("set-cookie").to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        let pair = cookie.split(';').next().unwrap().to_owned();
        let page = http.get_with(&format!("/runs/{run}"), &[("cookie", &pair)]).await;
        assert_eq!(page.status, 200);
        // An action without the access token is refused even with the form token.
        let token = form_token(&page.body).unwrap();
        let post = http.post_form(&format!("/runs/{run}/cancel"), &[("form_token", &token)], &[("origin", origin.as_str())]).await;
        assert_eq!(post.status, 401);
        // With a token, other host names are fine (it is meant to be reached).
        assert_eq!(http.get_with("/runs", &[("cookie", &pair), ("host", "hydra.internal:8233")]).await.status, 200);
        console.stop().await.unwrap();

        // Binding beyond loopback needs a token; a short token is refused.
        let open = Console::start(e.clone(), ConsoleConfig::new("0.0.0.0:0".parse().unwrap())).await;
        assert!(matches!(open, Err(Error::Config(ref m)) if m.contains("token")), "{open:?}");
        let short = Console::start(e.clone(), ConsoleConfig::new("127.0.0.1:0".parse().unwrap()).token("short")).await;
        assert!(matches!(short, Err(Error::Config(_))), "{short:?}");
        let built = Engine::builder()
            .database_url(&db.url)
            .console_with(ConsoleConfig::new("0.0.0.0:0".parse().unwrap()))
            .build()
            .await;
        assert!(matches!(built, Err(Error::Config(_))), "EngineBuilder::console refuses it too");
    }

    async fn hostile_rows_render_as_text(db: TestDb) {
        let (e, _w, http) = setup(&db).await;
        // A run whose every stored text is markup and whose input is bytes
        // no codec wrote (as another program could leave a row): the pages
        // show them escaped and answer 200.
        let run = e.start_by_name_json("console-pay", "y").await;
        let conn = sea_orm::Database::connect(&db.url).await.unwrap();
        let backend = conn.get_database_backend();
        let sql = "UPDATE workflow_executions SET workflow_name = ?, error_message = ?, input_data = ?, \
                   trigger_source = ?, idempotency_key = ?, status = 'failed', completed_at = created_at WHERE id = ?";
        let sql = if backend == sea_orm::DbBackend::Postgres {
            let mut n = 0;
            sql.chars().map(|c| if c == '?' { n += 1; format!("${n}") } else { c.to_string() }).collect()
        } else {
            sql.to_owned()
        };
        let values: Vec<sea_orm::Value> = vec![
            HOSTILE.into(),
            format!("{HOSTILE}\u{1b}[2J\u{202e}").into(),
            vec![0xffu8, 0x00, 0x3c, 0x3e].into(),
            HOSTILE.into(),
            HOSTILE.into(),
            run.clone().into(),
        ];
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await.unwrap();
        let tagged = e
            .start_encoded(
                "console-pay",
                Codec::Json.encode(&HOSTILE.to_owned()).unwrap(),
                WorkflowOptions::default(),
                hydra_runtime::StartOptions::new().search_attribute("customer", HOSTILE),
            )
            .await
            .unwrap();
        for path in [
            format!("/runs/{run}"),
            format!("/runs/{}", tagged.id),
            "/runs".to_owned(),
            "/runs?status=failed".to_owned(),
            "/summary".to_owned(),
            format!("/runs?workflow={}", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        ] {
            let page = http.get(&path).await;
            assert_eq!(page.status, 200, "{path}: {}", page.body);
            assert!(!page.body.contains("<script"), "{path}: an unescaped script tag");
        }
        let page = http.get(&format!("/runs/{run}")).await;
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.body.contains("\"codec\": \"codec tag 255\"") || page.body.contains("codec tag 255"), "undecodable bytes described");
    }
}

trait StartByName {
    async fn start_by_name_json(&self, workflow: &str, input: &str) -> String;
}

impl StartByName for Engine {
    /// Starts `workflow` with a JSON string input, by name (no worker needed).
    async fn start_by_name_json(&self, workflow: &str, input: &str) -> String {
        let bytes = Codec::Json.encode(&input.to_owned()).unwrap();
        let e = self
            .start_encoded(workflow, bytes, WorkflowOptions::default(), hydra_runtime::StartOptions::new())
            .await
            .unwrap();
        e.id.to_string()
    }
}
