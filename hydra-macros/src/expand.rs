//! Code generation. Generated code names only `#krate::__private::…`
//! (default `::hydra_runtime::__private`) and `::core::…`; generated
//! identifiers start with `__hydra_`.

use crate::ast::{Retry, StepArgs, WorkflowArgs, parse_step_args, parse_workflow_args};
use crate::valid::{check_step, check_workflow};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprCall, Ident, ItemFn, Path};

/// The user's item unchanged, followed by the errors: one clear message and
/// no cascade, and the IDE keeps seeing the function.
fn with_errors(item: TokenStream, error: &syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    quote! { #item #errors }
}

/// Both results, or every error of the two combined.
fn both<A, B>(a: syn::Result<A>, b: syn::Result<B>) -> syn::Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(mut e), Err(e2)) => {
            e.combine(e2);
            Err(e)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

fn krate(p: &Option<Path>) -> TokenStream {
    p.as_ref().map_or_else(|| quote!(::hydra_runtime), ToTokens::to_token_stream)
}

fn retry_tokens(krate: &TokenStream, base: TokenStream, retry: &Option<Retry>) -> TokenStream {
    let Some(r) = retry else { return base };
    let mut t = base;
    if let Some(n) = r.max_attempts {
        t = quote!(#t.max_attempts(#n));
    }
    if let Some(ms) = r.initial_ms {
        t = quote!(#t.initial(::core::time::Duration::from_millis(#ms)));
    }
    if let Some(ms) = r.max_ms {
        t = quote!(#t.max(::core::time::Duration::from_millis(#ms)));
    }
    if let Some(m) = r.multiplier {
        t = quote!(#t.multiplier(#m));
    }
    if let Some(j) = r.jitter {
        t = quote!(#t.jitter(#j));
    }
    let _ = krate;
    t
}

pub(crate) fn step(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => return with_errors(item, &e),
    };
    let args = parse_step_args(attr);
    let checked = check_step(&f);
    let (args, checked) = match both(args, checked) {
        Ok(pair) => pair,
        Err(e) => return with_errors(item, &e),
    };
    expand_step(&f, &args, &checked)
}

fn expand_step(f: &ItemFn, args: &StepArgs, checked: &crate::valid::StepFn) -> TokenStream {
    let krate = krate(&args.krate);
    let p = quote!(#krate::__private);
    let name = &f.sig.ident;
    let vis = &f.vis;
    let attrs = &f.attrs;
    let output = &checked.output;
    let id = args.id.as_ref().map_or_else(|| name.to_string(), syn::LitStr::value);
    let mut inner_sig = f.sig.clone();
    inner_sig.ident = Ident::new("__hydra_body", name.span());
    let block = &f.block;
    let idents: Vec<&Ident> = checked.params.iter().map(|p| &p.ident).collect();
    let types: Vec<&syn::Type> = checked.params.iter().map(|p| &p.ty).collect();
    // The body's arguments in the user's order: the step context, the
    // transaction and the user's own parameters.
    let mut call_list: Vec<TokenStream> = Vec::new();
    let mut user = idents.iter();
    for (i, _) in f.sig.inputs.iter().enumerate() {
        if checked.takes_step_context && i == 0 {
            call_list.push(quote!(__hydra_step_ctx));
        } else if let Some((at, by_ref)) = checked.transaction
            && at == i
        {
            call_list.push(if by_ref { quote!(&__hydra_tx) } else { quote!(__hydra_tx) });
        } else if let Some(id) = user.next() {
            call_list.push(quote!(#id));
        }
    }
    let call_args = quote!(#(#call_list),*);
    let ignore_ctx = if checked.takes_step_context { quote!() } else { quote!(let _ = __hydra_step_ctx;) };
    if args.transactional.is_some() != checked.transaction.is_some() {
        let msg = if args.transactional.is_some() {
            "a `#[step(transactional)]` takes the transaction as a parameter: `tx: &StepTransaction`"
        } else {
            "a step that takes a `StepTransaction` must be marked `#[step(transactional)]`"
        };
        let span = args.transactional.unwrap_or_else(|| f.sig.ident.span());
        return with_errors(f.to_token_stream(), &syn::Error::new(span, msg));
    }
    let retry = retry_tokens(&krate, quote!(#p::RetryPolicy::default()), &args.retry);
    let timeout = args.timeout_ms.map(|ms| quote!(.timeout(::core::time::Duration::from_millis(#ms))));
    // Spanned at the user's name: a non-Send body future is reported there.
    let call = if checked.transaction.is_some() {
        quote_spanned! {name.span()=>
            __hydra_ctx.transactional_step(<#name as #p::Step>::options(), move |__hydra_tx, __hydra_step_ctx| {
                #ignore_ctx
                #( let #idents = ::core::clone::Clone::clone(&#idents); )*
                async move { __hydra_body(#call_args).await.map_err(#p::into_step_error) }
            })
        }
    } else {
        quote_spanned! {name.span()=>
            __hydra_ctx.step_with(<#name as #p::Step>::options(), move |__hydra_step_ctx| {
                #ignore_ctx
                #( let #idents = ::core::clone::Clone::clone(&#idents); )*
                async move { __hydra_body(#call_args).await.map_err(#p::into_step_error) }
            })
        }
    };
    let doc = format!("Step marker of [`{name}()`](fn@{name}): its ID (`{id}`), output type and policy.");
    // The outer function is the user's own item, edited: its `fn`, name and
    // visibility keep the user's spans, so lints such as dead_code still
    // report on the user's function.
    let mut outer = f.clone();
    let inputs_span = f.sig.paren_token.span.join();
    let output_span = match &f.sig.output {
        syn::ReturnType::Type(arrow, _) => arrow.spans[0],
        syn::ReturnType::Default => inputs_span,
    };
    outer.sig.inputs =
        syn::parse_quote_spanned!(inputs_span=> __hydra_ctx: &#p::WorkflowContext, #( #idents: #types ),*);
    outer.sig.output = syn::parse_quote_spanned!(output_span=> -> ::core::result::Result<#output, #p::StepError>);
    let mut body: syn::Block = syn::parse_quote!({
        #[allow(clippy::too_many_arguments)]
        #inner_sig #block
        #call.await
    });
    body.brace_token = f.block.brace_token;
    *outer.block = body;
    let _ = attrs;
    quote! {
        #outer

        #[doc = #doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {}

        impl #p::Step for #name {
            const ID: &'static str = #id;
            type Output = #output;
            fn options() -> #p::StepOptions {
                #p::StepOptions::new(<Self as #p::Step>::ID).retry(#retry) #timeout
            }
        }
    }
}

pub(crate) fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => return with_errors(item, &e),
    };
    let args = parse_workflow_args(attr);
    let checked = check_workflow(&f);
    let (args, checked) = match both(args, checked) {
        Ok(pair) => pair,
        Err(e) => return with_errors(item, &e),
    };
    expand_workflow(&f, &args, &checked)
}

/// Calls in the workflow body whose first argument is the context.
struct StepCalls<'a> {
    ctx: &'a Ident,
    calls: Vec<Path>,
}

impl<'ast> Visit<'ast> for StepCalls<'_> {
    fn visit_expr_call(&mut self, call: &'ast ExprCall) {
        if let (Expr::Path(func), Some(first)) = (&*call.func, call.args.first()) {
            let arg = match first {
                Expr::Reference(r) => &*r.expr,
                other => other,
            };
            if matches!(arg, Expr::Path(p) if p.path.is_ident(self.ctx)) && func.qself.is_none() {
                self.calls.push(func.path.clone());
            }
        }
        syn::visit::visit_expr_call(self, call);
    }
}

fn expand_workflow(f: &ItemFn, args: &WorkflowArgs, w: &crate::valid::WorkflowFn) -> TokenStream {
    let krate = krate(&args.krate);
    let p = quote!(#krate::__private);
    let name = &f.sig.ident;
    let vis = &f.vis;
    let attrs = &f.attrs;
    let block = &f.block;
    let ctx = &w.ctx;
    let input = &w.input.ident;
    let in_ty = &w.input.ty;
    let out_ty = &w.output;
    let err_ty = &w.error;
    let wf_name = args.name.as_ref().map_or_else(|| name.to_string(), syn::LitStr::value);
    let retry =
        retry_tokens(&krate, quote!(<#p::WorkflowOptions as ::core::default::Default>::default().retry), &args.retry);
    let timeout = args.timeout_ms.map(|ms| quote!(.timeout(::core::time::Duration::from_millis(#ms))));

    let mut visitor = StepCalls { ctx, calls: Vec::new() };
    visitor.visit_block(block);
    // One entry per distinct step function (repeated calls are legitimate).
    let mut distinct: Vec<Path> = Vec::new();
    for c in visitor.calls {
        let key = c.to_token_stream().to_string();
        if !distinct.iter().any(|d| d.to_token_stream().to_string() == key) {
            distinct.push(c);
        }
    }
    // Each called function must be a `#[step]`; the error lands on the call.
    let membership = distinct.iter().map(|path| {
        quote_spanned! {path.span()=>
            impl #p::StepOf<#name> for #path {}
        }
    });
    // Two different steps with one ID would share records: a compile error.
    let mut uniqueness = Vec::new();
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[..i] {
            let msg = format!(
                "duplicate step ID in workflow `{wf_name}`: `{}` and `{}` have the same step ID; give one of them a \
                 different `#[step(id = \"…\")]`",
                b.to_token_stream().to_string().replace(' ', ""),
                a.to_token_stream().to_string().replace(' ', ""),
            );
            uniqueness.push(quote_spanned! {a.span()=>
                const _: () = ::core::assert!(
                    !#p::str_eq(<#a as #p::Step>::ID, <#b as #p::Step>::ID),
                    #msg
                );
            });
        }
    }
    let doc_start = format!("Starts a run of `{wf_name}` with `input`; returns a typed handle.");
    let doc_start_with = format!("Starts a run of `{wf_name}` with `input` and start options (idempotency key, …).");
    let doc_client = format!("A typed client for runs of `{wf_name}`: get, list, typed outputs per step.");
    quote! {
        #(#attrs)*
        #[allow(non_camel_case_types)]
        #vis struct #name {}

        /// The workflow, as a value to register with a worker.
        #[allow(non_upper_case_globals)]
        #vis const #name: #name = #name {};

        impl #p::Workflow for #name {
            const NAME: &'static str = #wf_name;
            type Input = #in_ty;
            type Output = #out_ty;

            fn options() -> #p::WorkflowOptions {
                #p::WorkflowOptions::default().retry(#retry) #timeout
            }

            async fn run(
                &self,
                #ctx: #p::WorkflowContext,
                #input: #in_ty,
            ) -> ::core::result::Result<#out_ty, #p::WorkflowError> {
                let __hydra_result: ::core::result::Result<#out_ty, #err_ty> = async move #block.await;
                __hydra_result.map_err(#p::into_workflow_error)
            }
        }

        impl #name {
            #[doc = #doc_start]
            #vis async fn start(
                engine: &#p::Engine,
                input: #in_ty,
            ) -> ::core::result::Result<#p::RunHandle<#out_ty>, #p::Error> {
                engine.start::<#name>(input).await
            }

            #[doc = #doc_start_with]
            #vis async fn start_with(
                engine: &#p::Engine,
                input: #in_ty,
                options: #p::StartOptions,
            ) -> ::core::result::Result<#p::RunHandle<#out_ty>, #p::Error> {
                engine.start_with::<#name>(input, options).await
            }

            #[doc = #doc_client]
            #vis fn client(engine: &#p::Engine) -> #p::WorkflowClient<#name> {
                #p::WorkflowClient::new(engine)
            }
        }

        #(#membership)*
        #(#uniqueness)*
    }
}

#[cfg(test)]
mod snapshots {
    //! Expansion snapshots: the generated code, formatted, against the
    //! committed files in `tests/snapshots/`. `HYDRA_BLESS=1` rewrites them.

    use proc_macro2::TokenStream;
    use quote::quote;
    use std::path::PathBuf;

    fn check(name: &str, expanded: TokenStream) {
        let file: syn::File = syn::parse2(expanded).expect("expansion parses as Rust");
        let text = prettyplease::unparse(&file);
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.expanded.rs"));
        if std::env::var_os("HYDRA_BLESS").is_some() {
            std::fs::write(&path, &text).expect("write snapshot");
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing snapshot {}; run with HYDRA_BLESS=1 to create it", path.display()));
        assert_eq!(text, expected, "expansion of {name} changed; review, then HYDRA_BLESS=1 to accept");
    }

    #[test]
    fn step_expansion() {
        check(
            "step",
            super::step(
                quote!(id = "charge-card", retry(max_attempts = 5, initial = "200ms", max = "30s"), timeout = "10s"),
                quote! {
                    /// Charges the card.
                    pub async fn charge_card(s: StepContext, amount: u64) -> Result<String, StepError> {
                        Ok(format!("{}:{amount}", s.idempotency_key()))
                    }
                },
            ),
        );
    }

    #[test]
    fn workflow_expansion() {
        check(
            "workflow",
            super::workflow(
                quote!(name = "order-processing", timeout = "1h"),
                quote! {
                    pub async fn order_processing(ctx: WorkflowContext, amount: u64) -> Result<String, WorkflowError> {
                        let a = charge_card(&ctx, amount).await?;
                        let b = refund(&ctx, a.clone()).await?;
                        Ok(b)
                    }
                },
            ),
        );
    }

    #[test]
    fn errors_keep_the_function_and_add_one_message() {
        let out = super::step(
            quote!(bogus = 1),
            quote!(
                async fn a(n: u32) -> Result<u32, StepError> {
                    Ok(n)
                }
            ),
        )
        .to_string();
        assert!(out.contains("async fn a"), "{out}");
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(out.contains("valid options are"), "{out}");
    }
}
