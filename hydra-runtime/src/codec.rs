//! Payload codecs.
//!
//! Every stored payload (inputs, outputs, step results) starts with a
//! one-byte codec tag, so data written under one codec still decodes after
//! the default changes. All codecs implement [`PayloadCodec`]; [`Codec`]
//! picks which one encodes new payloads, and decoding follows the tag.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A serialization format for payloads.
pub trait PayloadCodec {
    /// The tag byte written in front of every payload of this codec. Never
    /// reuse a tag.
    const TAG: u8;
    /// A short name for messages.
    const NAME: &'static str;
    /// Encodes `value` (without the tag).
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String>;
    /// Decodes `bytes` (without the tag).
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String>;
    /// Encodes `value` (without the tag) at the end of `out`.
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&Self::encode(value)?);
        Ok(())
    }
}

/// bincode 2 (serde, standard configuration): compact, the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bincode;

impl PayloadCodec for Bincode {
    const TAG: u8 = 1;
    const NAME: &'static str = "bincode";
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| e.to_string())
    }
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        let (value, used) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map_err(|e| e.to_string())?;
        if used != bytes.len() {
            return Err(format!("{} trailing bytes after the value", bytes.len() - used));
        }
        Ok(value)
    }
}

/// JSON: readable in the database.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl PayloadCodec for Json {
    const TAG: u8 = 2;
    const NAME: &'static str = "json";
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, value).map_err(|e| e.to_string())
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Which codec encodes new payloads. Decoding always follows the stored tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// [`Bincode`], the default.
    #[default]
    Bincode,
    /// [`Json`].
    Json,
}

impl Codec {
    /// Encodes `value` with this codec, tag first.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String> {
        // One buffer, tag first: no copy of the encoded body.
        let mut out = Vec::with_capacity(64);
        match self {
            Codec::Bincode => {
                out.push(Bincode::TAG);
                Bincode::encode_into(value, &mut out)?;
            }
            Codec::Json => {
                out.push(Json::TAG);
                Json::encode_into(value, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Decodes a tagged payload with the codec its tag names.
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        match bytes.split_first() {
            None => Err("empty payload (no codec tag)".into()),
            Some((&Bincode::TAG, body)) => Bincode::decode(body).map_err(|e| format!("{}: {e}", Bincode::NAME)),
            Some((&Json::TAG, body)) => Json::decode(body).map_err(|e| format!("{}: {e}", Json::NAME)),
            Some((tag, _)) => Err(format!("unknown codec tag {tag}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        items: Vec<String>,
        total: Option<i64>,
    }

    #[test]
    fn both_codecs_round_trip_and_decode_by_tag() {
        let v = Order { id: 7, items: vec!["a".into(), "b".into()], total: Some(-3) };
        for codec in [Codec::Bincode, Codec::Json] {
            let bytes = codec.encode(&v).unwrap();
            assert_eq!(Codec::decode::<Order>(&bytes).unwrap(), v, "{codec:?}");
        }
        assert_eq!(Codec::Json.encode(&v).unwrap()[0], Json::TAG);
        assert_eq!(Codec::Bincode.encode(&v).unwrap()[0], Bincode::TAG);
    }

    #[test]
    fn corrupt_payloads_give_errors_not_panics() {
        assert!(Codec::decode::<Order>(&[]).is_err());
        assert!(Codec::decode::<Order>(&[99, 1, 2]).unwrap_err().contains("unknown codec tag 99"));
        assert!(Codec::decode::<Order>(&[Bincode::TAG, 0xff, 0xff, 0xff]).is_err());
        assert!(Codec::decode::<Order>(&[Json::TAG, b'{']).is_err());
        let mut ok = Codec::Bincode.encode(&5u32).unwrap();
        ok.push(0);
        assert!(Codec::decode::<u32>(&ok).unwrap_err().contains("trailing"));
    }
}
