//! bincode 2: compact, for plain types; decoding bounded by a byte limit
//! derived from the payload's length, a nesting depth limit and an element
//! budget (see the module documentation of [`crate::codec`]).

use super::bounded::Bounds;
use super::{CustomCodec, PayloadCodec};
use serde::Serialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------
// bincode, bounded

/// The least bincode limit (see the module documentation).
const MIN_LIMIT: usize = 4 * 1024;
/// The most a valid payload claims per byte on the wire (a `u128` in one byte).
const CLAIM_PER_BYTE: usize = 16;

const fn pow2(shift: u32) -> usize {
    if shift < usize::BITS { 1 << shift } else { usize::MAX }
}
const L0: usize = MIN_LIMIT;
const L1: usize = pow2(16);
const L2: usize = pow2(20);
const L3: usize = pow2(24);
const L4: usize = pow2(28);
const L5: usize = pow2(32);
const L6: usize = pow2(36);

/// The bincode limit for a body of `len` bytes, as an index into L0..=L6.
pub(super) fn limit_bucket(len: usize) -> Result<u8, String> {
    let need = len.saturating_mul(CLAIM_PER_BYTE).max(MIN_LIMIT);
    [L0, L1, L2, L3, L4, L5, L6]
        .iter()
        .position(|&l| need <= l)
        .map(|i| i as u8)
        .ok_or_else(|| format!("a payload of {len} bytes is larger than Hydra decodes with bincode (4 GiB)"))
}

type Limited<const N: usize> =
    bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Varint, bincode::config::Limit<N>>;

fn limited<const N: usize>() -> Limited<N> {
    bincode::config::standard().with_limit::<N>()
}

/// Decodes a `T` under the byte limit `N`, through the bounding adapter
/// (nesting depth, element budget).
fn bincode_decode_limited<T: DeserializeOwned, const N: usize>(bytes: &[u8]) -> Result<T, String> {
    let bounds = Bounds::for_payload(bytes.len());
    let decoded = bincode::serde::seed_decode_from_slice(bounds.seed::<T>(), bytes, limited::<N>());
    bounds.check()?;
    let (value, used) = decoded.map_err(|e| bounds.first_error().map_or_else(|| bincode_error(e), bincode_message))?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes after the value", bytes.len() - used));
    }
    Ok(value)
}

fn bincode_error(e: bincode::error::DecodeError) -> String {
    bincode_message(e.to_string())
}

/// A bincode error's message (its `Display`, as erased-serde passes it on
/// too), unwrapped, with the byte limit explained.
fn bincode_message(m: String) -> String {
    let m = unwrap_other_string(m);
    if m == "LimitExceeded" {
        "a length prefix claims more memory than the payload could hold (bincode limit exceeded)".into()
    } else {
        m
    }
}

/// bincode displays an error as its `Debug`: a custom error (a visitor's,
/// or one erased-serde passed on) reads `OtherString("…")`, escaped, and
/// through erased-serde possibly several times over. The message inside.
pub(super) fn unwrap_other_string(mut m: String) -> String {
    while let Some(inner) =
        m.strip_prefix("OtherString(\"").and_then(|rest| rest.strip_suffix("\")")).and_then(unescape_debug)
    {
        m = inner;
    }
    m
}

/// The string whose `Debug` (quotes stripped) is `s`; `None` if `s` is not one.
fn unescape_debug(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => {}
            c => {
                out.push(c);
                continue;
            }
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            '"' => '"',
            '\'' => '\'',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '0' => '\0',
            'u' => {
                let body = chars.as_str().strip_prefix('{')?;
                let (hex, rest) = body.split_once('}')?;
                chars = rest.chars();
                char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
            }
            _ => return None,
        });
    }
    Some(out)
}

/// A bincode reader over a slice that leaves the unread rest in place.
struct Cursor<'a, 'b>(&'b mut &'a [u8]);

impl bincode::de::read::Reader for Cursor<'_, '_> {
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let Some((head, rest)) = self.0.split_at_checked(bytes.len()) else {
            return Err(bincode::error::DecodeError::UnexpectedEnd { additional: bytes.len() - self.0.len() });
        };
        bytes.copy_from_slice(head);
        *self.0 = rest;
        Ok(())
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.0.get(..n)
    }

    fn consume(&mut self, n: usize) {
        *self.0 = self.0.get(n..).unwrap_or_default();
    }
}

type Visit<'v> = dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error> + 'v;

/// Hands `visit` a deserializer under the byte limit `N`, through the
/// bounding adapter (nesting depth, element budget).
fn bincode_visit_limited<const N: usize>(bytes: &[u8], visit: &mut Visit<'_>) -> Result<(), String> {
    let mut rest = bytes;
    {
        let bounds = Bounds::for_payload(bytes.len());
        let mut decoder = bincode::serde::OwnedSerdeDecoder::from_reader(Cursor(&mut rest), limited::<N>());
        let mut de = <dyn erased_serde::Deserializer<'_>>::erase(bounds.wrap(decoder.as_deserializer()));
        let visited = visit(&mut de);
        bounds.check()?;
        visited.map_err(|e| bincode_message(bounds.first_error().unwrap_or_else(|| e.to_string())))?;
    }
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the value", rest.len()));
    }
    Ok(())
}

/// bincode 2 (serde, standard configuration): compact, for plain types.
/// It cannot read back shapes that need a self-describing format (see the
/// [module documentation](crate::codec)); Hydra refuses those when they are encoded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bincode;

impl PayloadCodec for Bincode {
    const TAG: u8 = hydra_store::reserved::payload_tag::BINCODE;
    const NAME: &'static str = "bincode";
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| e.to_string())
    }
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    /// Decodes under a byte limit derived from the payload's length, a
    /// nesting depth limit and an element budget (see the
    /// [module documentation](crate::codec)).
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        match limit_bucket(bytes.len())? {
            0 => bincode_decode_limited::<T, L0>(bytes),
            1 => bincode_decode_limited::<T, L1>(bytes),
            2 => bincode_decode_limited::<T, L2>(bytes),
            3 => bincode_decode_limited::<T, L3>(bytes),
            4 => bincode_decode_limited::<T, L4>(bytes),
            5 => bincode_decode_limited::<T, L5>(bytes),
            _ => bincode_decode_limited::<T, L6>(bytes),
        }
    }
}

impl CustomCodec for Bincode {
    fn tag(&self) -> u8 {
        <Bincode as PayloadCodec>::TAG
    }
    fn name(&self) -> &str {
        <Bincode as PayloadCodec>::NAME
    }
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String> {
        <Bincode as PayloadCodec>::encode_into(value, out)
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
    ) -> Result<(), String> {
        match limit_bucket(bytes.len())? {
            0 => bincode_visit_limited::<L0>(bytes, visit),
            1 => bincode_visit_limited::<L1>(bytes, visit),
            2 => bincode_visit_limited::<L2>(bytes, visit),
            3 => bincode_visit_limited::<L3>(bytes, visit),
            4 => bincode_visit_limited::<L4>(bytes, visit),
            5 => bincode_visit_limited::<L5>(bytes, visit),
            _ => bincode_visit_limited::<L6>(bytes, visit),
        }
    }
}
