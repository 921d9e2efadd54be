use hydra_runtime::prelude::*;

#[step(timeout = "5 parsecs", retry(max_attempts = 0, jitter = 2.0))]
async fn a(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[step(id = "has#hash")]
async fn b(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

fn main() {}
