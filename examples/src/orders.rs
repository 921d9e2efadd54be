//! Order processing, as in the seed README: charge the card, reserve the
//! inventory (refunding the payment if that fails), then ship: shipping is
//! a workflow of its own, started as the order's child and awaited.
//!
//! The "services" are in-process fakes with the failure modes of real ones:
//! a payment provider that times out a few times, a card that is declined,
//! an item that is out of stock.

use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One item line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Item {
    /// Stock keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// An order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<Item>,
    /// Total in cents.
    pub total_cents: u64,
    /// The payment provider times out on this many first attempts.
    pub flaky_payment: u32,
    /// The card is declined (a permanent failure).
    pub declined: bool,
}

impl OrderRequest {
    /// An order of `items` (sku, quantity) for `total_cents`.
    pub fn new(customer: &str, items: &[(&str, u32)], total_cents: u64) -> Self {
        OrderRequest {
            customer: customer.into(),
            items: items.iter().map(|(s, q)| Item { sku: (*s).into(), quantity: *q }).collect(),
            total_cents,
            flaky_payment: 0,
            declined: false,
        }
    }

    /// The payment provider times out `n` times first.
    pub fn with_flaky_payment(mut self, n: u32) -> Self {
        self.flaky_payment = n;
        self
    }

    /// The card will be declined.
    pub fn with_declined_card(mut self) -> Self {
        self.declined = true;
        self
    }
}

/// A captured payment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payment {
    /// The provider's payment ID (derived from the step's idempotency key,
    /// so a retried charge is recognised by the provider).
    pub id: String,
    /// Amount in cents.
    pub amount_cents: u64,
}

/// A stock reservation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reservation {
    /// Reservation ID.
    pub id: String,
}

/// A shipping label.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shipment {
    /// Tracking number.
    pub tracking: String,
}

/// What a completed order returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    /// The payment.
    pub payment: Payment,
    /// The reservation.
    pub reservation: Reservation,
    /// The shipment.
    pub shipment: Shipment,
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "paid {} ({} ¢), shipped {}", self.payment.id, self.payment.amount_cents, self.shipment.tracking)
    }
}

/// Items the fake warehouse does not have.
const OUT_OF_STOCK: &[&str] = &["unicorn"];

/// Charges the card. The provider is flaky: retried up to 5 times.
#[step(retry(max_attempts = 5, initial = "50ms", max = "1s"))]
pub async fn charge_card(s: StepContext, req: OrderRequest) -> Result<Payment, StepError> {
    if req.declined {
        return Err(StepError::permanent("card declined by the issuer"));
    }
    if s.attempt() <= req.flaky_payment {
        return Err(StepError::retryable(format!("payment provider timed out (attempt {})", s.attempt())));
    }
    Ok(Payment { id: format!("pay_{}", short(&s.idempotency_key())), amount_cents: req.total_cents })
}

/// Creates the example's own `ledger_entries` table (in the engine's
/// database) if it does not exist.
pub async fn create_ledger_table(engine: &Engine) -> Result<(), hydra_runtime::Error> {
    let conn = engine.store().connection();
    let sql = match conn.get_database_backend() {
        DbBackend::Postgres => {
            "CREATE TABLE IF NOT EXISTS ledger_entries (id BIGSERIAL PRIMARY KEY, payment_id TEXT NOT NULL, \
             amount_cents BIGINT NOT NULL)"
        }
        _ => {
            "CREATE TABLE IF NOT EXISTS ledger_entries (id INTEGER PRIMARY KEY AUTOINCREMENT, payment_id TEXT NOT NULL, \
             amount_cents BIGINT NOT NULL)"
        }
    };
    conn.execute_unprepared(sql).await.map_err(hydra_runtime::StoreError::from)?;
    Ok(())
}

/// Books the payment in the ledger. Transactional: the ledger row and the
/// step's checkpoint commit together, so the entry exists exactly once even
/// if the worker dies mid-step.
#[step(id = "post-ledger", transactional)]
pub async fn post_ledger(tx: &StepTransaction, payment: Payment) -> Result<i64, StepError> {
    let backend = tx.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "INSERT INTO ledger_entries (payment_id, amount_cents) VALUES ($1, $2)",
        _ => "INSERT INTO ledger_entries (payment_id, amount_cents) VALUES (?, ?)",
    };
    let amount = i64::try_from(payment.amount_cents).map_err(StepError::permanent)?;
    tx.execute_raw(Statement::from_sql_and_values(backend, sql, [payment.id.clone().into(), amount.into()])).await?;
    Ok(amount)
}

/// Reserves stock; an unknown item is a permanent failure.
#[step(id = "reserve-inventory")]
pub async fn reserve(s: StepContext, items: Vec<Item>) -> Result<Reservation, StepError> {
    if let Some(i) = items.iter().find(|i| OUT_OF_STOCK.contains(&i.sku.as_str())) {
        return Err(StepError::permanent(format!("`{}` is out of stock", i.sku)));
    }
    Ok(Reservation { id: format!("res_{}", short(&s.idempotency_key())) })
}

/// Gives the money back.
#[step(id = "refund-payment")]
pub async fn refund(payment: Payment) -> Result<String, StepError> {
    Ok(format!("refunded {} ¢ of {}", payment.amount_cents, payment.id))
}

/// Creates the shipping label.
#[step(id = "create-shipping")]
pub async fn create_shipping(s: StepContext, reservation: Reservation) -> Result<Shipment, StepError> {
    Ok(Shipment { tracking: format!("TRK-{}-{}", short(&reservation.id), short(&s.idempotency_key())).to_uppercase() })
}

/// The shipping workflow: a child of each order (register it with the
/// order workflow).
#[workflow(name = "shipping")]
pub async fn shipping(ctx: WorkflowContext, reservation: Reservation) -> Result<Shipment, WorkflowError> {
    Ok(create_shipping(&ctx, reservation).await?)
}

/// The order-processing workflow.
#[workflow(name = "order-processing")]
pub async fn order_processing(ctx: WorkflowContext, req: OrderRequest) -> Result<Receipt, WorkflowError> {
    let payment = charge_card(&ctx, req.clone()).await?;
    post_ledger(&ctx, payment.clone()).await?;
    let reservation = match reserve(&ctx, req.items.clone()).await {
        Ok(r) => r,
        Err(e) => {
            refund(&ctx, payment.clone()).await?;
            return Err(WorkflowError::permanent(format!("{e}; payment refunded")));
        }
    };
    // A child run, started once; the order parks until it ends.
    let shipment = ctx.child::<shipping>(reservation.clone()).await?;
    Ok(Receipt { payment, reservation, shipment })
}

/// A short, stable tag of a key, for readable fake IDs.
fn short(key: &str) -> String {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:08x}", h as u32)
}
