//! Order processing, as in the seed README: charge the card, reserve the
//! inventory (refunding the payment if that fails), create the shipment.
//!
//! The "services" are in-process fakes with the failure modes of real ones:
//! a payment provider that times out a few times, a card that is declined,
//! an item that is out of stock.

use hydra_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

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

/// The order-processing workflow.
#[derive(Clone, Debug, Default)]
pub struct OrderProcessing;

impl Workflow for OrderProcessing {
    const NAME: &'static str = "order-processing";
    type Input = OrderRequest;
    type Output = Receipt;

    async fn run(&self, ctx: WorkflowContext, req: OrderRequest) -> Result<Receipt, WorkflowError> {
        let payment_retry = RetryPolicy::attempts(5).initial(Duration::from_millis(50)).max(Duration::from_secs(1));
        let charge = req.clone();
        let payment: Payment = ctx
            .step_with(StepOptions::new("charge-card").retry(payment_retry), move |s| {
                let req = charge.clone();
                async move {
                    if req.declined {
                        return Err(StepError::permanent("card declined by the issuer"));
                    }
                    if s.attempt() <= req.flaky_payment {
                        return Err(StepError::retryable(format!(
                            "payment provider timed out (attempt {})",
                            s.attempt()
                        )));
                    }
                    Ok(Payment { id: format!("pay_{}", short(&s.idempotency_key())), amount_cents: req.total_cents })
                }
            })
            .await?;

        let items = req.items.clone();
        let reservation = ctx
            .step("reserve-inventory", move |s| {
                let items = items.clone();
                async move {
                    if let Some(i) = items.iter().find(|i| OUT_OF_STOCK.contains(&i.sku.as_str())) {
                        return Err(StepError::permanent(format!("`{}` is out of stock", i.sku)));
                    }
                    Ok(Reservation { id: format!("res_{}", short(&s.idempotency_key())) })
                }
            })
            .await;
        let reservation = match reservation {
            Ok(r) => r,
            Err(e) => {
                let refund = payment.clone();
                ctx.step("refund-payment", move |_s| {
                    let refund = refund.clone();
                    async move { Ok::<_, StepError>(format!("refunded {} ¢ of {}", refund.amount_cents, refund.id)) }
                })
                .await?;
                return Err(WorkflowError::permanent(format!("{e}; payment refunded")));
            }
        };

        let shipment = ctx
            .step("create-shipping", |s| async move {
                Ok::<_, StepError>(Shipment { tracking: format!("TRK-{}", short(&s.idempotency_key())).to_uppercase() })
            })
            .await?;
        Ok(Receipt { payment, reservation, shipment })
    }
}

/// A short, stable tag of a key, for readable fake IDs.
fn short(key: &str) -> String {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:08x}", h as u32)
}
