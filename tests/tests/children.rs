//! Child workflows: started once (replays never start a second, nor does a
//! crash between the child's insert and its start's record), their result
//! or failure returned to the parent, cancelled with the parent unless the
//! start said not to; detached starts are not linked; a select takes a
//! child's end, an awakeable or a signal, whichever comes first.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{ChildOptions, Execution, ExecutionFilter};
use hydra_store::sea_orm::{ConnectionTrait, Statement};
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

/// Starts a detached run, then waits for signal `done`.
struct FireAndWait;

impl Workflow for FireAndWait {
    const NAME: &'static str = "fire-and-wait";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        let id = ctx.start_detached::<Ship>("loose".into()).await?;
        let _: u32 = ctx.recv("done").await?;
        Ok(id.to_string())
    }
}

/// Starts a child waiting for `go` that cancelling the parent leaves
/// running, and waits for it.
struct Keep;

impl Workflow for Keep {
    const NAME: &'static str = "keep";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        Ok(ctx.child_with::<Ship>("wait".into(), ChildOptions::new().cancel_with_parent(false)).await?)
    }
}

/// Starts a child waiting for `go`, draws an awakeable (published as event
/// `token`), and takes whichever of signal `stop`, the child's end and the
/// awakeable comes first; sleeps after, so the select is replayed.
struct Race;

impl Workflow for Race {
    const NAME: &'static str = "race";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        let child = ctx.start_child::<Ship>("wait".into()).await?;
        let paid = ctx.awakeable::<String>().await?;
        ctx.set_event("token", &paid.token().to_owned()).await?;
        let picked = ctx.select(&["stop", &child.select_name(), &paid.select_name()], None).await?;
        let Some(s) = picked else { return Ok("no branch".into()) };
        let out = if s.is(&child.select_name()) {
            format!("child: {}", s.child(&child)?)
        } else if s.is(&paid.select_name()) {
            match s.awakeable(&paid) {
                Ok(v) => format!("awakeable: {v}"),
                Err(e) => format!("awakeable error: {}", e.message()),
            }
        } else {
            format!("signal: {}", s.decode::<String>()?)
        };
        assert!(s.child(&child).is_err() || s.is(&child.select_name()), "another branch's result is an error");
        ctx.sleep(Duration::from_millis(20)).await;
        Ok(out)
    }
}

/// Waits for a child's end twice: in a select, then with `await_child`.
struct Twice;

impl Workflow for Twice {
    const NAME: &'static str = "twice";
    type Input = ();
    type Output = (String, String);

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(String, String), WorkflowError> {
        let child = ctx.start_child::<Ship>("book".into()).await?;
        let first = ctx.select(&[&child.select_name()], None).await?.expect("no timeout").child(&child)?;
        let again = ctx.await_child(&child).await?;
        ctx.sleep(Duration::from_millis(20)).await;
        Ok((first, again))
    }
}

async fn sql(e: &Engine, sql: &str, id: &ExecutionId) {
    let c = e.connection();
    let backend = c.get_database_backend();
    let sql =
        if backend == hydra_store::sea_orm::DbBackend::Postgres { sql.replace('?', "$1") } else { sql.to_owned() };
    c.execute_raw(Statement::from_sql_and_values(backend, &sql, [id.as_str().into()])).await.unwrap();
}

/// Starts two children and handles each as it finishes: a select over
/// both, twice; a third select (both taken) is an error, returned as text.
struct EachOnce;

impl Workflow for EachOnce {
    const NAME: &'static str = "each-once";
    type Input = ();
    type Output = (Vec<String>, String);

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(Vec<String>, String), WorkflowError> {
        let a = ctx.start_child::<Ship>("a".into()).await?;
        let b = ctx.start_child::<Ship>("b".into()).await?;
        let names = [a.select_name(), b.select_name()];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut handled = Vec::new();
        for _ in 0..2 {
            let s = ctx.select(&names, None).await?.expect("no timeout");
            handled.push(if s.is(&a.select_name()) { s.child(&a)? } else { s.child(&b)? });
        }
        let third = match ctx.select(&names, None).await {
            Ok(s) => format!("took {:?} again", s.map(|s| s.name().to_owned())),
            Err(e) => e.message().to_owned(),
        };
        ctx.sleep(Duration::from_millis(20)).await;
        Ok((handled, third))
    }
}

async fn setup(db: &TestDb) -> (Engine, Worker) {
    let e = Engine::builder().store(db.store().await).namespace("kids").build().await.unwrap();
    let w = Worker::builder(&e)
        .register(Ship)
        .register(Order)
        .register(Fire)
        .register(Keep)
        .register(Race)
        .register(Twice)
        .register(EachOnce)
        .register(FireAndWait)
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    (e, w)
}

async fn runs_of(e: &Engine, workflow: &str) -> Vec<Execution> {
    e.list(ExecutionFilter::new("kids").workflow(workflow)).await.unwrap()
}

/// The first child of `parent` once it is parked (waiting for `go`).
async fn parked_child(e: &Engine, parent: &ExecutionId) -> Execution {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(c) = e.children(parent).await.unwrap().pop()
                && c.status == ExecutionStatus::Sleeping
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the child parks waiting for `go`")
}

/// Waits until run `id` is parked.
async fn until_parked(e: &Engine, id: &ExecutionId) {
    tokio::time::timeout(WAIT, async {
        while e.get(id).await.unwrap().unwrap().status != ExecutionStatus::Sleeping {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the run parks");
}

async fn race(db: &TestDb, settle: impl AsyncFnOnce(&Engine, &ExecutionId, String, ExecutionId)) -> String {
    let (e, w) = setup(db).await;
    let h = e.start::<Race>(()).await.unwrap();
    let token: String = e.wait_event(h.id(), "token", WAIT).await.unwrap().expect("the token is published");
    let child = parked_child(&e, h.id()).await.id;
    until_parked(&e, h.id()).await;
    settle(&e, h.id(), token, child).await;
    let out = h.result_timeout(WAIT).await.unwrap();
    w.shutdown(Duration::from_secs(5)).await;
    out
}

both_backends! {
    async fn a_loop_of_selects_handles_each_child_once_and_then_says_none_is_left(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<EachOnce>(()).await.unwrap();
        let (mut handled, third) = h.result_timeout(WAIT).await.unwrap();
        handled.sort();
        assert_eq!(handled, ["shipped a", "shipped b"], "each child handled once");
        assert!(third.contains("taken by an earlier wait"), "{third}");
        w.shutdown(Duration::from_secs(5)).await;
    }

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
        let child = parked_child(&e, h.id()).await;
        e.cancel(h.id()).await.unwrap();
        assert!(matches!(h.result_timeout(WAIT).await.unwrap_err(), Error::RunEnded { status: ExecutionStatus::Cancelled, .. }));
        let kid = e.handle::<String>(child.id.clone());
        let err = kid.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::Cancelled, .. }), "cancelled with its parent: {err}");
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

    async fn a_child_started_not_to_be_cancelled_outlives_its_parents_cancel(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Keep>(()).await.unwrap();
        let child = parked_child(&e, h.id()).await;
        assert!(!child.cancel_with_parent);
        e.cancel(h.id()).await.unwrap();
        assert!(matches!(h.result_timeout(WAIT).await.unwrap_err(), Error::RunEnded { status: ExecutionStatus::Cancelled, .. }));
        assert_eq!(e.get(&child.id).await.unwrap().unwrap().status, ExecutionStatus::Sleeping, "still waiting");
        e.signal(&child.id, "go", &1u32).await.unwrap();
        let kept = e.handle::<String>(child.id.clone());
        assert_eq!(kept.result_timeout(WAIT).await.unwrap(), "shipped wait", "it finishes on its own");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_select_takes_an_awakeable_that_is_completed_first(db: TestDb) {
        let out = race(&db, async |e: &Engine, _, token: String, _| e.complete(&token, "paid".to_owned()).await.unwrap()).await;
        assert_eq!(out, "awakeable: paid");
    }

    async fn a_select_takes_a_rejected_awakeable_as_its_error(db: TestDb) {
        let out = race(&db, async |e: &Engine, _, token: String, _| e.reject(&token, "card declined").await.unwrap()).await;
        assert_eq!(out, "awakeable error: awakeable rejected: card declined");
    }

    async fn a_select_takes_a_childs_end_that_comes_first(db: TestDb) {
        let out = race(&db, async |e: &Engine, _, _, child: ExecutionId| {
            e.signal(&child, "go", &1u32).await.unwrap();
        })
        .await;
        assert_eq!(out, "child: shipped wait");
    }

    async fn a_select_takes_a_signal_that_comes_first(db: TestDb) {
        let out = race(&db, async |e: &Engine, id: &ExecutionId, _, _| {
            e.signal(id, "stop", &"enough".to_owned()).await.unwrap();
        })
        .await;
        assert_eq!(out, "signal: enough");
    }

    async fn hydras_own_signal_names_are_refused_to_senders(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Race>(()).await.unwrap();
        let child = parked_child(&e, h.id()).await.id;
        for name in [format!("child:{child}"), format!("awakeable:{}", "ab".repeat(16))] {
            let err = e.signal(h.id(), &name, &"forged".to_owned()).await.unwrap_err();
            assert!(matches!(&err, Error::Config(m) if m.contains("reserved")), "{name}: {err}");
            // Nor may a sender's idempotency key take the slot of Hydra's own signal.
            let keyed = hydra_runtime::SignalOptions::new().idempotency_key(&name);
            let err = e.signal_with(h.id(), "stop", &"x".to_owned(), keyed).await.unwrap_err();
            assert!(matches!(&err, Error::Config(m) if m.contains("reserved")), "key {name}: {err}");
        }
        e.cancel(h.id()).await.unwrap();
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_crash_between_the_childs_insert_and_its_record_starts_no_second_child(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("wait".into()).await.unwrap();
        let child = parked_child(&e, h.id()).await;
        until_parked(&e, h.id()).await;
        w.shutdown(Duration::from_secs(5)).await;
        // The state a crash after the insert and before the start's record
        // leaves: the child exists, the parent has recorded nothing and is
        // due to run again.
        let c = e.connection();
        let backend = c.get_database_backend();
        let p = if backend == hydra_store::sea_orm::DbBackend::Postgres { "$1" } else { "?" };
        for sql in [
            format!("DELETE FROM workflow_steps WHERE execution_id = {p}"),
            format!(
                "UPDATE workflow_executions SET status = 'pending', due_at = 0, signal_wait = FALSE, \
                 open_position = 0, open_attempts = 0, lease_owner = NULL WHERE id = {p}"
            ),
        ] {
            c.execute_raw(Statement::from_sql_and_values(backend, &sql, [h.id().as_str().into()])).await.unwrap();
        }
        let (e, w) = setup(&db).await;
        until_parked(&e, h.id()).await;
        assert_eq!(runs_of(&e, "ship").await.len(), 1, "the second start found the first child");
        e.signal(&child.id, "go", &1u32).await.unwrap();
        assert_eq!(e.handle::<String>(h.id().clone()).result_timeout(WAIT).await.unwrap(), "shipped wait");
        assert_eq!(runs_of(&e, "ship").await.len(), 1);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn waiting_again_for_a_child_already_taken_returns_its_result(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Twice>(()).await.unwrap();
        let out = h.result_timeout(WAIT).await.unwrap();
        assert_eq!(out, ("shipped book".to_owned(), "shipped book".to_owned()), "and again after the replay past the sleep");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_run_its_worker_ends_cancelled_takes_its_children_along(db: TestDb) {
        // The cancel reaches the parent without `Engine::cancel` (which
        // cascades itself): as one requested while its child was being
        // started. The worker that ends the parent cancels the child.
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("wait".into()).await.unwrap();
        let child = parked_child(&e, h.id()).await;
        until_parked(&e, h.id()).await;
        sql(&e, "UPDATE workflow_executions SET cancel_requested = TRUE, due_at = 0 WHERE id = ?", h.id()).await;
        assert!(matches!(h.result_timeout(WAIT).await.unwrap_err(), Error::RunEnded { status: ExecutionStatus::Cancelled, .. }));
        let kid = e.handle::<String>(child.id.clone());
        assert!(matches!(kid.result_timeout(WAIT).await.unwrap_err(), Error::RunEnded { status: ExecutionStatus::Cancelled, .. }));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_child_a_cancelled_parent_left_running_is_cancelled_by_the_next_worker(db: TestDb) {
        // The parent's end (cancelled) committed, then its worker died
        // before the cascade: the child still waits. A worker's upkeep (at
        // its start) cancels it.
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("wait".into()).await.unwrap();
        let child = parked_child(&e, h.id()).await;
        until_parked(&e, h.id()).await;
        w.shutdown(Duration::from_secs(5)).await;
        sql(&e, "UPDATE workflow_executions SET status = 'cancelled', error_message = 'cancelled', due_at = NULL WHERE id = ?", h.id()).await;
        assert!(!e.get(&child.id).await.unwrap().unwrap().status.is_terminal());
        let (_e2, w2) = setup(&db).await;
        let kid = e.handle::<String>(child.id.clone());
        assert!(matches!(kid.result_timeout(WAIT).await.unwrap_err(), Error::RunEnded { status: ExecutionStatus::Cancelled, .. }));
        w2.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_detached_run_is_not_pruned_while_the_run_that_started_it_can_replay(db: TestDb) {
        // Pruned while its starter waits, a replay of the starter (after a
        // crash before the start's record) would start it a second time.
        let (e, w) = setup(&db).await;
        let h = e.start::<FireAndWait>(()).await.unwrap();
        until_parked(&e, h.id()).await;
        let loose = runs_of(&e, "ship").await.remove(0);
        e.handle::<String>(loose.id.clone()).result_timeout(WAIT).await.unwrap();
        e.prune(&hydra_runtime::Retention::keep(Duration::ZERO)).await.unwrap();
        assert!(e.get(&loose.id).await.unwrap().is_some(), "pruned while its starter can replay");
        e.signal(h.id(), "done", &1u32).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), loose.id.to_string());
        e.prune(&hydra_runtime::Retention::keep(Duration::ZERO)).await.unwrap();
        assert!(e.get(&loose.id).await.unwrap().is_none(), "kept once its starter ended");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_cancel_cascade_through_a_cycle_of_stored_links_ends(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("wait".into()).await.unwrap();
        let child = parked_child(&e, h.id()).await;
        // A hand edit makes the parent its child's child.
        let c = e.connection();
        let backend = c.get_database_backend();
        let q = if backend == hydra_store::sea_orm::DbBackend::Postgres {
            "UPDATE workflow_executions SET parent_id = $1 WHERE id = $2"
        } else {
            "UPDATE workflow_executions SET parent_id = ? WHERE id = ?"
        };
        c.execute_raw(Statement::from_sql_and_values(backend, q, [child.id.as_str().into(), h.id().as_str().into()]))
            .await
            .unwrap();
        tokio::time::timeout(WAIT, e.cancel(h.id())).await.expect("the cascade ends").unwrap();
        let kid = e.handle::<String>(child.id.clone());
        assert!(matches!(kid.result_timeout(WAIT).await.unwrap_err(), Error::RunEnded { status: ExecutionStatus::Cancelled, .. }));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn failing_a_parent_by_hand_cancels_its_children(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = e.start::<Order>("wait".into()).await.unwrap();
        let child = parked_child(&e, h.id()).await;
        until_parked(&e, h.id()).await;
        e.fail(h.id(), "given up by an operator").await.unwrap();
        let kid = e.handle::<String>(child.id.clone());
        let err = kid.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::Cancelled, .. }), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }
}
