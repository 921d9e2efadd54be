//! A run's history drawn as a chart: one bar per step on a shared time
//! axis, from its first attempt to its result, coloured by what it is
//! (a step body, a sleep or a wait, an event) and how it went (retried,
//! failed, still open); above them the time the run was queued before a
//! worker first took it. Server-drawn SVG, no script.

use hydra_runtime::describe;
use hydra_runtime::runs::Shown;
use hydra_runtime::{Execution, RecordedStep as Step, StepKind, StepStatus};
use maud::{Markup, html};

const WIDTH: f64 = 960.0;
const LABEL: f64 = 230.0;
const ROW: f64 = 22.0;
const BAR: f64 = 14.0;
/// More rows than this are summarised (the steps table lists them all).
const MAX_ROWS: usize = 200;

struct Bar {
    label: String,
    class: &'static str,
    start: i64,
    end: i64,
    note: String,
}

fn bar_of(s: &Step, now: i64) -> Bar {
    let open = s.completed_at.is_none();
    // A sleep lasts until it wakes (its row is written when it begins); an
    // open wait until it wakes or until now; the rest until their result.
    let end = match (s.kind, s.completed_at) {
        (StepKind::Sleep, Some(done)) => s.wake_at.unwrap_or(done).max(done),
        (_, Some(done)) => done,
        (_, None) => s.wake_at.filter(|w| *w > now).unwrap_or(now),
    };
    let class = match (s.kind, s.status) {
        (_, StepStatus::Failed) => "bar failed",
        (StepKind::Sleep | StepKind::Signal, _) => {
            if open {
                "bar waiting"
            } else {
                "bar wait"
            }
        }
        (StepKind::Event, _) => "bar event",
        (StepKind::Step, StepStatus::Running) => "bar running",
        (StepKind::Step, _) if s.attempts > 1 => "bar retried",
        _ => "bar done",
    };
    let mut note = describe::span(end.saturating_sub(s.started_at));
    if open {
        note.push_str(if s.wake_at.is_some() { " (waiting)" } else { " (open)" });
    }
    if s.attempts > 1 {
        note.push_str(&format!(" · {} attempts", s.attempts));
    }
    Bar { label: format!("{} {}", s.position, s.label()), class, start: s.started_at, end, note }
}

/// The chart of run `e` with `steps`, drawn at `now`.
pub(super) fn chart(e: &Execution, steps: &[Shown<Step>], now: i64) -> Markup {
    let mut bars = Vec::with_capacity(steps.len().min(MAX_ROWS) + 1);
    let first_claim = e.started_at.or_else(|| steps.first().map(|s| s.started_at));
    let queued_end = first_claim.unwrap_or(if e.status.is_terminal() { e.completed_at.unwrap_or(now) } else { now });
    bars.push(Bar {
        label: "queued".into(),
        class: "bar queued",
        start: e.created_at,
        end: queued_end,
        note: format!(
            "{}{}",
            describe::span(queued_end.saturating_sub(e.created_at)),
            if first_claim.is_none() { " (not yet taken)" } else { "" }
        ),
    });
    bars.extend(steps.iter().take(MAX_ROWS).map(|s| bar_of(s, now)));
    let t0 = bars.iter().map(|b| b.start).min().unwrap_or(e.created_at);
    let t1 = bars.iter().map(|b| b.end).chain(e.completed_at).max().unwrap_or(t0).max(t0.saturating_add(1));
    let total = t1.saturating_sub(t0).max(1) as f64;
    let plot = WIDTH - LABEL - 190.0;
    let x = |t: i64| LABEL + (t.saturating_sub(t0).max(0) as f64 / total) * plot;
    let height = ROW * (bars.len() as f64 + 1.5);
    html! {
        figure.timeline {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {height}")) width=(WIDTH) height=(height) role="img" aria-label="step timeline" {
                @for (i, b) in bars.iter().enumerate() {
                    @let y = ROW * (i as f64 + 0.5);
                    @let x0 = x(b.start);
                    @let w = (x(b.end) - x0).max(2.0);
                    g class="row" {
                        title { (b.label) ": " (b.note) }
                        text class="label" x=(LABEL - 8.0) y=(y + BAR - 3.0) text-anchor="end" { (layout_cut(&b.label, 32)) }
                        rect class=(b.class) x=(format!("{x0:.1}")) y=(y) width=(format!("{w:.1}")) height=(BAR) rx="2" {}
                        text class="note" x=(format!("{:.1}", x0 + w + 6.0)) y=(y + BAR - 3.0) { (b.note) }
                    }
                }
                @let axis = ROW * (bars.len() as f64 + 0.9);
                line class="axis" x1=(LABEL) x2=(LABEL + plot) y1=(axis) y2=(axis) {}
                text class="note" x=(LABEL) y=(axis + 12.0) { "0" }
                text class="note" x=(LABEL + plot) y=(axis + 12.0) text-anchor="end" { (describe::span(t1.saturating_sub(t0))) }
            }
            figcaption {
                @if steps.len() > MAX_ROWS { "The first " (MAX_ROWS) " of " (steps.len()) " steps. " }
                span.key.queued { "queued" } span.key.done { "step" } span.key.retried { "retried" }
                span.key.wait { "sleep / wait" } span.key.failed { "failed" } span.key.running { "open" }
            }
        }
    }
}

fn layout_cut(text: &str, max: usize) -> String {
    super::layout::cut(text, max)
}
