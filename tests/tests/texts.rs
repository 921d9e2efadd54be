//! Texts from user data are storable on every backend or refused with a
//! clear error: a NUL (which PostgreSQL's text cannot hold) in a step's or
//! a workflow's error message is kept readable (as U+FFFD) and the run ends
//! as it would have, compensations included; names and keys that must
//! match exactly (a signal's idempotency key, a start's) are refused.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::{ExecutionStatus, SignalOptions, StartOptions};
use hydra_tests::{TestDb, both_backends};
use std::sync::Mutex;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The labels whose charge was refunded.
static REFUNDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[step(id = "charge", retry(max_attempts = 1))]
async fn charge(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[step(id = "refund", retry(max_attempts = 1))]
async fn refund(label: String) -> Result<(), StepError> {
    REFUNDED.lock().unwrap().push(label);
    Ok(())
}

#[step(id = "ship", retry(max_attempts = 1))]
async fn ship(label: String) -> Result<(), StepError> {
    Err(StepError::permanent(format!("cannot print label {label}")))
}

/// Charges, then fails to ship with an error that holds the label.
#[workflow(name = "labelled-order")]
async fn labelled_order(ctx: WorkflowContext, label: String) -> Result<u32, WorkflowError> {
    charge(&ctx, 1).await?;
    ctx.compensate(refund::later(label.clone()));
    ship(&ctx, label).await?;
    Ok(1)
}

/// Fails itself with an error that holds the label (retryable: the run's
/// second attempt fails for good).
#[workflow(name = "labelled-refusal", retry(max_attempts = 2, initial = "1ms"))]
async fn labelled_refusal(_ctx: WorkflowContext, label: String) -> Result<u32, WorkflowError> {
    Err(WorkflowError::retryable(format!("refused {label}")))
}

#[workflow(name = "labelled-wait")]
async fn labelled_wait(ctx: WorkflowContext, _label: String) -> Result<u32, WorkflowError> {
    Ok(ctx.recv("go").await?)
}

/// What the workflow saw of its failed step before and after a replay:
/// the first pass's text, and the text once the run woke from its wait
/// (a replay).
static ECHOED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

#[workflow(name = "labelled-echo")]
async fn labelled_echo(ctx: WorkflowContext, label: String) -> Result<(String, String), WorkflowError> {
    let seen = ship(&ctx, label).await.unwrap_err().message().to_owned();
    let id = ctx.execution_id().to_string();
    let first = {
        let mut echoed = ECHOED.lock().unwrap();
        match echoed.iter().find(|(run, _)| *run == id) {
            Some((_, first)) => first.clone(),
            None => {
                echoed.push((id.clone(), seen.clone()));
                seen.clone()
            }
        }
    };
    let _: u32 = ctx.recv("go").await?;
    Ok((first, seen))
}

async fn setup(db: &TestDb) -> (Engine, Worker) {
    let e = Engine::builder().database_url(&db.url).build().await.unwrap();
    let w = Worker::builder(&e)
        .register(labelled_order)
        .register(labelled_refusal)
        .register(labelled_wait)
        .register(labelled_echo)
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    (e, w)
}

both_backends! {
    async fn a_nul_in_a_step_error_is_kept_readable_and_the_run_compensates(db: TestDb) {
        let (e, w) = setup(&db).await;
        let label = format!("{:?}\0box", db.kind);
        let h = labelled_order::start(&e, label.clone()).await.unwrap();
        h.result_timeout(WAIT).await.unwrap_err();
        let run = e.get(h.id()).await.unwrap().unwrap();
        assert_eq!(run.status, ExecutionStatus::Failed, "{:?}", run.error);
        let shown = label.replace('\0', "\u{FFFD}");
        let error = run.error.clone().unwrap_or_default();
        assert!(error.contains(&format!("cannot print label {shown}")), "{error:?}");
        assert!(error.ends_with("(compensated: refund)"), "{error:?}");
        assert_eq!(REFUNDED.lock().unwrap().iter().filter(|l| **l == label).count(), 1, "refunded once");
        let steps = e.steps(h.id()).await.unwrap();
        let shipped = steps.iter().find(|s| s.step_id.base() == "ship").unwrap();
        assert_eq!(shipped.error.as_deref(), Some(format!("cannot print label {shown}").as_str()));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_nul_in_a_workflow_error_ends_the_run_once_it_is_out_of_attempts(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = labelled_refusal::start(&e, "a\0b".to_owned()).await.unwrap();
        h.result_timeout(WAIT).await.unwrap_err();
        let run = e.get(h.id()).await.unwrap().unwrap();
        assert_eq!(run.status, ExecutionStatus::Failed);
        assert_eq!(run.error.as_deref(), Some("refused a\u{FFFD}b (after 2 workflow attempts)"));
        assert_eq!(run.attempts, 2, "two attempts, no lease expiries in between");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_step_error_with_a_nul_reads_the_same_on_the_first_run_and_on_a_replay(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = labelled_echo::start(&e, "x\0y".to_owned()).await.unwrap();
        tokio::time::timeout(WAIT, async {
            while e.get(h.id()).await.unwrap().unwrap().status != ExecutionStatus::Sleeping {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        e.signal(h.id(), "go", &1u32).await.unwrap();
        // The first pass saw the error before the sleep; the replay after it
        // reads it from the record: the same text both times.
        let (first, replayed) = h.result_timeout(WAIT).await.unwrap();
        assert_eq!(first, "cannot print label x\u{FFFD}y");
        assert_eq!(first, replayed);
        let err = Engine::builder().database_url(&db.url).namespace("a\0b").build().await.unwrap_err();
        assert!(matches!(err, Error::Config(ref m) if m.contains("without NUL")), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn keys_that_must_match_exactly_are_refused_with_a_nul_or_too_long(db: TestDb) {
        let (e, w) = setup(&db).await;
        let h = labelled_wait::start(&e, String::new()).await.unwrap();
        for key in ["a\0b".to_owned(), "k".repeat(256)] {
            let err = e.signal_with(h.id(), "go", &1u32, SignalOptions::new().idempotency_key(key.clone())).await;
            let err = err.unwrap_err();
            assert!(matches!(err, Error::Config(ref m) if m.contains("idempotency key")), "{err}");
            let err = e
                .start_with::<labelled_wait>(String::new(), StartOptions::new().idempotency_key(key))
                .await
                .err()
                .unwrap();
            assert!(matches!(err, Error::Config(ref m) if m.contains("idempotency key")), "{err}");
        }
        // Nothing was stored by the refused sends: the run still waits, and
        // a key of 255 characters is taken.
        let ok = SignalOptions::new().idempotency_key("k".repeat(255));
        e.signal_with(h.id(), "go", &5u32, ok).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), 5);
        w.shutdown(Duration::from_secs(5)).await;
    }
}
