//! Checks of the annotated function's signature, each error on the token at
//! fault.

use crate::ast::Errors;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

/// A parameter passed through to the body.
pub(crate) struct Param {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

/// A checked `#[step]` function.
pub(crate) struct StepFn {
    /// Whether the first parameter is the `StepContext`.
    pub(crate) takes_step_context: bool,
    /// The `StepTransaction` parameter of a transactional step: its position
    /// among the user's parameters and whether it is taken by reference.
    pub(crate) transaction: Option<(usize, bool)>,
    /// `State<T>` parameters (filled from the worker's state, not passed
    /// by callers), with their positions among all parameters.
    pub(crate) states: Vec<(usize, Param)>,
    pub(crate) params: Vec<Param>,
    pub(crate) output: Type,
}

/// A checked `#[workflow]` function.
pub(crate) struct WorkflowFn {
    pub(crate) ctx: Ident,
    pub(crate) input: Param,
    pub(crate) output: Type,
    pub(crate) error: Type,
}

/// A checked `#[workflow_helper]` function.
pub(crate) struct HelperFn {
    pub(crate) ctx: Ident,
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        other => other,
    };
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == name))
}

fn common(f: &ItemFn, what: &str, errors: &mut Errors) {
    if f.sig.asyncness.is_none() {
        errors.push(syn::Error::new(f.sig.fn_token.span, format!("`#[{what}]` functions must be `async fn`")));
    }
    if !f.sig.generics.params.is_empty() || f.sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new(f.sig.generics.span(), format!("`#[{what}]` functions cannot be generic")));
    }
    if let Some(v) = &f.sig.variadic {
        errors.push(syn::Error::new(v.span(), format!("`#[{what}]` functions cannot be variadic")));
    }
    if let Some(c) = &f.sig.constness {
        errors.push(syn::Error::new(c.span, format!("`#[{what}]` functions cannot be `const`")));
    }
}

fn param(arg: &FnArg, what: &str, errors: &mut Errors) -> Option<Param> {
    match arg {
        FnArg::Receiver(r) => {
            errors.push(syn::Error::new(r.span(), format!("`#[{what}]` functions cannot take `self`")));
            None
        }
        FnArg::Typed(t) => match &*t.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                Some(Param { ident: p.ident.clone(), ty: (*t.ty).clone() })
            }
            other => {
                errors.push(syn::Error::new(
                    other.span(),
                    format!("`#[{what}]` parameters must be plain names (`name: Type`)"),
                ));
                None
            }
        },
    }
}

/// `Result<T, E>` → (T, E).
fn result_types(ret: &ReturnType) -> Option<(Type, Type)> {
    let ReturnType::Type(_, ty) = ret else { return None };
    let Type::Path(p) = &**ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else { return None };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let (ok, err) = (types.next()?, types.next()?);
    types.next().is_none().then_some((ok, err))
}

pub(crate) fn check_step(f: &ItemFn) -> syn::Result<StepFn> {
    let mut errors = Errors::default();
    common(f, "step", &mut errors);
    let mut params = Vec::new();
    let mut takes_step_context = false;
    let mut transaction = None;
    let mut states = Vec::new();
    for (i, arg) in f.sig.inputs.iter().enumerate() {
        let Some(p) = param(arg, "step", &mut errors) else { continue };
        if last_segment_is(&p.ty, "State") {
            if matches!(p.ty, Type::Reference(_)) {
                errors.push(syn::Error::new(p.ty.span(), "take `State<T>` by value (it is a shared handle)"));
            }
            states.push((i, p));
        } else if last_segment_is(&p.ty, "StepTransaction") {
            if transaction.is_some() {
                errors.push(syn::Error::new(p.ty.span(), "only one `StepTransaction` parameter"));
            }
            transaction = Some((i, matches!(p.ty, Type::Reference(_))));
        } else if last_segment_is(&p.ty, "WorkflowContext") {
            errors.push(syn::Error::new(
                p.ty.span(),
                "a `#[step]` does not take the `WorkflowContext`: callers pass it, the macro adds the parameter",
            ));
        } else if last_segment_is(&p.ty, "StepContext") {
            if i == 0 {
                takes_step_context = true;
            } else {
                errors.push(syn::Error::new(p.ty.span(), "the `StepContext` must be the first parameter"));
            }
        } else {
            params.push(p);
        }
    }
    let output = match result_types(&f.sig.output) {
        Some((ok, _)) => Some(ok),
        None => {
            errors.push(syn::Error::new(
                f.sig.output.span(),
                "a `#[step]` must return `Result<T, E>` where `E: Into<StepError>`",
            ));
            None
        }
    };
    errors.finish()?;
    let output = output.ok_or_else(|| syn::Error::new(f.sig.output.span(), "missing output type"))?;
    Ok(StepFn { takes_step_context, transaction, states, params, output })
}

pub(crate) fn check_workflow(f: &ItemFn) -> syn::Result<WorkflowFn> {
    let mut errors = Errors::default();
    common(f, "workflow", &mut errors);
    let params: Vec<Option<Param>> = f.sig.inputs.iter().map(|a| param(a, "workflow", &mut errors)).collect();
    let ctx = match params.first() {
        Some(Some(p)) if last_segment_is(&p.ty, "WorkflowContext") && !matches!(p.ty, Type::Reference(_)) => {
            Some(p.ident.clone())
        }
        Some(Some(p)) => {
            errors.push(syn::Error::new(
                p.ty.span(),
                "the first parameter of a `#[workflow]` must be the context, taken by value: `ctx: WorkflowContext`",
            ));
            None
        }
        Some(None) => None,
        None => {
            errors.push(syn::Error::new(
                f.sig.paren_token.span.join(),
                "a `#[workflow]` takes the context and one input: `(ctx: WorkflowContext, input: Input)`",
            ));
            None
        }
    };
    let input = match params.len() {
        2 => params.into_iter().nth(1).flatten(),
        0 => None,
        1 if ctx.is_some() => {
            Some(Param { ident: Ident::new("__hydra_input", f.sig.ident.span()), ty: syn::parse_quote!(()) })
        }
        1 => None,
        _ => {
            errors.push(syn::Error::new(
                f.sig.inputs.span(),
                "a `#[workflow]` takes exactly one input after the context; bundle several values in a struct",
            ));
            None
        }
    };
    let types = result_types(&f.sig.output);
    if types.is_none() {
        errors.push(syn::Error::new(
            f.sig.output.span(),
            "a `#[workflow]` must return `Result<T, E>` where `E: Into<WorkflowError>`",
        ));
    }
    errors.finish()?;
    match (ctx, input, types) {
        (Some(ctx), Some(input), Some((output, error))) => Ok(WorkflowFn { ctx, input, output, error }),
        _ => Err(syn::Error::new(f.sig.span(), "invalid `#[workflow]` signature")),
    }
}

pub(crate) fn check_helper(f: &ItemFn) -> syn::Result<HelperFn> {
    let mut errors = Errors::default();
    let what = "workflow_helper";
    if f.sig.asyncness.is_none() {
        errors.push(syn::Error::new(f.sig.fn_token.span, "`#[workflow_helper]` functions must be `async fn`"));
    }
    // Lifetimes are fine; the marker type beside the function has no
    // parameters to give type or const generics.
    if let Some(g) = f.sig.generics.params.iter().find(|g| !matches!(g, syn::GenericParam::Lifetime(_))) {
        errors.push(syn::Error::new(g.span(), "`#[workflow_helper]` functions cannot have type or const parameters"));
    }
    if let Some(v) = &f.sig.variadic {
        errors.push(syn::Error::new(v.span(), "`#[workflow_helper]` functions cannot be variadic"));
    }
    if let Some(c) = &f.sig.constness {
        errors.push(syn::Error::new(c.span, "`#[workflow_helper]` functions cannot be `const`"));
    }
    let expected = "the first parameter of a `#[workflow_helper]` must be the context, by shared reference: \
                    `ctx: &WorkflowContext`";
    let ctx = match f.sig.inputs.first() {
        Some(arg @ FnArg::Receiver(_)) => {
            errors.push(syn::Error::new(arg.span(), "`#[workflow_helper]` functions cannot take `self`"));
            None
        }
        Some(FnArg::Typed(t)) => {
            let is_ref = matches!(&*t.ty, Type::Reference(r) if r.mutability.is_none());
            match (&*t.pat, is_ref && last_segment_is(&t.ty, "WorkflowContext")) {
                (Pat::Ident(p), true) if p.by_ref.is_none() && p.subpat.is_none() && p.mutability.is_none() => {
                    Some(p.ident.clone())
                }
                (other, true) => {
                    errors.push(syn::Error::new(other.span(), format!("`#[{what}]` context must be a plain name")));
                    None
                }
                (_, false) => {
                    errors.push(syn::Error::new(t.ty.span(), expected));
                    None
                }
            }
        }
        None => {
            errors.push(syn::Error::new(f.sig.paren_token.span.join(), expected));
            None
        }
    };
    errors.finish()?;
    ctx.map(|ctx| HelperFn { ctx })
        .ok_or_else(|| syn::Error::new(f.sig.span(), "invalid `#[workflow_helper]` signature"))
}
