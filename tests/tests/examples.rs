//! The order example, written with `#[workflow]` and `#[step]`, on SQLite
//! and PostgreSQL: generated start functions, typed results and typed
//! per-step outputs through the generated client, steps with injected
//! state, compensations on failure and on cancel, a typed decline.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_examples::orders::{
    OrderRequest, Payment, PaymentError, Payments, charge_card, create_example_tables, order_processing, refund,
    release, reserve, shipping,
};
use hydra_runtime::RunFailed;
use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, Statement};
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{ExecutionFilter, StepStatus};
use hydra_tests::both_backends;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

both_backends! {
    async fn order_example_completes_fails_and_refunds(db: TestDb) {
        let engine = Engine::builder().store(db.store().await).namespace("orders").build().await.unwrap();
        create_example_tables(&engine).await.unwrap();
        let payments = Arc::new(Payments::new());
        let worker = Worker::builder(&engine)
            .register(order_processing)
            .register(shipping)
            .state_arc(Arc::clone(&payments))
            .state(engine.connection().clone())
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
        assert!(err.to_string().contains("out of stock (compensated: refund-payment)"), "{err}");
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
        let conn = engine.connection();
        let rows = conn
            .query_one_raw(Statement::from_string(conn.get_database_backend(), "SELECT COUNT(*) FROM ledger_entries"))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        assert_eq!(rows, 3, "one ledger entry per charged order, written by the transactional step");
        let count = |sql: &'static str| {
            let conn = conn.clone();
            async move {
                conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
                    .await
                    .unwrap()
                    .unwrap()
                    .try_get_by_index::<i64>(0)
                    .unwrap()
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM inventory_holds").await, 2, "held stock of the two completed orders");

        // Declined: a typed error. Cancelled while waiting for review: the
        // stock is released and the payment refunded.
        let declined = order_processing::start(&engine, OrderRequest::new("cy", &[("pen", 1)], 100).with_declined_card())
            .await
            .unwrap();
        match declined.result_typed_timeout::<PaymentError>(WAIT).await {
            Err(RunFailed::Workflow(PaymentError::Declined { code })) => assert_eq!(code, "05"),
            other => panic!("{other:?}"),
        }
        let review = order_processing::start(&engine, OrderRequest::new("di", &[("piano", 1)], 250_000).with_review())
            .await
            .unwrap();
        tokio::time::timeout(WAIT, async {
            while review.status().await.unwrap() != ExecutionStatus::Sleeping {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM inventory_holds").await, 3, "the piano is held while it waits");
        review.cancel().await.unwrap();
        let err = review.result_timeout(WAIT).await.unwrap_err();
        assert!(err.to_string().contains("cancelled (compensated: release-inventory, refund-payment)"), "{err}");
        assert_eq!(count("SELECT COUNT(*) FROM inventory_holds").await, 2, "released");
        let cancelled = client.get(review.id()).await.unwrap().unwrap();
        assert_eq!(cancelled.step::<release>().unwrap(), Some(1), "one hold row released");
        let journal = payments.journal();
        assert_eq!(journal.iter().filter(|l| l.starts_with("refunded")).count(), 2, "{journal:?}");
        assert_eq!(engine.list(ExecutionFilter::new("x").status(ExecutionStatus::Failed)).await.unwrap().len(), 2, "out of stock, declined");
        worker.shutdown(Duration::from_secs(5)).await;
    }
}
