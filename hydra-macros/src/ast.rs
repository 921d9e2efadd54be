//! Parsing of `#[step(...)]`, `#[workflow(...)]` and `#[workflow_helper(...)]`
//! arguments. Durations and retry numbers are checked here, at expansion
//! time, with errors on the offending literal.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{LitFloat, LitInt, LitStr, Path};

/// Retry settings given in `retry(...)`.
#[derive(Default)]
pub(crate) struct Retry {
    pub(crate) max_attempts: Option<u32>,
    pub(crate) initial_ms: Option<u64>,
    pub(crate) max_ms: Option<u64>,
    pub(crate) multiplier: Option<f64>,
    pub(crate) jitter: Option<f64>,
}

/// Arguments of `#[step]`.
#[derive(Default)]
pub(crate) struct StepArgs {
    pub(crate) id: Option<LitStr>,
    pub(crate) retry: Option<Retry>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) krate: Option<Path>,
    pub(crate) transactional: Option<Span>,
}

/// Arguments of `#[workflow]`.
#[derive(Default)]
pub(crate) struct WorkflowArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) retry: Option<Retry>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) krate: Option<Path>,
    /// `typed_error`: the body's error is stored as the run's typed error.
    pub(crate) typed_error: Option<Span>,
    /// `version = N`: the code's version (at least 1).
    pub(crate) version: Option<u32>,
    /// `replays_from = N`: the oldest version whose runs it replays.
    pub(crate) replays_from: Option<LitInt>,
}

/// Arguments of `#[workflow_helper]`.
#[derive(Default)]
pub(crate) struct HelperArgs {
    pub(crate) krate: Option<Path>,
}

/// Collects every error instead of stopping at the first.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

const STEP_KEYS: &str = "`id`, `retry`, `timeout`, `transactional`, `crate`";
const WORKFLOW_KEYS: &str = "`name`, `retry`, `timeout`, `typed_error`, `version`, `replays_from`, `crate`";
const HELPER_KEYS: &str = "`crate`";
const RETRY_KEYS: &str = "`max_attempts`, `initial`, `max`, `multiplier`, `jitter`";

fn once<T>(slot: &mut Option<T>, value: T, key: &str, span: Span) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, format!("`{key}` specified more than once")));
    }
    *slot = Some(value);
    Ok(())
}

/// Skips whatever value follows an unknown key, so parsing can go on.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

fn key_name(meta: &ParseNestedMeta<'_>) -> String {
    meta.path.get_ident().map_or_else(|| "?".to_owned(), ToString::to_string)
}

pub(crate) fn parse_step_args(attr: TokenStream) -> syn::Result<StepArgs> {
    let mut args = StepArgs::default();
    let mut errors = Errors::default();
    let parser = syn::meta::parser(|meta| {
        let key = key_name(&meta);
        let span = meta.path.get_ident().map_or_else(Span::call_site, syn::Ident::span);
        let r = match key.as_str() {
            "id" => meta.value().and_then(|v| v.parse::<LitStr>()).and_then(|lit| {
                check_step_id(&lit)?;
                once(&mut args.id, lit, "id", span)
            }),
            "retry" => parse_retry(&meta).and_then(|r| once(&mut args.retry, r, "retry", span)),
            "timeout" => parse_duration_value(&meta).and_then(|d| once(&mut args.timeout_ms, d, "timeout", span)),
            "crate" => parse_crate(&meta).and_then(|p| once(&mut args.krate, p, "crate", span)),
            "transactional" => {
                if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
                    skip_value(&meta)?;
                    Err(syn::Error::new(span, "`transactional` takes no value: `#[step(transactional)]`"))
                } else {
                    once(&mut args.transactional, span, "transactional", span)
                }
            }
            _ => {
                skip_value(&meta)?;
                Err(syn::Error::new(span, format!("unknown `#[step]` option `{key}`; valid options are {STEP_KEYS}")))
            }
        };
        if let Err(e) = r {
            errors.push(e);
        }
        Ok(())
    });
    parser.parse2(attr)?;
    errors.finish()?;
    Ok(args)
}

pub(crate) fn parse_workflow_args(attr: TokenStream) -> syn::Result<WorkflowArgs> {
    let mut args = WorkflowArgs::default();
    let mut errors = Errors::default();
    let parser = syn::meta::parser(|meta| {
        let key = key_name(&meta);
        let span = meta.path.get_ident().map_or_else(Span::call_site, syn::Ident::span);
        let r = match key.as_str() {
            "name" => meta.value().and_then(|v| v.parse::<LitStr>()).and_then(|lit| {
                if lit.value().trim().is_empty() || lit.value().len() > 255 {
                    return Err(syn::Error::new(lit.span(), "a workflow name must be 1 to 255 bytes"));
                }
                once(&mut args.name, lit, "name", span)
            }),
            "retry" => parse_retry(&meta).and_then(|r| once(&mut args.retry, r, "retry", span)),
            "timeout" => parse_duration_value(&meta).and_then(|d| once(&mut args.timeout_ms, d, "timeout", span)),
            "crate" => parse_crate(&meta).and_then(|p| once(&mut args.krate, p, "crate", span)),
            "version" => meta.value().and_then(|v| v.parse::<LitInt>()).and_then(|lit| {
                let n: u32 = lit.base10_parse()?;
                if n == 0 || i32::try_from(n).is_err() {
                    return Err(syn::Error::new(lit.span(), "`version` must be between 1 and 2147483647"));
                }
                once(&mut args.version, n, "version", span)
            }),
            "replays_from" => meta
                .value()
                .and_then(|v| v.parse::<LitInt>())
                .and_then(|lit| once(&mut args.replays_from, lit, "replays_from", span)),
            "typed_error" => {
                if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
                    skip_value(&meta)?;
                    Err(syn::Error::new(span, "`typed_error` takes no value: `#[workflow(typed_error)]`"))
                } else {
                    once(&mut args.typed_error, span, "typed_error", span)
                }
            }
            _ => {
                skip_value(&meta)?;
                Err(syn::Error::new(
                    span,
                    format!("unknown `#[workflow]` option `{key}`; valid options are {WORKFLOW_KEYS}"),
                ))
            }
        };
        if let Err(e) = r {
            errors.push(e);
        }
        Ok(())
    });
    parser.parse2(attr)?;
    errors.finish()?;
    Ok(args)
}

pub(crate) fn parse_helper_args(attr: TokenStream) -> syn::Result<HelperArgs> {
    let mut args = HelperArgs::default();
    let mut errors = Errors::default();
    let parser = syn::meta::parser(|meta| {
        let key = key_name(&meta);
        let span = meta.path.get_ident().map_or_else(Span::call_site, syn::Ident::span);
        let r = match key.as_str() {
            "crate" => parse_crate(&meta).and_then(|p| once(&mut args.krate, p, "crate", span)),
            _ => {
                skip_value(&meta)?;
                Err(syn::Error::new(
                    span,
                    format!("unknown `#[workflow_helper]` option `{key}`; valid options are {HELPER_KEYS}"),
                ))
            }
        };
        if let Err(e) = r {
            errors.push(e);
        }
        Ok(())
    });
    parser.parse2(attr)?;
    errors.finish()?;
    Ok(args)
}

fn parse_crate(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let lit: LitStr = meta.value()?.parse()?;
    lit.parse::<Path>().map_err(|_| syn::Error::new(lit.span(), "`crate` must be a path, like \"::hydra_runtime\""))
}

fn parse_retry(meta: &ParseNestedMeta<'_>) -> syn::Result<Retry> {
    let mut retry = Retry::default();
    let mut errors = Errors::default();
    meta.parse_nested_meta(|m| {
        let key = key_name(&m);
        let span = m.path.get_ident().map_or_else(Span::call_site, syn::Ident::span);
        let r = match key.as_str() {
            "max_attempts" => m.value().and_then(|v| v.parse::<LitInt>()).and_then(|lit| {
                let n: u32 = lit.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(lit.span(), "`max_attempts` must be at least 1"));
                }
                once(&mut retry.max_attempts, n, "max_attempts", span)
            }),
            "initial" => parse_duration_value(&m).and_then(|d| once(&mut retry.initial_ms, d, "initial", span)),
            "max" => parse_duration_value(&m).and_then(|d| once(&mut retry.max_ms, d, "max", span)),
            "multiplier" => parse_float(&m).and_then(|(f, s)| {
                if !(1.0..=1000.0).contains(&f) {
                    return Err(syn::Error::new(s, "`multiplier` must be between 1.0 and 1000.0"));
                }
                once(&mut retry.multiplier, f, "multiplier", span)
            }),
            "jitter" => parse_float(&m).and_then(|(f, s)| {
                if !(0.0..=1.0).contains(&f) {
                    return Err(syn::Error::new(s, "`jitter` must be between 0.0 and 1.0"));
                }
                once(&mut retry.jitter, f, "jitter", span)
            }),
            _ => {
                skip_value(&m)?;
                Err(syn::Error::new(span, format!("unknown `retry` option `{key}`; valid options are {RETRY_KEYS}")))
            }
        };
        if let Err(e) = r {
            errors.push(e);
        }
        Ok(())
    })?;
    errors.finish()?;
    if let (Some(initial), Some(max)) = (retry.initial_ms, retry.max_ms)
        && initial > max
    {
        return Err(meta.error("`initial` must not be longer than `max`"));
    }
    Ok(retry)
}

fn parse_float(m: &ParseNestedMeta<'_>) -> syn::Result<(f64, Span)> {
    let v = m.value()?;
    if v.peek(LitFloat) {
        let lit: LitFloat = v.parse()?;
        Ok((lit.base10_parse()?, lit.span()))
    } else {
        let lit: LitInt = v.parse()?;
        Ok((lit.base10_parse::<u32>()?.into(), lit.span()))
    }
}

fn parse_duration_value(meta: &ParseNestedMeta<'_>) -> syn::Result<u64> {
    let lit: LitStr = meta.value()?.parse()?;
    parse_duration(&lit.value()).map_err(|why| syn::Error::new(lit.span(), why))
}

/// Parses `"200ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"2d"` into milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let hint = "expected a duration like \"200ms\", \"30s\", \"5m\", \"1h30m\" or \"2d\"";
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration `{text}`; {hint}"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("number too large in `{text}`"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.chars().any(char::is_whitespace) {
            return Err(format!("spaces are not allowed in a duration (`{text}`); {hint}"));
        }
        let ms_per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("missing unit in `{text}`; {hint}")),
            other => return Err(format!("unknown unit `{other}` in `{text}`; {hint}")),
        };
        total = n
            .checked_mul(ms_per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration `{text}` is too long"))?;
    }
    Ok(total)
}

/// The same rules as `hydra_store::StepId::validate_base`, at compile time.
fn check_step_id(lit: &LitStr) -> syn::Result<()> {
    let id = lit.value();
    if id.is_empty() {
        return Err(syn::Error::new(lit.span(), "a step ID must not be empty"));
    }
    if id.len() > 200 {
        return Err(syn::Error::new(lit.span(), "a step ID must be at most 200 bytes"));
    }
    if let Some(c) = id.chars().find(|c| *c == '#' || c.is_whitespace() || c.is_control()) {
        return Err(syn::Error::new(lit.span(), format!("a step ID must not contain {c:?}")));
    }
    if let Some(p) = RESERVED_STEP_PREFIXES.iter().find(|p| id.starts_with(**p)) {
        return Err(syn::Error::new(
            lit.span(),
            format!("step IDs beginning `{p}` are reserved for Hydra's own records; choose another ID"),
        ));
    }
    Ok(())
}

/// The prefixes of Hydra's own step IDs, which a user's step may not take:
/// `hydra_store::reserved::step::USER_FORBIDDEN` (this crate cannot depend
/// on the store; a test compares the two lists).
const RESERVED_STEP_PREFIXES: &[&str] = &["hydra.", "signal:", "select:", "event:", "search:"];

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn the_reserved_prefixes_are_the_stores() {
        // The store's list, read from its source (this crate cannot depend on it).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../hydra-store/src/reserved.rs");
        let source = std::fs::read_to_string(path).expect("hydra-store/src/reserved.rs");
        let line = source
            .lines()
            .find(|l| l.contains("pub const USER_FORBIDDEN"))
            .expect("the store lists the forbidden prefixes");
        let names: Vec<&str> = line
            .split_once("= &[")
            .and_then(|(_, list)| list.split_once(']'))
            .expect("a list")
            .0
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let value = |name: &str| {
            source
                .lines()
                .find(|l| l.contains(&format!("pub const {name}: &str = ")))
                .and_then(|l| l.split('"').nth(1))
                .unwrap_or_else(|| panic!("the store defines {name}"))
                .to_owned()
        };
        let store: Vec<String> = names.iter().map(|n| value(n)).collect();
        assert_eq!(store, super::RESERVED_STEP_PREFIXES, "the macro's list must be the store's");
    }

    #[test]
    fn durations_parse_at_expansion_time() {
        assert_eq!(parse_duration("200ms"), Ok(200));
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("2d"), Ok(172_800_000));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
