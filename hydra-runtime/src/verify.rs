//! Replay verification: does the code of this build replay the histories
//! runs recorded? A CI gate before a deploy.
//!
//! [`Verifier::verify`] replays one recorded history against the current
//! workflow code with no side effects: step bodies never run (recorded
//! outputs are fed back), nothing is written, and the replay stops where
//! the history ends. The [`Report`] says whether it replays and, if not,
//! where it diverges (position, recorded step, the step the code calls now)
//! or what no longer decodes.
//!
//! Histories come from a live database, read-only ([`export`]), or from an
//! export file of JSON lines ([`write_jsonl`], [`read_jsonl`]), so a team
//! can check a build against production histories in CI:
//!
//! ```no_run
//! # async fn gate() -> Result<(), hydra_runtime::Error> {
//! use hydra_runtime::verify::{Verifier, read_jsonl};
//! # use hydra_runtime::prelude::*;
//! # #[workflow] async fn order_processing(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> { Ok(n) }
//! let histories = read_jsonl(std::fs::File::open("histories/orders.jsonl").map_err(|e| Error::Config(e.to_string()))?)?;
//! let verifier = Verifier::new().await?.register(order_processing);
//! for report in verifier.verify_all(&histories).await {
//!     assert!(report.replays(), "{report}");
//! }
//! # Ok(()) }
//! ```

use crate::codec::CodecRegistry;
use crate::context::{RunEnd, RunSetup, RunState, WorkflowContext, panic_message};
use crate::error::Error;
use crate::workflow::{ErasedWorkflow, Registered, Workflow};
use futures_util::FutureExt;
use hydra_store::{ExecutionFilter, ExecutionId, Lease, OpenStep, Step, StepId, StepKind, StepStatus, Store, WorkerId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// How long one replay may take before it is reported as stuck.
const REPLAY_LIMIT: Duration = Duration::from_secs(10);

/// One run's recorded history, as exported: one JSON line of an export
/// file. Payloads are hexadecimal (tagged by their codec, as stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct History {
    /// The run.
    pub execution: String,
    /// Its workflow.
    pub workflow: String,
    /// The version of the code that started it, if recorded.
    pub workflow_version: Option<u32>,
    /// Its input, hex.
    pub input: String,
    /// Its recorded steps, in position order.
    pub steps: Vec<HistoryStep>,
}

/// One recorded step of a [`History`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryStep {
    /// Its position in the run.
    pub position: u32,
    /// Its step ID.
    pub step_id: String,
    /// Its name (a select records the branch taken here).
    pub step_name: String,
    /// `step`, `sleep`, `signal`, `event`.
    pub kind: String,
    /// `running`, `completed`, `failed`.
    pub status: String,
    /// Its output, hex.
    pub output: Option<String>,
    /// Its error.
    pub error: Option<String>,
    /// A wait's wake-up time (ms).
    pub wake_at: Option<i64>,
}

/// What a replay found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The code replays the whole history.
    Replays,
    /// The code calls a different step at a recorded position.
    Diverges {
        /// The position.
        position: u32,
        /// The step the history records there.
        recorded: String,
        /// The step the code calls now.
        called: String,
    },
    /// A recorded payload (input, output, signal) no longer decodes as the
    /// code's type.
    Undecodable(String),
    /// No workflow of the history's name is registered with the verifier.
    UnknownWorkflow,
    /// The history itself does not read (a bad export line or row).
    Unreadable(String),
    /// The replay failed otherwise (a panic, a step ID clash, a stuck body).
    Failed(String),
}

/// The verdict on one history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The run.
    pub execution: String,
    /// Its workflow.
    pub workflow: String,
    /// What the replay found.
    pub verdict: Verdict,
}

impl Report {
    /// Whether the code replays the history.
    pub fn replays(&self) -> bool {
        self.verdict == Verdict::Replays
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): ", self.execution, self.workflow)?;
        match &self.verdict {
            Verdict::Replays => write!(f, "replays"),
            Verdict::Diverges { position, recorded, called } => {
                write!(
                    f,
                    "diverges at position {position}: the history records `{recorded}`, the code calls `{called}`"
                )
            }
            Verdict::Undecodable(m) => write!(f, "a recorded payload no longer decodes: {m}"),
            Verdict::UnknownWorkflow => write!(f, "no such workflow registered with the verifier"),
            Verdict::Unreadable(m) => write!(f, "the history does not read: {m}"),
            Verdict::Failed(m) => write!(f, "the replay failed: {m}"),
        }
    }
}

/// Replays histories against registered workflow code; see the module
/// documentation.
pub struct Verifier {
    workflows: HashMap<String, Arc<dyn ErasedWorkflow>>,
    codecs: CodecRegistry,
    store: Store,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.workflows.keys().collect();
        names.sort();
        f.debug_struct("Verifier").field("workflows", &names).finish()
    }
}

impl Verifier {
    /// A verifier with the built-in codecs and no workflows. (It holds an
    /// in-memory database that nothing is written to: replays stop before
    /// any write.)
    pub async fn new() -> Result<Self, Error> {
        let store = Store::connect("sqlite::memory:").await?;
        Ok(Verifier { workflows: HashMap::new(), codecs: CodecRegistry::builtin(), store })
    }

    /// Uses `codecs` to decode payloads (register custom codecs there).
    pub fn codecs(mut self, codecs: CodecRegistry) -> Self {
        self.codecs = codecs;
        self
    }

    /// Registers the code of workflow `W` (as a worker would).
    pub fn register<W: Workflow>(mut self, workflow: W) -> Self {
        self.workflows.insert(W::NAME.to_owned(), Arc::new(Registered(Arc::new(workflow))));
        self
    }

    /// Replays each history; one report each, in order.
    pub async fn verify_all(&self, histories: &[History]) -> Vec<Report> {
        let mut out = Vec::with_capacity(histories.len());
        for h in histories {
            out.push(self.verify(h).await);
        }
        out
    }

    /// Replays one history against the registered code of its workflow.
    pub async fn verify(&self, h: &History) -> Report {
        let report = |verdict| Report { execution: h.execution.clone(), workflow: h.workflow.clone(), verdict };
        let Some(workflow) = self.workflows.get(&h.workflow) else { return report(Verdict::UnknownWorkflow) };
        let (input, steps) = match read_history(h) {
            Ok(v) => v,
            Err(m) => return report(Verdict::Unreadable(m)),
        };
        report(self.replay(&**workflow, &h.execution, &input, steps).await)
    }

    async fn replay(&self, workflow: &dyn ErasedWorkflow, execution: &str, input: &[u8], steps: Vec<Step>) -> Verdict {
        let execution = ExecutionId::from_string(execution);
        let token = steps.first().map(|s| s.fencing_token);
        let lease = Lease {
            namespace: "hydra.verify".into(),
            execution_id: execution.clone(),
            worker_id: WorkerId::from_string("hydra.verify"),
            token: token
                .unwrap_or(Step::completed(execution.clone(), StepId::new("x", 1), 0, Vec::new()).fencing_token),
        };
        let (run, mut interrupts) = RunState::new(RunSetup {
            committer: None,
            work: None,
            store: self.store.clone(),
            codec: workflow.options().codec.unwrap_or(crate::Codec::Json),
            codecs: self.codecs.clone(),
            max_payload_bytes: crate::DEFAULT_MAX_PAYLOAD_BYTES,
            clock: crate::Clock::system(),
            lease,
            workflow_name: "hydra.verify".into(),
            attempt: 1,
            deadline_at: None,
            history: Some(steps),
            open_step: OpenStep::default(),
            inline_backoff: Duration::ZERO,
            write_patience: Duration::ZERO,
            state: Default::default(),
            on_nondeterminism: crate::workflow::OnNondeterminism::Fail,
        });
        run.replay.verifying.store(true, std::sync::atomic::Ordering::SeqCst);
        let ctx = WorkflowContext { run: Arc::clone(&run) };
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| workflow.start(ctx, input))) {
            Ok(Ok(f)) => f,
            Ok(Err(reason)) => return Verdict::Undecodable(format!("the input: {reason}")),
            Err(p) => return Verdict::Undecodable(format!("the input: decoding panicked: {}", panic_message(&p))),
        };
        let outcome = tokio::time::timeout(REPLAY_LIMIT, async {
            tokio::select! {
                biased;
                i = interrupts.wait_for(Option::is_some) => Ok(i.ok().and_then(|v| v.clone())),
                r = AssertUnwindSafe(future).catch_unwind() => Err(r.map(|_| ()).map_err(|p| panic_message(&p))),
            }
        })
        .await;
        let divergence = run.replay.divergence.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((position, recorded, called)) = divergence {
            return Verdict::Diverges { position, recorded: recorded.to_string(), called: called.to_string() };
        }
        match outcome {
            // The body returned: with its recorded result, unless the
            // history goes on (a step the code no longer calls) beyond where
            // it compensated.
            Ok(Err(Ok(()))) => match run.recorded(run.peek_position()) {
                Some(rec) if rec.step_id.base() != crate::context::COMPENSATE_STEP => Verdict::Diverges {
                    position: rec.position,
                    recorded: rec.step_id.to_string(),
                    called: "(none: the workflow returns here)".to_owned(),
                },
                _ => Verdict::Replays,
            },
            // It reached the end of the history, or the point where it began
            // compensating.
            Ok(Ok(Some(RunEnd::Release | RunEnd::End(_)))) => Verdict::Replays,
            Ok(Err(Err(panic))) => Verdict::Failed(format!("the workflow panicked: {panic}")),
            Ok(Ok(Some(RunEnd::Fail(m)))) if m.contains("could not decode") => Verdict::Undecodable(m),
            Ok(Ok(Some(RunEnd::Fail(m)))) => Verdict::Failed(m),
            Ok(Ok(other)) => Verdict::Failed(format!("the replay stopped unexpectedly ({other:?})")),
            Err(_) => Verdict::Failed(format!(
                "the replay did not reach the end of the history within {REPLAY_LIMIT:?} (the body waits on \
                 something that is not durable?)"
            )),
        }
    }
}

/// The histories of the runs `filter` selects, read from `engine`'s
/// database (read-only), oldest first as listed.
pub async fn export(engine: &crate::Engine, filter: ExecutionFilter) -> Result<Vec<History>, Error> {
    let mut out = Vec::new();
    for e in engine.list(filter).await? {
        // As stored (not as the read model shows an ended run's open steps).
        let steps = engine.inner.store.steps(engine.namespace(), &e.id).await?;
        out.push(History {
            execution: e.id.to_string(),
            workflow: e.workflow_name.clone(),
            workflow_version: e.workflow_version,
            input: hex(&e.input),
            steps: steps
                .iter()
                .map(|s| HistoryStep {
                    position: s.position,
                    step_id: s.step_id.to_string(),
                    step_name: s.step_name.clone(),
                    kind: s.kind.as_str().to_owned(),
                    status: s.status.as_str().to_owned(),
                    output: s.output.as_deref().map(hex),
                    error: s.error.clone(),
                    wake_at: s.wake_at,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Writes histories as JSON lines, one run per line.
pub fn write_jsonl(histories: &[History], mut out: impl Write) -> Result<(), Error> {
    for h in histories {
        let line =
            serde_json::to_string(h).map_err(|e| Error::Encode { what: "a history".into(), reason: e.to_string() })?;
        writeln!(out, "{line}").map_err(|e| Error::Config(format!("could not write the export: {e}")))?;
    }
    Ok(())
}

/// Reads histories from JSON lines (blank lines are skipped). A line that
/// does not read is an error naming its number.
pub fn read_jsonl(input: impl std::io::Read) -> Result<Vec<History>, Error> {
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(input).lines().enumerate() {
        let line = line.map_err(|e| Error::Config(format!("could not read the export: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let h = serde_json::from_str(&line)
            .map_err(|e| Error::Config(format!("line {} of the export is not a history: {e}", n + 1)))?;
        out.push(h);
    }
    Ok(out)
}

/// The input and steps of a history, or why it does not read.
fn read_history(h: &History) -> Result<(Vec<u8>, Vec<Step>), String> {
    let execution = ExecutionId::from_string(h.execution.as_str());
    let input = unhex(&h.input).map_err(|e| format!("input: {e}"))?;
    let mut steps = Vec::with_capacity(h.steps.len());
    for s in &h.steps {
        let kind = StepKind::parse(&s.kind).map_err(|e| format!("step {}: {e}", s.position))?;
        let status = StepStatus::parse(&s.status).map_err(|e| format!("step {}: {e}", s.position))?;
        let output = s.output.as_deref().map(unhex).transpose().map_err(|e| format!("step {}: {e}", s.position))?;
        steps.push(Step::recorded(
            execution.clone(),
            StepId::from_string(s.step_id.clone()),
            s.step_name.clone(),
            s.position,
            kind,
            status,
            output,
            s.error.clone(),
            s.wake_at,
        ));
    }
    Ok((input, steps))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd number of hexadecimal digits".into());
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("`{}` is not a hexadecimal digit", char::from(c))),
    };
    text.as_bytes().chunks(2).map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes = vec![0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(super::unhex(&super::hex(&bytes)), Ok(bytes));
        assert!(super::unhex("abc").is_err());
        assert!(super::unhex("zz").is_err());
    }
}
