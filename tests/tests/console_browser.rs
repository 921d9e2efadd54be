//! The web console end to end in a real headless Chromium (Debian's, through
//! chromedriver): open the runs list, filter it to the failed runs, open the
//! failed run, press Retry, and watch it complete; a run whose input is a
//! script tag shows the text and runs nothing. Screenshots of each page are
//! kept in `target/console-screenshots/`.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use fantoccini::Locator;
use hydra_console::{EngineBuilderExt, EngineExt};
use hydra_runtime::ExecutionStatus;
use hydra_runtime::prelude::*;
use hydra_tests::both_backends;
use hydra_tests::browser::Browser;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const HOSTILE: &str = "<script>alert(1)</script>";

/// Customers whose payments go through again (the two backends' tests run
/// at once, each with its own customer).
static RECOVERED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

#[step(id = "reserve", retry(max_attempts = 1))]
async fn reserve(who: String) -> Result<String, StepError> {
    Ok(format!("hold for {who}"))
}

#[step(id = "charge", retry(max_attempts = 2, initial = "150ms"))]
async fn charge(who: String) -> Result<String, StepError> {
    let recovered = RECOVERED.lock().map(|r| r.as_ref().is_some_and(|r| r.contains(&who))).unwrap_or(false);
    if who.starts_with("ivan") && !recovered {
        return Err(StepError::retryable("the payment provider is down (503)"));
    }
    Ok(format!("paid {who}"))
}

#[step(id = "ship", retry(max_attempts = 1))]
async fn ship(who: String) -> Result<String, StepError> {
    Ok(format!("shipped to {who}"))
}

#[workflow(name = "checkout")]
async fn checkout(ctx: WorkflowContext, who: String) -> Result<String, WorkflowError> {
    ctx.set_search_attribute("customer", &who).await?;
    reserve(&ctx, who.clone()).await?;
    ctx.sleep(Duration::from_millis(200)).await;
    charge(&ctx, who.clone()).await?;
    Ok(ship(&ctx, who).await?)
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

/// The texts of the elements `css` finds.
async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for el in b.client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(el.text().await.unwrap());
    }
    out
}

both_backends! {
    async fn console_in_a_browser_retries_a_failed_run(db: TestDb) {
        let e = Engine::builder().database_url(&db.url).console("127.0.0.1:0".parse().unwrap()).build().await.unwrap();
        let _w = Worker::builder(&e).register(checkout).poll_interval(Duration::from_millis(50)).start().await.unwrap();
        let base = format!("http://{}", e.console_addr().unwrap());
        let backend = if db.url.starts_with("sqlite") { "sqlite" } else { "postgres" };

        let ana = checkout::start(&e, "ana".to_owned()).await.unwrap();
        let ivan_name = format!("ivan-{backend}");
        let ivan = checkout::start(&e, ivan_name.clone()).await.unwrap();
        let hostile = checkout::start(&e, HOSTILE.to_owned()).await.unwrap();
        assert_eq!(ended(&e, ana.id()).await, ExecutionStatus::Completed);
        assert_eq!(ended(&e, ivan.id()).await, ExecutionStatus::Failed);
        assert_eq!(ended(&e, hostile.id()).await, ExecutionStatus::Completed);

        let b = Browser::start().await;
        // The runs list shows all three.
        b.client.goto(&format!("{base}/runs")).await.unwrap();
        let ids = texts(&b, "table.runs a.id").await;
        for run in [&ana, &ivan, &hostile] {
            assert!(ids.contains(&run.id().to_string()), "{} in {ids:?}", run.id());
        }
        b.screenshot(&format!("{backend}-1-runs.png")).await;

        // Filter to the failed runs through the form.
        b.client.find(Locator::Css("select[name=status] option[value=failed]")).await.unwrap().click().await.unwrap();
        b.client.find(Locator::Css("form.filters button[type=submit]")).await.unwrap().click().await.unwrap();
        let filtered = tokio::time::timeout(WAIT, async {
            while !b.client.current_url().await.unwrap().query().is_some_and(|q| q.contains("status=failed")) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(filtered.is_ok(), "the filter form led to /runs?…status=failed");
        let failed = texts(&b, "table.runs a.id").await;
        assert_eq!(failed, vec![ivan.id().to_string()], "only the failed run is listed");
        b.screenshot(&format!("{backend}-2-runs-failed.png")).await;

        // Open it: failed, its error and its timeline.
        b.client.find(Locator::Css("table.runs a.id")).await.unwrap().click().await.unwrap();
        let badge = b.client.wait().at_most(WAIT).for_element(Locator::Css("h1 .badge")).await.unwrap();
        assert_eq!(badge.text().await.unwrap(), "failed");
        let error = b.client.find(Locator::Css("pre.error")).await.unwrap().text().await.unwrap();
        assert!(error.contains("payment provider is down"), "{error}");
        assert!(b.client.find(Locator::Css("figure.timeline svg rect.failed")).await.is_ok(), "the failed step drawn");
        b.screenshot(&format!("{backend}-3-run-failed.png")).await;

        // The provider is back: press Retry and watch the run complete.
        RECOVERED.lock().unwrap().get_or_insert_with(HashSet::new).insert(ivan_name.clone());
        b.client.find(Locator::Css("button[name=retry]")).await.unwrap().click().await.unwrap();
        let notice = b.client.wait().at_most(WAIT).for_element(Locator::Css("p.notice")).await.unwrap();
        assert!(notice.text().await.unwrap().starts_with("Retried"));
        let completed = tokio::time::timeout(WAIT, async {
            loop {
                b.client.refresh().await.unwrap();
                let s = b.client.find(Locator::Css("h1 .badge")).await.unwrap().text().await.unwrap();
                if s == "completed" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(completed.is_ok(), "the retried run completed in the browser's view");
        assert_eq!(ivan.result_timeout(WAIT).await.unwrap(), format!("shipped to {ivan_name}"));
        let steps = texts(&b, "table.steps tbody tr").await;
        assert!(steps.iter().any(|s| s.contains("charge") && s.contains("completed")), "{steps:?}");
        b.screenshot(&format!("{backend}-4-run-completed.png")).await;

        // A script in the input is shown as text and runs nothing.
        b.client.goto(&format!("{base}/runs/{}", hostile.id())).await.unwrap();
        let input = b.client.find(Locator::Css(".io pre.payload")).await.unwrap().text().await.unwrap();
        assert!(input.contains(HOSTILE), "{input}");
        assert!(b.client.find(Locator::Css("main script")).await.is_err(), "no script element in the page");
        b.screenshot(&format!("{backend}-5-run-hostile-input.png")).await;
        b.close().await;
    }
}
