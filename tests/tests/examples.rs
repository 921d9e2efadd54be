//! The order example, written with `#[workflow]` and `#[step]`, on SQLite
//! and PostgreSQL: generated start functions, typed results and typed
//! per-step outputs through the generated client.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_examples::orders::{
    OrderRequest, Payment, charge_card, create_ledger_table, order_processing, refund, reserve, shipping,
};
use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, Statement};
use hydra_runtime::{ExecutionFilter, StepStatus};
use hydra_tests::both_backends;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

both_backends! {
    async fn order_example_completes_fails_and_refunds(db: TestDb) {
        let engine = Engine::builder().store(db.store().await).namespace("orders").build().await.unwrap();
        create_ledger_table(&engine).await.unwrap();
        let worker = Worker::builder(&engine)
            .register(order_processing)
            .register(shipping)
            .poll_interval(Duration::from_millis(50))
            .start()
            .await
            .unwrap();
        let ok = order_processing::start(&engine, OrderRequest::new("ann", &[("book", 1)], 1_200).with_flaky_payment(2))
            .await
            .unwrap();
        let out_of_stock = order_processing::start(&engine, OrderRequest::new("bo", &[("unicorn", 1)], 9_900)).await.unwrap();
        let same = order_processing::start_with(
            &engine,
            OrderRequest::new("ann", &[("book", 1)], 1_200),
            StartOptions::new().idempotency_key("ann-1"),
        )
        .await
        .unwrap();
        let again = order_processing::start_with(
            &engine,
            OrderRequest::new("ann", &[("book", 1)], 1_200),
            StartOptions::new().idempotency_key("ann-1"),
        )
        .await
        .unwrap();
        assert_eq!(same.id(), again.id(), "one run per idempotency key");

        let receipt = tokio::time::timeout(WAIT, ok.result()).await.unwrap().unwrap();
        assert_eq!(receipt.payment.amount_cents, 1_200);
        let err = tokio::time::timeout(WAIT, out_of_stock.result()).await.unwrap().unwrap_err();
        assert!(err.to_string().contains("out of stock; payment refunded"), "{err}");
        tokio::time::timeout(WAIT, same.result()).await.unwrap().unwrap();

        let client = order_processing::client(&engine);
        let run = client.get(ok.id()).await.unwrap().expect("the client finds the run");
        assert_eq!(run.status(), ExecutionStatus::Completed);
        let paid: Payment = run.step::<charge_card>().unwrap().expect("typed output of charge_card");
        assert_eq!(paid.id, receipt.payment.id);
        assert_eq!(run.steps()[0].attempts, 3, "two timeouts, then success");
        assert!(run.step::<refund>().unwrap().is_none(), "no refund on the happy path");
        assert_eq!(run.output().unwrap().unwrap().shipment.tracking, receipt.shipment.tracking);

        let failed = client.get(out_of_stock.id()).await.unwrap().unwrap();
        assert!(failed.step::<reserve>().unwrap().is_none(), "a failed step has no output");
        let reserve_row = failed.steps().iter().find(|s| s.step_name == "reserve-inventory").unwrap();
        assert_eq!(reserve_row.status, StepStatus::Failed);
        let refunded: String = failed.step::<refund>().unwrap().expect("the refund ran");
        assert!(refunded.contains("refunded 9900"), "{refunded}");

        assert_eq!(client.list(100).await.unwrap().len(), 3);
        let conn = engine.store().connection();
        let rows = conn
            .query_one_raw(Statement::from_string(conn.get_database_backend(), "SELECT COUNT(*) FROM ledger_entries"))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        assert_eq!(rows, 3, "one ledger entry per charged order, written by the transactional step");
        assert_eq!(engine.list(ExecutionFilter::new("x").status(ExecutionStatus::Failed)).await.unwrap().len(), 1);
        worker.shutdown(Duration::from_secs(5)).await;
    }
}
