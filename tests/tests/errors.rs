//! One error per situation, whichever call meets it, matchable on
//! `hydra_runtime::Error` without the store's types: an unknown run is
//! `NotFound`, an ended run `RunEnded`, an operation that does not apply to
//! a run as it is `Refused`, a bad URL `Config`.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::{ExecutionStatus, SignalOptions};
use hydra_tests::both_backends;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Waits for signal `go`, or returns at once for input 0.
#[workflow(name = "go")]
async fn go(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    if n == 0 {
        return Ok(0);
    }
    Ok(ctx.recv::<u32>("go").await?)
}

both_backends! {
    async fn each_situation_has_one_error_whichever_call_meets_it(db: TestDb) {
        let e = Engine::builder().database_url(&db.url).build().await.unwrap();
        let w = Worker::builder(&e).register(go).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        // An unknown run.
        let nobody = ExecutionId::generate(0);
        let unknown = [
            e.signal(&nobody, "go", &1u32).await.unwrap_err(),
            e.signal_with(&nobody, "go", &1u32, SignalOptions::new().idempotency_key("k")).await.unwrap_err(),
            e.cancel(&nobody).await.unwrap_err(),
            e.retry(&nobody).await.unwrap_err(),
            e.fail(&nobody, "why").await.unwrap_err(),
            e.resume(&nobody).await.unwrap_err(),
            e.event::<u32>(&nobody, "k").await.unwrap_err(),
        ];
        for err in unknown {
            assert!(matches!(&err, Error::NotFound(id) if *id == nobody), "{err:?}");
        }
        // An ended run: a signal and the result of a run that did not
        // complete say the same kind.
        let done = go::start(&e, 0).await.unwrap();
        assert_eq!(done.result_timeout(WAIT).await.unwrap(), 0);
        let err = e.signal(done.id(), "go", &1u32).await.unwrap_err();
        assert!(matches!(&err, Error::RunEnded { execution, status: ExecutionStatus::Completed, .. } if execution == done.id()), "{err:?}");
        // Operations that do not apply to the run as it is.
        let waiting = go::start(&e, 1).await.unwrap();
        let running = e.retry(waiting.id()).await.unwrap_err();
        assert!(matches!(running, Error::Refused(_)), "{running:?}");
        let finished = e.resume(done.id()).await.unwrap_err();
        assert!(matches!(finished, Error::Refused(_)), "{finished:?}");
        e.cancel(waiting.id()).await.unwrap();
        let err = waiting.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::Cancelled, .. }), "{err:?}");
        let again = e.fail(waiting.id(), "too late").await.unwrap_err();
        assert!(matches!(again, Error::Refused(_)), "{again:?}");
        w.shutdown(Duration::from_secs(5)).await;
    }
}

/// A bad URL is a configuration error, as any bad setting is.
#[tokio::test]
async fn a_bad_database_url_is_a_configuration_error() {
    for url in ["sqlite:///no/such/dir/hydra.db", "mysql://user@localhost/hydra", "no-scheme"] {
        let err = Engine::builder().database_url(url).build().await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
    }
}
