// A step called only as a compensation (`step::later`) counts as used, and
// its state is among the workflow's needs.
#![deny(dead_code)]
use hydra_runtime::prelude::*;

struct Payments;

#[step]
async fn charge(cents: u64) -> Result<String, StepError> {
    Ok(format!("pay-{cents}"))
}

#[step(id = "refund-payment")]
async fn refund(payments: State<Payments>, payment: String) -> Result<(), StepError> {
    let _ = (&*payments, payment);
    Ok(())
}

#[workflow]
async fn order(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    let payment = charge(&ctx, cents).await?;
    ctx.compensate(refund::later(payment.clone()));
    Ok(payment)
}

fn main() {
    let needs = <order as hydra_runtime::Workflow>::required_state();
    assert_eq!(needs, vec![hydra_runtime::StateNeed::of::<Payments>()]);
    let _ = order;
}
