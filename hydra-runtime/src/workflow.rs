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

    /// Retry policy and timeout of the whole workflow.
    fn options() -> WorkflowOptions {
        WorkflowOptions::default()
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

/// Implemented by `#[workflow]` for every step the workflow calls, so a
/// typed client only offers the outputs of that workflow's own steps.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[step]` called by workflow `{W}`",
    label = "this workflow does not call that step"
)]
pub trait StepOf<W>: Step {}

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
}

impl Default for WorkflowOptions {
    fn default() -> Self {
        WorkflowOptions { retry: RetryPolicy::attempts(10), timeout: None }
    }
}

impl WorkflowOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a workflow run produced, in encoded form.
pub(crate) enum Returned {
    /// The encoded output.
    Output(Vec<u8>),
    /// The output could not be encoded.
    EncodeFailed(String),
    /// The workflow returned an error.
    Failed(WorkflowError),
}

/// A registered workflow, with types erased so a worker can hold many.
pub(crate) trait ErasedWorkflow: Send + Sync {
    fn options(&self) -> WorkflowOptions;
    /// Decodes the input and starts the body; a decode failure is returned
    /// before anything runs.
    fn start(&self, ctx: WorkflowContext, input: &[u8], codec: Codec) -> Result<BoxFuture<'static, Returned>, String>;
}

pub(crate) struct Registered<W>(pub(crate) Arc<W>);

impl<W: Workflow> ErasedWorkflow for Registered<W> {
    fn options(&self) -> WorkflowOptions {
        W::options()
    }

    fn start(&self, ctx: WorkflowContext, input: &[u8], codec: Codec) -> Result<BoxFuture<'static, Returned>, String> {
        let input: W::Input = Codec::decode(input)?;
        let wf = Arc::clone(&self.0);
        Ok(Box::pin(async move {
            match wf.run(ctx, input).await {
                Ok(out) => match codec.encode(&out) {
                    Ok(bytes) => Returned::Output(bytes),
                    Err(e) => Returned::EncodeFailed(e),
                },
                Err(e) => Returned::Failed(e),
            }
        }))
    }
}
