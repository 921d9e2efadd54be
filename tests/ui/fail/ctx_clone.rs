// Cloning the context to pass it on is rejected: the clone would carry the
// context out of sight of the step checks.
use hydra_runtime::prelude::*;

#[step]
async fn refund(payment: String) -> Result<(), StepError> {
    let _ = payment;
    Ok(())
}

#[workflow_helper]
async fn refund_and_notify(ctx: &WorkflowContext, payment: String) -> Result<(), StepError> {
    refund(ctx, payment).await
}

// Not a step, not a helper: it takes the context by value.
async fn sneaky(ctx: WorkflowContext, payment: String) -> Result<(), StepError> {
    refund(&ctx, payment).await
}

#[workflow]
async fn flow(ctx: WorkflowContext, payment: String) -> Result<(), WorkflowError> {
    refund_and_notify(&ctx.clone(), payment.clone()).await?;
    sneaky(ctx.clone(), payment).await?;
    Ok(())
}

fn main() {}
