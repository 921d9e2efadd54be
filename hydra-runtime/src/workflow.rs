//! The [`Workflow`] trait, and its type-erased form the worker runs.

use crate::codec::Codec;
use crate::context::WorkflowContext;
use crate::error::WorkflowError;
use crate::retry::RetryPolicy;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A type that can be a workflow's input or output or a step's output:
/// serde-serializable and deserializable, `Send` and `'static`.
/// Implemented for every such type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a Hydra payload",
    label = "payloads must implement serde's `Serialize` and `Deserialize` (and be `Send + 'static`)",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// A workflow: a named async function of a context and a typed input.
///
/// The `#[workflow]` macro writes this for you; implementing it by hand is
/// the macro-free way:
///
/// ```no_run
/// use hydra_runtime::prelude::*;
///
/// struct Greet;
/// impl Workflow for Greet {
///     const NAME: &'static str = "greet";
///     type Input = String;
///     type Output = String;
///     async fn run(&self, ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
///         let greeting = ctx.step("make-greeting", |_s| {
///             let name = name.clone();
///             async move { Ok::<_, StepError>(format!("hello, {name}")) }
///         }).await?;
///         Ok(greeting)
///     }
/// }
/// ```
pub trait Workflow: Send + Sync + 'static {
    /// The registered name; runs are matched to code by it.
    const NAME: &'static str;
    /// The input type.
    type Input: Payload;
    /// The output type.
    type Output: Payload;
    /// The version of this code: recorded with each run it starts. Bump it
    /// when a change would not replay runs started before (see
    /// [`Workflow::REPLAYS_FROM`]). Default 1.
    const VERSION: u32 = 1;
    /// The oldest version whose runs this code replays: a worker claims
    /// runs of versions `REPLAYS_FROM..=VERSION` (and unversioned ones), so
    /// during a rolling deploy old runs drain on old workers. Default:
    /// `VERSION` only.
    const REPLAYS_FROM: u32 = Self::VERSION;

    /// A fingerprint of this code: a run suspended because some code did
    /// not replay it is taken up again by a worker whose fingerprint
    /// differs. `#[workflow]` hashes the workflow function's tokens and
    /// version; by hand the default hashes name and version (bump
    /// [`Workflow::VERSION`] to ship a fix).
    fn code_fingerprint() -> i64 {
        fingerprint(&[Self::NAME.as_bytes(), &Self::VERSION.to_le_bytes()])
    }

    /// Retry policy and timeout of the whole workflow.
    fn options() -> WorkflowOptions {
        WorkflowOptions::default()
    }

    /// The worker state its steps take ([`crate::State`]): a worker
    /// without one of them refuses to start. `#[workflow]` lists the
    /// `State<T>` parameters of the steps it calls; a hand-written workflow
    /// whose steps call [`crate::StepContext::state`] lists them here
    /// (`vec![StateNeed::of::<Payments>()]`).
    fn required_state() -> Vec<crate::state::StateNeed> {
        Vec::new()
    }

    /// The workflow body. It runs again from the top on every resume;
    /// recorded steps return their stored output without running.
    fn run(
        &self,
        ctx: WorkflowContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, WorkflowError>> + Send;
}

/// A `#[step]` function's marker type: its ID, output type and policy.
///
/// `#[step]` implements this on a type named like the function; typed
/// clients use it (`run.step::<charge_card>()`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[step]` function",
    label = "only `#[step]` functions may be called with the workflow context",
    note = "mark the function `#[step]`, or call it without the context"
)]
pub trait Step {
    /// The step's base ID.
    const ID: &'static str;
    /// What it returns on success.
    type Output: Serialize + DeserializeOwned + Send;
    /// Its retry policy and timeout.
    fn options() -> crate::context::StepOptions;
}

/// Implemented for every step a `#[workflow]` calls directly (with the
/// context as first argument), so a typed client only offers the outputs
/// of that workflow's own steps. Steps called only from a
/// `#[workflow_helper]` are not offered.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[step]` called by workflow `{W}`",
    label = "this workflow does not call that step directly"
)]
pub trait StepOf<W>: Step {}

impl<W, S: Step + CalledBy<W>> StepOf<W> for S {}

/// A `#[step]` or `#[workflow_helper]` function's marker type, with the
/// steps it calls, for the macros' compile-time checks. Not a stable API.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[step]` or `#[workflow_helper]` function",
    label = "only `#[step]` and `#[workflow_helper]` functions may be called with the workflow context",
    note = "mark it `#[step]` (a checkpointed unit of work) or `#[workflow_helper]` (an `async fn` taking \
            `&WorkflowContext` first, whose step calls are checked too), or call it without the context"
)]
pub trait Callee {
    /// The function and the steps it calls.
    const CALLS: CallTree;
}

/// Implemented by `#[workflow]` for every function it calls with the
/// context (a [`Callee`]). Not a stable API.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[step]` called by workflow `{W}`",
    label = "this workflow does not call that step directly"
)]
pub trait CalledBy<W>: Callee {}

/// A step (`step_id` is its ID, `calls` empty) or a helper (`step_id` is
/// `None`, `calls` are what it calls with the context). `function` is the
/// Rust path of the function (`module_path!()` and its name): two entries
/// with the same path are the same step. Not a stable API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct CallTree {
    pub function: &'static str,
    pub step_id: Option<&'static str>,
    pub calls: &'static [CallTree],
    /// The text its callers' code fingerprint hashes: a step's signature
    /// (the types it takes and returns, by name), a helper's whole function
    /// (its body decides which steps run).
    pub code: &'static str,
    /// The state a step takes (`State<T>` parameters).
    pub states: &'static [crate::state::StateNeed],
}

/// The message of a duplicate step ID, built at compile time; empty if
/// there is none. Not a stable API.
#[doc(hidden)]
#[derive(Debug)]
pub struct StepIdClash {
    buf: [u8; 1024],
    len: usize,
}

impl StepIdClash {
    /// Whether two different steps share an ID.
    pub const fn found(&self) -> bool {
        self.len > 0
    }

    /// The message.
    pub const fn message(&self) -> &str {
        match std::str::from_utf8(self.buf.split_at(self.len).0) {
            Ok(s) => s,
            Err(_) => "duplicate step ID",
        }
    }

    /// Appends `s` if it fits whole (the buffer holds any realistic
    /// message; a piece that does not fit is left out).
    const fn push(mut self, s: &str) -> Self {
        let b = s.as_bytes();
        if self.len + b.len() <= self.buf.len() {
            let mut i = 0;
            while i < b.len() {
                self.buf[self.len + i] = b[i];
                i += 1;
            }
            self.len += b.len();
        }
        self
    }
}

/// A step of `tree` with the ID of `step` but a different function.
const fn clash_in(step: CallTree, id: &str, tree: CallTree) -> Option<CallTree> {
    if let Some(other) = tree.step_id {
        let same_id = str_eq(other, id);
        return if same_id && !str_eq(tree.function, step.function) { Some(tree) } else { None };
    }
    let mut i = 0;
    while i < tree.calls.len() {
        if let Some(c) = clash_in(step, id, tree.calls[i]) {
            return Some(c);
        }
        i += 1;
    }
    None
}

/// A step of `a` and a step of `b` with the same ID and different functions.
const fn clash(a: CallTree, b: CallTree) -> Option<(CallTree, CallTree)> {
    if let Some(id) = a.step_id {
        return match clash_in(a, id, b) {
            Some(c) => Some((a, c)),
            None => None,
        };
    }
    let mut i = 0;
    while i < a.calls.len() {
        if let Some(pair) = clash(a.calls[i], b) {
            return Some(pair);
        }
        i += 1;
    }
    None
}

/// Compares the steps of two functions called with the context in
/// `within` ("workflow `x`"): two different step functions (their Rust
/// paths differ) with the same ID are a clash. Steps inside one helper are
/// compared where that helper is defined. Not a stable API.
#[doc(hidden)]
pub const fn step_id_clash(within: &str, a: CallTree, b: CallTree) -> StepIdClash {
    let none = StepIdClash { buf: [0; 1024], len: 0 };
    let Some((x, y)) = clash(a, b) else { return none };
    let id = match x.step_id {
        Some(id) => id,
        None => "",
    };
    let mut m = none.push("duplicate step ID `").push(id).push("` in ").push(within).push(": `").push(x.function);
    if a.step_id.is_none() {
        m = m.push("` (called through `").push(a.function).push("`)");
    } else {
        m = m.push("`");
    }
    m = m.push(" and `").push(y.function);
    if b.step_id.is_none() {
        m = m.push("` (called through `").push(b.function).push("`)");
    } else {
        m = m.push("`");
    }
    m.push(" are different steps with the same ID, so their records would be mistaken for each other's; give one of them a different `#[step(id = \"…\")]`")
}

/// Workflow-level settings.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct WorkflowOptions {
    /// How often the whole workflow is attempted (recorded steps are not
    /// re-run by a workflow retry; failed ones are). An attempt ends when
    /// the workflow returns a retryable error or when its worker dies or
    /// loses its lease (a crash counts as an attempt). Default: 10 attempts,
    /// 200 ms initial backoff, ×2, at most 30 s.
    pub retry: RetryPolicy,
    /// The longest a run may take from its creation; it ends `timed_out`
    /// after that. Default: none.
    pub timeout: Option<Duration>,
    /// The codec of this workflow's new payloads (input, step outputs,
    /// output). Default: none, the engine's ([`crate::EngineBuilder::codec`]).
    pub codec: Option<Codec>,
    /// What a replay that meets a different step than the one recorded
    /// does. Default: [`OnNondeterminism::Suspend`].
    pub on_nondeterminism: OnNondeterminism,
}

/// What a run does when its code no longer replays its history (a
/// different step at a recorded position).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnNondeterminism {
    /// The run stops in the `suspended` state, with an error naming both
    /// steps and the position, until a worker with other code
    /// ([`Workflow::code_fingerprint`]) takes it up again (at its start and
    /// every minute; the code that suspended it never takes it again), an
    /// operator resumes it for any worker ([`crate::Engine::resume`], for a
    /// fix the fingerprint does not see), or an operator ends it
    /// ([`crate::Engine::fail`], [`crate::Engine::cancel`]).
    #[default]
    Suspend,
    /// The run fails for good at once.
    Fail,
}

/// `base` combined with what the workflow calls: each callee's Rust path
/// and step ID, through helpers (a changed step ID is other code). Not a
/// stable API.
#[doc(hidden)]
pub fn fingerprint_calls(base: i64, trees: &[CallTree]) -> i64 {
    fn walk(t: &CallTree, bytes: &mut Vec<u8>) {
        bytes.extend_from_slice(t.function.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(t.step_id.unwrap_or_default().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(t.code.as_bytes());
        bytes.push(0);
        for c in t.calls {
            walk(c, bytes);
        }
    }
    let mut bytes = base.to_le_bytes().to_vec();
    for t in trees {
        walk(t, &mut bytes);
    }
    fingerprint(&[&bytes])
}

/// A stable 64-bit FNV-1a hash of `parts` (not a security hash).
#[doc(hidden)]
pub const fn fingerprint(parts: &[&[u8]]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p];
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        p += 1;
    }
    hash as i64
}

impl Default for WorkflowOptions {
    fn default() -> Self {
        WorkflowOptions {
            retry: RetryPolicy::attempts(10),
            timeout: None,
            codec: None,
            on_nondeterminism: OnNondeterminism::Suspend,
        }
    }
}

impl WorkflowOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets what non-determinism does ([`OnNondeterminism`]).
    pub fn on_nondeterminism(mut self, policy: OnNondeterminism) -> Self {
        self.on_nondeterminism = policy;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Encodes this workflow's new payloads with `codec` instead of the
    /// engine's default (a [`Codec::Custom`] must be registered on every
    /// engine that starts or runs it). Stored payloads keep decoding by
    /// their tag.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = Some(codec);
        self
    }
}

/// A registered workflow, with types erased so a worker can hold many.
pub(crate) trait ErasedWorkflow: Send + Sync {
    fn options(&self) -> WorkflowOptions;
    fn required_state(&self) -> Vec<crate::state::StateNeed>;
    /// `VERSION`, `REPLAYS_FROM` and the code fingerprint.
    fn version(&self) -> (u32, u32, i64);
    /// Decodes the input and starts the body; a decode failure is returned
    /// before anything runs. Payloads are read and written with the run's
    /// codecs (`ctx.run.env.codecs`, `ctx.run.env.codec`).
    fn start(&self, ctx: WorkflowContext, input: &[u8]) -> Result<BoxFuture<'static, crate::context::RunEnd>, String>;
}

pub(crate) struct Registered<W>(pub(crate) Arc<W>);

impl<W: Workflow> ErasedWorkflow for Registered<W> {
    fn options(&self) -> WorkflowOptions {
        W::options()
    }

    fn required_state(&self) -> Vec<crate::state::StateNeed> {
        W::required_state()
    }

    fn version(&self) -> (u32, u32, i64) {
        (W::VERSION, W::REPLAYS_FROM.min(W::VERSION), W::code_fingerprint())
    }

    fn start(&self, ctx: WorkflowContext, input: &[u8]) -> Result<BoxFuture<'static, crate::context::RunEnd>, String> {
        let input: W::Input = ctx.run.env.codecs.decode(input)?;
        let wf = Arc::clone(&self.0);
        let (codecs, codec) = (ctx.run.env.codecs.clone(), ctx.run.env.codec);
        let limit = ctx.run.env.max_payload_bytes;
        Ok(Box::pin(async move {
            match wf.run(ctx, input).await {
                Ok(out) => match codecs.encode_checked(codec, &out) {
                    Ok(bytes) if bytes.len() > limit => crate::context::RunEnd::OutputRefused(
                        crate::error::Error::TooLarge {
                            what: format!("the output of `{}`", W::NAME),
                            size: bytes.len(),
                            limit,
                        }
                        .to_string(),
                    ),
                    Ok(bytes) => crate::context::RunEnd::Output(bytes),
                    Err(reason) => crate::context::RunEnd::OutputRefused(
                        crate::error::Error::Encode { what: format!("the output of `{}`", W::NAME), reason }
                            .to_string(),
                    ),
                },
                Err(e) => crate::context::RunEnd::Failed(Arc::new(e)),
            }
        }))
    }
}

/// Compile-time string equality, for the duplicate step ID check.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{CallTree, fingerprint_calls};

    #[test]
    fn a_changed_step_id_or_callee_changes_the_fingerprint() {
        let step = |id: &'static str| CallTree {
            function: "shop::reserve",
            step_id: Some(id),
            calls: &[],
            code: "async fn reserve () -> Result < u32 , StepError >",
            states: &[],
        };
        let base = fingerprint_calls(7, &[step("reserve")]);
        assert_eq!(base, fingerprint_calls(7, &[step("reserve")]), "stable");
        // The same in every build (FNV-1a over the walk, computed apart in
        // Python): a suspended run is taken up again only by other code.
        assert_eq!(base, -7_974_618_277_327_559_448, "the fingerprint's bytes or hash changed");
        assert_ne!(base, fingerprint_calls(7, &[step("reserve-v2")]), "a step's ID");
        assert_ne!(base, fingerprint_calls(8, &[step("reserve")]), "the workflow's own text");
        assert_ne!(base, fingerprint_calls(7, &[]), "what it calls");
        let returns_text = CallTree { code: "async fn reserve () -> Result < String , StepError >", ..step("reserve") };
        assert_ne!(base, fingerprint_calls(7, &[returns_text]), "a step's output type");
    }

    #[test]
    fn a_changed_helper_body_changes_the_fingerprint() {
        const STEP: CallTree =
            CallTree { function: "shop::reserve", step_id: Some("reserve"), calls: &[], code: "", states: &[] };
        let helper =
            |code: &'static str| CallTree { function: "shop::book", step_id: None, calls: &[STEP], code, states: &[] };
        let a = fingerprint_calls(7, &[helper("async fn book (ctx : & WorkflowContext) { reserve (ctx) . await ; }")]);
        let b = fingerprint_calls(
            7,
            &[helper("async fn book (ctx : & WorkflowContext) { if x { reserve (ctx) . await ; } }")],
        );
        assert_ne!(a, b, "the same steps called, another body: another fingerprint");
    }
}
