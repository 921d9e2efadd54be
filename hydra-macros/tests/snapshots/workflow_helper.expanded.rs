pub async fn refund_and_notify(
    ctx: &WorkflowContext,
    id: String,
) -> Result<(), StepError> {
    refund(ctx, id.clone()).await?;
    notify(ctx, id).await?;
    Ok(())
}
///Helper marker of [`refund_and_notify()`](fn@refund_and_notify): the steps it calls, for the compile-time checks of its callers.
#[allow(non_camel_case_types, dead_code)]
pub struct refund_and_notify {}
impl ::hydra_runtime::__private::Callee for refund_and_notify {
    const CALLS: ::hydra_runtime::__private::CallTree = ::hydra_runtime::__private::CallTree {
        function: ::core::concat!(::core::module_path!(), "::", "refund_and_notify"),
        step_id: ::core::option::Option::None,
        calls: &[
            <refund as ::hydra_runtime::__private::Callee>::CALLS,
            <notify as ::hydra_runtime::__private::Callee>::CALLS,
        ],
        states: &[],
        code: "pub async fn refund_and_notify (ctx : & WorkflowContext , id : String) -> Result < () , StepError > { refund (ctx , id . clone ()) . await ? ; notify (ctx , id) . await ? ; Ok (()) }",
    };
}
const _: () = {
    let clash = ::hydra_runtime::__private::step_id_clash(
        "`#[workflow_helper]` `refund_and_notify`",
        <refund as ::hydra_runtime::__private::Callee>::CALLS,
        <notify as ::hydra_runtime::__private::Callee>::CALLS,
    );
    if clash.found() {
        ::core::panic!("{}", clash.message())
    }
};
