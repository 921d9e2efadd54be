//! Which codec encodes new payloads ([`Codec`]), and the engine's
//! [`CodecRegistry`]: decoding by the stored tag, built-in or registered,
//! and encoding checked by decoding back.

use super::bounded::{DEPTH_MESSAGE, ELEMENTS_MESSAGE};
use super::{Bincode, CustomCodec, FIRST_CUSTOM_TAG, Json, PayloadCodec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Codec selection and the registry

/// Which codec encodes new payloads: the engine's default
/// ([`EngineBuilder::codec`](crate::EngineBuilder::codec)) or one
/// workflow's ([`WorkflowOptions::codec`](crate::WorkflowOptions::codec)).
/// Decoding always follows the stored tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// [`Json`] (tag 2), the default: reads back every serde shape.
    #[default]
    Json,
    /// [`Bincode`] (tag 1): compact, for plain types.
    Bincode,
    /// The [`CustomCodec`] registered under this tag (128 to 255) with
    /// [`EngineBuilder::register_codec`](crate::EngineBuilder::register_codec).
    Custom(u8),
}

impl Codec {
    /// The tag this codec writes.
    pub fn tag(self) -> u8 {
        match self {
            Codec::Json => <Json as PayloadCodec>::TAG,
            Codec::Bincode => <Bincode as PayloadCodec>::TAG,
            Codec::Custom(tag) => tag,
        }
    }

    /// How to name it in Rust, for messages.
    fn rust_name(self) -> String {
        match self {
            Codec::Json => "Codec::Json".into(),
            Codec::Bincode => "Codec::Bincode".into(),
            Codec::Custom(tag) => format!("Codec::Custom({tag})"),
        }
    }

    /// Encodes `value` with this built-in codec, tag first, without
    /// verifying that it decodes back. A [`Codec::Custom`] needs the
    /// engine's registry: use [`CodecRegistry::encode`] (through
    /// [`Engine::codecs`](crate::Engine::codecs)).
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String> {
        // One buffer, tag first: no copy of the encoded body.
        let mut out = Vec::with_capacity(64);
        out.push(self.tag());
        match self {
            Codec::Bincode => <Bincode as PayloadCodec>::encode_into(value, &mut out)?,
            Codec::Json => <Json as PayloadCodec>::encode_into(value, &mut out)?,
            Codec::Custom(tag) => {
                return Err(format!(
                    "codec tag {tag} is a custom codec: encode through the engine's registry (Engine::codecs)"
                ));
            }
        }
        Ok(out)
    }

    /// Decodes a tagged payload written by a built-in codec (the tag
    /// chooses). Payloads of custom codecs need the engine's registry:
    /// [`CodecRegistry::decode`] (through [`Engine::codecs`](crate::Engine::codecs)).
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        decode_tagged(&[], bytes)
    }
}

/// The codecs an engine reads and writes: the built-in ones and those
/// registered with
/// [`EngineBuilder::register_codec`](crate::EngineBuilder::register_codec).
/// Cheap to clone. Decoding follows each payload's tag.
#[derive(Clone, Default)]
pub struct CodecRegistry {
    custom: Arc<[Arc<dyn CustomCodec>]>,
}

impl std::fmt::Debug for CodecRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entry(&<Bincode as PayloadCodec>::TAG, &<Bincode as PayloadCodec>::NAME)
            .entry(&<Json as PayloadCodec>::TAG, &<Json as PayloadCodec>::NAME)
            .entries(self.custom.iter().map(|c| (c.tag(), c.name())))
            .finish()
    }
}

impl CodecRegistry {
    /// The built-in codecs only.
    pub fn builtin() -> Self {
        CodecRegistry::default()
    }

    /// The built-in codecs and `custom`; an error if a tag is reserved
    /// (below [`FIRST_CUSTOM_TAG`]) or registered twice.
    pub(crate) fn with_custom(custom: Vec<Arc<dyn CustomCodec>>) -> Result<Self, String> {
        for (i, c) in custom.iter().enumerate() {
            let tag = c.tag();
            if tag < FIRST_CUSTOM_TAG {
                return Err(format!(
                    "codec `{}` uses tag {tag}, which is reserved for Hydra's codecs; custom codecs use tags \
                     {FIRST_CUSTOM_TAG} to 255",
                    c.name()
                ));
            }
            if let Some(other) = custom[..i].iter().find(|o| o.tag() == tag) {
                return Err(format!(
                    "codecs `{}` and `{}` are both registered under tag {tag}",
                    other.name(),
                    c.name()
                ));
            }
        }
        Ok(CodecRegistry { custom: custom.into() })
    }

    /// The registered custom codec with this tag.
    pub fn custom(&self, tag: u8) -> Option<&dyn CustomCodec> {
        find(&self.custom, tag)
    }

    /// Whether this registry can encode with `codec`.
    pub fn supports(&self, codec: Codec) -> bool {
        match codec {
            Codec::Json | Codec::Bincode => true,
            Codec::Custom(tag) => self.custom(tag).is_some(),
        }
    }

    /// Encodes `value` with `codec`, tag first, without verifying that it
    /// decodes back (see [`CodecRegistry::encode_checked`]).
    pub fn encode<T: Serialize + ?Sized>(&self, codec: Codec, value: &T) -> Result<Vec<u8>, String> {
        let Codec::Custom(tag) = codec else { return codec.encode(value) };
        let c = self.custom(tag).ok_or_else(|| unregistered(tag))?;
        let mut out = Vec::with_capacity(64);
        out.push(tag);
        c.encode(&ByRef(value), &mut out).map_err(|e| format!("{} (tag {tag}): {e}", c.name()))?;
        Ok(out)
    }

    /// Encodes `value` with `codec`, tag first, and decodes the bytes back
    /// as `T`: a value that would not decode is refused now, with a message
    /// that names the type and suggests a codec that reads it back.
    pub fn encode_checked<T: Serialize + DeserializeOwned>(&self, codec: Codec, value: &T) -> Result<Vec<u8>, String> {
        self.encode_read_back(codec, value).map(|(bytes, _)| bytes)
    }

    /// [`CodecRegistry::encode_checked`], also returning the value decoded
    /// back: what a replay will see. A codec may map two values to one
    /// encoding (JSON writes `Some(None)` and `None` alike), so code that
    /// goes on with a value it just stored must use this one, or its first
    /// pass and its replays could take different branches.
    pub fn encode_read_back<T: Serialize + DeserializeOwned>(
        &self,
        codec: Codec,
        value: &T,
    ) -> Result<(Vec<u8>, T), String> {
        let name = match codec {
            Codec::Json => <Json as PayloadCodec>::NAME,
            Codec::Bincode => <Bincode as PayloadCodec>::NAME,
            Codec::Custom(tag) => self.custom(tag).ok_or_else(|| unregistered(tag))?.name(),
        };
        let bytes = match self.encode(codec, value) {
            Ok(bytes) => bytes,
            Err(e) if matches!(codec, Codec::Custom(_)) => {
                return Err(self.refusal(codec, value, format!("does not encode with {e}")));
            }
            Err(e) => return Err(self.refusal(codec, value, format!("does not encode with {name}: {e}"))),
        };
        match self.decode::<T>(&bytes) {
            Ok(read_back) => Ok((bytes, read_back)),
            Err(e) => Err(self.refusal(codec, value, format!("encodes with {name} but does not decode back ({e})"))),
        }
    }

    /// Decodes a tagged payload with the codec its tag names.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        decode_tagged(&self.custom, bytes)
    }

    /// Whether `value` survives a round trip through `codec`.
    fn round_trips<T: Serialize + DeserializeOwned>(&self, codec: Codec, value: &T) -> bool {
        self.encode(codec, value).is_ok_and(|b| self.decode::<T>(&b).is_ok())
    }

    /// The message for a value `codec` cannot store: the type, what went
    /// wrong, and the built-in codecs that do read it back.
    fn refusal<T: Serialize + DeserializeOwned>(&self, codec: Codec, value: &T, problem: String) -> String {
        let ty = std::any::type_name::<T>();
        let works: Vec<String> = [Codec::Json, Codec::Bincode]
            .into_iter()
            .filter(|&c| c != codec && self.round_trips(c, value))
            .map(Codec::rust_name)
            .collect();
        // serde_json's message when its nesting limit (also 128) is reached.
        let too_deep = problem.contains(DEPTH_MESSAGE) || problem.contains("recursion limit exceeded");
        let why = match codec {
            _ if too_deep => " (Hydra decodes at most 128 levels of nesting, with bincode and JSON alike)",
            _ if problem.contains(ELEMENTS_MESSAGE) => {
                " (bincode spends no bytes on zero-sized values, so Hydra caps how many elements a payload of a given \
                 length may hold)"
            }
            Codec::Bincode => {
                " (bincode cannot read back self-describing shapes: `#[serde(tag)]`, `untagged`, `flatten`, \
                 `skip_serializing_if`, `serde_json::Value`)"
            }
            Codec::Json => " (JSON cannot write maps whose keys are not strings or integers, or non-finite floats)",
            Codec::Custom(_) => "",
        };
        let hint = match works.as_slice() {
            [] => "no built-in codec reads it back either: change the type".to_owned(),
            names => format!(
                "use {}, which reads it back (EngineBuilder::codec, or WorkflowOptions::codec for one workflow)",
                names.join(" or ")
            ),
        };
        format!("`{ty}` {problem}{why}; {hint}")
    }
}

fn find(custom: &[Arc<dyn CustomCodec>], tag: u8) -> Option<&dyn CustomCodec> {
    custom.iter().find(|c| c.tag() == tag).map(|c| &**c)
}

fn unregistered(tag: u8) -> String {
    if tag < FIRST_CUSTOM_TAG {
        format!("unknown codec tag {tag} (reserved for Hydra: written by a newer version, or corrupted)")
    } else {
        format!(
            "unknown codec tag {tag}: no codec is registered under it on this engine (EngineBuilder::register_codec)"
        )
    }
}

fn decode_tagged<T: DeserializeOwned>(custom: &[Arc<dyn CustomCodec>], bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        None => Err("empty payload (no codec tag)".into()),
        Some((&<Bincode as PayloadCodec>::TAG, body)) => {
            <Bincode as PayloadCodec>::decode(body).map_err(|e| format!("{}: {e}", <Bincode as PayloadCodec>::NAME))
        }
        Some((&<Json as PayloadCodec>::TAG, body)) => {
            <Json as PayloadCodec>::decode(body).map_err(|e| format!("{}: {e}", <Json as PayloadCodec>::NAME))
        }
        Some((&tag, body)) => {
            let c = find(custom, tag).ok_or_else(|| unregistered(tag))?;
            let mut out: Option<T> = None;
            c.decode(body, &mut |de| {
                out = Some(erased_serde::deserialize::<T>(de)?);
                Ok(())
            })
            .map_err(|e| format!("{} (tag {tag}): {e}", c.name()))?;
            out.ok_or_else(|| format!("{} (tag {tag}): the codec decoded no value", c.name()))
        }
    }
}

/// Lets an unsized value pass as `&dyn erased_serde::Serialize`.
struct ByRef<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for ByRef<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
