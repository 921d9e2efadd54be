//! Cron schedules (with pause and resume), live workers and their leases,
//! and the summary: runs by workflow and status, and ends per minute.

use super::App;
use super::layout::{self, Problem, badge, cut, run_href, when, with_query};
use axum::extract::State;
use hydra_runtime::describe;
use hydra_runtime::runs::{Registration, Workers};
use maud::{Markup, html};
use std::sync::Arc;

/// `GET /cron`.
pub(super) async fn cron(State(app): State<Arc<App>>) -> Result<Markup, Problem> {
    let jobs = app.engine.list_crons().await?;
    let body = html! {
        h1 { "Cron schedules" }
        @if jobs.is_empty() { p.empty { "No schedule in this namespace." } } @else {
            table {
                thead { tr { th { "Name" } th { "Spec" } th { "Zone" } th { "Workflow" } th { "State" } th { "Next (UTC)" } th { "Last tick (UTC)" } th {} } }
                tbody { @for j in &jobs {
                    @let action = if j.enabled { "pause" } else { "resume" };
                    @let href = format!("/cron/{action}");
                    tr {
                        td { code { (j.name) } }
                        td { code { (j.spec) } }
                        td { (j.timezone) }
                        td { a href=(with_query("/runs", [("workflow", Some(j.workflow_name.as_str()))])) { (j.workflow_name) } }
                        td { @if j.enabled { span.badge.ok { "active" } } @else { span.badge.off { "paused" } } }
                        td { (when(j.next_run_at)) }
                        td { (layout::when_opt(j.last_tick_at)) }
                        td { form method="post" action=(href) {
                            (layout::form_token(&app.form_token))
                            input type="hidden" name="name" value=(j.name);
                            button type="submit" { @if j.enabled { "Pause" } @else { "Resume" } }
                        } }
                    }
                } }
            }
        }
    };
    Ok(layout::page(&app.engine, "Cron", "cron", body))
}

/// The workflow names a worker says it runs.
fn registered(regs: Option<&[Registration]>) -> String {
    match regs {
        Some(regs) => regs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        None => "-".to_owned(),
    }
}

/// `GET /workers`.
pub(super) async fn workers(State(app): State<Arc<App>>) -> Result<Markup, Problem> {
    let e = &app.engine;
    let runs = e.runs();
    let now = runs.now_ms();
    let Workers { live, held_by_gone, .. } = runs.workers().await?;
    let body = html! {
        h1 { "Workers" }
        @if live.is_empty() { p.empty { "No live worker in this namespace." } } @else {
            table {
                thead { tr { th { "Worker" } th { "Since (UTC)" } th { "Last heartbeat" } th { "Lease expires" } th { "Running runs" } th { "Workflows" } } }
                tbody { @for w in &live { tr {
                    td { code { (w.worker_id.as_str()) } }
                    td { (when(w.since)) }
                    td { (describe::span(now.saturating_sub(w.heartbeat_at))) " ago" }
                    td { "in " (describe::span(w.expires_at.saturating_sub(now))) }
                    td.num { (w.running_runs) }
                    td { (cut(&registered(w.registrations.as_deref()), 200)) }
                } } }
            }
        }
        @if !held_by_gone.is_empty() {
            h2 { "Runs held by workers that are gone" }
            p { "Their leases lapse and other workers take them over." }
            ul { @for (o, n) in &held_by_gone { li { code { (o) } ": " (n) " run(s)" } } }
        }
    };
    Ok(layout::page(e, "Workers", "workers", body))
}

/// Minutes shown on the summary's chart.
const MINUTES: i64 = 60;

/// `GET /summary`.
pub(super) async fn summary(State(app): State<Arc<App>>) -> Result<Markup, Problem> {
    let e = &app.engine;
    let now = e.clock().now_ms();
    let counts = e.status_counts().await?;
    let oldest = e.oldest_pending().await?;
    let since = (now / 60_000).saturating_sub(MINUTES - 1).saturating_mul(60_000);
    let buckets = e.runs().ended_per_bucket(since, 60_000).await?;
    let mut ok = vec![0u64; MINUTES as usize];
    let mut bad = vec![0u64; MINUTES as usize];
    for b in &buckets {
        let Ok(i) = usize::try_from(b.start.saturating_sub(since) / 60_000) else { continue };
        let slot = if b.status == "completed" { &mut ok } else { &mut bad };
        if let Some(n) = slot.get_mut(i) {
            *n += b.runs;
        }
    }
    let completed: u64 = ok.iter().sum();
    let failed: u64 = bad.iter().sum();
    let total_of = |s: &str| counts.iter().filter(|c| c.status == s).map(|c| c.runs).sum::<u64>();
    let body = html! {
        h1 { "Summary" }
        div.stats {
            div.stat { b { (completed) } "completed in the last hour" }
            div.stat { b { (format!("{:.1}", completed as f64 / MINUTES as f64)) } "completed per minute" }
            div.stat { b { (failed) } "ended otherwise in the last hour" }
            div.stat { b { (total_of("running")) } "running now" }
            div.stat { b { (total_of("pending")) } "pending" }
            div.stat { b { @if let Some((_, due)) = oldest { (describe::span(now.saturating_sub(due))) } @else { "-" } } "oldest pending waits" }
        }
        h2 { "Runs ended per minute, last hour" }
        (per_minute(&ok, &bad))
        h2 { "Runs by workflow and status" }
        @if counts.is_empty() { p.empty { "No runs." } } @else {
            table {
                thead { tr { th { "Workflow" } th { "Status" } th { "Runs" } th { "Oldest created (UTC)" } } }
                tbody { @for c in &counts { tr {
                    td { a href=(with_query("/runs", [("workflow", Some(c.workflow_name.as_str()))])) { (c.workflow_name) } }
                    td { a href=(with_query("/runs", [("workflow", Some(c.workflow_name.as_str())), ("status", Some(c.status.as_str()))])) { (badge(&c.status)) } }
                    td.num { (c.runs) }
                    td { (when(c.oldest_created_at)) }
                } } }
            }
        }
        @if let Some((id, _)) = oldest { p { "Oldest pending run: " a.id href=(run_href(id.as_str())) { (id.as_str()) } } }
    };
    Ok(layout::page(e, "Summary", "summary", body))
}

/// Stacked bars: completed (green) under ended otherwise (red), a minute each.
fn per_minute(ok: &[u64], bad: &[u64]) -> Markup {
    let (w, h, left) = (960.0_f64, 160.0_f64, 40.0_f64);
    let top = ok.iter().zip(bad).map(|(a, b)| a + b).max().unwrap_or(0).max(1) as f64;
    let slot = (w - left) / ok.len().max(1) as f64;
    let scale = |n: u64| n as f64 / top * (h - 20.0);
    html! {
        figure.timeline {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) role="img" aria-label="runs ended per minute" {
                text class="note" x="0" y="12" { (top as u64) }
                text class="note" x="0" y=(h - 8.0) { "0" }
                line class="axis" x1=(left) x2=(w) y1=(h - 4.0) y2=(h - 4.0) {}
                @for (i, (a, b)) in ok.iter().zip(bad).enumerate() {
                    @let x = left + slot * i as f64;
                    @let ha = scale(*a);
                    @let hb = scale(*b);
                    g {
                        title { (MINUTES - i as i64 - 1) " min ago: " (a) " completed, " (b) " otherwise" }
                        rect class="bar bucket-ok" x=(format!("{x:.1}")) y=(format!("{:.1}", h - 4.0 - ha)) width=(format!("{:.1}", slot - 2.0)) height=(format!("{ha:.1}")) {}
                        rect class="bar bucket-bad" x=(format!("{x:.1}")) y=(format!("{:.1}", h - 4.0 - ha - hb)) width=(format!("{:.1}", slot - 2.0)) height=(format!("{hb:.1}")) {}
                    }
                }
            }
            figcaption { span.key { "completed" } span.key.failed { "failed, timed out, cancelled" } " · oldest minute on the left" }
        }
    }
}
