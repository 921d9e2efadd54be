//! Hydra's web console: the runs of one namespace in a browser, over the
//! engine's read model (`hydra_runtime::runs`) and its repair operations.
//!
//! Pages: the runs list with filters and paging; a run with its step
//! timeline, payloads, errors, children, signals and events, and the
//! actions cancel, retry, resume, fork and signal; cron schedules with pause and
//! resume; live workers and their leases; a summary of runs by status and
//! of ends per minute. Everything is HTML rendered on the server (no
//! script at all; the stylesheet is compiled into the binary), and every
//! stored text is escaped.
//!
//! Start it with [`Console::start`], beside an engine from its build on
//! with [`EngineBuilderExt::console`] (`Engine::builder().console(addr)`),
//! or with `hydra console`.
//!
//! # Who may use it
//! - Bound to a loopback address it needs no token to read; a request
//!   whose `Host` is not a loopback name is refused (a page of another
//!   site that resolves its own name to 127.0.0.1 cannot read or act).
//! - Bound to any other address it needs a token ([`ConsoleConfig::token`]):
//!   every page then asks for it once (`/login` sets an `HttpOnly`,
//!   `SameSite=Strict` cookie), or a client sends `Authorization: Bearer`.
//! - Every state-changing request (a `POST`) must come from the console's
//!   own pages: its `Origin` (or `Sec-Fetch-Site`) must be the console
//!   itself, and its form must carry the per-process token the console
//!   writes into its forms.
//!
//! Where things live: `guard.rs` who may do what (and the response
//! headers); `layout.rs` the page frame, stylesheet and shared pieces;
//! `runs.rs` the runs list and a run's page; `timeline.rs` a run's steps
//! drawn as a chart; `admin.rs` cron, workers and the summary; `actions.rs`
//! the forms' handlers.

mod actions;
mod admin;
mod guard;
mod layout;
mod runs;
mod timeline;

use axum::Router;
use axum::routing::{get, post};
use hydra_runtime::{Attachment, Engine, EngineBuilder, Error};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// The address `hydra console` binds by default.
pub const DEFAULT_CONSOLE_ADDR: &str = "127.0.0.1:8233";

/// The shortest access token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Where and how the console listens.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConsoleConfig {
    /// The address to bind (port 0: any free port, see [`Console::addr`]).
    pub addr: SocketAddr,
    /// The access token; required unless `addr` is a loopback address.
    pub token: Option<String>,
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl ConsoleConfig {
    /// Listen on `addr`, without a token (loopback addresses only).
    pub fn new(addr: SocketAddr) -> Self {
        ConsoleConfig { addr, token: None }
    }

    /// Require `token` (at least [`MIN_TOKEN_LEN`] visible ASCII
    /// characters) for every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    fn check(&self) -> Result<(), Error> {
        match &self.token {
            Some(t) if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic() && b != b';') => {
                Err(Error::Config(format!(
                    "the console's token must be at least {MIN_TOKEN_LEN} visible ASCII characters (no spaces or `;`)"
                )))
            }
            None if !self.addr.ip().is_loopback() => Err(Error::Config(format!(
                "the console binds {} (not a loopback address): give it a token (ConsoleConfig::token, \
                 `hydra console --token`), or bind 127.0.0.1",
                self.addr
            ))),
            _ => Ok(()),
        }
    }
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) engine: Engine,
    /// The access token, if one is required.
    pub(crate) token: Option<String>,
    /// Written into every form and required back: a page of another origin
    /// cannot read it.
    pub(crate) form_token: String,
    /// Signed-in browsers: session ID → when it expires. The cookie holds a
    /// session ID, never the token itself.
    pub(crate) sessions: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
    /// Pages being made at once, at most [`BUSY_PAGES`]: the console shares
    /// the engine's connection pool with its workers.
    pub(crate) busy: tokio::sync::Semaphore,
}

/// How many requests the console works on at once; more wait their turn.
const BUSY_PAGES: usize = 4;

/// A running console.
#[derive(Debug)]
pub struct Console {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Console {
    /// Binds `config.addr` and serves `engine`'s namespace there until
    /// [`Console::stop`] (or the end of the async runtime). Refuses a
    /// non-loopback address without a token, and a short token.
    pub async fn start(engine: Engine, config: ConsoleConfig) -> Result<Console, Error> {
        config.check()?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|e| Error::Config(format!("the console cannot bind {}: {e}", config.addr)))?;
        let addr = listener.local_addr().map_err(|e| Error::Config(format!("the console's address: {e}")))?;
        let app = Arc::new(App {
            engine,
            token: config.token,
            form_token: guard::random_token(),
            sessions: Default::default(),
            busy: tokio::sync::Semaphore::new(BUSY_PAGES),
        });
        let router = router(app);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, "web console listening");
        Ok(Console { addr, stop: Some(stop), task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The console's address as a URL (`http://127.0.0.1:8233/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops listening and waits for requests in progress to end.
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait_inner().await
    }

    /// Serves until the server fails (it does not end on its own).
    pub async fn wait(mut self) -> Result<(), Error> {
        self.wait_inner().await
    }

    async fn wait_inner(&mut self) -> Result<(), Error> {
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Config(format!("the console stopped: {e}"))),
            Err(e) => Err(Error::Config(format!("the console's task ended: {e}"))),
        }
    }

    /// Lets the console serve for as long as the async runtime runs.
    fn detach(mut self) {
        // Dropping the sender would stop the server: keep it with the task.
        let stop = self.stop.take();
        drop(tokio::spawn(async move {
            let _keep = stop;
            let _ = (&mut self.task).await;
        }));
    }
}

/// Serves the console beside an engine from [`EngineBuilder::build`] on,
/// until the async runtime ends: `Engine::builder().console(addr)`.
pub trait EngineBuilderExt {
    /// Serves the web console for the engine's namespace on `addr` (a
    /// loopback address; elsewhere use [`EngineBuilderExt::console_with`]
    /// and a token); port 0 takes a free port ([`EngineExt::console_addr`]).
    #[must_use]
    fn console(self, addr: SocketAddr) -> Self;
    /// Serves the web console as `config` says (address, token).
    #[must_use]
    fn console_with(self, config: ConsoleConfig) -> Self;
}

impl EngineBuilderExt for EngineBuilder {
    fn console(self, addr: SocketAddr) -> Self {
        self.console_with(ConsoleConfig::new(addr))
    }

    fn console_with(self, config: ConsoleConfig) -> Self {
        self.attach(Beside(config))
    }
}

/// Where the console started with an engine listens.
pub trait EngineExt {
    /// The address of the console started with this engine
    /// ([`EngineBuilderExt::console`]), if one was.
    fn console_addr(&self) -> Option<SocketAddr>;
}

impl EngineExt for Engine {
    fn console_addr(&self) -> Option<SocketAddr> {
        self.extension::<ConsoleAddr>().map(|a| a.0)
    }
}

/// The console started with an engine (see [`EngineBuilderExt`]).
struct Beside(ConsoleConfig);

/// The address of the console started with an engine.
struct ConsoleAddr(SocketAddr);

impl Attachment for Beside {
    fn start(self: Box<Self>, engine: Engine) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> {
        Box::pin(async move {
            let console = Console::start(engine.clone(), self.0).await?;
            engine.set_extension(ConsoleAddr(console.addr()));
            console.detach();
            Ok(())
        })
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(runs::home))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/cancel", post(actions::cancel))
        .route("/runs/{id}/retry", post(actions::retry))
        .route("/runs/{id}/resume", post(actions::resume))
        .route("/runs/{id}/fork", post(actions::fork))
        .route("/runs/{id}/signal", post(actions::signal))
        .route("/cron", get(admin::cron))
        .route("/cron/pause", post(actions::pause_cron))
        .route("/cron/resume", post(actions::resume_cron))
        .route("/workers", get(admin::workers))
        .route("/summary", get(admin::summary))
        .route("/login", get(guard::login_page).post(guard::login))
        .route("/logout", post(guard::logout))
        .route("/assets/console.css", get(layout::stylesheet))
        .fallback(layout::not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard::take_turns))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard::guard))
        .layer(axum::middleware::map_response(guard::headers))
        .with_state(app)
}
