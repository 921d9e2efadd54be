//! Awakeables: durable completion tokens, completed or rejected once by an
//! external system, stable across replays, scoped to their namespace.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::both_backends;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Creates a token, publishes it as event `token` (the external system
/// reads it there), sleeps durably (so the wait happens after a replay),
/// then waits for the token to be settled.
struct Webhook;

impl Workflow for Webhook {
    const NAME: &'static str = "webhook";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        let awakeable = ctx.awakeable::<String>().await?;
        ctx.set_event("token", &awakeable.token().to_owned()).await?;
        ctx.sleep(Duration::from_millis(20)).await;
        match ctx.await_awakeable(&awakeable).await {
            Ok(v) => Ok(format!("completed: {v}")),
            Err(e) => Ok(format!("failed: {}", e.message())),
        }
    }
}

async fn setup(db: &hydra_tests::TestDb, ns: &str) -> (Engine, Worker) {
    let e = Engine::builder().store(db.store().await).namespace(ns).build().await.unwrap();
    let w = Worker::builder(&e).register(Webhook).poll_interval(Duration::from_millis(20)).start().await.unwrap();
    (e, w)
}

both_backends! {
    async fn an_awakeable_is_completed_once_and_a_second_completion_is_an_error(db: TestDb) {
        let (e, w) = setup(&db, "awk").await;
        let h = e.start::<Webhook>(()).await.unwrap();
        let token: String = e.wait_event(h.id(), "token", WAIT).await.unwrap().unwrap();
        e.complete(&token, "paid".to_owned()).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "completed: paid", "the token survived the replay");
        let again = e.complete(&token, "twice".to_owned()).await.unwrap_err();
        assert!(matches!(&again, Error::AwakeableSettled(t) if *t == token), "{again}");
        assert!(matches!(e.reject(&token, "late").await.unwrap_err(), Error::AwakeableSettled(_)));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_rejected_awakeable_fails_its_wait_with_the_reason(db: TestDb) {
        let (e, w) = setup(&db, "awk").await;
        let h = e.start::<Webhook>(()).await.unwrap();
        let token: String = e.wait_event(h.id(), "token", WAIT).await.unwrap().unwrap();
        e.reject(&token, "card declined").await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "failed: awakeable rejected: card declined");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn tokens_are_unguessable_and_scoped_to_their_namespace(db: TestDb) {
        let (e, w) = setup(&db, "awk").await;
        let other = Engine::builder().store(db.store().await).namespace("elsewhere").build().await.unwrap();
        let h = e.start::<Webhook>(()).await.unwrap();
        let token: String = e.wait_event(h.id(), "token", WAIT).await.unwrap().unwrap();
        let (run, secret) = token.rsplit_once('.').unwrap();
        assert_eq!(run, h.id().as_str());
        assert_eq!(secret.len(), 32, "128 random bits");
        assert!(matches!(other.complete(&token, "x".to_owned()).await.unwrap_err(), Error::NotFound(_)));
        assert!(matches!(e.complete("not-a-token", "x".to_owned()).await.unwrap_err(), Error::Config(_)));
        let guessed = format!("{run}.{}", "0".repeat(32));
        let refused = e.complete(&guessed, "guess".to_owned()).await.unwrap_err();
        assert!(matches!(&refused, Error::UnknownAwakeable(t) if *t == guessed), "{refused}");
        e.complete(&token, "real".to_owned()).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "completed: real", "a guessed token settles nothing");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_token_the_run_never_drew_completes_nothing_and_leaves_nothing_on_the_run(db: TestDb) {
        let (e, w) = setup(&db, "awk").await;
        let h = e.start::<Webhook>(()).await.unwrap();
        let token: String = e.wait_event(h.id(), "token", WAIT).await.unwrap().unwrap();
        let (run, secret) = token.rsplit_once('.').unwrap();
        // A secret the run never drew, in the canonical form.
        let forged = format!("{run}.{}", if secret.starts_with('a') { "b" } else { "a" }.repeat(32));
        let refused = e.complete(&forged, "junk".repeat(1_000)).await.unwrap_err();
        assert!(matches!(&refused, Error::UnknownAwakeable(_)), "{refused}");
        assert!(matches!(e.reject(&forged, "junk").await.unwrap_err(), Error::UnknownAwakeable(_)));
        assert!(matches!(e.awakeable_state(&forged).await.unwrap_err(), Error::UnknownAwakeable(_)));
        // The real token upper-cased is not a token at all.
        let upper = format!("{run}.{}", secret.to_uppercase());
        assert!(matches!(e.complete(&upper, "x".to_owned()).await.unwrap_err(), Error::Config(_)));
        // Nothing was left on the run: no signal buffered.
        let signals = e.runs().detail(h.id()).await.unwrap().signals;
        assert!(signals.is_empty(), "the refused completions left signals: {signals:?}");
        assert_eq!(e.awakeable_state(&token).await.unwrap(), hydra_runtime::AwakeableState::Open);
        e.complete(&token, "real".to_owned()).await.unwrap();
        assert_eq!(e.awakeable_state(&token).await.unwrap(), hydra_runtime::AwakeableState::Settled);
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "completed: real");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_token_whose_run_ended_unsettled_says_so(db: TestDb) {
        let (e, w) = setup(&db, "awk").await;
        let h = e.start::<Webhook>(()).await.unwrap();
        let token: String = e.wait_event(h.id(), "token", WAIT).await.unwrap().unwrap();
        assert_eq!(e.cancel(h.id()).await.unwrap(), hydra_runtime::CancelOutcome::Requested);
        let done = h.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(done, Error::RunEnded { status: ExecutionStatus::Cancelled, .. }), "{done}");
        assert_eq!(
            e.awakeable_state(&token).await.unwrap(),
            hydra_runtime::AwakeableState::RunEnded(ExecutionStatus::Cancelled)
        );
        let late = e.complete(&token, "late".to_owned()).await.unwrap_err();
        assert!(matches!(late, Error::RunEnded { status: ExecutionStatus::Cancelled, .. }), "{late}");
        w.shutdown(Duration::from_secs(5)).await;
    }
}
