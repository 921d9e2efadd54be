//! How the tool prints: aligned tables for people, JSON for scripts; times,
//! durations and stored payloads in words.

use serde_json::Value;
use std::time::Duration;

/// Prints a line on standard output through [`emit`]: `out!()` for an
/// empty one, `out!("{x}")` as `println!` takes.
macro_rules! out {
    () => {
        $crate::output::emit("")
    };
    ($($arg:tt)*) => {
        $crate::output::emit(&format!($($arg)*))
    };
}

/// Writes `text` (awakeable secrets cut: see
/// [`hydra_runtime::describe::redact_secrets`]) and a newline to standard
/// output. A reader that went away
/// (`hydra … | head`) ends the program quietly with success, as a pipe's
/// writer ends; any other failure to write ends it with a message and exit
/// code 1. (`println!` panics on both.)
pub(crate) fn emit(text: &str) {
    if let Err(e) = stdout_line(text) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        warn(&format!("hydra: error: cannot write the output: {e}"));
        std::process::exit(1);
    }
}

/// Writes `text` and a newline to standard error, ignoring a failure to
/// (`eprintln!` panics on a pipe whose reader left).
pub(crate) fn warn(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", hydra_runtime::describe::redact_secrets(text));
}

/// Writes `text` and a newline to standard output, and goes on whatever
/// happens to the write: for the one line a long-running command prints
/// (`hydra console`'s address), which must not end it.
pub(crate) fn note(text: &str) {
    let _ = stdout_line(text);
}

/// One line on standard output, secrets cut, flushed.
fn stdout_line(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", hydra_runtime::describe::redact_secrets(text))?;
    out.flush()
}

/// `text` with control characters (escape sequences, carriage returns,
/// anything a stored error or name may carry) and bidirectional overrides
/// shown escaped, so nothing a row holds can rewrite or reorder what the
/// operator's terminal shows. Newlines stay.
pub(crate) fn clean(text: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() && c != '\n') || bidi(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints `rows` under `headers`, each column as wide as its widest cell
/// (cells cleaned of control characters).
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c).replace('\n', " ")).collect()).collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        emit(out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &Value) {
    emit(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A time on the engine's clock (ms since the Unix epoch) in UTC.
pub(crate) fn time(ms: i64) -> String {
    hydra_runtime::describe::time(ms)
}

/// An optional time, `-` when absent.
pub(crate) fn opt_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), time)
}

/// The time from `from` to `to` (ms) in words, however odd the stored times.
pub(crate) fn between(from: i64, to: i64) -> String {
    span(to.saturating_sub(from))
}

/// A span of milliseconds in words (`850ms`, `3.2s`, `4m05s`, `2h10m`, `3d4h`).
pub(crate) fn span(ms: i64) -> String {
    hydra_runtime::describe::span(ms)
}

/// Parses a duration such as `30d`, `12h`, `15m`, `90s` or `500ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    hydra_runtime::describe::parse_duration(text)
}

/// A point in time given as RFC 3339 or as a duration ago (`2h`).
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    hydra_runtime::describe::parse_time(text, now_ms)
}

/// What a stored payload says (see [`hydra_runtime::describe::payload`]).
pub(crate) fn payload(bytes: &[u8]) -> Value {
    hydra_runtime::describe::payload(bytes)
}

/// A payload on one line of a table (long ones cut).
pub(crate) fn payload_line(bytes: &[u8]) -> String {
    let text = match payload(bytes) {
        Value::String(s) => format!("{s:?}"),
        v => v.to_string(),
    };
    cut(&text, 60)
}

/// `text` cut to `max` characters, on one line, cleaned.
pub(crate) fn cut(text: &str, max: usize) -> String {
    let one_line = clean(text).replace('\n', " ⏎ ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("9999999999999d").is_err());
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(clean("ok\u{1b}[2Jhidden\rx"), "ok\\u{1b}[2Jhidden\\rx");
        assert_eq!(cut("a\u{1b}]0;title\u{7}b", 80), "a\\u{1b}]0;title\\u{7}b");
        assert_eq!(between(i64::MIN, i64::MAX), span(i64::MAX));
        assert_eq!(clean("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
