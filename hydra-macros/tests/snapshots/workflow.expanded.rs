#[allow(non_camel_case_types)]
pub struct order_processing {}
/// The workflow, as a value to register with a worker.
#[allow(non_upper_case_globals)]
pub const order_processing: order_processing = order_processing {};
impl ::hydra_runtime::__private::Workflow for order_processing {
    const NAME: &'static str = "order-processing";
    type Input = u64;
    type Output = String;
    fn options() -> ::hydra_runtime::__private::WorkflowOptions {
        ::hydra_runtime::__private::WorkflowOptions::default()
            .retry(
                <::hydra_runtime::__private::WorkflowOptions as ::core::default::Default>::default()
                    .retry,
            )
            .timeout(::core::time::Duration::from_millis(3600000u64))
    }
    fn code_fingerprint() -> i64 {
        const FINGERPRINT: i64 = ::hydra_runtime::__private::fingerprint(
            &[
                "order-processing".as_bytes(),
                "pub async fn order_processing (ctx : WorkflowContext , amount : u64) -> Result < String , WorkflowError > { let a = charge_card (& ctx , amount) . await ? ; let b = refund (& ctx , a . clone ()) . await ? ; Ok (b) }"
                    .as_bytes(),
                &<order_processing as ::hydra_runtime::__private::Workflow>::VERSION
                    .to_le_bytes(),
            ],
        );
        ::hydra_runtime::__private::fingerprint_calls(
            FINGERPRINT,
            &[
                <charge_card as ::hydra_runtime::__private::Callee>::CALLS,
                <refund as ::hydra_runtime::__private::Callee>::CALLS,
            ],
        )
    }
    fn required_state() -> ::hydra_runtime::__private::StateNeeds {
        ::hydra_runtime::__private::needs_of(
            &[
                <charge_card as ::hydra_runtime::__private::Callee>::CALLS,
                <refund as ::hydra_runtime::__private::Callee>::CALLS,
            ],
        )
    }
    async fn run(
        &self,
        ctx: ::hydra_runtime::__private::WorkflowContext,
        amount: u64,
    ) -> ::core::result::Result<String, ::hydra_runtime::__private::WorkflowError> {
        let _ = charge_card;
        let _ = refund;
        let __hydra_result: ::core::result::Result<String, WorkflowError> = async move {
            let a = charge_card(&ctx, amount).await?;
            let b = refund(&ctx, a.clone()).await?;
            Ok(b)
        }
            .await;
        __hydra_result.map_err(::hydra_runtime::__private::into_workflow_error)
    }
}
impl order_processing {
    ///Starts a run of `order-processing` with `input`; returns a typed handle.
    pub async fn start(
        engine: &::hydra_runtime::__private::Engine,
        input: u64,
    ) -> ::core::result::Result<
        ::hydra_runtime::__private::RunHandle<String>,
        ::hydra_runtime::__private::Error,
    > {
        engine.start::<order_processing>(input).await
    }
    ///Starts a run of `order-processing` with `input` and start options (idempotency key, …).
    pub async fn start_with(
        engine: &::hydra_runtime::__private::Engine,
        input: u64,
        options: ::hydra_runtime::__private::StartOptions,
    ) -> ::core::result::Result<
        ::hydra_runtime::__private::RunHandle<String>,
        ::hydra_runtime::__private::Error,
    > {
        engine.start_with::<order_processing>(input, options).await
    }
    ///A typed client for runs of `order-processing`: get, list, typed outputs per step.
    pub fn client(
        engine: &::hydra_runtime::__private::Engine,
    ) -> ::hydra_runtime::__private::WorkflowClient<order_processing> {
        ::hydra_runtime::__private::WorkflowClient::new(engine)
    }
}
impl ::hydra_runtime::__private::CalledBy<order_processing> for charge_card {}
impl ::hydra_runtime::__private::CalledBy<order_processing> for refund {}
const _: () = {
    let clash = ::hydra_runtime::__private::step_id_clash(
        "workflow `order-processing`",
        <charge_card as ::hydra_runtime::__private::Callee>::CALLS,
        <refund as ::hydra_runtime::__private::Callee>::CALLS,
    );
    if clash.found() {
        ::core::panic!("{}", clash.message())
    }
};
