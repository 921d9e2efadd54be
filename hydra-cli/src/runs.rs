//! `hydra runs …`: list, show, cancel, retry, fork, signal and fail runs.

use crate::output::{between, clean, cut, opt_time, parse_time, payload, payload_line, print_json, table, time};
use crate::{CliError, Ctx};
use clap::{Args, Subcommand};
use hydra_runtime::runs::Shown;
use hydra_runtime::{
    CancelOutcome, Codec, Error, ExecutionFilter, ExecutionId, ExecutionStatus, SignalOptions, SignalSent,
};
use hydra_runtime::{Execution, RecordedStep as Step, ShowLimits};
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// Lists runs, newest first.
    List(ListArgs),
    /// Shows one run: its state, step timeline, children, signals, events
    /// (a page of each; payloads over a size are not read).
    Show {
        /// The run's ID.
        id: String,
        /// The first step shown: its position (the next page of a long run).
        #[arg(long, default_value_t = 0)]
        from: u32,
        /// The most rows shown per table (steps, children, signals, events).
        #[arg(long, default_value_t = 500)]
        rows: u32,
        /// Payloads stored larger than this many bytes are not read; their
        /// size is shown instead.
        #[arg(long, default_value_t = 4096)]
        payload_bytes: u32,
    },
    /// Cancels a run (its compensations run; a run that never ran ends at once).
    Cancel {
        /// The run's ID.
        id: String,
    },
    /// Retries a failed, timed-out or cancelled run from its last recorded
    /// step, with fresh attempts.
    Retry {
        /// The run's ID.
        id: String,
    },
    /// Starts a new run that keeps the history before a step and runs the rest.
    Fork {
        /// The run's ID.
        id: String,
        /// Keep the steps before this position (0 keeps none).
        #[arg(long)]
        from_step: u32,
        /// A new input, as JSON (default: the origin's input).
        #[arg(long)]
        input: Option<String>,
    },
    /// Sends a signal to a run.
    Signal {
        /// The run's ID.
        id: String,
        /// The signal's name.
        name: String,
        /// The payload, as JSON (default: null).
        #[arg(long, default_value = "null")]
        payload: String,
        /// An idempotency key: a second send with it is a no-op.
        #[arg(long)]
        key: Option<String>,
    },
    /// Takes a suspended run up again now, for any worker of its workflow
    /// (after a fix the code fingerprint does not see).
    Resume {
        /// The run's ID.
        id: String,
    },
    /// Ends a run that is not running (pending, sleeping, suspended) as failed.
    Fail {
        /// The run's ID.
        id: String,
        /// Why, as the run's error.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only runs of this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Only runs in this status (pending, running, sleeping, completed,
    /// failed, cancelled, timed_out, suspended, compensation_failed).
    #[arg(long)]
    status: Option<String>,
    /// Only runs created since this time (RFC 3339) or this long ago (2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only runs created before this time (RFC 3339) or this long ago.
    #[arg(long)]
    until: Option<String>,
    /// Only the run(s) started with this idempotency key.
    #[arg(long)]
    key: Option<String>,
    /// Only runs whose search attribute NAME is VALUE (repeatable: all must hold).
    #[arg(long, value_name = "NAME=VALUE")]
    search: Vec<String>,
    /// At most this many runs (1 to 1,000).
    #[arg(long, default_value_t = 50)]
    limit: u64,
    /// Read each run's input and output too (with --json): a payload may be
    /// megabytes, so a list reads none by default.
    #[arg(long)]
    payloads: bool,
    /// The next page: runs listed after this run ID (the last of the previous page).
    #[arg(long)]
    after: Option<String>,
}

pub(crate) async fn run(ctx: &Ctx, cmd: RunsCommand) -> Result<(), CliError> {
    match cmd {
        RunsCommand::List(args) => list(ctx, args).await,
        RunsCommand::Show { id, from, rows, payload_bytes } => {
            let limits = ShowLimits::new().steps_from(from).rows(rows).payload_bytes(payload_bytes);
            show(ctx, &parse_id(&id)?, limits).await
        }
        RunsCommand::Cancel { id } => {
            let id = parse_id(&id)?;
            let outcome = ctx.engine.cancel(&id).await?;
            let (word, text) = match outcome {
                CancelOutcome::Cancelled => ("cancelled", format!("run {id} cancelled")),
                CancelOutcome::Requested => {
                    ("requested", format!("cancel of run {id} requested: a worker stops it and runs its compensations"))
                }
                CancelOutcome::AlreadyEnded(s) => {
                    return Err(Error::Refused(format!("run {id} has already ended ({s})")).into());
                }
                _ => ("requested", format!("cancel of run {id} requested")),
            };
            say(ctx, json!({"id": id.as_str(), "cancel": word}), &text);
            Ok(())
        }
        RunsCommand::Retry { id } => {
            let e = ctx.engine.retry(&parse_id(&id)?).await?;
            say(
                ctx,
                run_json(&e),
                &format!(
                    "run {} of {} is pending again from step position {}",
                    e.id, e.workflow_name, e.open_step.position
                ),
            );
            Ok(())
        }
        RunsCommand::Fork { id, from_step, input } => {
            let id = parse_id(&id)?;
            let input = match input {
                None => None,
                Some(text) => Some(encode_json(&text, "--input")?),
            };
            let e = ctx.engine.fork(&id, from_step, input).await?;
            say(
                ctx,
                run_json(&e),
                &format!("run {} forked from {id}, keeping {from_step} step(s); it runs the rest", e.id),
            );
            Ok(())
        }
        RunsCommand::Signal { id, name, payload, key } => {
            let id = parse_id(&id)?;
            let value: Value =
                serde_json::from_str(&payload).map_err(|e| CliError::Usage(format!("--payload is not JSON: {e}")))?;
            let mut options = SignalOptions::new();
            if let Some(k) = key {
                options = options.idempotency_key(k);
            }
            let (word, words) = match ctx.engine.signal_with(&id, &name, &value, options).await? {
                SignalSent::Accepted { .. } => ("accepted", "accepted"),
                SignalSent::Duplicate => {
                    ("duplicate", "a signal with this idempotency key was accepted before; nothing was done")
                }
                _ => ("sent", "sent (an answer this version of hydra does not know)"),
            };
            say(
                ctx,
                json!({"id": id.as_str(), "signal": name, "sent": word}),
                &format!("signal `{name}` to run {id}: {words}"),
            );
            Ok(())
        }
        RunsCommand::Resume { id } => {
            let id = parse_id(&id)?;
            ctx.engine.resume(&id).await?;
            say(ctx, json!({"id": id.as_str(), "status": "sleeping"}), &format!("run {id} is due again"));
            Ok(())
        }
        RunsCommand::Fail { id, reason } => {
            let id = parse_id(&id)?;
            ctx.engine.fail(&id, &reason).await?;
            say(ctx, json!({"id": id.as_str(), "status": "failed"}), &format!("run {id} ended failed: {reason}"));
            Ok(())
        }
    }
}

/// Prints `json` with `--json`, else `text`.
fn say(ctx: &Ctx, json: Value, text: &str) {
    if ctx.json { print_json(&json) } else { out!("{}", clean(text)) }
}

/// Tells an operator whose namespace holds no runs at all which ones do
/// (on stderr, so `--json` stays parseable): a mistyped `--namespace`
/// otherwise reads as "nothing happened".
pub(crate) async fn hint_namespaces(ctx: &Ctx) -> Result<(), CliError> {
    let ns = ctx.engine.namespace();
    let any = ctx.engine.list(ExecutionFilter::new(ns).limit(1).without_payloads()).await?;
    if !any.is_empty() {
        return Ok(());
    }
    const SHOWN: u32 = 20;
    let held = ctx.engine.namespaces(SHOWN).await?;
    let mut known = if held.is_empty() {
        "none (this database holds no runs yet)".to_owned()
    } else {
        held.iter().map(|n| format!("`{}`", clean(n))).collect::<Vec<_>>().join(", ")
    };
    if held.len() == SHOWN as usize {
        known.push_str(", …");
    }
    crate::output::warn(&format!(
        "hydra: no runs in namespace `{}`; namespaces with runs: {known} (choose one with --namespace or \
         HYDRA_NAMESPACE)",
        clean(ns)
    ));
    Ok(())
}

fn parse_id(text: &str) -> Result<ExecutionId, CliError> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':')
    {
        return Err(CliError::Usage(format!("`{text}` is not a run ID")));
    }
    Ok(ExecutionId::from_string(t))
}

/// `text` (JSON) encoded as a JSON payload.
fn encode_json(text: &str, what: &str) -> Result<Vec<u8>, CliError> {
    let value: Value = serde_json::from_str(text).map_err(|e| CliError::Usage(format!("{what} is not JSON: {e}")))?;
    Codec::Json.encode(&value).map_err(|e| CliError::Usage(format!("{what}: {e}")))
}

async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let now = ctx.engine.clock().now_ms();
    let mut filter = ExecutionFilter::new(ctx.engine.namespace()).limit(args.limit.clamp(1, 1_000));
    if let Some(w) = args.workflow {
        filter = filter.workflow(w);
    }
    if let Some(s) = args.status {
        let status = ExecutionStatus::parse(&s).map_err(|_| {
            CliError::Usage(format!(
                "unknown status `{s}`: one of pending, running, sleeping, completed, failed, cancelled, timed_out, \
                 suspended, compensation_failed"
            ))
        })?;
        filter = filter.status(status);
    }
    if let Some(t) = args.since {
        filter = filter.created_since(parse_time(&t, now).map_err(CliError::Usage)?);
    }
    if let Some(t) = args.until {
        filter = filter.created_before(parse_time(&t, now).map_err(CliError::Usage)?);
    }
    if let Some(k) = args.key {
        filter = filter.idempotency_key(k);
    }
    for s in &args.search {
        let (name, value) =
            s.split_once('=').ok_or_else(|| CliError::Usage(format!("--search `{s}`: write NAME=VALUE")))?;
        filter = filter.search(name, value);
    }
    if let Some(after) = args.after {
        let id = parse_id(&after)?;
        let last = ctx.engine.get(&id).await?.ok_or_else(|| Error::NotFound(id.clone()))?;
        filter = filter.after(&last);
    }
    if !args.payloads {
        filter = filter.without_payloads();
    }
    let runs = ctx.engine.list(filter).await?;
    if runs.is_empty() {
        hint_namespaces(ctx).await?;
    }
    if ctx.json {
        let json = |e: &Execution| {
            let mut v = run_json(e);
            if !args.payloads {
                strip_payloads(&mut v);
            }
            v
        };
        print_json(&Value::Array(runs.iter().map(json).collect()));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.workflow_name.clone(),
                e.status.to_string(),
                time(e.created_at),
                e.completed_at.map_or_else(|| between(e.created_at, now) + " so far", |c| between(e.created_at, c)),
                e.error.as_deref().map_or_else(String::new, |m| cut(m, 60)),
            ]
        })
        .collect();
    table(&["ID", "WORKFLOW", "STATUS", "CREATED (UTC)", "TOOK", "ERROR"], &rows);
    if runs.len() as u64 == args.limit.clamp(1, 1_000)
        && let Some(last) = runs.last()
    {
        out!("(more may follow: --after {})", clean(last.id.as_str()));
    }
    Ok(())
}

/// A run as JSON.
pub(crate) fn run_json(e: &Execution) -> Value {
    json!({
        "id": e.id.as_str(),
        "workflow": e.workflow_name,
        "version": e.workflow_version,
        "status": e.status.as_str(),
        "attempts": e.attempts,
        "max_attempts": e.max_attempts,
        "idempotency_key": e.idempotency_key,
        "trigger": e.trigger_type.as_str(),
        "trigger_source": e.trigger_source,
        "parent_id": e.parent_id.as_ref().map(|p| p.as_str()),
        "created_at": e.created_at,
        "started_at": e.started_at,
        "completed_at": e.completed_at,
        "due_at": e.due_at,
        "deadline_at": e.deadline_at,
        "lease_owner": e.lease_owner.as_ref().map(|w| w.as_str()),
        "cancel_requested": e.cancel_requested,
        "open_step": e.open_step.position,
        "input": payload(&e.input),
        "output": e.output.as_deref().map(payload),
        "error": e.error,
    })
}

/// A run's JSON without its input and output (which were not read).
fn strip_payloads(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("input");
        o.remove("output");
    }
}

/// A payload as JSON, or, left unread, its size.
fn shown_payload<T>(row: &Shown<T>, bytes: &[u8]) -> Value {
    match row.left_out() {
        Some(n) => json!({"not_read": true, "bytes": n}),
        None => payload(bytes),
    }
}

/// A payload on one line, or, left unread, its size.
fn shown_line<T>(row: &Shown<T>, bytes: &[u8]) -> String {
    match row.left_out() {
        Some(n) => format!("({n} bytes, not read: see --payload-bytes)"),
        None => payload_line(bytes),
    }
}

fn step_json(s: &Shown<Step>) -> Value {
    json!({
        "position": s.position,
        "step_id": s.step_id.as_str(),
        "label": s.label(),
        "kind": s.kind.as_str(),
        "status": s.status.as_str(),
        "attempts": s.attempts,
        "max_attempts": s.max_attempts,
        "started_at": s.started_at,
        "completed_at": s.completed_at,
        "wake_at": s.wake_at,
        "output": s.output.as_deref().filter(|o| !o.is_empty() || s.left_out).map(|o| shown_payload(s, o)),
        "error": s.error,
    })
}

async fn show(ctx: &Ctx, id: &ExecutionId, limits: ShowLimits) -> Result<(), CliError> {
    let d = ctx.engine.runs().detail_within(id, limits).await?;
    let e = &d.execution;
    if ctx.json {
        let mut v = run_json(e);
        v["steps"] = Value::Array(d.steps.iter().map(step_json).collect());
        v["steps_total"] = d.steps_total.into();
        v["children"] = Value::Array(
            d.children
                .iter()
                .map(|c| {
                    let mut v = run_json(c);
                    strip_payloads(&mut v);
                    v
                })
                .collect(),
        );
        v["children_total"] = d.children_total.into();
        v["signals"] = Value::Array(
            d.signals
                .iter()
                .map(|s| {
                    json!({"name": s.name, "payload": shown_payload(s, &s.payload), "created_at": s.created_at,
                           "consumed_at": s.consumed_at, "consumed_position": s.consumed_position})
                })
                .collect(),
        );
        v["signals_total"] = d.signals_total.into();
        v["events"] = Value::Array(
            d.events
                .iter()
                .map(|ev| json!({"key": ev.key, "value": shown_payload(ev, &ev.value), "updated_at": ev.updated_at}))
                .collect(),
        );
        v["events_total"] = d.events_total.into();
        v["search_attributes"] =
            d.search_attributes.iter().map(|(n, val)| (n.clone(), Value::from(val.clone()))).collect();
        print_json(&v);
        return Ok(());
    }
    out!("run        {}", clean(e.id.as_str()));
    out!(
        "workflow   {}{}",
        clean(&e.workflow_name),
        e.workflow_version.map_or_else(String::new, |v| format!(" (version {v})"))
    );
    out!("status     {}{}", e.status, if e.cancel_requested { " (cancel requested)" } else { "" });
    out!("attempts   {} of {}", e.attempts, e.max_attempts);
    out!(
        "trigger    {}{}",
        e.trigger_type,
        e.trigger_source.as_deref().map_or_else(String::new, |s| format!(" ({})", clean(s)))
    );
    if let Some(k) = &e.idempotency_key {
        out!("key        {}", clean(k));
    }
    if let Some(p) = &e.parent_id {
        out!("parent     {}", clean(p.as_str()));
    }
    out!("created    {}", time(e.created_at));
    out!("ended      {}", opt_time(e.completed_at));
    if !e.status.is_terminal() {
        out!("due        {}", opt_time(e.due_at));
    }
    out!("input      {}", payload_line(&e.input));
    if let Some(o) = &e.output {
        out!("output     {}", payload_line(o));
    }
    if let Some(m) = &e.error {
        out!("error      {}", clean(m).replace('\n', "\n           "));
    }
    for (n, v) in &d.search_attributes {
        out!("search     {} = {}", clean(n), clean(v));
    }
    out!();
    let rows: Vec<Vec<String>> = d
        .steps
        .iter()
        .map(|s| {
            vec![
                s.position.to_string(),
                s.label(),
                s.kind.to_string(),
                s.state_label().to_owned(),
                hydra_runtime::describe::attempts(s.attempts, s.max_attempts),
                s.completed_at.map_or_else(|| "-".to_owned(), |c| between(s.started_at, c)),
                match (&s.error, &s.output) {
                    (Some(err), _) => format!("error: {}", cut(err, 70)),
                    (None, Some(o)) if !o.is_empty() || s.left_out => shown_line(s, o),
                    _ => s.wake_at.map_or_else(String::new, |w| format!("wakes {}", time(w))),
                },
            ]
        })
        .collect();
    table(&["POS", "STEP", "KIND", "STATUS", "ATTEMPTS", "TOOK", "RESULT"], &rows);
    if (d.steps.len() as u64) < d.steps_total {
        match d.steps.last() {
            Some(last) if d.steps.len() as u64 == u64::from(limits.rows) => {
                out!("({} steps in all; the next page: --from {})", d.steps_total, last.position.saturating_add(1));
            }
            _ => out!("({} steps in all; these from position {})", d.steps_total, limits.steps_from),
        }
    }
    if !d.children.is_empty() {
        out!();
        let rows: Vec<Vec<String>> =
            d.children.iter().map(|c| vec![c.id.to_string(), c.workflow_name.clone(), c.status.to_string()]).collect();
        table(&["CHILD", "WORKFLOW", "STATUS"], &rows);
        more(d.children.len(), d.children_total);
    }
    if !d.signals.is_empty() {
        out!();
        let rows: Vec<Vec<String>> = d
            .signals
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    time(s.created_at),
                    s.consumed_position.map_or_else(|| "waiting".to_owned(), |p| format!("taken at {p}")),
                    shown_line(s, &s.payload),
                ]
            })
            .collect();
        table(&["SIGNAL", "SENT", "TAKEN", "PAYLOAD"], &rows);
        more(d.signals.len(), d.signals_total);
    }
    if !d.events.is_empty() {
        out!();
        let rows: Vec<Vec<String>> =
            d.events.iter().map(|ev| vec![ev.key.clone(), time(ev.updated_at), shown_line(ev, &ev.value)]).collect();
        table(&["EVENT", "SET", "VALUE"], &rows);
        more(d.events.len(), d.events_total);
    }
    Ok(())
}

/// Under a table that shows `shown` of `total` rows: how many there are.
fn more(shown: usize, total: u64) {
    if (shown as u64) < total {
        out!("(the first {shown} of {total}: see --rows)");
    }
}
