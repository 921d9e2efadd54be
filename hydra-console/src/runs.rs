//! The runs list (filters, paging) and a run's page (facts, timeline,
//! payloads, steps, children, signals, events, actions).

use super::layout::{self, Problem, badge, cut, payload, payload_line, run_href, when, when_opt, with_query};
use super::{App, timeline};
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use hydra_runtime::describe;
use hydra_runtime::runs::Shown;
use hydra_runtime::{Execution, ExecutionFilter, ExecutionId, ExecutionStatus, StepStatus};
use hydra_runtime::{RunDetail, ShowLimits};
use maud::{Markup, html};
use std::sync::Arc;

/// Runs per page unless the query says otherwise (at most [`MAX_PAGE`]).
const PAGE: u64 = 50;
const MAX_PAGE: u64 = 500;

/// The most rows a run's page reads per table (steps, children, signals,
/// events); a note says how many there are, and the steps page on.
const MAX_ROWS: u32 = 500;

/// Payloads stored larger than this are not read for a run's page.
const PAYLOAD_BYTES: u32 = 4096;

/// "Showing N of M" under a table that holds more rows than were read.
fn more(shown: usize, total: u64) -> Markup {
    html! { @if (shown as u64) < total { p.note { "Showing " (shown) " of " (total) "." } } }
}

/// A payload in a table cell, or, left unread, its size.
fn cell<T>(row: &Shown<T>, bytes: &[u8]) -> String {
    match row.left_out() {
        Some(n) => format!("({n} bytes, not read)"),
        None => payload_line(bytes, 120),
    }
}

/// `GET /`.
pub(super) async fn home() -> Redirect {
    Redirect::to("/runs")
}

/// The runs list's filters, as its query string carries them.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    /// A search attribute, `name=value`.
    attr: Option<String>,
    /// Created at or after: RFC 3339 or a duration ago (`2h`).
    since: Option<String>,
    /// Created before: the same forms.
    until: Option<String>,
    /// Where the previous page ended: `CREATED_AT.RUN_ID` of its last run.
    after: Option<String>,
    limit: Option<u64>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A run ID from a URL or a form: refused unless it is 1 to 64 letters,
/// digits, `-`, `_` or `:` (every ID Hydra makes is).
pub(super) fn parse_id(text: &str) -> Result<ExecutionId, Problem> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':')
    {
        return Err(Problem::bad_request(format!("`{}` is not a run ID", cut(text, 80))));
    }
    Ok(ExecutionId::from_string(t))
}

/// `ms` as RFC 3339 with milliseconds (what [`describe::parse_time`] reads back).
fn instant(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A page cursor, `CREATED_AT.RUN_ID`: the next page starts after that
/// run in the list's order, whether or not the run still exists.
fn parse_cursor(text: &str) -> Result<(i64, ExecutionId), Problem> {
    let bad = || Problem::bad_request(format!("`{}` is not a page cursor (CREATED_AT.RUN_ID)", cut(text, 80)));
    let (created, id) = text.split_once('.').ok_or_else(bad)?;
    let created = created.parse::<i64>().map_err(|_| bad())?;
    Ok((created, parse_id(id)?))
}

/// `GET /runs`.
pub(super) async fn list(State(app): State<Arc<App>>, Query(q): Query<ListQuery>) -> Result<Markup, Problem> {
    let engine = &app.engine;
    let now = engine.clock().now_ms();
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let mut filter = ExecutionFilter::new(engine.namespace()).limit(limit);
    if let Some(w) = given(&q.workflow) {
        filter = filter.workflow(w);
    }
    if let Some(s) = given(&q.status) {
        let status = ExecutionStatus::parse(s).map_err(|_| {
            Problem::bad_request(format!("unknown status `{}`: one of {}", cut(s, 40), statuses().join(", ")))
        })?;
        filter = filter.status(status);
    }
    if let Some(a) = given(&q.attr) {
        let (name, value) = a
            .split_once('=')
            .ok_or_else(|| Problem::bad_request(format!("search attribute `{}`: write name=value", cut(a, 80))))?;
        filter = filter.search(name.trim(), value);
    }
    // Times as milliseconds, so that the next page's link means the same
    // instants however much later it is followed.
    let since = given(&q.since).map(|t| describe::parse_time(t, now).map_err(Problem::bad_request)).transpose()?;
    let until = given(&q.until).map(|t| describe::parse_time(t, now).map_err(Problem::bad_request)).transpose()?;
    if let Some(t) = since {
        filter = filter.created_since(t);
    }
    if let Some(t) = until {
        filter = filter.created_before(t);
    }
    if let Some(a) = given(&q.after) {
        filter.after = Some(parse_cursor(a)?);
    }
    // The list shows no payload: it does not load them.
    let runs = engine.list(filter.without_payloads()).await?;
    let next = (runs.len() as u64 == limit).then(|| runs.last()).flatten().map(|last| {
        let limit_text = q.limit.map(|_| limit.to_string());
        let (since_text, until_text) = (since.and_then(instant), until.and_then(instant));
        let cursor = format!("{}.{}", last.created_at, last.id.as_str());
        with_query(
            "/runs",
            [
                ("workflow", given(&q.workflow)),
                ("status", given(&q.status)),
                ("attr", given(&q.attr)),
                ("since", since_text.as_deref()),
                ("until", until_text.as_deref()),
                ("limit", limit_text.as_deref()),
                ("after", Some(cursor.as_str())),
            ],
        )
    });
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/runs" {
            label { "Workflow " input name="workflow" value=[given(&q.workflow)] placeholder="any"; }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in statuses() { option value=(s) selected[given(&q.status) == Some(s)] { (s) } }
                }
            }
            label { "Attribute " input name="attr" value=[given(&q.attr)] placeholder="name=value"; }
            label { "Since " input name="since" value=[given(&q.since)] placeholder="2h or 2026-12-01T08:00:00Z"; }
            label { "Until " input name="until" value=[given(&q.until)] placeholder="any"; }
            button type="submit" { "Filter" }
            a href="/runs" { "Clear" }
        }
        @if runs.is_empty() {
            p.empty { "No runs match." }
        } @else {
            table.runs {
                thead { tr { th { "Run" } th { "Workflow" } th { "Status" } th { "Created (UTC)" } th { "Took" } th { "Attempts" } th { "Error" } } }
                tbody {
                    @for e in &runs {
                        tr {
                            td { a.id href=(run_href(e.id.as_str())) { (e.id.as_str()) } }
                            td { (e.workflow_name) }
                            td { (badge(e.status.as_str())) }
                            td { (when(e.created_at)) }
                            td { (took(e, now)) }
                            td.num { (e.attempts) }
                            td.error { (e.error.as_deref().map(|m| cut(m, 80)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        @if let Some(href) = next { p.paging { a.next href=(href) { "Next page →" } } }
    };
    Ok(layout::page(engine, "Runs", "runs", body))
}

fn statuses() -> Vec<&'static str> {
    [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Sleeping,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Suspended,
        ExecutionStatus::CompensationFailed,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect()
}

fn took(e: &Execution, now: i64) -> String {
    match e.completed_at {
        Some(c) => describe::span(c.saturating_sub(e.created_at)),
        None => format!("{} so far", describe::span(now.saturating_sub(e.created_at))),
    }
}

/// What a finished action left to say on the run's page.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ShowQuery {
    done: Option<String>,
    /// The first step shown: its position (the steps' next page).
    from: Option<u32>,
}

/// `GET /runs/{id}`.
pub(super) async fn show(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Markup, Problem> {
    let id = parse_id(&id)?;
    let limits = ShowLimits::new().rows(MAX_ROWS).payload_bytes(PAYLOAD_BYTES).steps_from(q.from.unwrap_or(0));
    let detail = app.engine.runs().detail_within(&id, limits).await?;
    let now = app.engine.clock().now_ms();
    let notice = q.done.as_deref().and_then(notice);
    Ok(layout::page(&app.engine, &format!("Run {id}"), "runs", run_page(&app, &detail, now, notice)))
}

/// The fixed texts an action may leave (the query names one; nothing the
/// query says is shown).
fn notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "cancelled" => "Cancelled.",
        "cancel-requested" => "Cancel requested: a worker stops the run and runs its compensations.",
        "retried" => "Retried: the run is pending again from its last recorded step.",
        "resumed" => "Resumed: the run is due again, for any worker of its workflow.",
        "forked" => "This run is a fork, just started.",
        "signalled" => "Signal sent.",
        "signal-duplicate" => "That signal was sent before (same idempotency key): nothing new was sent.",
        _ => return None,
    })
}

fn run_page(app: &App, d: &RunDetail, now: i64, notice: Option<&str>) -> Markup {
    let e = &d.execution;
    let ended = e.status.is_terminal();
    let retryable =
        matches!(e.status, ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Cancelled);
    html! {
        h1 { "Run " code.id { (e.id.as_str()) } " " (badge(e.status.as_str())) }
        @if let Some(n) = notice { p.notice { (n) } }
        dl.facts {
            dt { "Workflow" } dd { (e.workflow_name) @if let Some(v) = e.workflow_version { " (version " (v) ")" } }
            dt { "Attempts" } dd { (e.attempts) " of " (e.max_attempts) }
            dt { "Trigger" } dd { (e.trigger_type.as_str()) @if let Some(s) = &e.trigger_source { " · " (s) } }
            dt { "Created" } dd { (when(e.created_at)) }
            dt { "Started" } dd { (when_opt(e.started_at)) }
            dt { "Ended" } dd { (when_opt(e.completed_at)) " " (took(e, now)) }
            @if let Some(d) = e.deadline_at { dt { "Deadline" } dd { (when(d)) } }
            @if let Some(d) = e.due_at { dt { "Due" } dd { (when(d)) } }
            @if let Some(w) = &e.lease_owner { dt { "Held by" } dd { code { (w.as_str()) } } }
            @if e.cancel_requested { dt { "Cancel" } dd { "requested" } }
            @if let Some(k) = &e.idempotency_key { dt { "Idempotency key" } dd { code { (k) } } }
            @if let Some(p) = &e.parent_id { dt { "Parent" } dd { a.id href=(run_href(p.as_str())) { (p.as_str()) } } }
        }
        @if let Some(err) = &e.error {
            h2 { "Error" }
            pre.error { (err) }
        }
        div.io {
            section { h2 { "Input" } (payload(&e.input)) }
            section { h2 { "Output" } @if let Some(o) = &e.output { (payload(o)) } @else if ended { p.empty { "none" } } @else { p.empty { "none yet" } } }
        }
        h2 { "Timeline" }
        (timeline::chart(e, &d.steps, now))
        h2 { "Steps" }
        @if d.steps.is_empty() { p.empty { "No step recorded." } } @else {
            table.steps {
                thead { tr { th { "#" } th { "Step" } th { "Kind" } th { "Status" } th { "Attempts" } th { "Started (UTC)" } th { "Took" } th { "Result" } } }
                tbody {
                    @for s in &d.steps {
                        tr {
                            td.num { (s.position) }
                            td { span title=(s.step_id.as_str()) { (s.label()) } }
                            td { (s.kind.as_str()) }
                            td { (badge(s.state_label())) }
                            td.num { (describe::attempts(s.attempts, s.max_attempts)) }
                            td { (when(s.started_at)) }
                            td { (s.completed_at.map(|c| describe::span(c.saturating_sub(s.started_at))).unwrap_or_else(|| "-".into())) }
                            td.result {
                                @if s.status == StepStatus::Failed { span.error { (s.error.as_deref().map(|m| cut(m, 120)).unwrap_or_default()) } }
                                @else if let Some(o) = &s.output { code { (cell(s, o)) } }
                            }
                        }
                    }
                }
            }
            (more(d.steps.len(), d.steps_total))
            @if d.steps.len() as u64 == u64::from(d.limits.rows) && (d.steps.len() as u64) < d.steps_total {
                @if let Some(last) = d.steps.last() {
                    p { a href=(with_query(&run_href(e.id.as_str()), [("from", Some(last.position.saturating_add(1).to_string().as_str()))])) { "Next steps →" } }
                }
            }
        }
        @if !d.children.is_empty() {
            h2 { "Children" }
            table {
                thead { tr { th { "Run" } th { "Workflow" } th { "Status" } th { "Created (UTC)" } } }
                tbody { @for c in &d.children { tr {
                    td { a.id href=(run_href(c.id.as_str())) { (c.id.as_str()) } }
                    td { (c.workflow_name) } td { (badge(c.status.as_str())) } td { (when(c.created_at)) }
                } } }
            }
            (more(d.children.len(), d.children_total))
        }
        @if !d.signals.is_empty() {
            h2 { "Signals" }
            table {
                thead { tr { th { "Name" } th { "Payload" } th { "Sent (UTC)" } th { "Taken" } } }
                tbody { @for s in &d.signals { tr {
                    td { code { (s.name) } } td { code { (cell(s, &s.payload)) } } td { (when(s.created_at)) }
                    td { @if let Some(p) = s.consumed_position { "by step " (p) " at " (when_opt(s.consumed_at)) } @else { "not yet" } }
                } } }
            }
            (more(d.signals.len(), d.signals_total))
        }
        @if !d.events.is_empty() {
            h2 { "Events" }
            table {
                thead { tr { th { "Key" } th { "Value" } th { "Set (UTC)" } } }
                tbody { @for v in &d.events { tr { td { code { (v.key) } } td { code { (cell(v, &v.value)) } } td { (when(v.updated_at)) } } } }
            }
            (more(d.events.len(), d.events_total))
        }
        @if !d.search_attributes.is_empty() {
            h2 { "Search attributes" }
            dl.facts { @for (n, v) in &d.search_attributes {
                dt { (n) } dd { a href=(with_query("/runs", [("attr", Some(format!("{n}={v}").as_str()))])) { (v) } }
            } }
        }
        h2 { "Actions" }
        div.actions {
            @if !ended {
                form.card method="post" action=(format!("{}/cancel", run_href(e.id.as_str()))) {
                    (layout::form_token(&app.form_token))
                    p { "Stop the run; a worker runs its compensations." }
                    button.danger type="submit" { "Cancel run" }
                }
            }
            @if retryable {
                form.card method="post" action=(format!("{}/retry", run_href(e.id.as_str()))) {
                    (layout::form_token(&app.form_token))
                    p { "Go on from the last recorded step with fresh attempts." }
                    button type="submit" name="retry" { "Retry run" }
                }
            }
            @if e.status == ExecutionStatus::Suspended {
                form.card method="post" action=(format!("{}/resume", run_href(e.id.as_str()))) {
                    (layout::form_token(&app.form_token))
                    p { "Take the run up again now, for any worker of its workflow (after a fix its code fingerprint does not see)." }
                    button type="submit" name="resume" { "Resume run" }
                }
            }
            form.card method="post" action=(format!("{}/fork", run_href(e.id.as_str()))) {
                (layout::form_token(&app.form_token))
                p { "Start a new run that keeps the steps before a position and runs the rest." }
                label { "Keep steps before position "
                    input type="number" name="position" min="0" max=(d.steps_total) value="0" required;
                    " (0: run all again)"
                }
                label { "Input (JSON, empty: the same) " textarea name="input" rows="2" {} }
                button type="submit" { "Fork run" }
            }
            @if !ended {
                form.card method="post" action=(format!("{}/signal", run_href(e.id.as_str()))) {
                    (layout::form_token(&app.form_token))
                    p { "Send a signal the run can receive." }
                    label { "Name " input name="name" required; }
                    label { "Payload (JSON) " textarea name="payload" rows="2" { "null" } }
                    label { "Idempotency key " input name="key" placeholder="optional"; }
                    button type="submit" { "Send signal" }
                }
            }
        }
    }
}
