//! The README's first command: an embedded SQLite engine, a worker, a batch
//! of orders (some with a flaky payment provider; one out of stock, one
//! cancelled while it waits for review, both undone by their compensations;
//! one declined, read back as a typed error; in a fresh database, one whose
//! bank the payment provider cannot reach, to be repaired with `hydra runs
//! retry` and finished by the next run of the demo), and a table of what
//! happened.
//!
//!     cargo run -p hydra-examples --bin demo
//!
//! The database (`hydra-demo.db` in the working directory) is kept, so a
//! second run shows the first run's history too. `HYDRA_DATABASE_URL`
//! points it elsewhere (for example a PostgreSQL server). Metrics are served
//! on http://127.0.0.1:9464/metrics while it runs (`HYDRA_METRICS_ADDR`);
//! `RUST_LOG=hydra_runtime=debug` shows the engine's tracing.

use hydra_examples::orders::{
    OrderRequest, PaymentError, Payments, Receipt, create_example_tables, order_processing, shipping,
};
use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, Statement};
use hydra_runtime::{ExecutionFilter, RunFailed, RunHandle};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .init();
    let url = std::env::var("HYDRA_DATABASE_URL").unwrap_or_else(|_| "sqlite://hydra-demo.db?mode=rwc".into());
    println!("Hydra demo: database {url}, namespace \"demo\"\n");
    let metrics_addr: std::net::SocketAddr =
        std::env::var("HYDRA_METRICS_ADDR").ok().and_then(|a| a.parse().ok()).unwrap_or(([127, 0, 0, 1], 9464).into());
    let engine = match Engine::builder().database_url(&url).namespace("demo").prometheus(metrics_addr).build().await {
        Ok(engine) => {
            println!("Prometheus metrics: http://{metrics_addr}/metrics (HYDRA_METRICS_ADDR to move it)\n");
            engine
        }
        Err(e @ hydra_runtime::Error::Config(_)) => {
            println!("metrics endpoint not started ({e}); continuing without it\n");
            Engine::builder().database_url(&url).namespace("demo").build().await?
        }
        Err(e) => return Err(e.into()),
    };
    create_example_tables(&engine).await?;
    // The steps' dependencies, given once: the payment provider's client
    // and the database connection reservations are written through.
    // In a fresh database ivan's bank is unreachable: his order fails after
    // its attempts. Retry it (`hydra runs retry`); the next run of the demo
    // finds the provider back and finishes it.
    let first_session =
        engine.list(ExecutionFilter::new("demo").workflow("order-processing").limit(1)).await?.is_empty();
    let payments = Arc::new(if first_session { Payments::new().with_outage_for("ivan") } else { Payments::new() });
    let worker = Worker::builder(&engine)
        .register(order_processing)
        .register(shipping)
        .state_arc(Arc::clone(&payments))
        .state(engine.connection().clone())
        .concurrency(8)
        .poll_interval(Duration::from_millis(200))
        .start()
        .await?;

    let orders = [
        OrderRequest::new("alice", &[("book", 2)], 3_000),
        OrderRequest::new("bob", &[("lamp", 1)], 4_500).with_flaky_payment(2),
        OrderRequest::new("carol", &[("mug", 4)], 1_600),
        OrderRequest::new("dave", &[("unicorn", 1)], 99_900),
        OrderRequest::new("erin", &[("pen", 10)], 900).with_flaky_payment(1),
        OrderRequest::new("frank", &[("chair", 1)], 12_000).with_declined_card(),
        OrderRequest::new("grace", &[("piano", 1)], 250_000).with_review(),
        OrderRequest::new("heidi", &[("sofa", 1)], 89_000).with_review(),
        OrderRequest::new("ivan", &[("kettle", 1)], 2_500),
    ];
    let mut handles: Vec<(String, RunHandle<Receipt>)> = Vec::new();
    for order in orders {
        let who = order.customer.clone();
        handles.push((who, order_processing::start(&engine, order).await?));
    }
    println!("started {} orders; grace's and heidi's wait for a reviewer…\n", handles.len());
    // heidi's reviewer approves (through the typed client: the payload must
    // be a bool); grace's order is cancelled while it waits.
    let review = |who: &str| handles.iter().find(|(w, _)| w == who).map(|(_, h)| h.clone());
    let (Some(grace), Some(heidi)) = (review("grace"), review("heidi")) else { return Ok(()) };
    for h in [&grace, &heidi] {
        while h.status().await? != ExecutionStatus::Sleeping {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    order_processing::client(&engine).signal(heidi.id(), order_processing::SIGNAL_REVIEW, &true).await?;
    grace.cancel().await?;
    for (who, h) in &handles {
        match tokio::time::timeout(Duration::from_secs(60), h.result_typed::<PaymentError>()).await {
            Ok(Ok(receipt)) => println!("  {who:<6} completed: {receipt}"),
            Ok(Err(RunFailed::Workflow(PaymentError::Declined { code }))) => {
                println!("  {who:<6} declined: the issuer answered code {code} (a typed PaymentError)")
            }
            Ok(Err(e)) => println!("  {who:<6} did not complete: {e}"),
            Err(_) => println!("  {who:<6} still running after 60 s"),
        }
    }
    if first_session {
        println!(
            "\n  (ivan's bank was unreachable in this session: `hydra runs retry` his run, then run the demo \
             again to finish it; see \"Operating Hydra\" in the README)"
        );
    }
    // Runs an operator retried or forked since the last session are due
    // now: this worker finishes them too before it stops.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let pending = engine.list(ExecutionFilter::new("demo").status(ExecutionStatus::Pending).limit(1)).await?;
        let running = engine.list(ExecutionFilter::new("demo").status(ExecutionStatus::Running).limit(1)).await?;
        if pending.is_empty() && running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;

    println!(
        "\nThe payment provider's journal (refunds are compensations: dave's order failed, grace's was cancelled):"
    );
    for line in payments.journal() {
        println!("  {line}");
    }
    let conn = engine.connection();
    let holds = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), "SELECT COUNT(*) FROM inventory_holds"))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    println!("Stock held now: {holds} rows (grace's piano was released; held stock of completed orders stays)");

    println!("\nRuns of this session:");
    println!("  {:<36}  {:<10}  {:>8}  {:>9}  error", "execution", "status", "attempts", "took (ms)");
    for (_, h) in &handles {
        let e = h.execution().await?;
        let took = e.completed_at.zip(e.started_at).map(|(c, s)| (c - s).to_string()).unwrap_or_else(|| "-".into());
        println!(
            "  {:<36}  {:<10}  {:>8}  {:>9}  {}",
            e.id.to_string(),
            e.status.to_string(),
            e.attempts,
            took,
            e.error.unwrap_or_default()
        );
        for s in engine.steps(&e.id).await? {
            let took = s.completed_at.map(|c| (c - s.started_at).to_string()).unwrap_or_else(|| "-".into());
            println!(
                "      {:<32}  {:<10}  {:>8}  {:>9}  {}",
                s.label(),
                s.state_label(),
                s.attempts,
                took,
                s.error.unwrap_or_default()
            );
        }
    }
    let all = engine.list(ExecutionFilter::new("demo").limit(10_000)).await?.len();
    let orders = engine.list(ExecutionFilter::new("demo").workflow("order-processing").limit(10_000)).await?.len();
    println!(
        "\nThe database keeps every run: it now holds {orders} orders ({} from earlier sessions) and {} shipping \
         runs, each started once as an order's child.",
        orders.saturating_sub(handles.len()),
        all.saturating_sub(orders)
    );
    Ok(())
}
