//! What the console's forms do: cancel, retry, resume, fork and signal a run;
//! pause and resume a cron schedule. Each checks the form's token (the
//! guard has checked the origin and the access token), calls the
//! [`crate::Engine`] method the `hydra` tool calls, and answers with a
//! redirect to the page that shows the result (or an error page).

use super::App;
use super::guard::form_token;
use super::layout::{Problem, run_href};
use super::runs::parse_id;
use axum::extract::{Form, Path, State};
use axum::response::Redirect;
use hydra_runtime::Codec;
use hydra_runtime::SignalOptions;
use hydra_runtime::{CancelOutcome, SignalSent};
use std::sync::Arc;

/// A form with nothing but the token.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Plain {
    #[serde(default)]
    form_token: String,
}

fn done(id: &str, what: &str) -> Redirect {
    Redirect::to(&format!("{}?done={what}", run_href(id)))
}

/// `POST /runs/{id}/cancel`.
pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(f): Form<Plain>,
) -> Result<Redirect, Problem> {
    form_token(&app, &f.form_token)?;
    let id = parse_id(&id)?;
    match app.engine.cancel(&id).await? {
        CancelOutcome::Cancelled => Ok(done(id.as_str(), "cancelled")),
        CancelOutcome::AlreadyEnded(s) => {
            Err(Problem::from(hydra_runtime::Error::Refused(format!("run {id} has already ended ({s})"))))
        }
        _ => Ok(done(id.as_str(), "cancel-requested")),
    }
}

/// `POST /runs/{id}/retry`.
pub(super) async fn retry(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(f): Form<Plain>,
) -> Result<Redirect, Problem> {
    form_token(&app, &f.form_token)?;
    let id = parse_id(&id)?;
    app.engine.retry(&id).await?;
    Ok(done(id.as_str(), "retried"))
}

/// `POST /runs/{id}/resume`: a suspended run, due again.
pub(super) async fn resume(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(f): Form<Plain>,
) -> Result<Redirect, Problem> {
    form_token(&app, &f.form_token)?;
    let id = parse_id(&id)?;
    app.engine.resume(&id).await?;
    Ok(done(id.as_str(), "resumed"))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct ForkForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    position: String,
    #[serde(default)]
    input: String,
}

/// `POST /runs/{id}/fork`: answers with the new run's page.
pub(super) async fn fork(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(f): Form<ForkForm>,
) -> Result<Redirect, Problem> {
    form_token(&app, &f.form_token)?;
    let id = parse_id(&id)?;
    let position: u32 = f
        .position
        .trim()
        .parse()
        .map_err(|_| Problem::bad_request("the position to fork from must be a whole number (0 or more)"))?;
    let input = match f.input.trim() {
        "" => None,
        text => Some(json_payload(text, "the fork's input")?),
    };
    let fork = app.engine.fork(&id, position, input).await?;
    Ok(done(fork.id.as_str(), "forked"))
}

/// `text` (JSON) as a JSON payload.
fn json_payload(text: &str, what: &str) -> Result<Vec<u8>, Problem> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Problem::bad_request(format!("{what} is not JSON: {e}")))?;
    Codec::Json.encode(&value).map_err(|e| Problem::bad_request(format!("{what}: {e}")))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct SignalForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    key: String,
}

/// `POST /runs/{id}/signal`.
pub(super) async fn signal(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(f): Form<SignalForm>,
) -> Result<Redirect, Problem> {
    form_token(&app, &f.form_token)?;
    let id = parse_id(&id)?;
    let name = f.name.trim();
    if name.is_empty() {
        return Err(Problem::bad_request("a signal needs a name"));
    }
    let text = if f.payload.trim().is_empty() { "null" } else { f.payload.trim() };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Problem::bad_request(format!("the signal's payload is not JSON: {e}")))?;
    let mut options = SignalOptions::new();
    if !f.key.trim().is_empty() {
        options = options.idempotency_key(f.key.trim());
    }
    let sent = app.engine.signal_with(&id, name, &value, options).await?;
    Ok(done(id.as_str(), if matches!(sent, SignalSent::Duplicate) { "signal-duplicate" } else { "signalled" }))
}

/// A cron form: the schedule's name travels in the body, not in the path
/// (a name may hold anything, `/` and `..` among it).
#[derive(Debug, serde::Deserialize)]
pub(super) struct CronForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    name: String,
}

/// `POST /cron/pause`.
pub(super) async fn pause_cron(State(app): State<Arc<App>>, Form(f): Form<CronForm>) -> Result<Redirect, Problem> {
    form_token(&app, &f.form_token)?;
    app.engine.pause_cron(&f.name).await?;
    Ok(Redirect::to("/cron"))
}

/// `POST /cron/resume`.
pub(super) async fn resume_cron(State(app): State<Arc<App>>, Form(f): Form<CronForm>) -> Result<Redirect, Problem> {
    form_token(&app, &f.form_token)?;
    app.engine.resume_cron(&f.name).await?;
    Ok(Redirect::to("/cron"))
}
