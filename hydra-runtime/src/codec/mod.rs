//! Payload codecs.
//!
//! Every stored payload (workflow inputs and outputs, step outputs, cron
//! inputs) starts with a one-byte codec tag, so data written under one
//! codec still decodes after the default changes: decoding always follows
//! the stored tag, never the engine's current setting.
//!
//! | tag | codec | use it for |
//! | --- | --- | --- |
//! | 1 | [`Codec::Bincode`] ([`Bincode`]) | compact payloads of plain types (structs, externally tagged enums, sequences, maps) |
//! | 2 | [`Codec::Json`] ([`Json`]), **the default** | every serde shape: `#[serde(tag)]`, `untagged`, `flatten`, `skip_serializing_if`, `serde_json::Value`; readable in the database |
//! | 0, 3–127 | reserved for Hydra | |
//! | 128–255 | [`Codec::Custom`]: a [`CustomCodec`] you register with [`EngineBuilder::register_codec`](crate::EngineBuilder::register_codec) | MessagePack, CBOR, or a wrapper that encrypts or compresses another codec's bytes |
//!
//! JSON is the default because bincode is not self-describing: it encodes
//! shapes that need `deserialize_any` (internally tagged and untagged enums,
//! `serde_json::Value`) and skipped fields without complaint but cannot read
//! them back, and it cannot write `flatten`. JSON cannot write maps whose keys are not strings
//! or integers (`BTreeMap<(u8, u8), _>`), nor non-finite floats faithfully;
//! bincode can.
//!
//! # What is stored can be read back
//!
//! Hydra verifies every payload it stores for a typed value (step outputs,
//! workflow inputs and outputs, cron inputs) by decoding the just-encoded
//! bytes back as the same type. A value the codec cannot read back is
//! refused at once, as an [`Error::Encode`](crate::Error::Encode) that names
//! the Rust type and what was encoded and suggests a codec that reads it
//! back. For a step this is a permanent failure of that step on its first
//! execution, never a run that fails on a replay days later.
//!
//! # Decoding is bounded
//!
//! No stored bytes can make decoding allocate without bound, recurse
//! without bound or loop without bound, and so abort or hang the process:
//!
//! - JSON is text with no length prefixes: every element and string byte it
//!   builds is read from the payload, so memory grows with the payload (times
//!   the in-memory size of its types), never with a number stored in it;
//!   nesting is limited to 128 levels.
//! - bincode reads length prefixes. A payload of `n` bytes is decoded under
//!   bincode's byte limit `L`, the smallest of 4 KiB, 64 KiB, 1 MiB, 16 MiB,
//!   … (powers of 16) that is at least `16 × n`. bincode charges each value
//!   against the limit before reading it (a string or byte buffer its
//!   length, a number its in-memory size: at most 16 bytes for a value that
//!   takes at least one byte on the wire), so a valid payload stays within
//!   `16 × n`, while a length prefix beyond `L` is refused before anything
//!   is allocated. No buffer larger than `L`, which is below
//!   `max(4 KiB, 256 × n)`, is ever allocated; payloads above 4 GiB are
//!   refused.
//! - bincode also decodes through a bounding adapter, whatever the payload
//!   type, on every path (typed, and the erased one of a [`CustomCodec`]
//!   wrapping [`Bincode`]):
//!   - nesting is limited to 128 levels, as with JSON: a level is entered
//!     by each sequence, tuple, tuple struct, map, struct, enum, newtype
//!     struct and `Some`. A recursive type (a tree) costs one byte per level
//!     on the wire, so without a limit a small hostile payload would
//!     overflow the stack; past 128 levels decoding fails with "nesting
//!     deeper than 128 levels".
//!   - an element budget: a payload of `n` bytes may visit at most
//!     `16 × n + 1024` sequence elements, map entries, struct fields and
//!     enum variants in all. Zero-sized values (`()`, unit structs,
//!     `PhantomData`) take no bytes and claim nothing against the byte
//!     limit, so without a budget a length prefix of `u64::MAX` on a
//!     `Vec<()>` would loop for ever. Every element visited that is not
//!     zero-sized holds at least one byte, and a byte is held by as many
//!     elements as the type nests around it (a field of a struct in a
//!     sequence: two), so a valid payload exceeds the budget only through
//!     zero-sized values (beyond the first 1024) or a type that nests more
//!     than 16 levels of elements around its bytes.
//!
//!   A legitimate value beyond these bounds (a tree deeper than 128 levels,
//!   a `Vec<()>` of a million elements) is refused when it is stored, like
//!   any value that does not read back: "what is stored can be read back"
//!   holds. JSON nests at most 128 levels too, but spends bytes on
//!   zero-sized values, so it stores the long `Vec<()>`.
//! - A [`CustomCodec`] bounds its own decoding; a wrapper around
//!   [`Json`] or [`Bincode`] inherits theirs.
//!
//! # Custom codecs
//!
//! Implement [`CustomCodec`] (object safe, through [`erased_serde`]) with a
//! tag from 128 to 255, register it with
//! [`EngineBuilder::register_codec`](crate::EngineBuilder::register_codec),
//! and select it as the engine's default with
//! [`EngineBuilder::codec`](crate::EngineBuilder::codec) or for one
//! workflow with [`WorkflowOptions::codec`](crate::WorkflowOptions::codec).
//! The built-in [`Json`] and [`Bincode`] implement [`CustomCodec`] too, so
//! a wrapper can delegate to them:
//!
//! ```
//! use hydra_runtime::{CustomCodec, Json, erased_serde};
//!
//! /// JSON, with every byte XORed with a key. A toy to show the shape of an
//! /// encrypting wrapper: XOR is NOT encryption; use a real AEAD cipher.
//! struct XorJson {
//!     key: u8,
//! }
//!
//! impl CustomCodec for XorJson {
//!     fn tag(&self) -> u8 {
//!         200
//!     }
//!     fn name(&self) -> &str {
//!         "xor-json"
//!     }
//!     fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String> {
//!         let start = out.len();
//!         Json.encode(value, out)?;
//!         out[start..].iter_mut().for_each(|b| *b ^= self.key);
//!         Ok(())
//!     }
//!     fn decode(
//!         &self,
//!         bytes: &[u8],
//!         visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
//!     ) -> Result<(), String> {
//!         let plain: Vec<u8> = bytes.iter().map(|b| b ^ self.key).collect();
//!         Json.decode(&plain, visit)
//!     }
//! }
//! ```
//!
//! Rooms: `bincode.rs` (the compact codec, bounded decoding), `bounded.rs`
//! (the serde adapter that bounds bincode's nesting depth and elements),
//! `json.rs` (the default), `registry.rs` (which codec encodes, decoding by
//! tag, checked encoding).

mod bincode;
mod bounded;
mod json;
mod registry;

pub use self::bincode::Bincode;
pub use json::Json;
pub use registry::{Codec, CodecRegistry};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A serialization format for payloads, used through static dispatch (the
/// built-in codecs). For your own codecs implement [`CustomCodec`].
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

/// A codec you register on the engine under your own tag
/// ([`EngineBuilder::register_codec`](crate::EngineBuilder::register_codec)):
/// MessagePack, CBOR, or a wrapper that encrypts or compresses the bytes of
/// another codec ([`Json`] and [`Bincode`] implement this trait, so they
/// can be the inner codec). Object safe: values pass through
/// [`erased_serde`], re-exported as `hydra_runtime::erased_serde`.
///
/// See the [module documentation](self) for an example.
pub trait CustomCodec: Send + Sync + 'static {
    /// The tag written in front of this codec's payloads: 128 to 255 (0 to
    /// 127 are reserved for Hydra). Never reuse a tag for another format:
    /// stored payloads are decoded by it.
    fn tag(&self) -> u8;
    /// A short name for messages.
    fn name(&self) -> &str;
    /// Encodes `value` at the end of `out` (the tag is already written).
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes `bytes` (without the tag): builds a deserializer over them,
    /// calls `visit` once with it (erased with
    /// `<dyn erased_serde::Deserializer<'_>>::erase`), and checks that nothing
    /// is left over. Decoding must be bounded by the payload: no hostile
    /// length prefix may make it allocate without limit.
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
    ) -> Result<(), String>;
}

/// The first tag available to [`CustomCodec`]s; lower tags are Hydra's.
pub const FIRST_CUSTOM_TAG: u8 = hydra_store::reserved::payload_tag::FIRST_CUSTOM;

#[cfg(test)]
mod tests;
