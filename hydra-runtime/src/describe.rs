//! Stored values in words, as the `hydra` tool and the web console show
//! them: payloads (by their codec tag), steps' attempts, times on the engine's clock,
//! spans of milliseconds; and the durations and times an operator types.

use serde_json::{Value, json};
use std::time::Duration;

/// What a stored payload says: JSON payloads as their JSON; a child's end
/// as its status and message; anything else (bincode, a custom codec) as
/// its codec, size and leading bytes in hex. Never fails, whatever the
/// bytes.
pub fn payload(bytes: &[u8]) -> Value {
    use hydra_store::reserved::payload_tag::{BINCODE, CHILD_END, JSON};
    match bytes.split_first() {
        None => json!({"empty": true}),
        Some((&JSON, body)) => match serde_json::from_slice::<Value>(body) {
            Ok(v) => v,
            Err(_) => opaque("json (does not parse)", bytes),
        },
        Some((&CHILD_END, body)) => {
            let text = String::from_utf8_lossy(body);
            let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
            json!({"child_ended": status, "error": message})
        }
        Some((&BINCODE, _)) => opaque("bincode", bytes),
        Some((tag, _)) => opaque(&format!("codec tag {tag}"), bytes),
    }
}

fn opaque(codec: &str, bytes: &[u8]) -> Value {
    let shown = &bytes[..bytes.len().min(32)];
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    json!({"codec": codec, "bytes": bytes.len(), "hex": if shown.len() < bytes.len() { format!("{hex}…") } else { hex }})
}

/// A step's attempts for people: `2/5`, or the count alone for a step
/// without a limit worth showing (Hydra's markers, such as the start of
/// compensation, which never run out: see [`MARKER_ATTEMPTS`]).
pub fn attempts(made: u32, max: u32) -> String {
    if max >= MARKER_ATTEMPTS { made.to_string() } else { format!("{made}/{max}") }
}

/// The attempts allowed to Hydra's marker steps (a patch, the start of
/// compensation): a marker has no effect, so it never runs out of attempts
/// (each crash before it is recorded counts one).
pub const MARKER_ATTEMPTS: u32 = 1_000_000;

/// A time on the engine's clock (ms since the Unix epoch) in UTC, to the
/// millisecond; a time chrono cannot show is shown as its number.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A span of milliseconds in words (`850ms`, `3.2s`, `4m05s`, `2h10m`,
/// `3d4h`); negative spans show as `0ms`.
pub fn span(ms: i64) -> String {
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
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let ago = parse_duration(text).map_err(|_| {
        format!("`{text}` is neither a time (RFC 3339, as 2026-12-01T08:00:00Z) nor a duration ago (as 2h)")
    })?;
    Ok(now_ms.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX)))
}

/// `text` with every awakeable secret shown as its first four characters
/// and `…`: in a token (`{run}.{secret}`, the run an ID of 36 characters)
/// and in a completion's signal name (`awakeable:{secret}`). Whoever holds
/// a token can complete the awakeable, so no view prints one whole, nor the
/// part of one that a cut to a column's width left (any run of 5 to 32 hex
/// digits in those places); the first characters are enough to tell two
/// apart. Other text, hashes in a payload among it, is left as it is.
pub fn redact_secrets(text: &str) -> std::borrow::Cow<'_, str> {
    const SECRET: usize = 32;
    const SHOWN: usize = 4;
    let b = text.as_bytes();
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    // A run ID before a token's dot: 8-4-4-4-12 hex digits.
    let run_id = |end: usize| {
        end >= 36
            && b[end - 36..end]
                .iter()
                .enumerate()
                .all(|(i, &c)| if matches!(i, 8 | 13 | 18 | 23) { c == b'-' } else { hex(c) })
    };
    let prefix = hydra_store::reserved::signal::awakeable("");
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !hex(b[i]) || (i > 0 && hex(b[i - 1])) {
            i += 1;
            continue;
        }
        // A run of hex digits begins at `i` (ASCII: a character boundary).
        let len = b[i..].iter().take_while(|&&c| hex(c)).count();
        let placed = (i > 0 && b[i - 1] == b'.' && run_id(i - 1)) || text[..i].ends_with(prefix.as_str());
        if placed && (SHOWN + 1..=SECRET).contains(&len) {
            out.push_str(&text[copied..i + SHOWN]);
            if !text[i + len..].starts_with('…') {
                out.push('…');
            }
            copied = i + len;
        }
        i += len;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awakeable_secrets_are_shown_cut() {
        let secret = "0123456789abcdef0123456789abcdef";
        let run = "01a2536a-1111-7222-8333-444455556666";
        assert_eq!(redact_secrets(&format!("{run}.{secret}")), format!("{run}.0123…"));
        assert_eq!(redact_secrets(&format!("\"awakeable:{secret}\", x")), "\"awakeable:0123…\", x");
        assert_eq!(
            redact_secrets(&format!("a {run}.{secret} and awakeable:{secret}")),
            format!("a {run}.0123… and awakeable:0123…")
        );
        // Not a secret: another prefix, a longer run of hex, no run ID.
        for kept in
            [format!("md5:{secret}"), format!("awakeable:{secret}0"), format!("x.{secret}"), "é awakeable:".to_owned()]
        {
            assert_eq!(redact_secrets(&kept), kept);
        }
    }

    #[test]
    fn payloads_in_words() {
        assert_eq!(payload(b"\x02{\"a\":1}"), json!({"a": 1}));
        assert_eq!(payload(b"\x00failed\nboom"), json!({"child_ended": "failed", "error": "boom"}));
        assert_eq!(payload(&[1, 0xff, 0x01])["bytes"], json!(3));
        assert_eq!(payload(b"\x02{not json")["codec"], json!("json (does not parse)"));
        assert_eq!(payload(&[])["empty"], json!(true));
    }

    #[test]
    fn spans_and_times() {
        assert_eq!(span(850), "850ms");
        assert_eq!(span(-5), "0ms");
        assert_eq!(span(245_000), "4m05s");
        assert_eq!(span(i64::MAX), "106751991167d7h");
        assert_eq!(time(0), "1970-01-01 00:00:00.000");
        assert_eq!(time(i64::MAX), format!("{} ms", i64::MAX));
    }
}
