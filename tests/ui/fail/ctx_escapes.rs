// Every other way of handing the context on is rejected, each at its use.
use hydra_runtime::prelude::*;

struct Holder<'a> {
    ctx: &'a WorkflowContext,
}

#[step]
async fn reserve(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

fn log(_n: u32, _ctx: &WorkflowContext) {}

macro_rules! pass_on {
    ($c:expr) => {
        log(0, $c)
    };
}

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    log(n, &ctx);
    let holder = Holder { ctx: &ctx };
    let later = || &ctx;
    pass_on!(&ctx);
    let _ = (holder.ctx, later);
    Ok(reserve(&ctx, n).await?)
}

fn main() {}
