//! Order processing, as in the seed README: charge the card, reserve the
//! inventory, have a person review large orders, then ship: shipping is a
//! workflow of its own, started as the order's child and awaited.
//!
//! Steps get their dependencies from the worker ([`State`]): the payment
//! provider's client ([`Payments`]) and the database connection the
//! reservations are written through. Each step that has an effect
//! registers its undo: if the order fails for good, times out or is
//! cancelled, the payment is refunded and the stock released (newest
//! first), also across crashes. A declined card is a typed error,
//! [`PaymentError::Declined`], that callers read back as data.
//!
//! The payment provider is an in-process fake with the failure modes of a
//! real one: it times out a few times, declines a card; the warehouse has
//! no unicorns.

use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Mutex;

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
    /// A person reviews the order (signal `review`: `true` to approve).
    pub review: bool,
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
            review: false,
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

    /// A person must approve it (signal `review`).
    pub fn with_review(mut self) -> Self {
        self.review = true;
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

/// Why the payment provider refuses a charge: data the caller can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentError {
    /// The issuer declined the card, with its response code.
    Declined {
        /// The issuer's code (`05`: do not honour).
        code: String,
    },
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentError::Declined { code } => write!(f, "card declined by the issuer (code {code})"),
        }
    }
}

/// The payment provider's client: charges and refunds, and a journal of
/// both (what the provider would show). Given to the worker once, as state.
#[derive(Debug, Default)]
pub struct Payments {
    journal: Mutex<Vec<String>>,
    /// Customers whose bank the provider cannot reach (an outage).
    outage: Vec<String>,
}

impl Payments {
    /// A client with an empty journal.
    pub fn new() -> Self {
        Payments::default()
    }

    /// A client whose provider cannot reach `customer`'s bank: every charge
    /// of theirs fails (retryable, until the step runs out of attempts).
    pub fn with_outage_for(mut self, customer: &str) -> Self {
        self.outage.push(customer.to_owned());
        self
    }

    fn record(&self, line: String) {
        self.journal.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    /// What the provider did, in order.
    pub fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Charges the card. The provider is flaky: retried up to 5 times; a
/// declined card is a typed, permanent error.
#[step(retry(max_attempts = 5, initial = "50ms", max = "1s"))]
pub async fn charge_card(s: StepContext, payments: State<Payments>, req: OrderRequest) -> Result<Payment, StepError> {
    if req.declined {
        return Err(StepError::typed(PaymentError::Declined { code: "05".into() }));
    }
    if payments.outage.contains(&req.customer) {
        return Err(StepError::retryable("payment provider unavailable (HTTP 503 from the issuer's gateway)"));
    }
    if s.attempt() <= req.flaky_payment {
        return Err(StepError::retryable(format!("payment provider timed out (attempt {})", s.attempt())));
    }
    let payment = Payment { id: format!("pay_{}", short(&s.idempotency_key())), amount_cents: req.total_cents };
    payments.record(format!("charged  {} {:>6} ¢ ({})", payment.id, payment.amount_cents, req.customer));
    Ok(payment)
}

/// Gives the money back: the undo of [`charge_card()`].
#[step(id = "refund-payment")]
pub async fn refund(payments: State<Payments>, payment: Payment) -> Result<String, StepError> {
    payments.record(format!("refunded {} {:>6} ¢", payment.id, payment.amount_cents));
    Ok(format!("refunded {} ¢ of {}", payment.amount_cents, payment.id))
}

/// Creates the example's own tables (in the engine's database) if they do
/// not exist: `ledger_entries` and `inventory_holds`.
pub async fn create_example_tables(engine: &Engine) -> Result<(), hydra_runtime::Error> {
    let conn = engine.connection();
    let (ledger, holds) = match conn.get_database_backend() {
        DbBackend::Postgres => (
            "CREATE TABLE IF NOT EXISTS ledger_entries (id BIGSERIAL PRIMARY KEY, payment_id TEXT NOT NULL, \
             amount_cents BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS inventory_holds (reservation_id TEXT NOT NULL, sku TEXT NOT NULL, \
             quantity BIGINT NOT NULL, PRIMARY KEY (reservation_id, sku))",
        ),
        _ => (
            "CREATE TABLE IF NOT EXISTS ledger_entries (id INTEGER PRIMARY KEY AUTOINCREMENT, payment_id TEXT NOT NULL, \
             amount_cents BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS inventory_holds (reservation_id TEXT NOT NULL, sku TEXT NOT NULL, \
             quantity BIGINT NOT NULL, PRIMARY KEY (reservation_id, sku))",
        ),
    };
    for sql in [ledger, holds] {
        conn.execute_unprepared(sql).await.map_err(hydra_store::StoreError::from)?;
    }
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

/// Reserves stock: one `inventory_holds` row per item, written through the
/// worker's database connection (its state). An unknown item is a
/// permanent failure. Idempotent: a repeated body finds its rows.
#[step(id = "reserve-inventory")]
pub async fn reserve(
    s: StepContext,
    db: State<DatabaseConnection>,
    items: Vec<Item>,
) -> Result<Reservation, StepError> {
    if let Some(i) = items.iter().find(|i| OUT_OF_STOCK.contains(&i.sku.as_str())) {
        return Err(StepError::permanent(format!("`{}` is out of stock", i.sku)));
    }
    let reservation = Reservation { id: format!("res_{}", short(&s.idempotency_key())) };
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO inventory_holds (reservation_id, sku, quantity) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        }
        _ => "INSERT INTO inventory_holds (reservation_id, sku, quantity) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    };
    for item in &items {
        let values = [reservation.id.clone().into(), item.sku.clone().into(), i64::from(item.quantity).into()];
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(reservation)
}

/// Releases the stock: the undo of [`reserve()`].
#[step(id = "release-inventory")]
pub async fn release(db: State<DatabaseConnection>, reservation: Reservation) -> Result<u64, StepError> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "DELETE FROM inventory_holds WHERE reservation_id = $1",
        _ => "DELETE FROM inventory_holds WHERE reservation_id = ?",
    };
    let done = db.execute_raw(Statement::from_sql_and_values(backend, sql, [reservation.id.into()])).await?;
    Ok(done.rows_affected())
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

/// The order-processing workflow. Each effect registers its undo as soon
/// as it happened; a failure, timeout or cancel after it runs the undos.
#[workflow(name = "order-processing", timeout = "7d")]
pub async fn order_processing(ctx: WorkflowContext, req: OrderRequest) -> Result<Receipt, WorkflowError> {
    let payment = charge_card(&ctx, req.clone()).await?;
    ctx.compensate(refund::later(payment.clone()));
    post_ledger(&ctx, payment.clone()).await?;
    let reservation = reserve(&ctx, req.items.clone()).await?;
    ctx.compensate(release::later(reservation.clone()));
    if req.review && !ctx.recv::<bool>("review").await? {
        return Err(WorkflowError::permanent("rejected in review"));
    }
    // A child run, started once; the order parks until it ends.
    let shipment = ctx.child::<shipping>(reservation.clone()).await?;
    Ok(Receipt { payment, reservation, shipment })
}

/// A short, stable tag of a key, for readable fake IDs.
fn short(key: &str) -> String {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:08x}", h as u32)
}
