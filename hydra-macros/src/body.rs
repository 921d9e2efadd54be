//! Checks of a `#[workflow]` or `#[workflow_helper]` body: where the
//! workflow context may appear. Every use of the context must be one the
//! macro can see and check, so that no step call escapes the compile-time
//! checks through a clone or an alias of the context:
//!
//! - the first argument of a call to a plain function path,
//!   `f(&ctx, …)` or `f(ctx, …)`: the callee must be a `#[step]` or a
//!   `#[workflow_helper]` (checked by the trait bound the expansion emits),
//!   and its step IDs join the duplicate-ID check;
//! - the receiver of a call of one of [`CONTEXT_METHODS`] (`ctx.sleep(…)`);
//! - a plain argument of a formatting macro (`println!("{:?}", ctx)`), and
//!   inside [`FORMAT_MACROS`] and [`EXPR_MACROS`] whatever the rules allow
//!   outside them (their arguments are checked as expressions).
//!
//! Any other use is an error on that use: `ctx.clone()`, `let c = &ctx;`,
//! moving it into a struct, a closure's result or an unknown macro, passing
//! it as a later argument or to a method. The checks follow the context's
//! name, so a local binding of the same name is an error too.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Block, Expr, ExprCall, ExprMethodCall, Ident, Path};

/// `WorkflowContext` methods a body may call on the context. None of them
/// hands out the context (a clone, a reference to it); every `pub` method of
/// `WorkflowContext` must be listed here or in [`NOT_CONTEXT_METHODS`] (a
/// unit test reads the runtime's sources to make sure).
pub(crate) const CONTEXT_METHODS: &[&str] = &[
    "execution_id",
    "workflow_name",
    "attempt",
    "namespace",
    "step",
    "step_with",
    "transactional_step",
    "sleep",
    "sleep_until",
    "recv",
    "recv_timeout",
    "set_event",
    "set_search_attribute",
    "select",
    "child",
    "child_with",
    "start_child",
    "start_child_with",
    "start_detached",
    "await_child",
    "awakeable",
    "await_awakeable",
    "await_awakeable_timeout",
    "compensate",
    "is_cancelled",
    "patched",
    "deprecate_patch",
];

/// `pub` methods of `WorkflowContext` a body may not call on the context,
/// because they hand it out. (None today; `Clone::clone` is a trait method.)
#[cfg(test)]
pub(crate) const NOT_CONTEXT_METHODS: &[&str] = &[];

/// Macros whose expansion only formats its arguments (by reference): the
/// context may be a plain argument, and every argument is checked as an
/// expression. Recognized by the macro's last path segment.
const FORMAT_MACROS: &[&str] = &[
    "format",
    "format_args",
    "print",
    "println",
    "eprint",
    "eprintln",
    "write",
    "writeln",
    "panic",
    "unreachable",
    "todo",
    "unimplemented",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
    "event",
    "span",
    "trace_span",
    "debug_span",
    "info_span",
    "warn_span",
    "error_span",
];

/// Macros whose arguments are expressions evaluated as written (`vec!`,
/// `join!`): every argument is checked as an expression.
const EXPR_MACROS: &[&str] = &["vec", "join", "try_join", "dbg"];

/// What a body does with the context.
pub(crate) struct ContextUses {
    /// Callees of calls whose first argument is the context, in order.
    pub(crate) calls: Vec<Path>,
    /// One error per use the rules do not allow.
    pub(crate) errors: Vec<syn::Error>,
    /// Receives whose signal name is a literal and whose payload type is
    /// written (`ctx.recv::<Decision>("decision")`): name and type.
    pub(crate) signals: Vec<(syn::LitStr, syn::Type)>,
    /// Literal patch IDs (`ctx.patched("add-fraud-check")`).
    pub(crate) patches: Vec<syn::LitStr>,
}

/// Checks every use of `ctx` in `block`. `what` names the attribute
/// (`#[workflow]` or `#[workflow_helper]`) in messages.
pub(crate) fn context_uses(ctx: &Ident, block: &Block, what: &str, by_ref: bool) -> ContextUses {
    let mut shadows = Shadows { ctx, what, errors: Vec::new() };
    shadows.visit_block(block);
    if !shadows.errors.is_empty() {
        // Uses of the name may mean the other binding: no cascade.
        return ContextUses { calls: Vec::new(), errors: shadows.errors, signals: Vec::new(), patches: Vec::new() };
    }
    let mut v =
        Uses { ctx, what, by_ref, calls: Vec::new(), errors: Vec::new(), signals: Vec::new(), patches: Vec::new() };
    v.visit_block(block);
    ContextUses { calls: v.calls, errors: v.errors, signals: v.signals, patches: v.patches }
}

/// Bindings in the body that reuse the context's name.
struct Shadows<'a> {
    ctx: &'a Ident,
    what: &'a str,
    errors: Vec<syn::Error>,
}

impl<'ast> Visit<'ast> for Shadows<'_> {
    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
        if p.ident == *self.ctx {
            let msg = format!(
                "`{}` names the workflow context in this `{}` body, and its uses are checked by that name: give this \
                 binding another name",
                self.ctx, self.what
            );
            self.errors.push(syn::Error::new(p.ident.span(), msg));
        }
        syn::visit::visit_pat_ident(self, p);
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

struct Uses<'a> {
    ctx: &'a Ident,
    what: &'a str,
    /// Whether the context is a reference already (in a helper).
    by_ref: bool,
    calls: Vec<Path>,
    errors: Vec<syn::Error>,
    signals: Vec<(syn::LitStr, syn::Type)>,
    patches: Vec<syn::LitStr>,
}

/// The literal name and written type of a `recv::<T>("name", …)` or
/// `recv_timeout::<T>("name", …)` call.
fn typed_receive(m: &ExprMethodCall) -> Option<(syn::LitStr, syn::Type)> {
    if m.method != "recv" && m.method != "recv_timeout" {
        return None;
    }
    let turbofish = m.turbofish.as_ref()?;
    let [syn::GenericArgument::Type(ty)] = turbofish.args.iter().collect::<Vec<_>>()[..] else { return None };
    let Some(Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(name), .. })) = m.args.first() else { return None };
    Some((name.clone(), ty.clone()))
}

/// The step of a `step::later(…)` call (its path without `later`).
fn later_call(e: &Expr) -> Option<Path> {
    let Expr::Call(call) = e else { return None };
    let Expr::Path(func) = &*call.func else { return None };
    if func.qself.is_some() || func.path.segments.len() < 2 || func.path.segments.last()?.ident != "later" {
        return None;
    }
    let mut step = func.path.clone();
    step.segments.pop();
    step.segments.pop_punct();
    Some(step)
}

impl Uses<'_> {
    /// `ctx` itself.
    fn is_ctx(&self, e: &Expr) -> bool {
        matches!(e, Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() && p.path.is_ident(self.ctx))
    }

    /// `ctx` or `&ctx`: what a call may take as its first argument.
    fn is_ctx_arg(&self, e: &Expr) -> bool {
        match e {
            Expr::Reference(r) => r.mutability.is_none() && self.is_ctx(&r.expr),
            other => self.is_ctx(other),
        }
    }

    fn rules(&self) -> String {
        let ctx = self.ctx;
        let arg = if self.by_ref { format!("{ctx}") } else { format!("&{ctx}") };
        format!(
            "the workflow context may only be the first argument of a `#[step]` or `#[workflow_helper]` call \
             (`charge({arg}, …)`) or the receiver of a context method (`{ctx}.sleep(…)`), so that every call that \
             uses it is checked; to use it in a function of your own, mark that function `#[workflow_helper]`"
        )
    }

    fn misuse(&mut self, span: proc_macro2::Span, what: &str) {
        let msg = format!("{what}: {}", self.rules());
        self.errors.push(syn::Error::new(span, msg));
    }

    fn method_call(&mut self, m: &ExprMethodCall) {
        let name = m.method.to_string();
        if !CONTEXT_METHODS.contains(&name.as_str()) {
            let ctx = self.ctx;
            let what = if matches!(
                name.as_str(),
                "clone" | "clone_from" | "to_owned" | "borrow" | "borrow_mut" | "as_ref" | "as_mut" | "deref" | "into"
            ) {
                format!("`{ctx}.{name}()` would copy or alias the workflow context where the checks cannot follow it")
            } else {
                format!(
                    "`{name}` is not a `WorkflowContext` method allowed here (allowed: {})",
                    CONTEXT_METHODS.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                )
            };
            self.misuse(m.method.span(), &what);
        }
        if let Some(typed) = typed_receive(m) {
            self.signals.push(typed);
        }
        if name == "patched"
            && let Some(Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(id), .. })) = m.args.first()
        {
            self.patches.push(id.clone());
        }

        if let Some(t) = &m.turbofish {
            self.visit_angle_bracketed_generic_arguments(t);
        }
        for a in &m.args {
            self.visit_expr(a);
        }
    }

    fn call(&mut self, call: &ExprCall) -> bool {
        let (Expr::Path(func), Some(first)) = (&*call.func, call.args.first()) else { return false };
        if func.qself.is_some() || !self.is_ctx_arg(first) {
            return false;
        }
        self.calls.push(func.path.clone());
        self.visit_expr_path(func);
        for a in call.args.iter().skip(1) {
            self.visit_expr(a);
        }
        true
    }

    fn mac(&mut self, m: &syn::Macro) {
        let Some(first) = find_ident(&m.tokens, self.ctx) else { return };
        let name = m.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        let formats = FORMAT_MACROS.contains(&name.as_str());
        if !formats && !EXPR_MACROS.contains(&name.as_str()) {
            let what = format!(
                "the workflow context cannot be passed into `{name}!`, whose expansion `{}` cannot see (call steps \
                 and helpers outside the macro and pass it their results)",
                self.what
            );
            self.misuse(first.span(), &what);
            return;
        }
        for chunk in split_args(m.tokens.clone()) {
            let Some(ctx) = find_ident(&chunk, self.ctx) else { continue };
            match syn::parse2::<Expr>(value_part(chunk)) {
                Ok(e) if formats && self.is_ctx_arg(&e) => {}
                Ok(e) => self.visit_expr(&e),
                Err(_) => {
                    let what = format!("`{name}!` arguments that use the context must be plain expressions");
                    self.misuse(ctx.span(), &what);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Uses<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Path(_) if self.is_ctx(e) => {
                let what = format!("`{}` used as a value", self.ctx);
                self.misuse(e.span(), &what);
            }
            Expr::MethodCall(m) if self.is_ctx(&m.receiver) => self.method_call(m),
            Expr::Call(c) if self.call(c) => {}
            other => {
                // `refund::later(…)` anywhere in the body calls step
                // `refund` (later): it is checked, and its state needed,
                // like a direct call.
                if let Some(step) = later_call(other) {
                    self.calls.push(step);
                }
                syn::visit::visit_expr(self, other)
            }
        }
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.mac(m);
    }

    // Nested items cannot capture the body's locals, but a `macro_rules!`
    // defined in the body can name them.
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if let syn::Item::Macro(m) = item {
            self.mac(&m.mac);
        }
    }
}

/// The first occurrence of `ident` in `tokens`, at any depth.
fn find_ident(tokens: &TokenStream, ident: &Ident) -> Option<Ident> {
    tokens.clone().into_iter().find_map(|t| match t {
        TokenTree::Ident(i) if i == *ident => Some(i),
        TokenTree::Group(g) => find_ident(&g.stream(), ident),
        _ => None,
    })
}

/// A macro's arguments, split at top-level commas (and semicolons).
fn split_args(tokens: TokenStream) -> Vec<TokenStream> {
    let mut out = vec![Vec::new()];
    for t in tokens {
        match &t {
            TokenTree::Punct(p) if matches!(p.as_char(), ',' | ';') => {
                out.push(Vec::new());
            }
            _ => out.last_mut().map_or((), |c| c.push(t)),
        }
    }
    out.into_iter().filter(|c| !c.is_empty()).map(|c| c.into_iter().collect()).collect()
}

/// The value of one macro argument: after a `name =` or `target:` prefix
/// and tracing's `%` / `?` sigils (`info!(id = %ctx.execution_id())`).
fn value_part(chunk: TokenStream) -> TokenStream {
    let tokens: Vec<TokenTree> = chunk.into_iter().collect();
    let mut start = 0;
    // `target: "x"`, `parent: &span`: a leading `ident :` (not `::`).
    if let [TokenTree::Ident(_), TokenTree::Punct(p), ..] = tokens.as_slice()
        && p.as_char() == ':'
        && p.spacing() == Spacing::Alone
    {
        start = 2;
    }
    // `name = value` (not `==`, `<=`, `=>` …).
    for i in start..tokens.len() {
        if let TokenTree::Punct(p) = &tokens[i]
            && p.as_char() == '='
            && p.spacing() == Spacing::Alone
            && !matches!(tokens.get(i.wrapping_sub(1)), Some(TokenTree::Punct(q)) if q.spacing() == Spacing::Joint)
        {
            start = i + 1;
            break;
        }
    }
    while let Some(TokenTree::Punct(p)) = tokens.get(start)
        && matches!(p.as_char(), '%' | '?')
    {
        start += 1;
    }
    tokens.into_iter().skip(start).collect()
}

#[cfg(test)]
mod tests {
    use super::{CONTEXT_METHODS, NOT_CONTEXT_METHODS, context_uses};
    use quote::quote;

    fn errors(body: proc_macro2::TokenStream) -> Vec<String> {
        let block: syn::Block = syn::parse2(quote!({ #body })).expect("block");
        let ctx: syn::Ident = syn::parse_quote!(ctx);
        context_uses(&ctx, &block, "#[workflow]", false).errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn allowed_uses() {
        let ok = quote! {
            let a = charge(&ctx, 1).await?;
            let b = crate::steps::refund(&ctx, a).await?;
            ctx.sleep(Duration::from_secs(1)).await;
            let id = ctx.execution_id().to_string();
            println!("{:?} {} {}", ctx, ctx.attempt(), id);
            eprintln!("{:?}",&ctx);
            tracing::info!(execution = %ctx.execution_id(), attempt = ctx.attempt(), "step {}", b);
            let (x, y) = tokio::join!(one(&ctx, 1), two(&ctx, 2));
            let f = async { three(&ctx, 3).await };
            let v = vec![ctx.attempt()];
            fn nested(ctx: u32) -> u32 { ctx + 1 }
        };
        assert_eq!(errors(ok), Vec::<String>::new());
    }

    #[test]
    fn calls_are_collected() {
        let block: syn::Block = syn::parse2(quote!({
            a(&ctx).await;
            b::c(&ctx, 1).await;
            tokio::join!(d(&ctx), e(&ctx));
        }))
        .expect("block");
        let ctx: syn::Ident = syn::parse_quote!(ctx);
        let uses = context_uses(&ctx, &block, "#[workflow]", false);
        let calls: Vec<String> = uses.calls.iter().map(|p| quote!(#p).to_string().replace(' ', "")).collect();
        assert_eq!(calls, ["a", "b::c", "d", "e"]);
    }

    #[test]
    fn escapes_are_errors() {
        for bad in [
            quote!(helper(ctx.clone(), 1).await;),
            quote!(let c = &ctx; step(c, 1).await;),
            quote!(let c = ctx;),
            quote!(log(1, &ctx);),
            quote!(let s = Holder { ctx };),
            quote!(let f = move || ctx;),
            quote!(other.call(&ctx);),
            quote!((helper)(&ctx);),
            quote!(<T as Tr>::f(&ctx);),
            quote!(step(&&ctx);),
            quote!(my_macro!(ctx);),
            quote!(let v = vec![ctx];),
            quote!(let c = dbg!(ctx);),
            quote!(println!("{}", helper(ctx.clone())) ;),
            quote!(tokio::select! { r = step(&ctx) => r };),
            quote!(let r: &WorkflowContext = ctx.borrow();),
            quote!(ctx.run.clone();),
            quote!(my_macro! { ctx }),
            quote!(macro_rules! leak { () => { helper(ctx.clone()) } } leak!();),
            quote!(match ctx {
                _ => {}
            }),
        ] {
            let e = errors(bad.clone());
            assert!(!e.is_empty(), "accepted: {bad}");
        }
    }

    #[test]
    fn shadowing_is_an_error() {
        for bad in [quote!(let ctx = 5;), quote!(let f = |ctx: u32| ctx + 1;), quote!(if let Some(ctx) = x {})] {
            let e = errors(bad.clone());
            assert!(e.iter().any(|m| m.contains("give this binding another name")), "{bad}: {e:?}");
        }
    }

    /// Every public method of `WorkflowContext` is classified: allowed on the
    /// context in a body, or not. A method added to the runtime without
    /// being listed here fails this test.
    #[test]
    fn every_context_method_is_classified() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hydra-runtime/src/context");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("runtime sources") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let file: syn::File = syn::parse_file(&text).expect("parse");
            for item in file.items {
                let syn::Item::Impl(i) = item else { continue };
                let ty = &i.self_ty;
                if i.trait_.is_some() || quote!(#ty).to_string() != "WorkflowContext" {
                    continue;
                }
                for it in i.items {
                    if let syn::ImplItem::Fn(f) = it
                        && matches!(f.vis, syn::Visibility::Public(_))
                    {
                        found.push(f.sig.ident.to_string());
                    }
                }
            }
        }
        assert!(found.contains(&"sleep".to_owned()), "found {found:?}");
        for m in &found {
            assert!(
                CONTEXT_METHODS.contains(&m.as_str()) || NOT_CONTEXT_METHODS.contains(&m.as_str()),
                "`WorkflowContext::{m}` is public but not classified in hydra-macros/src/body.rs: add it to \
                 CONTEXT_METHODS if it cannot hand out the context, else to NOT_CONTEXT_METHODS"
            );
        }
    }
}
