//! Replay verification: histories exported from a live database (and
//! through a JSON-lines file) replayed against changed code, with no side
//! effects: identical code replays; a reordered, renamed, inserted or
//! removed step is reported at its position; an output that no longer
//! decodes is reported as such.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::ExecutionFilter;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::verify::{Report, Verdict, Verifier, export, read_jsonl, write_jsonl};
use hydra_tests::both_backends;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Step bodies run by any `Pipeline` (the verifier must run none).
static BODIES: AtomicUsize = AtomicUsize::new(0);

/// One backend at a time: the count of bodies is shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The same workflow in several deploys.
#[derive(Clone, Copy)]
enum Change {
    Same,
    Reordered,
    Renamed,
    Inserted,
    Removed,
    /// Step `b` now returns a number: its recorded text does not decode.
    Retyped,
}

struct Pipeline(Change);

async fn text(ctx: &WorkflowContext, id: &'static str) -> Result<String, StepError> {
    ctx.step(id, move |_s| async move {
        BODIES.fetch_add(1, Ordering::SeqCst);
        Ok::<_, StepError>(format!("{id} done"))
    })
    .await
}

impl Workflow for Pipeline {
    const NAME: &'static str = "pipeline";
    type Input = u32;
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, n: u32) -> Result<String, WorkflowError> {
        let order: &[&'static str] = match self.0 {
            Change::Same | Change::Retyped => &["a", "b", "c"],
            Change::Reordered => &["a", "c", "b"],
            Change::Renamed => &["a", "x", "c"],
            Change::Inserted => &["a", "new", "b", "c"],
            Change::Removed => &["a", "b"],
        };
        let mut out = Vec::new();
        for id in order {
            if matches!(self.0, Change::Retyped) && *id == "b" {
                let v: u64 = ctx.step("b", |_s| async { Ok::<_, StepError>(1u64) }).await?;
                out.push(v.to_string());
            } else {
                out.push(text(&ctx, id).await?);
            }
        }
        Ok(format!("{n}: {}", out.join(", ")))
    }
}

/// One report per history (checked, so a loop over them cannot pass empty).
async fn verdicts(change: Change, histories: &[hydra_runtime::verify::History]) -> Vec<Report> {
    let reports = Verifier::new().await.unwrap().register(Pipeline(change)).verify_all(histories).await;
    assert_eq!(reports.len(), histories.len(), "one report per history");
    reports
}

both_backends! {
    async fn the_verifier_replays_histories_and_reports_each_kind_of_change_at_its_position(db: TestDb) {
        let _serial = SERIAL.lock().await;
        let e = Engine::builder().store(db.store().await).namespace("verify").build().await.unwrap();
        let w = Worker::builder(&e).register(Pipeline(Change::Same)).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        for n in 0..3u32 {
            e.start::<Pipeline>(n).await.unwrap().result_timeout(WAIT).await.unwrap();
        }
        w.shutdown(Duration::from_secs(5)).await;
        // From the live database, read-only; and through an export file.
        let live = export(&e, ExecutionFilter::new("verify").workflow("pipeline")).await.unwrap();
        assert_eq!(live.len(), 3);
        let mut file = Vec::new();
        write_jsonl(&live, &mut file).unwrap();
        let histories = read_jsonl(file.as_slice()).unwrap();
        assert_eq!(histories, live, "the export round-trips");
        let bodies = BODIES.load(Ordering::SeqCst);

        for r in verdicts(Change::Same, &histories).await {
            assert!(r.replays(), "{r}");
        }
        let at = |position: u32, recorded: &str, called: &str| Verdict::Diverges {
            position,
            recorded: recorded.to_owned(),
            called: called.to_owned(),
        };
        for (change, expected) in [
            (Change::Reordered, at(1, "b", "c")),
            (Change::Renamed, at(1, "b", "x")),
            (Change::Inserted, at(1, "b", "new")),
            (Change::Removed, at(2, "c", "(none: the workflow returns here)")),
        ] {
            for r in verdicts(change, &histories).await {
                assert_eq!(r.verdict, expected, "{r}");
            }
        }
        for r in verdicts(Change::Retyped, &histories).await {
            assert!(matches!(&r.verdict, Verdict::Undecodable(m) if m.contains("step `b`")), "{r}");
        }
        assert_eq!(BODIES.load(Ordering::SeqCst), bodies, "the verifier ran no step body");
        let unknown = Verifier::new().await.unwrap().verify(&histories[0]).await;
        assert_eq!(unknown.verdict, Verdict::UnknownWorkflow);
    }
}

#[tokio::test]
async fn a_history_that_does_not_read_is_reported_not_panicked_on() {
    assert!(read_jsonl("{\"execution\": 1}\n".as_bytes()).unwrap_err().to_string().contains("line 1"));
    let line = r#"{"execution":"e1","workflow":"pipeline","workflow_version":null,"input":"zz","steps":[]}"#;
    let histories = read_jsonl(line.as_bytes()).unwrap();
    let r = verdicts(Change::Same, &histories).await;
    assert!(matches!(&r[0].verdict, Verdict::Unreadable(m) if m.contains("input")), "{}", r[0]);
    let line = r#"{"execution":"e1","workflow":"pipeline","workflow_version":null,"input":"01ff","steps":[]}"#;
    let r = verdicts(Change::Same, &read_jsonl(line.as_bytes()).unwrap()).await;
    assert!(matches!(&r[0].verdict, Verdict::Undecodable(_)), "{}", r[0]);
}
