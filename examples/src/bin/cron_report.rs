//! The seed's daily report, on a schedule: a workflow started at every tick
//! of `@daily` (and, so you can watch it, of a once-a-minute schedule), and
//! a plain async handler, each exactly once per tick however many workers
//! run.
//!
//!     cargo run -p hydra-examples --bin cron_report [-- SECONDS_TO_RUN]
//!
//! Runs for 65 seconds by default, long enough to see one minute tick.

use clap::Parser;
use hydra_runtime::prelude::*;
use hydra_runtime::{CronSchedule, ExecutionFilter, MissedTicks, TriggerType};
use std::time::Duration;

#[step(id = "collect-orders")]
async fn collect_orders(day: String) -> Result<u32, StepError> {
    Ok(day.len() as u32 * 7)
}

#[step(id = "send-report")]
async fn send_report(s: StepContext, orders: u32) -> Result<String, StepError> {
    // The idempotency key is stable per tick: a mailer can drop duplicates.
    Ok(format!("report with {orders} orders sent (key {})", s.idempotency_key()))
}

#[workflow(name = "daily-report")]
async fn daily_report(ctx: WorkflowContext, title: String) -> Result<String, WorkflowError> {
    let orders = collect_orders(&ctx, title.clone()).await?;
    Ok(send_report(&ctx, orders).await?)
}

/// Command line: one optional number.
#[derive(clap::Parser)]
struct Args {
    /// How long to let the schedules run, seconds.
    #[arg(default_value_t = 65)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = Args::parse().seconds;
    let url = std::env::var("HYDRA_DATABASE_URL").unwrap_or_else(|_| "sqlite://hydra-cron.db?mode=rwc".into());
    let engine = Engine::builder().database_url(&url).namespace("reports").build().await?;
    let worker = Worker::builder(&engine)
        .register(daily_report)
        .cron_handler("cleanup", "* * * * *", |s| async move {
            println!("  cleanup handler ran (tick key {})", s.idempotency_key());
            Ok(())
        })
        .poll_interval(Duration::from_millis(500))
        .start()
        .await?;
    engine
        .register_cron(
            CronSchedule::workflow::<daily_report>("daily-report", "@daily", "Daily orders".to_owned())
                .timezone("Europe/Berlin")
                .missed_ticks(MissedTicks::RunOnce),
        )
        .await?;
    engine
        .register_cron(CronSchedule::workflow::<daily_report>("minute-report", "* * * * *", "Minute orders".to_owned()))
        .await?;
    for job in engine.list_crons().await? {
        println!("schedule {:<14} {:<10} next tick at {} ms", job.name, job.spec, job.next_run_at);
    }
    println!("running for {seconds} s…");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    worker.shutdown(Duration::from_secs(5)).await;
    for run in engine.list(ExecutionFilter::new("reports").limit(20)).await? {
        if run.trigger_type == TriggerType::Cron {
            println!(
                "  {} {} from schedule {} ({})",
                run.id,
                run.status,
                run.trigger_source.unwrap_or_default(),
                run.idempotency_key.unwrap_or_default()
            );
        }
    }
    Ok(())
}
