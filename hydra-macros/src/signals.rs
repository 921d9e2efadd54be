//! Typed signal names for a workflow's generated client: every receive in
//! the body whose name is a literal and whose payload type is written
//! (`ctx.recv::<Decision>("decision")`) becomes an associated constant
//! `SIGNAL_DECISION: SignalName<Workflow, Decision>`, which
//! `WorkflowClient::signal` takes, so sending a wrong payload type (or a
//! signal of another workflow) does not compile. A receive whose type
//! cannot be written beside the workflow (`recv::<_>`, a type declared in
//! the body) gets no constant.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote_spanned};
use std::collections::{BTreeMap, BTreeSet};
use syn::visit::Visit;

/// Types declared inside the body (out of scope for a constant beside it).
fn local_types(block: &syn::Block) -> BTreeSet<String> {
    struct Items(BTreeSet<String>);
    impl<'ast> Visit<'ast> for Items {
        fn visit_item(&mut self, item: &'ast syn::Item) {
            let ident = match item {
                syn::Item::Struct(i) => Some(&i.ident),
                syn::Item::Enum(i) => Some(&i.ident),
                syn::Item::Union(i) => Some(&i.ident),
                syn::Item::Type(i) => Some(&i.ident),
                syn::Item::Trait(i) => Some(&i.ident),
                _ => None,
            };
            if let Some(i) = ident {
                self.0.insert(i.to_string());
            }
            syn::visit::visit_item(self, item);
        }
    }
    let mut v = Items(BTreeSet::new());
    v.visit_block(block);
    v.0
}

/// Whether `ty` can be written beside the workflow: no `_`, no `impl
/// Trait`, no type declared inside the body.
fn nameable(ty: &syn::Type, locals: &BTreeSet<String>) -> bool {
    struct Check<'a> {
        locals: &'a BTreeSet<String>,
        ok: bool,
    }
    impl<'ast> Visit<'ast> for Check<'_> {
        fn visit_type(&mut self, t: &'ast syn::Type) {
            if matches!(t, syn::Type::Infer(_) | syn::Type::ImplTrait(_) | syn::Type::Macro(_)) {
                self.ok = false;
            }
            syn::visit::visit_type(self, t);
        }
        fn visit_path_segment(&mut self, s: &'ast syn::PathSegment) {
            if self.locals.contains(&s.ident.to_string()) {
                self.ok = false;
            }
            syn::visit::visit_path_segment(self, s);
        }
    }
    let mut c = Check { locals, ok: true };
    c.visit_type(ty);
    c.ok
}

/// The constant's name for signal `name`: `SIGNAL_` and the name in upper
/// case with every other character than ASCII letters and digits as `_`.
fn const_name(name: &str) -> String {
    let mut s = String::from("SIGNAL_");
    s.extend(name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }));
    s
}

/// The constants (inside an `impl` of the workflow's type), and errors for
/// a name received as two types or two names with one constant.
pub(crate) fn signal_consts(
    p: &TokenStream,
    workflow: &syn::Ident,
    vis: &syn::Visibility,
    signals: &[(syn::LitStr, syn::Type)],
    body: &syn::Block,
) -> (Vec<TokenStream>, Vec<syn::Error>) {
    let locals = local_types(body);
    // constant name → (signal name, its type as written)
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut consts = Vec::new();
    let mut errors = Vec::new();
    // A type that cannot be named beside the workflow (`_`, a type declared
    // in the body) gets no constant: send that signal untyped.
    for (lit, ty) in signals.iter().filter(|(_, ty)| nameable(ty, &locals)) {
        let name = lit.value();
        let konst = const_name(&name);
        let written = ty.to_token_stream().to_string();
        match seen.get(&konst) {
            Some((first, first_ty)) if *first == name && *first_ty == written => continue,
            Some((first, first_ty)) if *first == name => {
                let msg = format!(
                    "signal `{name}` is received as `{first_ty}` and as `{written}`: one signal name carries one \
                     payload type (write the type the same way at every receive)"
                );
                errors.push(syn::Error::new(lit.span(), msg));
                continue;
            }
            Some((first, _)) => {
                let msg = format!(
                    "signals `{first}` and `{name}` would both be `{workflow}::{konst}` on the typed client: rename \
                     one of them"
                );
                errors.push(syn::Error::new(lit.span(), msg));
                continue;
            }
            None => {}
        }
        seen.insert(konst.clone(), (name.clone(), written));
        let ident = format_ident!("{}", konst, span = lit.span());
        let doc = format!("Signal `{name}` of this workflow, for its typed client (`WorkflowClient::signal`).");
        consts.push(quote_spanned! {lit.span()=>
            #[doc = #doc]
            #vis const #ident: #p::SignalName<#workflow, #ty> = #p::SignalName::new(#lit);
        });
    }
    (consts, errors)
}

#[cfg(test)]
mod tests {
    use super::const_name;

    #[test]
    fn constant_names_are_upper_case_identifiers() {
        assert_eq!(const_name("decision"), "SIGNAL_DECISION");
        assert_eq!(const_name("order-paid.v2"), "SIGNAL_ORDER_PAID_V2");
        assert_eq!(const_name("3ds"), "SIGNAL_3DS");
        assert_eq!(const_name("é"), "SIGNAL__");
    }
}
