//! How the tool prints: aligned tables for people, JSON for scripts; times,
//! durations and stored payloads in words.

use serde_json::{Value, json};
use std::time::Duration;

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
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A time on the engine's clock (ms since the Unix epoch) in UTC.
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
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
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else if ms < 86_400_000 {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    } else {
        format!("{}d{}h", ms / 86_400_000, (ms / 3_600_000) % 24)
    }
}

/// Parses a duration such as `30d`, `12h`, `15m`, `90s` or `500ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write a whole number and a unit, as 30d, 12h, 15m, 90s"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        "w" => n.checked_mul(604_800),
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s, m, h, d or w)")),
    };
    // Keep well inside what a millisecond clock can subtract.
    match secs {
        Some(s) if s <= 100 * 365 * 86_400 => Ok(Duration::from_secs(s)),
        _ => Err(format!("`{text}` is longer than a hundred years")),
    }
}

/// A point in time given as RFC 3339 (`2026-12-01T08:00:00Z`) or as a
/// duration ago (`2h`).
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let ago = parse_duration(text).map_err(|_| {
        format!("`{text}` is neither a time (RFC 3339, as 2026-12-01T08:00:00Z) nor a duration ago (as 2h)")
    })?;
    Ok(now_ms.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX)))
}

/// What a stored payload says: JSON payloads as their JSON; a child's end
/// as its status and message; anything else (bincode, a custom codec) as
/// its codec, size and leading bytes in hex.
pub(crate) fn payload(bytes: &[u8]) -> Value {
    match bytes.split_first() {
        None => json!({"empty": true}),
        Some((2, body)) => match serde_json::from_slice::<Value>(body) {
            Ok(v) => v,
            Err(_) => opaque("json (does not parse)", bytes),
        },
        Some((0, body)) => {
            let text = String::from_utf8_lossy(body);
            let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
            json!({"child_ended": status, "error": message})
        }
        Some((1, _)) => opaque("bincode", bytes),
        Some((tag, _)) => opaque(&format!("codec tag {tag}"), bytes),
    }
}

fn opaque(codec: &str, bytes: &[u8]) -> Value {
    let shown = &bytes[..bytes.len().min(32)];
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    json!({"codec": codec, "bytes": bytes.len(), "hex": if shown.len() < bytes.len() { format!("{hex}…") } else { hex }})
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

    #[test]
    fn payloads_in_words() {
        assert_eq!(payload(b"\x02{\"a\":1}"), json!({"a": 1}));
        assert_eq!(payload(b"\x00failed\nboom"), json!({"child_ended": "failed", "error": "boom"}));
        assert_eq!(payload(&[1, 0xff, 0x01])["bytes"], json!(3));
        assert_eq!(payload(b"\x02{not json")["codec"], json!("json (does not parse)"));
        assert_eq!(payload(&[])["empty"], json!(true));
    }
}
