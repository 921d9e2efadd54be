//! The page frame (navigation, stylesheet), error pages, and the pieces
//! every page uses: status badges, times, payloads, links with queries.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hydra_runtime::Engine;
use hydra_runtime::Error;
use hydra_runtime::describe;
use maud::{DOCTYPE, Markup, html};

/// The stylesheet, compiled into the binary.
const STYLESHEET: &str = include_str!("console.css");

/// `GET /assets/console.css`.
pub(super) async fn stylesheet() -> Response {
    let mut res = STYLESHEET.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    res
}

/// A whole page: `title`, the navigation with `section` marked, `body`.
pub(super) fn page(engine: &Engine, title: &str, section: &str, body: Markup) -> Markup {
    frame(Some(engine.namespace()), title, section, body)
}

/// Every page, with awakeable secrets cut wherever the page shows them (a
/// token drawn, a completion's name: see [`describe::redact_secrets`]).
fn frame(namespace: Option<&str>, title: &str, section: &str, body: Markup) -> Markup {
    let whole = framed(namespace, title, section, body).into_string();
    maud::PreEscaped(describe::redact_secrets(&whole).into_owned())
}

fn framed(namespace: Option<&str>, title: &str, section: &str, body: Markup) -> Markup {
    let link = |href: &str, name: &str, key: &str| {
        html! { a href=(href) class=[(section == key).then_some("here")] { (name) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Hydra" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                header {
                    span.brand { "Hydra" }
                    nav {
                        (link("/runs", "Runs", "runs"))
                        (link("/summary", "Summary", "summary"))
                        (link("/cron", "Cron", "cron"))
                        (link("/workers", "Workers", "workers"))
                    }
                    @if let Some(ns) = namespace { span.ns { "namespace " code { (ns) } } }
                }
                main { (body) }
            }
        }
    }
}

/// An error answered as a page with its status.
#[derive(Debug)]
pub(super) struct Problem {
    status: StatusCode,
    message: String,
}

impl Problem {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Problem { status, message: message.into() }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound(_) | Error::CronNotFound(_) => StatusCode::NOT_FOUND,
            Error::Refused(_) | Error::RunEnded { .. } => StatusCode::CONFLICT,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Encode { .. } | Error::Decode { .. } | Error::Config(_) | Error::UnknownWorkflow(_) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %e, "console request failed");
        }
        Problem::new(status, e.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (self.status.as_u16()) " " (title) }
            p.problem { (self.message) }
            p { a href="/runs" { "Back to the runs" } }
        };
        (self.status, frame(None, title, "", body)).into_response()
    }
}

/// Anything else: 404.
pub(super) async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no such page")
}

/// A status as a coloured badge.
pub(super) fn badge(status: &str) -> Markup {
    let class = match status {
        "completed" => "badge ok",
        "failed" | "timed_out" | "compensation_failed" | "suspended" => "badge bad",
        "cancelled" => "badge off",
        "running" => "badge run",
        _ => "badge wait",
    };
    html! { span class=(class) { (status) } }
}

/// A time (UTC) with its raw value as a tooltip.
pub(super) fn when(ms: i64) -> Markup {
    html! { time title=(format!("{ms} ms since the epoch")) { (describe::time(ms)) } }
}

/// An optional time, `-` when absent.
pub(super) fn when_opt(ms: Option<i64>) -> Markup {
    match ms {
        Some(ms) => when(ms),
        None => html! { "-" },
    }
}

/// The most of one payload a page shows, in bytes of text.
pub(super) const SHOWN: usize = 64 * 1024;

/// A writer that keeps the first `cap` bytes and then refuses: pretty JSON
/// of a nested payload can be a hundred times its stored size, so it is
/// never written out whole.
struct Capped {
    text: Vec<u8>,
    cap: usize,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.cap.saturating_sub(self.text.len());
        if data.len() > room {
            self.text.extend_from_slice(&data[..room]);
            self.full = true;
            return Err(std::io::Error::other("shown enough"));
        }
        self.text.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON text of at most `cap` bytes, and whether it was cut.
fn json_text(value: &serde_json::Value, cap: usize, pretty: bool) -> (String, bool) {
    let mut out = Capped { text: Vec::new(), cap, full: false };
    let written =
        if pretty { serde_json::to_writer_pretty(&mut out, value) } else { serde_json::to_writer(&mut out, value) };
    let cut_short = out.full || written.is_err();
    // A cut may split a character: the lossy conversion marks it.
    (String::from_utf8_lossy(&out.text).into_owned(), cut_short)
}

/// A stored payload, decoded as [`describe::payload`] does, pretty JSON,
/// at most [`SHOWN`] bytes of it.
pub(super) fn payload(bytes: &[u8]) -> Markup {
    let value = describe::payload(bytes);
    let (text, cut_short) = json_text(&value, SHOWN, true);
    html! {
        pre.payload { (text) }
        @if cut_short { p.note { "Cut at " (SHOWN / 1024) " KiB of text; " (bytes.len()) " bytes stored (`hydra runs show` prints it all)." } }
    }
}

/// A payload on one line, cut to `max` characters.
pub(super) fn payload_line(bytes: &[u8], max: usize) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let (text, _) = json_text(&describe::payload(bytes), max.saturating_mul(4).saturating_add(4), false);
    cut(&text, max)
}

/// `text` on one line, cut to `max` characters.
pub(super) fn cut(text: &str, max: usize) -> String {
    let one: String = text.replace(['\n', '\r'], " ");
    if one.chars().count() <= max {
        one
    } else {
        let mut s: String = one.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// `path` with `pairs` (those with a value) as its query, encoded.
pub(super) fn with_query<'a>(path: &str, pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
            any = true;
        }
    }
    if any { format!("{path}?{}", q.finish()) } else { path.to_owned() }
}

/// The link to run `id`'s page (encoded: a stored ID may hold anything).
pub(super) fn run_href(id: &str) -> String {
    format!("/runs/{}", path_segment(id))
}

/// `text` as one percent-encoded path segment: a space is `%20` (a path
/// knows no `+` for it) and a segment of dots cannot climb the path.
pub(super) fn path_segment(text: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
    let encoded = encoded.replace('+', "%20");
    if encoded.chars().all(|c| c == '.') { encoded.replace('.', "%2E") } else { encoded }
}

/// A hidden field with the console's form token.
pub(super) fn form_token(token: &str) -> Markup {
    html! { input type="hidden" name="form_token" value=(token); }
}
