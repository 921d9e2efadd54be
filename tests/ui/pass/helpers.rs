// `#[workflow_helper]`: functions that take the context and call steps,
// called from a workflow and from each other.
use hydra_runtime::prelude::*;
use std::time::Duration;

#[step]
async fn charge(amount: u64) -> Result<String, StepError> {
    Ok(format!("pay-{amount}"))
}

#[step(id = "refund-payment")]
async fn refund(payment: String) -> Result<(), StepError> {
    let _ = payment;
    Ok(())
}

#[step]
async fn notify(message: String) -> Result<(), StepError> {
    let _ = message;
    Ok(())
}

#[step]
async fn reserve(n: u64) -> Result<u64, StepError> {
    Ok(n)
}

/// A helper that calls steps.
#[workflow_helper]
async fn refund_and_notify(ctx: &WorkflowContext, payment: String) -> Result<(), StepError> {
    refund(ctx, payment.clone()).await?;
    notify(ctx, format!("refunded {payment}")).await?;
    Ok(())
}

/// A helper that calls another helper, a step its caller also calls, and
/// context methods; its return type is free.
#[workflow_helper]
pub async fn compensate(ctx: &WorkflowContext, payment: String) -> Result<u32, WorkflowError> {
    refund_and_notify(ctx, payment).await?;
    println!("compensated run {} ({:?})", ctx.execution_id(), ctx);
    ctx.sleep(Duration::from_secs(1)).await;
    notify(ctx, "done".into()).await?;
    Ok(ctx.attempt())
}

#[workflow]
async fn order(ctx: WorkflowContext, amount: u64) -> Result<String, WorkflowError> {
    let payment = charge(&ctx, amount).await?;
    let (a, b) = tokio::join!(reserve(&ctx, 1), reserve(&ctx, 2));
    if a.is_err() || b.is_err() {
        compensate(&ctx, payment.clone()).await?;
    }
    notify(&ctx, format!("paid {payment}")).await?;
    let refund_later = payment.clone();
    let later = async { refund_and_notify(&ctx, refund_later).await };
    if amount > 1_000 {
        later.await?;
    }
    Ok(payment)
}

fn typed(run: &hydra_runtime::WorkflowRun<order>) -> Result<(), Error> {
    // Steps the workflow calls directly are offered by the typed client.
    let _: Option<String> = run.step::<charge>()?;
    let _: Option<()> = run.step::<notify>()?;
    Ok(())
}

fn main() {
    let _ = typed;
    assert_eq!(<refund as hydra_runtime::Step>::ID, "refund-payment");
}
