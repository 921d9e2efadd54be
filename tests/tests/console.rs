//! The web console over HTTP, on both backends: pages and their status
//! codes, filters and paging, escaping of everything a run stores, the
//! actions (retry, fork, cancel, signal, cron pause/resume), and every
//! refusal: another origin, a missing form token, a foreign `Host`, a
//! missing or wrong access token, a non-loopback bind without a token.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_console::{Console, ConsoleConfig, EngineBuilderExt, EngineExt};
use hydra_runtime::prelude::*;
use hydra_runtime::{Clock, CronSchedule, ExecutionFilter, ExecutionStatus};
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
        assert_eq!(http.get("/runs?after=01a0-gone").await.status, 400, "not a cursor");
        assert_eq!(http.get("/runs?after=x.01a0").await.status, 400, "not a cursor");
        // A cursor whose run has gone (pruned between pages) still pages on.
        let gone = http.get(&format!("/runs?after={}.01zz-gone", i64::MAX)).await;
        assert_eq!(gone.status, 200);
        assert!(gone.body.contains(ok.id().as_str()));
        assert_eq!(http.get("/nowhere").await.status, 404);
    }

    async fn the_list_pages_through_every_run_once(db: TestDb) {
        let (_e, _w, http) = setup(&db).await;
        // Seven runs created in one millisecond (a clock that stands still),
        // so only the ID orders them, and with a search attribute to filter.
        let frozen = Engine::builder().database_url(&db.url).clock(Clock::manual(1_800_000_000_000)).build().await.unwrap();
        let mut ids = Vec::new();
        for i in 0..7 {
            let e = frozen
                .start_encoded(
                    "console-pay",
                    Codec::Json.encode(&format!("p{i}")).unwrap(),
                    WorkflowOptions::default(),
                    hydra_runtime::StartOptions::new().search_attribute("batch", "b 1"),
                )
                .await
                .unwrap();
            ids.push(e.id.to_string());
        }
        let mut all = ids.clone();
        all.sort();
        for first in ["/runs?workflow=console-pay&limit=3", "/runs?attr=batch%3Db+1&limit=2", "/runs?since=2027-01-01T00:00:00Z&limit=3"] {
            let mut seen = Vec::new();
            let mut path = first.to_owned();
            for _ in 0..8 {
                let page = http.get(&path).await;
                assert_eq!(page.status, 200, "{path}: {}", page.body);
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
            assert_eq!(seen, all, "{first}: every run on exactly one page");
        }
    }

    async fn a_relative_since_means_the_same_instant_on_every_page(db: TestDb) {
        let clock = Clock::manual(1_800_000_000_000);
        let e = Engine::builder().database_url(&db.url).clock(clock.clone()).console("127.0.0.1:0".parse().unwrap()).build().await.unwrap();
        let http = Http::new(e.console_addr().unwrap());
        let mut ids = Vec::new();
        for minutes_ago in [119, 60, 1] {
            clock.set(1_800_000_000_000 - minutes_ago * 60_000);
            ids.push(e.start_by_name_json("console-pay", "t").await);
        }
        clock.set(1_800_000_000_000);
        let first = http.get("/runs?since=2h&limit=1").await;
        assert!(first.body.contains(&ids[2]));
        let at = first.body.find("class=\"next\" href=\"").unwrap();
        let rest = &first.body[at + "class=\"next\" href=\"".len()..];
        let next = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
        assert!(!next.contains("since=2h"), "the link carries an instant: {next}");
        // Half an hour later, the next pages still reach the oldest run.
        clock.advance(Duration::from_secs(1800));
        let second = http.get(&next).await;
        assert!(second.body.contains(&ids[1]), "{}", second.body);
        let at = second.body.find("class=\"next\" href=\"").unwrap();
        let rest = &second.body[at + "class=\"next\" href=\"".len()..];
        let third = http.get(&rest[..rest.find('"').unwrap()].replace("&amp;", "&")).await;
        assert!(third.body.contains(&ids[0]), "the run created 119 minutes before the first page");
    }

    async fn the_summary_counts_runs_ended_in_the_last_hour(db: TestDb) {
        let now = 1_800_000_000_000;
        let e = Engine::builder().database_url(&db.url).clock(Clock::manual(now)).console("127.0.0.1:0".parse().unwrap()).build().await.unwrap();
        let http = Http::new(e.console_addr().unwrap());
        let conn = sea_orm::Database::connect(&db.url).await.unwrap();
        // Three completed and one failed within the hour, one completed two
        // hours ago, one still pending.
        for (status, ago) in [("completed", 5), ("completed", 5), ("completed", 59), ("failed", 10), ("completed", 120), ("pending", 0)] {
            let id = e.start_by_name_json("console-pay", "s").await;
            if status != "pending" {
                sql(&conn, "UPDATE workflow_executions SET status = ?, completed_at = ? WHERE id = ?",
                    vec![status.into(), (now - ago * 60_000).into(), id.into()]).await;
            }
        }
        let page = http.get("/summary").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("<b>3</b>completed in the last hour"), "{}", page.body);
        assert!(page.body.contains("<b>1</b>ended otherwise in the last hour"), "{}", page.body);
        assert!(page.body.contains("<b>1</b>pending"), "{}", page.body);
        assert!(page.body.contains("5 min ago: 2 completed, 0 otherwise"), "two runs in one minute's bar");
        assert!(page.body.contains("10 min ago: 0 completed, 1 otherwise"));
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
        let runs = || async { e.list(ExecutionFilter::new(e.namespace()).limit(1_000)).await.unwrap() };
        let (before, origin_before) = (runs().await, e.get(bad.id()).await.unwrap().unwrap());
        let forked = http
            .post_form(&format!("/runs/{}/fork", bad.id()), &[("form_token", &token), ("position", "0"), ("input", "")], &with_origin)
            .await;
        assert_eq!(forked.status, 303, "{}", forked.body);
        assert!(forked.header("location").ends_with("?done=forked"));
        let after = runs().await;
        assert_eq!(after.len(), before.len() + 1, "the fork made one run");
        let fork = after.iter().find(|r| !before.iter().any(|b| b.id == r.id)).unwrap();
        assert_eq!(fork.trigger_source.as_deref(), Some(bad.id().as_str()), "the new run is the origin's fork");
        assert!(forked.header("location").contains(fork.id.as_str()), "the answer leads to the new run");
        assert_eq!(e.get(bad.id()).await.unwrap().unwrap(), origin_before, "the origin is untouched");
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
        let resumed = http.post_form(&format!("/runs/{}/resume", bad.id()), &[("form_token", &token)], &with_origin).await;
        assert_eq!(resumed.status, 409, "only a suspended run is resumed: {}", resumed.body);
        assert!(resumed.body.contains("only a suspended run can be resumed"), "{}", resumed.body);
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

        // Cron: pause and resume, by the name the form carries (names may
        // hold spaces, `+` and `/`).
        for name in ["nightly report", "nightly+report", "a/../b"] {
            e.register_cron(CronSchedule::workflow::<pay>(name, "0 3 * * *", "cron".to_owned())).await.unwrap();
        }
        let enabled = |name: &'static str| {
            let e = e.clone();
            async move { e.list_crons().await.unwrap().into_iter().find(|c| c.name == name).unwrap().enabled }
        };
        let cron_page = http.get("/cron").await;
        assert_eq!(form_action_count(&cron_page.body, "/cron/pause"), 3, "one pause form per schedule");
        let paused = http.post_form("/cron/pause", &[("form_token", &token), ("name", "nightly report")], &with_origin).await;
        assert_eq!(paused.status, 303, "{}", paused.body);
        assert!(!enabled("nightly report").await);
        assert!(enabled("nightly+report").await, "only the named schedule");
        assert!(http.get("/cron").await.body.contains("paused"));
        let resumed = http.post_form("/cron/resume", &[("form_token", &token), ("name", "nightly report")], &with_origin).await;
        assert_eq!(resumed.status, 303);
        assert!(enabled("nightly report").await);
        let odd = http.post_form("/cron/pause", &[("form_token", &token), ("name", "a/../b")], &with_origin).await;
        assert_eq!(odd.status, 303);
        assert!(!enabled("a/../b").await);
        assert_eq!(http.post_form("/cron/pause", &[("form_token", &token), ("name", "nope")], &with_origin).await.status, 404);
        assert_eq!(http.post_form("/cron/pause", &[("form_token", &token)], &with_origin).await.status, 404, "no name");
    }

    async fn only_a_post_changes_anything(db: TestDb) {
        let (e, _w, http) = setup(&db).await;
        let bad = pay::start(&e, "fail-m".to_owned()).await.unwrap();
        assert_eq!(ended(&e, bad.id()).await, ExecutionStatus::Failed);
        let page = http.get(&format!("/runs/{}", bad.id())).await;
        let token = form_token(&page.body).unwrap();
        let origin = http.origin();
        let body = format!("form_token={token}").into_bytes();
        for method in ["GET", "PUT", "DELETE", "PATCH"] {
            for action in ["retry", "resume", "cancel", "fork"] {
                let reply = http
                    .send(method, &format!("/runs/{}/{action}", bad.id()), &[("origin", origin.as_str()), ("content-type", "application/x-www-form-urlencoded")], body.clone())
                    .await;
                assert_eq!(reply.status, 405, "{method} {action}");
            }
        }
        assert_eq!(e.get(bad.id()).await.unwrap().unwrap().status, ExecutionStatus::Failed, "nothing was retried");
        assert_eq!(e.list(ExecutionFilter::new(e.namespace())).await.unwrap().len(), 1, "nothing was forked");
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
        // So is one a reverse proxy forwarded (it keeps the loopback Host):
        // without a token, the console would be public to the proxy's users.
        for header in ["x-forwarded-for", "forwarded", "x-real-ip", "via", "x-forwarded-host", "x-forwarded-proto"] {
            let reply = http.get_with("/runs", &[(header, "203.0.113.9")]).await;
            assert_eq!(reply.status, 403, "{header}: {}", reply.body);
            assert!(reply.body.contains("came through a proxy"), "{}", reply.body);
        }
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
        assert!(!cookie.contains(secret), "the cookie holds a session, never the token: {cookie}");
        assert_eq!(http.get_with("/runs", &[("cookie", &format!("hydra_console={secret}"))]).await.status, 303, "the token is no cookie");
        let pair = cookie.split(';').next().unwrap().to_owned();
        // Behind a TLS proxy that keeps Host, the https origin is the console's.
        let tls_origin = origin.replace("http://", "https://");
        let via_tls = http.post_form("/login", &[("token", secret)], &[("origin", tls_origin.as_str())]).await;
        assert_eq!(via_tls.status, 303);
        let page = http.get_with(&format!("/runs/{run}"), &[("cookie", &pair)]).await;
        assert_eq!(page.status, 200);
        // An action without the access token is refused even with the form token.
        let token = form_token(&page.body).unwrap();
        let post = http.post_form(&format!("/runs/{run}/cancel"), &[("form_token", &token)], &[("origin", origin.as_str())]).await;
        assert_eq!(post.status, 401);
        // With a token, other host names are fine (it is meant to be reached).
        assert_eq!(http.get_with("/runs", &[("cookie", &pair), ("host", "hydra.internal:8233")]).await.status, 200);
        // Signing out ends the session.
        let out = http.post_form("/logout", &[], &[("origin", origin.as_str()), ("cookie", &pair)]).await;
        assert_eq!(out.status, 303);
        assert!(out.header("set-cookie").contains("Max-Age=0"));
        assert_eq!(http.get_with("/runs", &[("cookie", &pair)]).await.status, 303, "a signed-out session is refused");
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
        // No worker: nothing rewrites the rows this test writes.
        let e = Engine::builder().database_url(&db.url).console("127.0.0.1:0".parse().unwrap()).build().await.unwrap();
        let http = Http::new(e.console_addr().unwrap());
        // A run whose every stored text is markup and whose input is bytes
        // no codec wrote (as another program could leave a row): the pages
        // show them escaped and answer 200.
        let run = e.start_by_name_json("console-pay", "y").await;
        let conn = sea_orm::Database::connect(&db.url).await.unwrap();
        sql(
            &conn,
            "UPDATE workflow_executions SET workflow_name = ?, error_message = ?, input_data = ?, \
             trigger_source = ?, idempotency_key = ?, status = 'failed', completed_at = created_at WHERE id = ?",
            vec![
                HOSTILE.into(),
                format!("{HOSTILE}\u{1b}[2J\u{202e}").into(),
                vec![0xffu8, 0x00, 0x3c, 0x3e].into(),
                HOSTILE.into(),
                HOSTILE.into(),
                run.clone().into(),
            ],
        )
        .await;
        let tagged = e
            .start_encoded(
                "console-pay",
                Codec::Json.encode(&HOSTILE.to_owned()).unwrap(),
                WorkflowOptions::default(),
                hydra_runtime::StartOptions::new().search_attribute("customer", HOSTILE),
            )
            .await
            .unwrap();
        // Times no clock wrote: the far ends of i64, and an end before the start.
        let mut odd = Vec::new();
        for (created, completed) in [(i64::MIN, Some(i64::MAX)), (i64::MAX, Some(i64::MIN)), (1_000, Some(-5)), (i64::MAX, None)] {
            let id = e.start_by_name_json("console-pay", "t").await;
            sql(&conn, "UPDATE workflow_executions SET created_at = ?, started_at = ?, completed_at = ?, due_at = ?, status = ? WHERE id = ?",
                vec![created.into(), created.into(), completed.into(), completed.into(), (if completed.is_some() { "failed" } else { "running" }).into(), id.clone().into()]).await;
            odd.push(id);
        }
        for path in [
            format!("/runs/{run}"),
            format!("/runs/{}", tagged.id),
            "/runs".to_owned(),
            "/runs?status=failed".to_owned(),
            "/summary".to_owned(),
            format!("/runs?workflow={}", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        ]
        .into_iter()
        .chain(odd.iter().map(|id| format!("/runs/{id}")))
        {
            let page = http.get(&path).await;
            assert_eq!(page.status, 200, "{path}: {}", page.body);
            assert!(!page.body.contains("<script"), "{path}: an unescaped script tag");
        }
        let page = http.get(&format!("/runs/{run}")).await;
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.body.contains("codec tag 255"), "undecodable bytes described");
    }

    async fn a_huge_payload_is_shown_cut_and_lists_load_no_payload(db: TestDb) {
        let e = Engine::builder().database_url(&db.url).console("127.0.0.1:0".parse().unwrap()).build().await.unwrap();
        let http = Http::new(e.console_addr().unwrap());
        // 200,000 zeros nested 100 deep: 400 KB stored, tens of megabytes
        // of indented JSON if printed whole.
        let mut text = format!("[{}0]", "0,".repeat(199_999));
        for _ in 0..99 {
            text = format!("[{text}]");
        }
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let stored = Codec::Json.encode(&value).unwrap();
        let run = e
            .start_encoded("console-pay", stored.clone(), WorkflowOptions::default(), hydra_runtime::StartOptions::new())
            .await
            .unwrap();
        let page = http.get(&format!("/runs/{}", run.id)).await;
        assert_eq!(page.status, 200);
        assert!(page.body.len() < 200 * 1024, "the page holds a cut of the payload, not all of it: {} bytes", page.body.len());
        assert!(page.body.contains("Cut at 64 KiB"), "and says so");
        // The list asks for no payload.
        let listed = e.list(ExecutionFilter::new(e.namespace()).without_payloads()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].input.is_empty(), "without_payloads leaves the input in the database");
        assert_eq!(e.list(ExecutionFilter::new(e.namespace())).await.unwrap()[0].input, stored);
        assert_eq!(http.get("/runs").await.status, 200);
    }
}

/// Runs `text` (with `?` placeholders) on either backend.
async fn sql(conn: &sea_orm::DatabaseConnection, text: &str, values: Vec<sea_orm::Value>) {
    let backend = conn.get_database_backend();
    let text = if backend == sea_orm::DbBackend::Postgres {
        let mut n = 0;
        text.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.to_owned()
    };
    conn.execute_raw(sea_orm::Statement::from_sql_and_values(backend, text, values)).await.unwrap();
}

/// How many forms of `page` post to `action`.
fn form_action_count(page: &str, action: &str) -> usize {
    page.matches(&format!("action=\"{action}\"")).count()
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
