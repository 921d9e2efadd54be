//! Who may do what: the `Host` check on loopback, the access token (cookie
//! or bearer), the same-origin check and form token of every `POST`, and
//! the headers every response carries.

use super::App;
use super::layout::{self, Problem};
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use std::sync::Arc;

/// The cookie that carries a session ID after `/login`.
const COOKIE: &str = "hydra_console";

/// How long a sign-in lasts.
const SESSION: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The most signed-in sessions kept at once; signing in past it ends the
/// one closest to expiring.
const MAX_SESSIONS: usize = 1024;

/// 256 random bits as hex (from the operating system's generator, through
/// UUID v4s).
pub(super) fn random_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

/// Equal, in time that does not depend on where they differ.
pub(super) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `host` (a `Host` header: name and optional port) names this
/// machine's loopback interface.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// Whether the request carries the access token, or the cookie of a live
/// session (always, when no token is set).
fn authorised(app: &App, headers: &HeaderMap) -> bool {
    match &app.token {
        None => true,
        Some(t) => {
            bearer_token(headers).is_some_and(|b| same(b, t)) || cookie_token(headers).is_some_and(|c| live(app, c))
        }
    }
}

/// Whether `id` names a session that has not expired.
fn live(app: &App, id: &str) -> bool {
    let sessions = app.sessions.lock().unwrap_or_else(|p| p.into_inner());
    sessions.get(id).is_some_and(|until| *until > tokio::time::Instant::now())
}

/// A new session, expiring after [`SESSION`].
fn open_session(app: &App) -> String {
    let id = random_token();
    let now = tokio::time::Instant::now();
    let mut sessions = app.sessions.lock().unwrap_or_else(|p| p.into_inner());
    sessions.retain(|_, until| *until > now);
    if sessions.len() >= MAX_SESSIONS
        && let Some(oldest) = sessions.iter().min_by_key(|(_, until)| **until).map(|(k, _)| k.clone())
    {
        sessions.remove(&oldest);
    }
    sessions.insert(id.clone(), now + SESSION);
    id
}

/// Whether a state-changing request comes from the console's own pages.
/// A browser's `Sec-Fetch-Site`, where sent, must say `same-origin`; an
/// `Origin`, where sent (and not the opaque `null`), must be this console;
/// and one of the two must vouch for the request: a request with neither
/// (not from a browser) is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST);
    let origin = text(header::ORIGIN).filter(|o| *o != "null");
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin_ok = match (origin, host) {
        // `https://` too: behind a TLS proxy that keeps `Host`.
        (Some(o), Some(h)) => Some(
            o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")).is_some_and(|o| o.eq_ignore_ascii_case(h)),
        ),
        (Some(_), None) => Some(false),
        (None, _) => None,
    };
    let site_ok = fetch_site.map(|s| s == "same-origin");
    match (origin_ok, site_ok) {
        (Some(false), _) | (_, Some(false)) => false,
        (Some(true), _) | (_, Some(true)) => true,
        (None, None) => false,
    }
}

/// The headers a reverse proxy adds to what it forwards.
const FORWARDED: &[&str] =
    &["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via"];

/// Every request passes here first.
pub(super) async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if app.token.is_none() {
        // A console without a token trusts whoever reaches its loopback
        // port. A reverse proxy in front of it would make that everyone the
        // proxy serves (a proxy usually sends the upstream's own loopback
        // Host): a request it forwarded is refused.
        if let Some(h) = FORWARDED.iter().find(|h| headers.contains_key(**h)) {
            return Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this console has no token and the request came through a proxy (header `{h}`): start it \
                     with a token to serve it through a proxy"
                ),
            )
            .into_response();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !loopback_host(host) {
            return Problem::new(
                StatusCode::FORBIDDEN,
                "this console answers only to loopback names (localhost, 127.0.0.1, [::1]); bind it elsewhere \
                 with a token to reach it by another name",
            )
            .into_response();
        }
    }
    let path = req.uri().path();
    let open = path == "/login" || path == "/logout" || path.starts_with("/assets/");
    if !open && !authorised(&app, headers) {
        return if req.method() == Method::GET {
            Redirect::to("/login").into_response()
        } else {
            Problem::new(StatusCode::UNAUTHORIZED, "this console needs its token: sign in at /login").into_response()
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(headers) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "refused: a state-changing request must come from the console's own pages (same origin)",
        )
        .into_response();
    }
    next.run(req).await
}

/// Checks a form's token against the console's.
pub(super) fn form_token(app: &App, given: &str) -> Result<(), Problem> {
    if same(given, &app.form_token) {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, "refused: the form's token is missing or stale; reload the page"))
    }
}

/// Headers on every response: no framing, no sniffing, no scripts, no
/// caching, no referrer to other sites.
pub(super) async fn headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends
    // `Origin: null` with the console's own forms.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
}

/// The sign-in page.
pub(super) async fn login_page(State(app): State<Arc<App>>) -> Markup {
    login_form(&app, None)
}

fn login_form(app: &App, message: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(m) = message { p.problem { (m) } }
        @if app.token.is_none() {
            p { "This console needs no token." a href="/runs" { "Go to the runs." } }
        } @else {
            form.card method="post" action="/login" {
                label { "Token " input type="password" name="token" autocomplete="current-password" autofocus; }
                button type="submit" { "Sign in" }
            }
            form.card method="post" action="/logout" {
                p { "Signed in on this browser? A sign-in lasts twelve hours." }
                button type="submit" { "Sign out" }
            }
        }
    };
    layout::page(&app.engine, "Sign in", "", body)
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Checks the token and sets the cookie.
pub(super) async fn login(State(app): State<Arc<App>>, Form(form): Form<LoginForm>) -> Response {
    match &app.token {
        Some(t) if same(&form.token, t) => {
            let id = open_session(&app);
            let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION.as_secs());
            let mut res = Redirect::to("/runs").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Some(_) => {
            (StatusCode::UNAUTHORIZED, login_form(&app, Some("That token is not this console's."))).into_response()
        }
        None => Redirect::to("/runs").into_response(),
    }
}

/// `POST /logout`: ends this browser's session.
pub(super) async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_token(&headers) {
        app.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("hydra_console=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    res
}

/// Holds each request until one of the console's few turns is free.
pub(super) async fn take_turns(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    match app.busy.acquire().await {
        Ok(_turn) => next.run(req).await,
        Err(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the console is stopping").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for ok in ["localhost", "localhost:8233", "127.0.0.1:80", "127.9.9.9", "[::1]:8233", "[::1]", "LOCALHOST:1"] {
            assert!(loopback_host(ok), "{ok}");
        }
        for no in ["evil.example:8233", "10.0.0.1:80", "", "localhost.evil.example", "[::2]:1", "127.0.0.1.nip.io"] {
            assert!(!loopback_host(no), "{no}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert_eq!(random_token().len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
