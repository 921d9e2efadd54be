//! The CI gate of a deploy: this build's order workflow replays the
//! histories in `histories/orders.jsonl` (exported from runs of the order
//! example), and a changed workflow is reported where it diverges.
//!
//! `HYDRA_BLESS=1 cargo test -p hydra-examples --test replay` runs the
//! orders again on a throwaway SQLite database and rewrites the export.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_examples::orders::{
    OrderRequest, Payments, charge_card, create_example_tables, order_processing, post_ledger, reserve, shipping,
};
use hydra_runtime::ExecutionFilter;
use hydra_runtime::prelude::*;
use hydra_runtime::verify::{History, Verdict, Verifier, export, read_jsonl, write_jsonl};
use std::time::Duration;

const EXPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/histories/orders.jsonl");

/// Runs a few orders (completed, refunded, declined, waiting for review)
/// and exports their histories.
async fn record() -> Vec<History> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("orders.db").display());
    let engine = Engine::builder().database_url(&url).namespace("orders").build().await.unwrap();
    create_example_tables(&engine).await.unwrap();
    let worker = Worker::builder(&engine)
        .register(order_processing)
        .register(shipping)
        .state(Payments::new())
        .state(engine.connection().clone())
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let orders = [
        OrderRequest::new("ann", &[("book", 1)], 1_200).with_flaky_payment(1),
        OrderRequest::new("bo", &[("unicorn", 1)], 9_900),
        OrderRequest::new("cy", &[("pen", 2)], 300).with_declined_card(),
        OrderRequest::new("di", &[("piano", 1)], 250_000).with_review(),
    ];
    let mut handles = Vec::new();
    for o in orders {
        handles.push(order_processing::start(&engine, o).await.unwrap());
    }
    for h in &handles[..3] {
        let _ = h.result_timeout(Duration::from_secs(30)).await;
    }
    while handles[3].status().await.unwrap() != ExecutionStatus::Sleeping {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    export(&engine, ExecutionFilter::new("orders")).await.unwrap()
}

/// The committed histories (re-recorded first when `bless` and
/// `HYDRA_BLESS` is set: one test blesses, so the file is written once).
async fn histories(bless: bool) -> Vec<History> {
    if bless && std::env::var_os("HYDRA_BLESS").is_some() {
        // Blessing makes the gate pass against its own recording: never in CI.
        assert!(std::env::var_os("CI").is_none(), "HYDRA_BLESS is set under CI: refusing to re-record the histories");
        eprintln!("HYDRA_BLESS: re-recording {EXPORT}; this run checks nothing against the committed histories");
        let recorded = record().await;
        write_jsonl(&recorded, std::fs::File::create(EXPORT).unwrap()).unwrap();
    }
    read_jsonl(std::fs::File::open(EXPORT).unwrap()).unwrap()
}

/// The order workflow as a careless change would have it: reserving the
/// stock before charging the card.
struct ReorderedOrder;

impl Workflow for ReorderedOrder {
    const NAME: &'static str = "order-processing";
    type Input = OrderRequest;
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, req: OrderRequest) -> Result<String, WorkflowError> {
        let reservation = reserve(&ctx, req.items.clone()).await?;
        let payment = charge_card(&ctx, req).await?;
        post_ledger(&ctx, payment.clone()).await?;
        Ok(format!("{} {}", reservation.id, payment.id))
    }
}

#[tokio::test]
async fn this_build_replays_the_recorded_order_histories() {
    let histories = histories(true).await;
    assert!(histories.len() >= 5, "orders and their shipping children: {}", histories.len());
    let verifier = Verifier::new().await.unwrap().register(order_processing).register(shipping);
    let reports = verifier.verify_all(&histories).await;
    assert_eq!(reports.len(), histories.len(), "one report per history");
    for report in reports {
        println!("{report}");
        assert!(report.replays(), "{report}");
    }
}

#[tokio::test]
async fn a_reordered_order_workflow_is_reported_where_it_diverges() {
    let histories = histories(false).await;
    let orders: Vec<History> = histories.into_iter().filter(|h| h.workflow == "order-processing").collect();
    let verifier = Verifier::new().await.unwrap().register(ReorderedOrder);
    let reports = verifier.verify_all(&orders).await;
    for report in &reports {
        println!("{report}");
        let Verdict::Diverges { position, recorded, called } = &report.verdict else { panic!("{report}") };
        assert_eq!((*position, recorded.as_str(), called.as_str()), (0, "charge_card", "reserve-inventory"));
    }
    assert_eq!(reports.len(), 4);
}
