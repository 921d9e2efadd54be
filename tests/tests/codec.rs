//! Payload codecs: what is stored can always be read back (guarantee 11).
//! Hostile bytes are errors, never aborts; a shape the codec cannot read
//! back is refused when it is encoded; custom codecs are registered on the
//! engine and dispatched by the stored tag. On SQLite and PostgreSQL.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{CustomCodec, Execution, ExecutionStatus, Json, StepStatus, WorkflowClient, erased_serde};
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use hydra_tests::both_backends;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// bincode tag 1, then a varint length prefix of 2^56: a string that would
/// need 64 PiB.
const HOSTILE: [u8; 10] = [1, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1];

fn worker(engine: &Engine) -> hydra_runtime::WorkerBuilder {
    Worker::builder(engine)
        .concurrency(4)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        .lease_ttl(Duration::from_secs(30))
}

async fn until_ended(engine: &Engine, id: &ExecutionId) -> Execution {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = engine.get(id).await.unwrap().unwrap();
            if e.status.is_terminal() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {id} did not end"))
}

/// Overwrites one stored payload column of run `id` with `bytes`.
async fn overwrite(e: &Engine, sql: &str, id: &ExecutionId, bytes: &[u8]) {
    let conn = e.connection();
    let backend = conn.get_database_backend();
    let sql = match backend {
        hydra_store::sea_orm::DbBackend::Postgres => sql.replacen('?', "$1", 1).replacen('?', "$2", 1),
        _ => sql.to_owned(),
    };
    let r = conn
        .execute_raw(Statement::from_sql_and_values(backend, sql, [bytes.to_vec().into(), id.as_str().into()]))
        .await
        .unwrap();
    assert_eq!(r.rows_affected(), 1);
}

/// Takes a string; a step measures it (as a string, so a hostile stored
/// step output can claim a huge buffer).
struct Echo;

/// The marker of `Echo`'s step, as `#[step]` would write it.
#[allow(non_camel_case_types)]
struct measure {}

impl hydra_runtime::Step for measure {
    const ID: &'static str = "measure";
    type Output = String;
    fn options() -> StepOptions {
        StepOptions::new("measure")
    }
}

impl hydra_runtime::StepOf<Echo> for measure {}

impl Workflow for Echo {
    const NAME: &'static str = "echo";
    type Input = String;
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, input: String) -> Result<String, WorkflowError> {
        let len = input.len();
        let n: String = ctx.step("measure", move |_| async move { Ok::<_, StepError>(len.to_string()) }).await?;
        Ok(format!("{input}:{n}"))
    }
}

/// An internally tagged enum with a skipped field: JSON reads it back,
/// bincode cannot (it needs `deserialize_any`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Payment {
    Card {
        last4: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Cash,
}

/// A step returns a `Payment`, then a durable sleep forces a replay that
/// reads it back from the history.
struct Pay(Arc<AtomicU32>);

impl Workflow for Pay {
    const NAME: &'static str = "pay";
    type Input = ();
    type Output = Payment;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<Payment, WorkflowError> {
        let bodies = Arc::clone(&self.0);
        let payment = ctx
            .step("choose", move |_| {
                let bodies = Arc::clone(&bodies);
                async move {
                    bodies.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, StepError>(Payment::Card { last4: "4242".into(), note: None })
                }
            })
            .await?;
        ctx.sleep(Duration::from_millis(50)).await;
        Ok(payment)
    }
}

/// JSON with every byte XORed with a key: a toy wrapper to test custom
/// codecs (XOR is not encryption).
struct XorJson {
    key: u8,
}

const XOR_TAG: u8 = 200;

impl CustomCodec for XorJson {
    fn tag(&self) -> u8 {
        XOR_TAG
    }
    fn name(&self) -> &str {
        "xor-json"
    }
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        Json.encode(value, out)?;
        out[start..].iter_mut().for_each(|b| *b ^= self.key);
        Ok(())
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
    ) -> Result<(), String> {
        let plain: Vec<u8> = bytes.iter().map(|b| b ^ self.key).collect();
        Json.decode(&plain, visit)
    }
}

/// A codec whose decoding panics on short payloads, as a careless
/// decrypting wrapper would (`split_at` without a length check).
struct Careless;

const CARELESS_TAG: u8 = 201;

impl CustomCodec for Careless {
    fn tag(&self) -> u8 {
        CARELESS_TAG
    }
    fn name(&self) -> &str {
        "careless"
    }
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&[0; 12]);
        Json.encode(value, out)
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
    ) -> Result<(), String> {
        #[allow(clippy::indexing_slicing)]
        let (_nonce, body) = bytes.split_at(12);
        Json.decode(body, visit)
    }
}

/// A step whose output JSON cannot tell apart from another value:
/// `Some(None)` is written as `null` and read back as `None`. The workflow
/// branches on it, then sleeps (so it replays): both passes must take the
/// same branch.
struct Branchy;

impl Workflow for Branchy {
    const NAME: &'static str = "branchy";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        let found: Option<Option<u32>> = ctx.step("lookup", |_s| async { Ok::<_, StepError>(Some(None)) }).await?;
        let branch = match found {
            Some(_) => ctx.step("found", |_s| async { Ok::<_, StepError>("found".to_owned()) }).await?,
            None => ctx.step("missing", |_s| async { Ok::<_, StepError>("missing".to_owned()) }).await?,
        };
        ctx.sleep(Duration::from_millis(50)).await;
        Ok(branch)
    }
}

/// Stored under tag `tag`, and not readable as JSON.
fn opaque(bytes: &[u8], tag: u8) {
    assert_eq!(bytes[0], tag, "{bytes:?}");
    assert!(serde_json::from_slice::<serde_json::Value>(&bytes[1..]).is_err(), "plain JSON: {bytes:?}");
}

/// `Echo` under its own codec (chosen through `WorkflowOptions`).
struct Secret;

#[allow(non_camel_case_types)]
struct reveal {}

impl hydra_runtime::Step for reveal {
    const ID: &'static str = "reveal";
    type Output = String;
    fn options() -> StepOptions {
        StepOptions::new("reveal")
    }
}

impl hydra_runtime::StepOf<Secret> for reveal {}

impl Workflow for Secret {
    const NAME: &'static str = "secret";
    type Input = String;
    type Output = String;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().codec(Codec::Custom(XOR_TAG))
    }

    async fn run(&self, ctx: WorkflowContext, input: String) -> Result<String, WorkflowError> {
        Ok(ctx
            .step("reveal", move |_| {
                let input = input.clone();
                async move { Ok::<_, StepError>(format!("{input}!")) }
            })
            .await?)
    }
}

/// Draws an awakeable in a run whose codec is a custom one, publishes its
/// token, and waits for it.
struct XorAwakeable;

impl Workflow for XorAwakeable {
    const NAME: &'static str = "xor-awakeable";
    type Input = ();
    type Output = String;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().codec(Codec::Custom(XOR_TAG))
    }

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        let paid = ctx.awakeable::<String>().await?;
        ctx.set_event("token", &paid.token().to_owned()).await?;
        Ok(ctx.await_awakeable(&paid).await?)
    }
}

/// Workflow `secret` as deployed without its codec.
struct SecretWithoutCodec;

impl Workflow for SecretWithoutCodec {
    const NAME: &'static str = "secret";
    type Input = String;
    type Output = String;

    async fn run(&self, _: WorkflowContext, input: String) -> Result<String, WorkflowError> {
        Ok(input)
    }
}

both_backends! {
    async fn a_decoder_that_panics_fails_the_run_and_leaves_nothing_renewed(db: TestDb) {
        let e = Engine::builder()
            .store(db.store().await)
            .namespace("codec")
            .register_codec(Careless)
            .build()
            .await
            .unwrap();
        let bad = e.start_encoded(Echo::NAME, vec![CARELESS_TAG, 1], Echo::options(), StartOptions::new()).await.unwrap();
        let w = worker(&e).register(Echo).start().await.unwrap();
        let done = until_ended(&e, &bad.id).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        let err = done.error.unwrap();
        assert!(err.contains("decode the input") && err.contains("panicked"), "{err}");
        assert_eq!(w.active_runs(), 0, "the run is no longer renewed by the worker");
        tokio::time::timeout(WAIT, w.shutdown(Duration::from_secs(1))).await.expect("shutdown completes");
    }

    async fn a_step_value_the_codec_cannot_tell_apart_takes_the_same_branch_on_replay(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("codec").build().await.unwrap();
        let w = worker(&e).register(Branchy).start().await.unwrap();
        let h = e.start::<Branchy>(()).await.unwrap();
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
        assert_eq!(h.result().await.unwrap(), "missing", "the first pass saw the value a replay sees");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_hostile_input_fails_its_run_and_the_worker_serves_others(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("codec").build().await.unwrap();
        let bad = e.start_encoded(Echo::NAME, HOSTILE.to_vec(), Echo::options(), StartOptions::new()).await.unwrap();
        let w = worker(&e).register(Echo).start().await.unwrap();
        let done = until_ended(&e, &bad.id).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        let err = done.error.unwrap();
        assert!(err.contains("decode the input") && err.contains(bad.id.as_str()), "{err}");
        let good = e.start::<Echo>("hello".into()).await.unwrap();
        assert_eq!(good.result().await.unwrap(), "hello:5");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_hostile_stored_output_is_a_decode_error_for_handles_and_clients(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("codec").build().await.unwrap();
        let w = worker(&e).register(Echo).start().await.unwrap();
        let h = e.start::<Echo>("abc".into()).await.unwrap();
        assert_eq!(h.result().await.unwrap(), "abc:3");
        w.shutdown(Duration::from_secs(5)).await;
        overwrite(&e, "UPDATE workflow_executions SET output_data = ? WHERE id = ?", h.id(), &HOSTILE).await;
        overwrite(&e, "UPDATE workflow_steps SET output_data = ? WHERE execution_id = ? AND step_id = 'measure'", h.id(), &HOSTILE).await;
        match h.result().await {
            Err(Error::Decode { execution, what, .. }) => {
                assert_eq!(&execution, h.id());
                assert!(what.contains("output"), "{what}");
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
        let run = WorkflowClient::<Echo>::new(&e).get(h.id()).await.unwrap().unwrap();
        assert!(matches!(run.output(), Err(Error::Decode { .. })), "{:?}", run.output());
        match run.step::<measure>() {
            Err(e @ Error::Decode { .. }) => assert!(e.to_string().contains("step `measure`"), "{e}"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    async fn a_tagged_enum_step_output_survives_replay_under_the_default_codec(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("codec").build().await.unwrap();
        let bodies = Arc::new(AtomicU32::new(0));
        let w = worker(&e).register(Pay(Arc::clone(&bodies))).start().await.unwrap();
        let h = e.start::<Pay>(()).await.unwrap();
        assert_eq!(h.result().await.unwrap(), Payment::Card { last4: "4242".into(), note: None });
        assert_eq!(bodies.load(Ordering::SeqCst), 1, "the step ran once; the replay read it back");
        let steps = e.steps(h.id()).await.unwrap();
        assert_eq!(steps.len(), 2, "the step and the sleep: the run was replayed after the sleep");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn bincode_refuses_a_tagged_enum_at_its_first_execution(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("codec").codec(Codec::Bincode).build().await.unwrap();
        let bodies = Arc::new(AtomicU32::new(0));
        let w = worker(&e).register(Pay(Arc::clone(&bodies))).start().await.unwrap();
        let h = e.start::<Pay>(()).await.unwrap();
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        let err = done.error.unwrap();
        assert!(err.contains("could not encode the output of step `choose`"), "{err}");
        assert!(err.contains("Payment") && err.contains("Codec::Json"), "names the type and a codec that works: {err}");
        let steps = e.steps(h.id()).await.unwrap();
        assert_eq!(steps.len(), 1, "failed at the step, before the sleep: {steps:?}");
        assert_eq!(steps[0].status, StepStatus::Failed);
        assert_eq!(bodies.load(Ordering::SeqCst), 1, "a permanent failure: the body did not run again");
        w.shutdown(Duration::from_secs(5)).await;
    }
    async fn an_awakeable_of_a_run_in_a_custom_codec_is_completed_by_an_engine_without_it(db: TestDb) {
        let store = db.store().await;
        let e = Engine::builder()
            .store(store.clone())
            .namespace("codec")
            .register_codec(XorJson { key: 0x5a })
            .build()
            .await
            .unwrap();
        let w = worker(&e).register(XorAwakeable).start().await.unwrap();
        let h = e.start::<XorAwakeable>(()).await.unwrap();
        let token: String = e.wait_event(h.id(), "token", Duration::from_secs(30)).await.unwrap().unwrap();
        // A webhook service's engine: no codec of the run's.
        let plain = Engine::builder().store(store.clone()).namespace("codec").build().await.unwrap();
        plain.complete(&token, "paid".to_owned()).await.unwrap();
        assert_eq!(h.result_timeout(Duration::from_secs(30)).await.unwrap(), "paid");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_registered_wrapper_codec_stores_opaque_bytes_and_reads_them_back(db: TestDb) {
        let store = db.store().await;
        let e = Engine::builder()
            .store(store.clone())
            .namespace("codec")
            .register_codec(XorJson { key: 0x5a })
            .codec(Codec::Custom(XOR_TAG))
            .build()
            .await
            .unwrap();
        let w = worker(&e).register(Echo).start().await.unwrap();
        let h = e.start::<Echo>("hello".into()).await.unwrap();
        assert_eq!(h.result().await.unwrap(), "hello:5");
        w.shutdown(Duration::from_secs(5)).await;
        let run = e.get(h.id()).await.unwrap().unwrap();
        opaque(&run.input, XOR_TAG);
        opaque(run.output.as_deref().unwrap(), XOR_TAG);
        let steps = e.steps(h.id()).await.unwrap();
        opaque(steps[0].output.as_deref().unwrap(), XOR_TAG);
        let typed = WorkflowClient::<Echo>::new(&e).get(h.id()).await.unwrap().unwrap();
        assert_eq!(typed.output().unwrap().as_deref(), Some("hello:5"));
        assert_eq!(typed.step::<measure>().unwrap().as_deref(), Some("5"));

        // An engine without the codec: clear errors naming the run and step.
        let blind = Engine::builder().store(store).namespace("codec").build().await.unwrap();
        let err = blind.handle::<String>(h.id().clone()).result().await.unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(h.id().as_str()) && msg.contains("unknown codec tag 200"), "{msg}");
        let typed = WorkflowClient::<Echo>::new(&blind).get(h.id()).await.unwrap().unwrap();
        let msg = typed.step::<measure>().unwrap_err().to_string();
        assert!(msg.contains(h.id().as_str()) && msg.contains("step `measure`") && msg.contains("tag 200"), "{msg}");
    }

    async fn a_workflow_chooses_its_codec_and_a_worker_without_it_fails_the_run_clearly(db: TestDb) {
        let store = db.store().await;
        let e = Engine::builder()
            .store(store.clone())
            .namespace("codec")
            .register_codec(XorJson { key: 0x33 })
            .build()
            .await
            .unwrap();
        assert_eq!(e.codec(), Codec::Json, "JSON is the default");
        let w = worker(&e).register(Secret).start().await.unwrap();
        let h = e.start::<Secret>("psst".into()).await.unwrap();
        assert_eq!(h.result().await.unwrap(), "psst!");
        w.shutdown(Duration::from_secs(5)).await;
        opaque(&e.get(h.id()).await.unwrap().unwrap().input, XOR_TAG);
        let typed = WorkflowClient::<Secret>::new(&e).get(h.id()).await.unwrap().unwrap();
        assert_eq!(typed.step::<reveal>().unwrap().as_deref(), Some("psst!"));
        // Other workflows keep the engine's default.
        let w = worker(&e).register(Echo).start().await.unwrap();
        let plain = e.start::<Echo>("x".into()).await.unwrap();
        assert_eq!(plain.result().await.unwrap(), "x:1");
        assert_eq!(e.get(plain.id()).await.unwrap().unwrap().input[0], Codec::Json.tag());
        w.shutdown(Duration::from_secs(5)).await;

        // A run stored under the codec, then a deploy without it.
        let pending = e.start::<Secret>("later".into()).await.unwrap();
        let blind = Engine::builder().store(store).namespace("codec").build().await.unwrap();
        let err = blind.start::<Secret>("x".into()).await.unwrap_err();
        assert!(matches!(err, Error::Encode { .. }) && err.to_string().contains("tag 200"), "{err}");
        let err = worker(&blind).register(Secret).start().await.unwrap_err();
        assert!(matches!(err, Error::Config(_)) && err.to_string().contains("`secret`"), "{err}");
        let w = worker(&blind).register(SecretWithoutCodec).start().await.unwrap();
        let done = until_ended(&blind, pending.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        let msg = done.error.unwrap();
        assert!(msg.contains("decode the input") && msg.contains(pending.id().as_str()) && msg.contains("tag 200"), "{msg}");
        w.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn codec_registration_is_checked_when_the_engine_is_built() {
    struct Reserved;
    impl CustomCodec for Reserved {
        fn tag(&self) -> u8 {
            7
        }
        fn name(&self) -> &str {
            "reserved"
        }
        fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String> {
            Json.encode(value, out)
        }
        fn decode(
            &self,
            bytes: &[u8],
            visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
        ) -> Result<(), String> {
            Json.decode(bytes, visit)
        }
    }
    let build = |b: hydra_runtime::EngineBuilder| async move { b.database_url("sqlite::memory:").build().await };
    let err = build(Engine::builder().register_codec(Reserved)).await.unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("tag 7") && m.contains("reserved")), "{err}");
    let twice = Engine::builder().register_codec(XorJson { key: 1 }).register_codec(XorJson { key: 2 });
    let err = build(twice).await.unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("tag 200")), "{err}");
    let err = build(Engine::builder().codec(Codec::Custom(201))).await.unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("not registered")), "{err}");
    assert!(build(Engine::builder().register_codec(XorJson { key: 1 }).codec(Codec::Custom(XOR_TAG))).await.is_ok());
}
