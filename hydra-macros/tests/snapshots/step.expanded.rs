/// Charges the card.
pub async fn charge_card(
    __hydra_ctx: &::hydra_runtime::__private::WorkflowContext,
    amount: u64,
) -> ::core::result::Result<String, ::hydra_runtime::__private::StepError> {
    __hydra_step_charge_card(__hydra_ctx, amount).await
}
#[doc(hidden)]
#[allow(dead_code, non_snake_case, clippy::too_many_arguments)]
async fn __hydra_step_charge_card(
    __hydra_ctx: &::hydra_runtime::__private::WorkflowContext,
    amount: u64,
) -> ::core::result::Result<String, ::hydra_runtime::__private::StepError> {
    #[allow(clippy::too_many_arguments)]
    async fn __hydra_body(s: StepContext, amount: u64) -> Result<String, StepError> {
        Ok(format!("{}:{amount}", s.idempotency_key()))
    }
    ::hydra_runtime::__private::claim_step_id(
            __hydra_ctx,
            <charge_card as ::hydra_runtime::__private::Step>::ID,
            <charge_card as ::hydra_runtime::__private::Callee>::CALLS.function,
        )
        .await;
    __hydra_ctx
        .step_with(
            <charge_card as ::hydra_runtime::__private::Step>::options(),
            move |__hydra_step_ctx| {
                let amount = ::core::clone::Clone::clone(&amount);
                async move {
                    __hydra_body(__hydra_step_ctx, amount)
                        .await
                        .map_err(::hydra_runtime::__private::into_step_error)
                }
            },
        )
        .await
}
///Step marker of [`charge_card()`](fn@charge_card): its ID (`charge-card`), output type and policy.
#[allow(non_camel_case_types, dead_code)]
pub struct charge_card {}
impl charge_card {
    ///A call of step `charge-card` with these arguments, made later: register it with `ctx.compensate(…)` to undo an earlier step if the run fails, times out or is cancelled.
    #[allow(dead_code, clippy::too_many_arguments)]
    pub fn later(amount: u64) -> ::hydra_runtime::__private::Compensation {
        ::hydra_runtime::__private::Compensation::new(
            <charge_card as ::hydra_runtime::__private::Step>::ID,
            move |__hydra_ctx: ::hydra_runtime::__private::WorkflowContext| async move {
                __hydra_step_charge_card(&__hydra_ctx, amount).await.map(|_| ())
            },
        )
    }
}
impl ::hydra_runtime::__private::Step for charge_card {
    const ID: &'static str = "charge-card";
    type Output = String;
    fn options() -> ::hydra_runtime::__private::StepOptions {
        ::hydra_runtime::__private::StepOptions::new(
                <Self as ::hydra_runtime::__private::Step>::ID,
            )
            .retry(
                ::hydra_runtime::__private::RetryPolicy::default()
                    .max_attempts(5u32)
                    .initial(::core::time::Duration::from_millis(200u64))
                    .max(::core::time::Duration::from_millis(30000u64)),
            )
            .timeout(::core::time::Duration::from_millis(10000u64))
    }
}
impl ::hydra_runtime::__private::Callee for charge_card {
    const CALLS: ::hydra_runtime::__private::CallTree = ::hydra_runtime::__private::CallTree {
        function: ::core::concat!(::core::module_path!(), "::", "charge_card"),
        step_id: ::core::option::Option::Some(
            <Self as ::hydra_runtime::__private::Step>::ID,
        ),
        calls: &[],
        states: &[],
        code: "async fn charge_card (s : StepContext , amount : u64) -> Result < String , StepError >",
    };
}
