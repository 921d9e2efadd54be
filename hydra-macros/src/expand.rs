//! Code generation. Generated code names only `#krate::__private::…`
//! (default `::hydra_runtime::__private`) and `::core::…`; generated
//! identifiers start with `__hydra_`.

use crate::ast::{HelperArgs, Retry, StepArgs, WorkflowArgs, parse_helper_args, parse_step_args, parse_workflow_args};
use crate::body::context_uses;
use crate::valid::{check_helper, check_step, check_workflow};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, Path};

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
    let name_str = name.to_string();
    // What its callers' fingerprint sees of it: the types it takes and
    // returns (a changed output type does not read the recorded outputs).
    let signature = f.sig.to_token_stream().to_string();
    let mut inner_sig = f.sig.clone();
    inner_sig.ident = Ident::new("__hydra_body", name.span());
    let block = &f.block;
    let idents: Vec<&Ident> = checked.params.iter().map(|p| &p.ident).collect();
    let types: Vec<&syn::Type> = checked.params.iter().map(|p| &p.ty).collect();
    // The body's arguments in the user's order: the step context, the
    // transaction and the user's own parameters.
    let mut call_list: Vec<TokenStream> = Vec::new();
    let mut user = idents.iter();
    let state_idents: Vec<&Ident> = checked.states.iter().map(|(_, p)| &p.ident).collect();
    let state_types: Vec<&syn::Type> = checked.states.iter().map(|(_, p)| &p.ty).collect();
    for (i, _) in f.sig.inputs.iter().enumerate() {
        if let Some((_, state)) = checked.states.iter().find(|(at, _)| *at == i) {
            let ident = &state.ident;
            call_list.push(quote!(#ident));
        } else if checked.takes_step_context && i == 0 {
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
    // State parameters come from the worker, through the step's context.
    let fetch_states = quote! {
        #( let #state_idents: #state_types = <#state_types as #p::StateParam>::from_step(&__hydra_step_ctx)?; )*
    };
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
                async move {
                    #fetch_states
                    __hydra_body(#call_args).await.map_err(#p::into_step_error)
                }
            })
        }
    } else {
        quote_spanned! {name.span()=>
            __hydra_ctx.step_with(<#name as #p::Step>::options(), move |__hydra_step_ctx| {
                #ignore_ctx
                #( let #idents = ::core::clone::Clone::clone(&#idents); )*
                async move {
                    #fetch_states
                    __hydra_body(#call_args).await.map_err(#p::into_step_error)
                }
            })
        }
    };
    let doc = format!("Step marker of [`{name}()`](fn@{name}): its ID (`{id}`), output type and policy.");
    let doc_later = format!(
        "A call of step `{id}` with these arguments, made later: register it with `ctx.compensate(…)` to undo an \
         earlier step if the run fails, times out or is cancelled."
    );
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
    // The step call lives in a function of its own, which the user's
    // function and `later` both call: a use of `later` does not count as a
    // use of the user's function, so the dead-code lint still sees it.
    let call_fn = quote::format_ident!("__hydra_step_{}", name);
    let mut body: syn::Block = syn::parse_quote!({ #call_fn(__hydra_ctx, #( #idents ),*).await });
    body.brace_token = f.block.brace_token;
    *outer.block = body;
    let _ = attrs;
    quote! {
        #outer

        #[doc(hidden)]
        #[allow(dead_code, non_snake_case, clippy::too_many_arguments)]
        async fn #call_fn(
            __hydra_ctx: &#p::WorkflowContext,
            #( #idents: #types ),*
        ) -> ::core::result::Result<#output, #p::StepError> {
            #[allow(clippy::too_many_arguments)]
            #inner_sig #block
            #p::claim_step_id(__hydra_ctx, <#name as #p::Step>::ID, <#name as #p::Callee>::CALLS.function).await;
            #call.await
        }

        #[doc = #doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {}

        impl #name {
            #[doc = #doc_later]
            #[allow(dead_code, clippy::too_many_arguments)]
            #vis fn later(#( #idents: #types ),*) -> #p::Compensation {
                #p::Compensation::new(<#name as #p::Step>::ID, move |__hydra_ctx: #p::WorkflowContext| async move {
                    #call_fn(&__hydra_ctx, #( #idents ),*).await.map(|_| ())
                })
            }
        }

        impl #p::Step for #name {
            const ID: &'static str = #id;
            type Output = #output;
            fn options() -> #p::StepOptions {
                #p::StepOptions::new(<Self as #p::Step>::ID).retry(#retry) #timeout
            }
        }

        impl #p::Callee for #name {
            const CALLS: #p::CallTree = #p::CallTree {
                function: ::core::concat!(::core::module_path!(), "::", #name_str),
                step_id: ::core::option::Option::Some(<Self as #p::Step>::ID),
                calls: &[],
                states: &[#( <#state_types as #p::StateParam>::NEED ),*],
                code: #signature,
            };
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

/// A patch ID used twice in one workflow: its second marker would stand
/// for the first. The error is on the later use.
fn duplicate_patches(patches: &[syn::LitStr], workflow: &str) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    for (i, p) in patches.iter().enumerate() {
        if patches[..i].iter().any(|q| q.value() == p.value()) {
            let msg = format!(
                "patch `{}` is used twice in workflow `{workflow}`: each patch ID stands for one change, at one \
                 place; give this one its own ID",
                p.value()
            );
            errors.push(syn::Error::new(p.span(), msg));
        }
    }
    errors
}

/// The distinct callees of calls that take the context (repeated calls of
/// one function are legitimate), compared by their tokens.
fn distinct_callees(calls: Vec<Path>) -> Vec<Path> {
    let mut distinct: Vec<Path> = Vec::new();
    for c in calls {
        let key = c.to_token_stream().to_string();
        if !distinct.iter().any(|d| d.to_token_stream().to_string() == key) {
            distinct.push(c);
        }
    }
    distinct
}

/// Compile-time checks that two different steps called in `within` (the
/// callees' own steps, and those of the helpers among them) do not share an
/// ID; each error lands on the later of the two calls. Steps inside one
/// helper are compared where the helper is defined.
fn uniqueness(p: &TokenStream, within: &str, callees: &[Path]) -> Vec<TokenStream> {
    let mut out = Vec::new();
    for (i, b) in callees.iter().enumerate() {
        for a in &callees[..i] {
            out.push(quote_spanned! {b.span()=>
                const _: () = {
                    let clash = #p::step_id_clash(#within, <#a as #p::Callee>::CALLS, <#b as #p::Callee>::CALLS);
                    if clash.found() {
                        ::core::panic!("{}", clash.message())
                    }
                };
            });
        }
    }
    out
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

    let code_text = f.to_token_stream().to_string();
    let version = args.version.unwrap_or(1);
    let replays_from = match &args.replays_from {
        Some(lit) => match lit.base10_parse::<u32>() {
            Ok(n) if n >= 1 && n <= version => Some(n),
            Ok(_) => {
                let msg = format!("`replays_from` must be between 1 and the version ({version})");
                return with_errors(f.to_token_stream(), &syn::Error::new(lit.span(), msg));
            }
            Err(e) => return with_errors(f.to_token_stream(), &e),
        },
        None => None,
    };
    let version_items = {
        let v = args.version.map(|v| quote!(const VERSION: u32 = #v;));
        let r = replays_from.map(|r| quote!(const REPLAYS_FROM: u32 = #r;));
        quote!(#v #r)
    };
    // `typed_error`: the error value itself is stored with the run.
    let into_error = match args.typed_error {
        Some(span) => quote_spanned!(span=> #p::WorkflowError::typed),
        None => quote!(#p::into_workflow_error),
    };
    let uses = context_uses(ctx, block, "#[workflow]", false);
    let (signal_consts, signal_errors) = crate::signals::signal_consts(&p, name, vis, &uses.signals, block);
    let patch_errors = duplicate_patches(&uses.patches, &wf_name);
    let errors = uses.errors.iter().chain(&signal_errors).chain(&patch_errors).map(syn::Error::to_compile_error);
    let distinct = distinct_callees(uses.calls);
    // Each called function must be a `#[step]` or a `#[workflow_helper]`;
    // the error lands on the call.
    let membership = distinct.iter().map(|path| {
        quote_spanned! {path.span()=>
            impl #p::CalledBy<#name> for #path {}
        }
    });
    // Two different steps with one ID would share records: a compile error.
    let uniqueness = uniqueness(&p, &format!("workflow `{wf_name}`"), &distinct);
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

            #version_items

            fn code_fingerprint() -> i64 {
                // The workflow function's tokens, its version and what it
                // calls (paths, step IDs, steps' signatures, helpers' whole
                // text): other code, another fingerprint (a suspended run
                // is taken up again).
                const FINGERPRINT: i64 = #p::fingerprint(&[
                    #wf_name.as_bytes(),
                    #code_text.as_bytes(),
                    &<#name as #p::Workflow>::VERSION.to_le_bytes(),
                ]);
                #p::fingerprint_calls(FINGERPRINT, &[#( <#distinct as #p::Callee>::CALLS ),*])
            }

            fn required_state() -> #p::StateNeeds {
                #p::needs_of(&[#( <#distinct as #p::Callee>::CALLS ),*])
            }

            async fn run(
                &self,
                #ctx: #p::WorkflowContext,
                #input: #in_ty,
            ) -> ::core::result::Result<#out_ty, #p::WorkflowError> {
                // The functions this body calls, named once: a step called
                // only as `step::later(…)` counts as used (dead-code lint).
                #( let _ = #distinct; )*
                let __hydra_result: ::core::result::Result<#out_ty, #err_ty> = async move #block.await;
                __hydra_result.map_err(#into_error)
            }
        }

        impl #name {
            #(#signal_consts)*

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
        #(#errors)*
    }
}

pub(crate) fn workflow_helper(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => return with_errors(item, &e),
    };
    let args = parse_helper_args(attr);
    let checked = check_helper(&f);
    let (args, checked) = match both(args, checked) {
        Ok(pair) => pair,
        Err(e) => return with_errors(item, &e),
    };
    expand_helper(&f, &args, &checked)
}

fn expand_helper(f: &ItemFn, args: &HelperArgs, h: &crate::valid::HelperFn) -> TokenStream {
    let krate = krate(&args.krate);
    let p = quote!(#krate::__private);
    let name = &f.sig.ident;
    let name_str = name.to_string();
    let vis = &f.vis;
    let uses = context_uses(&h.ctx, &f.block, "#[workflow_helper]", true);
    let mut errors: Vec<TokenStream> = uses.errors.iter().map(syn::Error::to_compile_error).collect();
    let distinct = distinct_callees(uses.calls);
    if let Some(own) = distinct.iter().find(|c| c.is_ident(name)) {
        let e = syn::Error::new(
            own.span(),
            "a `#[workflow_helper]` cannot call itself with the context: its steps would be an infinite list",
        );
        errors.push(e.to_compile_error());
        return quote! { #f #(#errors)* };
    }
    // Each element is spanned at its call: a callee that is not a `#[step]`
    // or `#[workflow_helper]` is reported there.
    let calls = distinct.iter().map(|path| quote_spanned! {path.span()=> <#path as #p::Callee>::CALLS });
    let uniqueness = uniqueness(&p, &format!("`#[workflow_helper]` `{name}`"), &distinct);
    // Its whole function: its callers' fingerprint changes with its body.
    let code_text = f.to_token_stream().to_string();
    let doc = format!(
        "Helper marker of [`{name}()`](fn@{name}): the steps it calls, for the compile-time checks of its callers."
    );
    // The function is the user's item, unchanged.
    quote! {
        #f

        #[doc = #doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {}

        impl #p::Callee for #name {
            const CALLS: #p::CallTree = #p::CallTree {
                function: ::core::concat!(::core::module_path!(), "::", #name_str),
                step_id: ::core::option::Option::None,
                calls: &[#(#calls),*],
                states: &[],
                code: #code_text,
            };
        }

        #(#uniqueness)*
        #(#errors)*
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
            // Blessing makes the snapshot pass against itself: never in CI.
            assert!(
                std::env::var_os("CI").is_none(),
                "HYDRA_BLESS is set under CI: refusing to rewrite {name}'s snapshot"
            );
            eprintln!("HYDRA_BLESS: rewriting {}; this run checks nothing", path.display());
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
    fn helper_expansion() {
        check(
            "workflow_helper",
            super::workflow_helper(
                quote!(),
                quote! {
                    pub async fn refund_and_notify(ctx: &WorkflowContext, id: String) -> Result<(), StepError> {
                        refund(ctx, id.clone()).await?;
                        notify(ctx, id).await?;
                        Ok(())
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
