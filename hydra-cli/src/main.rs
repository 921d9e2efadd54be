//! `hydra`: find, inspect and repair the runs of a Hydra database; prune
//! old ones; move a database from SQLite to PostgreSQL.
//!
//! ```text
//! hydra --database-url sqlite://hydra.db runs list --status failed
//! hydra --database-url sqlite://hydra.db runs show 01a2…
//! hydra --database-url sqlite://hydra.db runs retry 01a2…
//! ```
//!
//! Every command is an [`hydra_runtime::Engine`] method, so a service can do
//! the same. Retry and fork write only if the run is still as they read it
//! (status and fencing token), so they never race a live worker; prune
//! deletes only ended runs; move holds the source's writers out while it
//! copies. Every command applies the schema's migrations to the database it
//! opens, as any Hydra process does (point a newer `hydra` at a database
//! only when its workers may be upgraded too). It never creates one: a
//! mistyped SQLite path is an error.
//!
//! Where things live: `main.rs` the command line and the entry point;
//! `runs.rs` the `runs` commands; `admin.rs` cron, workers, stats, prune and
//! move; `output.rs` tables, JSON, times and payloads (and every line
//! printed, through `out!`, so a closed pipe ends the tool quietly); `console` serves
//! [`hydra_console`].

#[macro_use]
mod output;
mod admin;
mod runs;

use clap::{Parser, Subcommand};
use hydra_runtime::{Engine, Error};
use std::process::ExitCode;

/// Find, inspect and repair Hydra runs.
#[derive(Debug, Parser)]
#[command(name = "hydra", version, about, long_about = None)]
struct Cli {
    /// The database: `sqlite://path/to/hydra.db` or `postgres://user@host/db`.
    #[arg(long, env = "HYDRA_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// The namespace of the runs.
    #[arg(long, env = "HYDRA_NAMESPACE", default_value = "default", global = true)]
    namespace: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs: list, show, cancel, retry, fork, signal, fail.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Cron schedules: list, pause, resume, trigger.
    #[command(subcommand)]
    Cron(admin::CronCommand),
    /// Live workers: their runs and last heartbeat.
    Workers,
    /// Runs counted by workflow and status, the oldest pending run, and runs
    /// that no live worker can run.
    Stats,
    /// Deletes finished runs older than a period (running, sleeping and
    /// waiting runs are never touched).
    Prune(admin::PruneArgs),
    /// Copies a whole database into an empty one (SQLite to PostgreSQL),
    /// with every worker stopped, and verifies the copy.
    Move(admin::MoveArgs),
    /// Serves the web console (runs, a run's timeline, retry, fork, cancel,
    /// signal, cron, workers, summary) until interrupted.
    Console(ConsoleArgs),
}

#[derive(Debug, clap::Args)]
struct ConsoleArgs {
    /// The address to listen on; a non-loopback address needs --token.
    #[arg(long, default_value = hydra_console::DEFAULT_CONSOLE_ADDR)]
    bind: std::net::SocketAddr,
    /// The token every request must carry (at least 16 characters);
    /// required unless bound to a loopback address.
    #[arg(long, env = "HYDRA_CONSOLE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// What a command fails with.
#[derive(Debug)]
enum CliError {
    /// Hydra refused or failed.
    Hydra(Error),
    /// The command line is wrong.
    Usage(String),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Hydra(e)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Hydra(e) => write!(f, "{e}"),
            CliError::Usage(m) => f.write_str(m),
        }
    }
}

/// What a command has to work with.
struct Ctx {
    json: bool,
    engine: Engine,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            output::warn(&format!("hydra: error: could not start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // As clap's own: 2 for a wrong command line, 1 for a failure.
        Err(e @ CliError::Usage(_)) => {
            output::warn(&format!("hydra: error: {}", output::clean(&e.to_string())));
            ExitCode::from(2)
        }
        Err(e) => {
            output::warn(&format!("hydra: error: {}", output::clean(&e.to_string())));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Move(args) = &cli.command {
        return admin::move_database(args, cli.json).await;
    }
    let url = cli.database_url.ok_or_else(|| {
        CliError::Usage(
            "no database: pass --database-url or set HYDRA_DATABASE_URL (sqlite://… or postgres://…)".into(),
        )
    })?;
    let engine = connect(&url, &cli.namespace).await?;
    let ctx = Ctx { json: cli.json, engine };
    match cli.command {
        Command::Runs(c) => runs::run(&ctx, c).await,
        Command::Cron(c) => admin::cron(&ctx, c).await,
        Command::Workers => admin::workers(&ctx).await,
        Command::Stats => admin::stats(&ctx).await,
        Command::Prune(args) => admin::prune(&ctx, &args).await,
        Command::Console(args) => console(ctx.engine, args).await,
        Command::Move(_) => Ok(()),
    }
}

/// Serves the console until Ctrl-C (or SIGTERM).
async fn console(engine: Engine, args: ConsoleArgs) -> Result<(), CliError> {
    let mut config = hydra_console::ConsoleConfig::new(args.bind);
    if let Some(t) = args.token {
        config = config.token(t);
    }
    let console = hydra_console::Console::start(engine, config).await?;
    // Tests and scripts read this line for the address (port 0 binds any).
    output::note(&format!("hydra console: listening on {}", console.url()));
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    console.stop().await?;
    Ok(())
}

/// An engine on `url`, which must name an existing database: a mistyped
/// SQLite path is an error naming the path, never a new empty database.
async fn connect(url: &str, namespace: &str) -> Result<Engine, CliError> {
    let options = hydra_runtime::StoreOptions::new(url).create_if_missing(false);
    Ok(Engine::builder().store_options(options).namespace(namespace).group_commit(false).build().await?)
}
