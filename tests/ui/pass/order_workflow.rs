use hydra_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub amount: u64,
}

#[step(retry(max_attempts = 5, initial = "200ms", max = "30s", multiplier = 2.0, jitter = 0.1), timeout = "10s")]
async fn charge_card(amount: u64) -> Result<String, StepError> {
    Ok(format!("pay-{amount}"))
}

#[step(id = "reserve-inventory")]
async fn reserve(s: StepContext, n: u64) -> Result<u64, StepError> {
    let _key = s.idempotency_key();
    Ok(n)
}

#[workflow(name = "order-processing", retry(max_attempts = 3), timeout = "2d")]
async fn order_processing(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    let payment = charge_card(&ctx, order.amount).await?;
    let _ = reserve(&ctx, 1).await?;
    let _ = reserve(&ctx, 2).await?; // the same step twice is fine: occurrence suffixes
    ctx.sleep(Duration::from_secs(5)).await;
    Ok(payment)
}

async fn use_it(engine: &Engine) -> Result<(), Error> {
    let handle = order_processing::start(engine, Order { amount: 5 }).await?;
    let _again = order_processing::start_with(engine, Order { amount: 5 }, StartOptions::new().idempotency_key("k")).await?;
    let receipt: String = handle.result().await?;
    let client = order_processing::client(engine);
    if let Some(run) = client.get(handle.id()).await? {
        let paid: Option<String> = run.step::<charge_card>()?;
        let second: Option<u64> = run.step_occurrence::<reserve>(2)?;
        let _ = (paid, second, run.output()?, run.status());
    }
    let worker = Worker::builder(engine).register(order_processing).start().await?;
    worker.shutdown(Duration::from_secs(1)).await;
    let _ = receipt;
    Ok(())
}

fn main() {
    assert_eq!(<charge_card as hydra_runtime::Step>::ID, "charge_card");
    assert_eq!(<reserve as hydra_runtime::Step>::ID, "reserve-inventory");
    assert_eq!(<order_processing as hydra_runtime::Workflow>::NAME, "order-processing");
    let _ = use_it;
}
