//! Typed errors: a step or a workflow fails with a value of the user's own
//! error type, stored with the run (both codecs) and read back typed; a
//! replay returns the same typed error; an error that does not decode as
//! the type asked for (another type, bytes written by hand) is a clear
//! error, not a panic; the stored message keeps the source chain.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{RunFailed, RunHandle};
use hydra_store::sea_orm::{ConnectionTrait, DbBackend, Statement};
use hydra_tests::{TestDb, both_backends};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum PaymentError {
    Declined { code: String },
    InsufficientFunds { missing_cents: u64 },
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaymentError::Declined { code } => write!(f, "card declined ({code})"),
            PaymentError::InsufficientFunds { missing_cents } => write!(f, "{missing_cents} ¢ missing"),
        }
    }
}

/// A shape `PaymentError` does not decode as.
#[derive(Debug, Deserialize)]
struct Unrelated {
    #[allow(dead_code)]
    x: u64,
}

#[derive(Debug)]
struct Inner;
impl std::fmt::Display for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by peer")
    }
}
impl std::error::Error for Inner {}

#[derive(Debug)]
struct Outer(Inner);
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bank did not answer")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[step(retry(max_attempts = 1))]
async fn charge(cents: u64) -> Result<String, StepError> {
    match cents {
        0 => Err(StepError::typed(PaymentError::Declined { code: "05".into() })),
        1 => Err(Outer(Inner).into()),
        n => Ok(format!("paid {n}")),
    }
}

/// Charges; sleeps before failing (the failure is replayed from the record
/// when the run resumes).
#[workflow]
async fn pay(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    let charged = charge(&ctx, cents).await;
    ctx.sleep(Duration::from_millis(20)).await;
    let receipt = charged?;
    Ok(receipt)
}

/// Fails with its own error type, no step involved.
#[workflow(typed_error)]
async fn top_up(ctx: WorkflowContext, cents: u64) -> Result<u64, PaymentError> {
    let _ = ctx.execution_id();
    if cents < 100 {
        return Err(PaymentError::InsufficientFunds { missing_cents: 100 - cents });
    }
    Ok(cents)
}

async fn setup(db: &TestDb, codec: Codec) -> (Engine, Worker) {
    let e = Engine::builder().store(db.store().await).namespace("typed").codec(codec).build().await.unwrap();
    let w = Worker::builder(&e)
        .register(pay)
        .register(top_up)
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    (e, w)
}

async fn typed<O: serde::de::DeserializeOwned + std::fmt::Debug>(h: &RunHandle<O>) -> RunFailed<PaymentError> {
    h.result_typed_timeout::<PaymentError>(WAIT).await.unwrap_err()
}

both_backends! {
    async fn a_typed_error_round_trips_through_the_database_with_both_codecs(db: TestDb) {
        for codec in [Codec::Json, Codec::Bincode] {
            let (e, w) = setup(&db, codec).await;
            let h = pay::start(&e, 0).await.unwrap();
            match typed(&h).await {
                RunFailed::Workflow(err) => assert_eq!(err, PaymentError::Declined { code: "05".into() }, "{codec:?}"),
                other => panic!("{codec:?}: {other}"),
            }
            // The typed client reads it too, and the message stays text.
            let run = pay::client(&e).get(h.id()).await.unwrap().unwrap();
            assert_eq!(run.error::<PaymentError>().unwrap(), Some(PaymentError::Declined { code: "05".into() }));
            assert_eq!(run.execution().error.as_deref(), Some("card declined (05)"));
            let err = h.result_timeout(WAIT).await.unwrap_err();
            assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::Failed, .. }), "plain results keep working: {err}");
            // A workflow's own typed error.
            let h = top_up::start(&e, 40).await.unwrap();
            match typed(&h).await {
                RunFailed::Workflow(err) => assert_eq!(err, PaymentError::InsufficientFunds { missing_cents: 60 }),
                other => panic!("{codec:?}: {other}"),
            }
            assert_eq!(top_up::start(&e, 150).await.unwrap().result_typed_timeout::<PaymentError>(WAIT).await.unwrap(), 150);
            w.shutdown(Duration::from_secs(5)).await;
        }
    }

    async fn an_error_that_does_not_decode_as_the_type_asked_is_a_clear_error(db: TestDb) {
        let (e, w) = setup(&db, Codec::Json).await;
        let h = pay::start(&e, 0).await.unwrap();
        let _ = typed(&h).await;
        match h.result_typed_timeout::<Unrelated>(WAIT).await.unwrap_err() {
            RunFailed::Other(Error::Decode { what, .. }) => assert!(what.contains("typed error"), "{what}"),
            other => panic!("{other}"),
        }
        // Bytes written by another tool: still an error, never a panic.
        let c = e.connection();
        let backend = c.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "UPDATE workflow_executions SET error_data = $1 WHERE id = $2",
            _ => "UPDATE workflow_executions SET error_data = ? WHERE id = ?",
        };
        let garbage: Vec<u8> = vec![0xff, 0x00, 0x13, 0x37];
        c.execute_raw(Statement::from_sql_and_values(backend, sql, [garbage.into(), h.id().as_str().into()])).await.unwrap();
        assert!(matches!(typed(&h).await, RunFailed::Other(Error::Decode { .. })));
        let run = pay::client(&e).get(h.id()).await.unwrap().unwrap();
        assert!(run.error::<PaymentError>().is_err());
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn the_stored_message_keeps_the_source_chain(db: TestDb) {
        let (e, w) = setup(&db, Codec::Json).await;
        let h = pay::start(&e, 1).await.unwrap();
        let err = h.result_timeout(WAIT).await.unwrap_err();
        let Error::RunEnded { message, .. } = err else { panic!("{err}") };
        assert_eq!(message, "the bank did not answer (after 1 attempts)\ncaused by: connection reset by peer");
        assert!(matches!(typed(&h).await, RunFailed::Other(Error::RunEnded { .. })), "no typed error: the plain end");
        let steps = e.steps(h.id()).await.unwrap();
        assert_eq!(
            steps[0].error.as_deref(),
            Some("the bank did not answer (after 1 attempts)\ncaused by: connection reset by peer")
        );
        w.shutdown(Duration::from_secs(5)).await;
    }
}
