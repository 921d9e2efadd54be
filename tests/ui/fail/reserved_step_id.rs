use hydra_runtime::prelude::*;

// A user's step may not take the ID of Hydra's own compensation marker:
// replays, retries and forks would read it as one.
#[step(id = "hydra.compensate")]
async fn compensate(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[step(id = "signal:approval")]
async fn approve(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

fn main() {}
