//! A bounding serde [`Deserializer`] adapter for bincode: a nesting depth
//! limit and an element budget (see the module documentation of
//! [`crate::codec`], "Decoding is bounded").
//!
//! bincode's byte limit bounds what length prefixes allocate, but not how
//! deep a recursive type nests (one byte per level on the wire) nor how
//! many zero-sized elements a length prefix claims (they consume no bytes
//! and claim nothing against the limit). [`Bounded`] wraps the deserializer
//! and every visitor, seed and access it hands out (the pattern of
//! `serde_path_to_error`), so each nested deserializer is wrapped too, and
//! counts:
//!
//! - depth: one level on entering a sequence, tuple, tuple struct, map,
//!   struct, enum, newtype struct or `Some` (each reaches its visitor through
//!   `visit_seq`, `visit_map`, `visit_enum`, `visit_newtype_struct` or
//!   `visit_some`, where the level is counted), at most [`MAX_DEPTH`];
//! - elements: one for every sequence element (struct fields and tuple
//!   elements are sequence elements in bincode), map entry and enum variant
//!   visited, at most [`element_budget`] for the payload's length.
//!
//! A limit reached is remembered in [`Bounds`]: the decode fails with
//! [`Bounds::check`]'s message even if a `Deserialize` impl swallowed the
//! error, and whichever way the error was carried.
//!
//! Errors keep their size on the way out. Through erased-serde (the path of
//! custom codecs) an error is converted at every level of nesting with
//! `custom(error)`, and bincode displays a custom error as its `Debug`,
//! `OtherString("…")`, escaping the message inside: left alone, an error
//! raised at depth `d` would leave with a message of about `2^d` bytes (a
//! hang, then out of memory). So every level that counts depth passes its
//! error on as the message the innermost level saw ([`Bounds::first_error`];
//! `bincode.rs` unwraps the few `OtherString` layers it may carry).

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

/// The nesting depth limit, the same as serde_json's.
pub(super) const MAX_DEPTH: u32 = 128;

/// Elements allowed per payload byte (see [`element_budget`]).
const ELEMENTS_PER_BYTE: usize = 16;
/// Elements allowed regardless of the payload's length.
const ELEMENTS_SLACK: usize = 1024;

/// The element budget for a payload of `len` bytes: `16 × len + 1024`.
///
/// With bincode an enum variant takes at least one byte, and every sequence
/// element, struct field or map entry that is not zero-sized holds at least
/// one; a byte is held by as many elements as the type nests around it (a
/// `u8` field of a struct in a `Vec`: two). A valid payload therefore
/// reaches 16 elements per byte only through zero-sized values (`()`, unit
/// structs, `PhantomData`, empty arrays) repeated in a sequence or map or
/// spread over the fields of structs, or through a type nesting more than
/// 16 levels of elements around its bytes; the 1024 spare elements cover
/// small payloads of that kind. A value beyond the budget is refused when it
/// is encoded (`CodecRegistry::encode_checked` decodes it back).
pub(super) fn element_budget(len: usize) -> usize {
    len.saturating_mul(ELEMENTS_PER_BYTE).saturating_add(ELEMENTS_SLACK)
}

/// The message of a decode stopped by the depth limit.
pub(super) const DEPTH_MESSAGE: &str = "nesting deeper than 128 levels";
// The messages here and in `registry.rs` spell the limit out.
const _: () = assert!(MAX_DEPTH == 128);
/// The start of the message of a decode stopped by the element budget.
pub(super) const ELEMENTS_MESSAGE: &str = "more sequence elements, map entries, fields and variants than";

/// Which limit stopped a decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tripped {
    Depth,
    Elements,
}

/// The limits of one decode and what is left of them.
pub(super) struct Bounds {
    len: usize,
    depth: Cell<u32>,
    elements_left: Cell<usize>,
    tripped: Cell<Option<Tripped>>,
    /// The message of the error on its way out, as it was first seen by a
    /// level (cleared when a level succeeds: a `Deserialize` impl may have
    /// recovered from it).
    error: Cell<Option<String>>,
    /// Whether `error` holds a message (a flag, cheaper to test than `error`).
    has_error: Cell<bool>,
}

impl Bounds {
    /// The limits for a payload of `len` bytes.
    pub(super) fn for_payload(len: usize) -> Self {
        Bounds {
            len,
            depth: Cell::new(0),
            elements_left: Cell::new(element_budget(len)),
            tripped: Cell::new(None),
            error: Cell::new(None),
            has_error: Cell::new(false),
        }
    }

    /// `de`, bounded.
    pub(super) fn wrap<D>(&self, de: D) -> Bounded<'_, D> {
        Bounded { inner: de, bounds: self }
    }

    /// A seed that deserializes a `T` through a bounded deserializer.
    pub(super) fn seed<T>(&self) -> Wrap<'_, PhantomData<T>> {
        Wrap { inner: PhantomData, bounds: self }
    }

    /// An error if a limit stopped the decode (whatever the decode returned).
    pub(super) fn check(&self) -> Result<(), String> {
        match self.tripped.get() {
            None => Ok(()),
            Some(Tripped::Depth) => Err(DEPTH_MESSAGE.to_owned()),
            Some(Tripped::Elements) => Err(format!(
                "{ELEMENTS_MESSAGE} a payload of {} bytes holds (at most {}: {ELEMENTS_PER_BYTE} per byte + \
                 {ELEMENTS_SLACK}): a hostile length prefix, or too many zero-sized elements",
                self.len,
                element_budget(self.len)
            )),
        }
    }

    /// The message of the innermost error of a failed decode, if it went
    /// through a level of nesting (else the decode's own error is it).
    pub(super) fn first_error(&self) -> Option<String> {
        self.has_error.set(false);
        self.error.take()
    }

    /// What a level returns: its value, or its error reduced to the
    /// innermost error's message (see the module documentation).
    #[inline(always)]
    fn settle<T, E: de::Error>(&self, result: Result<T, E>) -> Result<T, E> {
        match result {
            Ok(value) => {
                if self.has_error.get() {
                    self.recovered();
                }
                Ok(value)
            }
            Err(e) => Err(self.settle_error(e)),
        }
    }

    /// A level succeeded after an error below it: forget that error.
    #[cold]
    #[inline(never)]
    fn recovered(&self) {
        drop(self.first_error());
    }

    #[cold]
    #[inline(never)]
    fn settle_error<E: de::Error>(&self, e: E) -> E {
        if self.tripped.get().is_some() {
            return E::custom(self.check().err().unwrap_or_default());
        }
        match self.error.take() {
            None => {
                self.error.set(Some(e.to_string()));
                self.has_error.set(true);
                e
            }
            Some(first) => {
                let e = E::custom(&first);
                self.error.set(Some(first));
                e
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn trip<E: de::Error>(&self, what: Tripped) -> E {
        self.tripped.set(Some(what));
        E::custom(self.check().err().unwrap_or_default())
    }

    /// Enters one level; the guard leaves it when dropped.
    #[inline(always)]
    fn enter<E: de::Error>(&self) -> Result<Level<'_>, E> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(self.trip(Tripped::Depth));
        }
        self.depth.set(depth + 1);
        Ok(Level(self))
    }

    /// Spends one element of the budget.
    #[inline(always)]
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.elements_left.get().checked_sub(1) {
            Some(left) => {
                self.elements_left.set(left);
                Ok(())
            }
            None => Err(self.trip(Tripped::Elements)),
        }
    }
}

/// One level of nesting, left on drop (on errors too: a `Deserialize` impl
/// may recover from an error and go on).
struct Level<'b>(&'b Bounds);

impl Drop for Level<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.depth.set(self.0.depth.get() - 1);
    }
}

// ---------------------------------------------------------------------------
// The deserializer

/// A deserializer whose visitors, and every deserializer nested in them,
/// are bounded by `bounds`.
pub(super) struct Bounded<'b, D> {
    inner: D,
    bounds: &'b Bounds,
}

/// A visitor or seed, bounded: what it is handed is wrapped in turn.
pub(super) struct Wrap<'b, X> {
    inner: X,
    bounds: &'b Bounds,
}

impl<'b, D> Bounded<'b, D> {
    fn visitor<V>(&self, visitor: V) -> Wrap<'b, V> {
        Wrap { inner: visitor, bounds: self.bounds }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.visitor(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

// ---------------------------------------------------------------------------
// Seeds and visitors

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(self.bounds.wrap(deserializer))
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let _level = self.bounds.enter::<D::Error>()?;
        self.bounds.settle(self.inner.visit_some(self.bounds.wrap(deserializer)))
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let _level = self.bounds.enter::<D::Error>()?;
        self.bounds.settle(self.inner.visit_newtype_struct(self.bounds.wrap(deserializer)))
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let _level = self.bounds.enter::<A::Error>()?;
        self.bounds.settle(self.inner.visit_seq(Wrap { inner: seq, bounds: self.bounds }))
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let _level = self.bounds.enter::<A::Error>()?;
        self.bounds.settle(self.inner.visit_map(Wrap { inner: map, bounds: self.bounds }))
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let _level = self.bounds.enter::<A::Error>()?;
        self.bounds.settle(self.inner.visit_enum(Wrap { inner: data, bounds: self.bounds }))
    }
}

// ---------------------------------------------------------------------------
// Accesses: every element, entry and variant spends one of the budget

/// Sequences: one element of the budget per element produced.
impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        let element = self.inner.next_element_seed(Wrap { inner: seed, bounds: self.bounds })?;
        if element.is_some() {
            self.bounds.spend()?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Maps: one element of the budget per entry (counted at its key).
impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let key = self.inner.next_key_seed(Wrap { inner: seed, bounds: self.bounds })?;
        if key.is_some() {
            self.bounds.spend()?;
        }
        Ok(key)
    }

    #[inline]
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Wrap { inner: seed, bounds: self.bounds })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Enums: one element of the budget per variant.
impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'b, A> {
    type Error = A::Error;
    type Variant = Wrap<'b, A::Variant>;

    #[inline]
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), A::Error> {
        self.bounds.spend()?;
        let (value, variant) = self.inner.variant_seed(Wrap { inner: seed, bounds: self.bounds })?;
        Ok((value, Wrap { inner: variant, bounds: self.bounds }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Wrap { inner: seed, bounds: self.bounds })
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, Wrap { inner: visitor, bounds: self.bounds })
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(fields, Wrap { inner: visitor, bounds: self.bounds })
    }
}
