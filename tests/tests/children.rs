//! Child workflows: started once (replays never start a second), their
//! result or failure returned to the parent, cancelled with the parent;
//! detached starts are not linked.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::{Execution, ExecutionFilter};
use hydra_tests::{TestDb, both_backends};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The child: ships, fails on "fail", waits for signal `go` on "wait".
struct Ship;

impl Workflow for Ship {
    const NAME: &'static str = "ship";
    type Input = String;
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, item: String) -> Result<String, WorkflowError> {
        if item == "wait" {
            let _: u32 = ctx.recv("go").await?;
        }
        let item2 = item.clone();
        Ok(ctx
            .step_with(StepOptions::new("ship").retry(RetryPolicy::none()), move |_s| {
                let item = item2.clone();
                async move {
                    if item == "fail" { Err(StepError::permanent("no carrier")) } else { Ok(format!("shipped {item}")) }
                }
            })
            .await?)
    }
}

/// The parent: starts a child, handles its failure, sleeps (so it replays
/// past the start), returns the child's result.
struct Order;

impl Workflow for Order {
    const NAME: &'static str = "order";
    type Input = String;
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, item: String) -> Result<String, WorkflowError> {
        let out = match ctx.child::<Ship>(item).await {
            Ok(v) => v,
            Err(e) => format!("handled: {}", e.message()),
        };
        ctx.sleep(Duration::from_millis(20)).await;
        Ok(out)
    }
}

/// Starts a child it does not wait for.
struct Fire;

impl Workflow for Fire {
    const NAME: &'static str = "fire";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        Ok(ctx.start_detached::<Ship>("loose".into()).await?.to_string())
    }
}

async fn setup(db: &TestDb) -> (Engine, Worker) {
    let e = Engine::builder().store(db.store().await).namespace("kids").build().await.unwrap();
    let w = Worker::builder(&e)
        .register(Ship)
        .register(Order)
        .register(Fire)
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    (e, w)
}

async fn runs_of(e: &Engine, workflow: &str) -> Vec<Execution> {
    e.list(ExecutionFilter::new("kids").workflow(workflow)).await.unwrap()
}

both_backends! {
    async fn a_child_is_started_once_and_its_result_reaches_the_parent(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("book".into()).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "shipped book");
        let children = e.children(h.id()).await.unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].parent_id.as_ref(), Some(h.id()));
        assert_eq!(runs_of(&e, "ship").await.len(), 1, "the replay after the sleep started no second child");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_failed_child_is_an_error_the_parent_handles(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("fail".into()).await.unwrap();
        let out = h.result_timeout(WAIT).await.unwrap();
        assert!(out.starts_with("handled: child run") && out.contains("ended failed") && out.contains("no carrier"), "{out}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn cancelling_the_parent_cancels_its_running_child(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("wait".into()).await.unwrap();
        let child = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(c) = e.children(h.id()).await.unwrap().pop()
                    && c.status == ExecutionStatus::Sleeping
                {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the child parks waiting for `go`");
        e.cancel(h.id()).await.unwrap();
        assert!(matches!(h.result_timeout(WAIT).await.unwrap_err(), Error::RunEnded { status: ExecutionStatus::Cancelled, .. }));
        let child = e.get(&child.id).await.unwrap().unwrap();
        assert_eq!(child.status, ExecutionStatus::Cancelled, "cancelled with its parent");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_detached_child_is_not_linked_and_runs_on_its_own(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Fire>(()).await.unwrap();
        let id = ExecutionId::from_string(h.result_timeout(WAIT).await.unwrap());
        assert!(e.children(h.id()).await.unwrap().is_empty(), "not a child");
        let loose = e.handle::<String>(id);
        assert_eq!(loose.result_timeout(WAIT).await.unwrap(), "shipped loose");
        assert_eq!(loose.execution().await.unwrap().parent_id, None);
        w.shutdown(Duration::from_secs(5)).await;
    }
}
