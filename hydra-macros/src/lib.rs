//! Procedural macros for Hydra: `#[workflow]`, `#[step]` and
//! `#[workflow_helper]`.
//!
//! Use them through `hydra_runtime` (which re-exports them), not directly.
//! Generated code names only `::hydra_runtime::__private` items and
//! `::core`; `crate = "…"` points them at a renamed dependency.

mod ast;
mod body;
mod expand;
mod signals;
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
/// type and policy); typed clients use it: `run.step::<charge_card>()`. It
/// also implements the hidden `__private::Callee` (the function's Rust path
/// and step ID), which `#[workflow]` and `#[workflow_helper]` callers use for
/// their compile-time checks. Before its step, each call checks at run time
/// that no different step function used the same ID earlier in the run
/// (the run fails, naming both, if one did).
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
///
/// (minus the run-time ID ownership check, which is `#[step]`'s own, and the
/// marker type; such a function cannot be called from a `#[workflow]` body,
/// only from a hand-written `Workflow`).
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
/// Compile-time checks (each error points at the offending token):
///
/// - the context may only be the first argument of a call (`f(&ctx, …)`)
///   or the receiver of a `WorkflowContext` method (`ctx.sleep(…)`;
///   not `ctx.clone()`), or a plain argument of a formatting macro; any
///   other use (`let c = &ctx;`, `ctx.clone()`, storing or moving it, a later
///   argument, an unknown macro) is an error, so no call can receive the
///   context unchecked;
/// - every function called with the context must be a `#[step]` or a
///   `#[workflow_helper]`;
/// - two different steps with the same ID among those the workflow calls,
///   directly or through helpers, are an error naming both;
/// - input and output must be serde types.
///
/// At run time, every `#[step]` call also checks that no different step
/// function used its ID earlier in the run (for code the macros cannot see,
/// such as a hand-written `Workflow`); the run fails with an error naming
/// both.
///
/// The equivalent without the macro is a unit struct implementing
/// `hydra_runtime::Workflow` by hand (see that trait's documentation).
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::workflow(attr.into(), item.into()).into()
}

/// Marks an `async fn` that takes the workflow context and calls steps, so
/// workflows (and other helpers) can call it with the context and its step
/// calls are checked like the workflow's own.
///
/// ```text
/// use hydra_runtime::prelude::*;
///
/// #[workflow_helper]
/// async fn refund_and_notify(ctx: &WorkflowContext, payment: Payment) -> Result<(), StepError> {
///     refund(ctx, payment.id.clone()).await?;     // a #[step]
///     notify(ctx, payment.email).await?;          // a #[step]
///     Ok(())
/// }
///
/// #[workflow]
/// async fn order(ctx: WorkflowContext, req: Order) -> Result<Receipt, WorkflowError> {
///     let payment = charge(&ctx, req.total).await?;
///     if reserve(&ctx, req.items).await.is_err() {
///         refund_and_notify(&ctx, payment).await?;  // checked: `refund_and_notify` is a helper
///     }
///     …
/// }
/// ```
///
/// The first parameter must be `name: &WorkflowContext`; the return type
/// is free. In the body the context follows the `#[workflow]` rules: it is
/// the first argument of `#[step]` and `#[workflow_helper]` calls
/// (`refund(ctx, …)`, no `&`: it is a reference already) or the receiver of
/// a context method, nothing else. Two different steps with one ID among
/// those the helper calls are a compile error here; across the helper and
/// its callers, at each call site.
///
/// The function is emitted unchanged. Beside it, a marker type `struct
/// refund_and_notify {}` lists the steps it calls (hidden trait
/// `__private::Callee`), which is how callers check it. Without the macro, a
/// plain `async fn(ctx: &WorkflowContext, …)` works at run time but cannot
/// be called from a `#[workflow]` body (the context may only be passed to
/// steps and helpers), only from a hand-written `Workflow` implementation,
/// where nothing is checked at compile time.
///
/// Options: `crate = "…"`.
#[proc_macro_attribute]
pub fn workflow_helper(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::workflow_helper(attr.into(), item.into()).into()
}
