//! Procedural macros for Hydra: `#[workflow]` and `#[step]`.
//!
//! Use them through `hydra_runtime` (which re-exports them), not directly.
//! Generated code names only `::hydra_runtime::__private` items and
//! `::core`; `crate = "…"` points them at a renamed dependency.

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Marks an `async fn` as a checkpointed step.
///
/// ```text
/// use hydra_runtime::prelude::*;
///
/// #[step(id = "charge-card", retry(max_attempts = 5, initial = "200ms", max = "30s"), timeout = "10s")]
/// async fn charge_card(amount_cents: u64) -> Result<String, StepError> {
///     Ok(format!("pay-{amount_cents}"))
/// }
///
/// // Called from a workflow with the context first:
/// //     let payment = charge_card(&ctx, 4_200).await?;
/// ```
///
/// The function becomes `async fn charge_card(ctx: &WorkflowContext,
/// amount_cents: u64) -> Result<String, StepError>`, which answers from the
/// run's history when the step is recorded and otherwise records an attempt,
/// runs the body (retried by the policy) and records the result. Beside it,
/// a marker type `struct charge_card {}` implements `Step` (its ID, output
/// type and policy); typed clients use it: `run.step::<charge_card>()`.
///
/// Options: `id = "…"` (default: the function name), `retry(max_attempts =
/// N, initial = "200ms", max = "30s", multiplier = 2.0, jitter = 0.2)`,
/// `timeout = "…"` (per attempt), `crate = "…"`. Parameters must be `Clone`
/// (each attempt gets fresh copies); an optional first parameter of type
/// `StepContext` receives the attempt number, idempotency key and
/// cancellation signal.
///
/// The equivalent without the macro:
///
/// ```text
/// async fn charge_card(ctx: &WorkflowContext, amount_cents: u64) -> Result<String, StepError> {
///     let options = StepOptions::new("charge-card").retry(
///         RetryPolicy::default().max_attempts(5).initial(Duration::from_millis(200)).max(Duration::from_secs(30)),
///     ).timeout(Duration::from_secs(10));
///     ctx.step_with(options, move |_s| async move { Ok(format!("pay-{amount_cents}")) }).await
/// }
/// ```
#[proc_macro_attribute]
pub fn step(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::step(attr.into(), item.into()).into()
}

/// Marks an `async fn(ctx: WorkflowContext, input: In) -> Result<Out, E>` as
/// a durable workflow.
///
/// ```text
/// use hydra_runtime::prelude::*;
///
/// #[workflow(name = "order-processing", retry(max_attempts = 3), timeout = "2d")]
/// async fn order_processing(ctx: WorkflowContext, req: OrderRequest) -> Result<Receipt, WorkflowError> {
///     let payment = charge_card(&ctx, req.total_cents).await?;
///     ctx.sleep(Duration::from_secs(3600)).await;
///     Ok(Receipt { payment })
/// }
///
/// let handle = order_processing::start(&engine, req).await?;      // typed input
/// let receipt: Receipt = handle.result().await?;                  // typed output
/// let run = order_processing::client(&engine).get(handle.id()).await?.unwrap();
/// let payment: Option<String> = run.step::<charge_card>()?;      // typed step output
/// let worker = Worker::builder(&engine).register(order_processing).start().await?;
/// ```
///
/// The function becomes a type `order_processing` (and a constant of that
/// type, to register with a worker) implementing `Workflow`, with
/// `start`, `start_with` and `client` associated functions.
///
/// Compile-time checks: every function called with the context as first
/// argument must be a `#[step]` (the error points at the call); two
/// different steps with the same ID in one workflow are an error; input and
/// output must be serde types.
///
/// The equivalent without the macro is a unit struct implementing
/// `hydra_runtime::Workflow` by hand (see that trait's documentation).
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::workflow(attr.into(), item.into()).into()
}
