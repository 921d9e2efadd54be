use hydra_runtime::prelude::*;

#[step(transactional)]
async fn no_tx(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[step]
async fn unmarked(tx: &StepTransaction, n: u32) -> Result<u32, StepError> {
    let _ = tx;
    Ok(n)
}

fn main() {}
