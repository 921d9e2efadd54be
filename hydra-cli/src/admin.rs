//! `hydra cron|workers|stats|prune|move`: schedules, workers, counts,
//! retention and moving a database.

use crate::output::{between, clean, parse_duration, print_json, span, table, time};
use crate::runs::run_json;
use crate::{CliError, Ctx};
use clap::{Args, Subcommand};
use hydra_runtime::{Engine, ExecutionStatus, Retention, StoreOptions};
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub(crate) enum CronCommand {
    /// Lists the cron schedules.
    List,
    /// Pauses a schedule (its ticks fire nothing until resumed).
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Resumes a paused schedule.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Starts a run of a schedule now, as a tick would.
    Trigger {
        /// The schedule's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete runs that ended longer ago than this (30d, 12h, 90m).
    #[arg(long)]
    older_than: String,
    /// Only runs that ended in this status (repeatable; default: any end state).
    #[arg(long)]
    status: Vec<String>,
    /// Count what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Runs deleted per transaction (1 to 5,000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=5000))]
    batch: u32,
}

#[derive(Debug, Args)]
pub(crate) struct MoveArgs {
    /// The database to copy from (`sqlite://…`).
    #[arg(long)]
    from: String,
    /// The empty database to copy into (`postgres://…`).
    #[arg(long)]
    to: String,
}

pub(crate) async fn cron(ctx: &Ctx, cmd: CronCommand) -> Result<(), CliError> {
    let e = &ctx.engine;
    match cmd {
        CronCommand::List => {
            let jobs = e.list_crons().await?;
            if ctx.json {
                let v: Vec<Value> = jobs
                    .iter()
                    .map(|j| {
                        json!({"name": j.name, "spec": j.spec, "timezone": j.timezone, "workflow": j.workflow_name,
                               "enabled": j.enabled, "next_run_at": j.next_run_at, "last_tick_at": j.last_tick_at,
                               "missed_policy": j.missed_policy})
                    })
                    .collect();
                print_json(&Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.name.clone(),
                            j.spec.clone(),
                            j.timezone.clone(),
                            j.workflow_name.clone(),
                            if j.enabled { "active" } else { "paused" }.to_owned(),
                            time(j.next_run_at),
                            j.last_tick_at.map_or_else(|| "-".to_owned(), time),
                        ]
                    })
                    .collect();
                table(&["NAME", "SPEC", "ZONE", "WORKFLOW", "STATE", "NEXT (UTC)", "LAST TICK (UTC)"], &rows);
            }
        }
        CronCommand::Pause { name } => {
            e.pause_cron(&name).await?;
            say(ctx, json!({"cron": name, "enabled": false}), &format!("cron schedule `{name}` paused"));
        }
        CronCommand::Resume { name } => {
            e.resume_cron(&name).await?;
            say(ctx, json!({"cron": name, "enabled": true}), &format!("cron schedule `{name}` resumed"));
        }
        CronCommand::Trigger { name } => {
            let run = e.trigger_cron(&name).await?;
            say(ctx, run_json(&run), &format!("cron schedule `{name}` triggered: run {} started", run.id));
        }
    }
    Ok(())
}

fn say(ctx: &Ctx, json: Value, text: &str) {
    if ctx.json { print_json(&json) } else { out!("{}", clean(text)) }
}

pub(crate) async fn workers(ctx: &Ctx) -> Result<(), CliError> {
    let runs = ctx.engine.runs();
    let now = runs.now_ms();
    let live = runs.workers().await?.live;
    if ctx.json {
        let v: Vec<Value> = live
            .iter()
            .map(|w| {
                json!({"worker": w.worker_id.as_str(), "since": w.since, "heartbeat_at": w.heartbeat_at,
                       "expires_at": w.expires_at, "running_runs": w.running_runs,
                       "registers": w.registrations.as_ref().map(|r| json!(r))})
            })
            .collect();
        print_json(&Value::Array(v));
        return Ok(());
    }
    if live.is_empty() {
        out!("no live worker in namespace `{}`", runs.namespace());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = live
        .iter()
        .map(|w| {
            vec![
                w.worker_id.to_string(),
                time(w.since),
                format!("{} ago", between(w.heartbeat_at, now)),
                w.running_runs.to_string(),
                registered(w.registrations.as_deref()),
            ]
        })
        .collect();
    table(&["WORKER", "SINCE (UTC)", "HEARTBEAT", "RUNNING", "WORKFLOWS"], &rows);
    Ok(())
}

/// The workflow names of a worker's registrations, as recorded.
fn registered(regs: Option<&[hydra_runtime::runs::Registration]>) -> String {
    match regs {
        Some(regs) => regs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        None => "-".to_owned(),
    }
}

pub(crate) async fn stats(ctx: &Ctx) -> Result<(), CliError> {
    let e = &ctx.engine;
    let now = e.clock().now_ms();
    let counts = e.status_counts().await?;
    if counts.is_empty() {
        crate::runs::hint_namespaces(ctx).await?;
    }
    let oldest = e.oldest_pending().await?;
    let unclaimable = e.unclaimable().await?;
    if ctx.json {
        let v = json!({
            "counts": counts.iter().map(|c| json!({"workflow": c.workflow_name, "status": c.status, "runs": c.runs,
                                                   "oldest_created_at": c.oldest_created_at})).collect::<Vec<_>>(),
            "oldest_pending": oldest.as_ref().map(|(id, due)| json!({"id": id.as_str(), "due_at": due})),
            "unclaimable": unclaimable.iter().map(|u| json!({"workflow": u.workflow_name, "version": u.workflow_version,
                                                             "runs": u.runs, "waited_ms": u.waited_ms})).collect::<Vec<_>>(),
        });
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|c| vec![c.workflow_name.clone(), c.status.clone(), c.runs.to_string(), time(c.oldest_created_at)])
        .collect();
    table(&["WORKFLOW", "STATUS", "RUNS", "OLDEST (UTC)"], &rows);
    out!();
    match oldest {
        Some((id, due)) => {
            out!("oldest pending run: {}, due {} ({} ago)", clean(id.as_str()), time(due), between(due, now))
        }
        None => out!("no pending run"),
    }
    if unclaimable.is_empty() {
        out!("every due run has a live worker for its workflow");
    } else {
        for u in &unclaimable {
            out!(
                "NO LIVE WORKER for {}{}: {} run(s) due, the first for {}",
                clean(&u.workflow_name),
                u.workflow_version.map_or_else(String::new, |v| format!(" version {v}")),
                u.runs,
                span(u.waited_ms)
            );
        }
    }
    Ok(())
}

pub(crate) async fn prune(ctx: &Ctx, args: &PruneArgs) -> Result<(), CliError> {
    let keep = parse_duration(&args.older_than).map_err(CliError::Usage)?;
    let mut statuses = Vec::new();
    for s in &args.status {
        let status = ExecutionStatus::parse(s).map_err(|_| CliError::Usage(format!("unknown status `{s}`")))?;
        if !status.is_terminal() {
            return Err(CliError::Usage(format!(
                "--status {s}: only finished runs are pruned (completed, failed, cancelled, timed_out, \
                 compensation_failed)"
            )));
        }
        statuses.push(status);
    }
    let retention = Retention::keep(keep).statuses(statuses).batch(args.batch);
    let started = std::time::Instant::now();
    let (pruned, verb) = if args.dry_run {
        (ctx.engine.prune_dry_run(&retention).await?, "would delete")
    } else {
        (ctx.engine.prune(&retention).await?, "deleted")
    };
    let took = started.elapsed();
    if ctx.json {
        print_json(&json!({"dry_run": args.dry_run, "runs": pruned.runs, "steps": pruned.steps,
                           "signals": pruned.signals, "events": pruned.events, "search_attributes": pruned.attributes,
                           "seconds": took.as_secs_f64()}));
    } else {
        out!(
            "{verb} {} run(s) that ended more than {} ago, with {} step(s), {} signal(s), {} event(s), {} search \
             attribute(s), in {:.1}s",
            pruned.runs,
            args.older_than,
            pruned.steps,
            pruned.signals,
            pruned.events,
            pruned.attributes,
            took.as_secs_f64()
        );
    }
    Ok(())
}

pub(crate) async fn move_database(args: &MoveArgs, json_out: bool) -> Result<(), CliError> {
    if args.from == args.to {
        return Err(CliError::Usage("--from and --to name the same database".into()));
    }
    // The source must exist: a mistyped path is an error, not a new empty
    // database copied with zero rows.
    let source = Engine::builder()
        .store_options(StoreOptions::new(args.from.clone()).create_if_missing(false))
        .group_commit(false)
        .build()
        .await?;
    let started = std::time::Instant::now();
    let report = source.move_to(&args.to).await?;
    let took = started.elapsed();
    if json_out {
        let tables: Vec<Value> = report
            .tables
            .iter()
            .map(|t| {
                json!({"table": t.table, "source_rows": t.source_rows, "target_rows": t.target_rows,
                       "source_checksum": format!("{:016x}", t.source_checksum),
                       "target_checksum": format!("{:016x}", t.target_checksum), "verified": t.verified()})
            })
            .collect();
        print_json(&json!({"verified": report.verified(), "seconds": took.as_secs_f64(), "tables": tables}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                t.source_rows.to_string(),
                t.target_rows.to_string(),
                format!("{:016x}", t.source_checksum),
                if t.verified() { "ok" } else { "MISMATCH" }.to_owned(),
            ]
        })
        .collect();
    table(&["TABLE", "READ", "WRITTEN", "CHECKSUM", "VERIFIED"], &rows);
    out!(
        "moved in {:.1}s; every row count and checksum agrees. The source is sealed: it refuses writes and \
         engines, naming the new database. Point your workers at the new database.",
        took.as_secs_f64()
    );
    Ok(())
}
