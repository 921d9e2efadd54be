//! Codec tests: shapes, tags, hostile bytes, custom codecs.

use super::bincode::{limit_bucket, unwrap_other_string};
use super::*;
use serde::Deserialize;
use std::sync::Arc;

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

// The serde shapes Rust users write, for the table test.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    Card {
        last4: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Cash,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Number(i64),
    Text(String),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    region: String,
    priority: u8,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Flattened {
    id: u64,
    #[serde(flatten)]
    meta: Meta,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Skipping {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    tags: Vec<String>,
}

/// A wrapper codec over another codec's bytes (a keyed XOR: a toy, not
/// cryptography), to test custom codecs and erased inner codecs.
struct Xor<C> {
    tag: u8,
    key: u8,
    inner: C,
}

impl<C: CustomCodec> CustomCodec for Xor<C> {
    fn tag(&self) -> u8 {
        self.tag
    }
    fn name(&self) -> &str {
        "xor"
    }
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        self.inner.encode(value, out)?;
        out[start..].iter_mut().for_each(|b| *b ^= self.key);
        Ok(())
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
    ) -> Result<(), String> {
        let plain: Vec<u8> = bytes.iter().map(|b| b ^ self.key).collect();
        self.inner.decode(&plain, visit)
    }
}

fn registry() -> CodecRegistry {
    CodecRegistry::with_custom(vec![
        Arc::new(Xor { tag: 200, key: 0x5a, inner: Json }),
        Arc::new(Xor { tag: 201, key: 0xa5, inner: Bincode }),
    ])
    .unwrap()
}

/// What happened to one value under one codec.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    RoundTrip,
    /// Refused at encode time, suggesting this codec.
    Refused(&'static str),
}

/// Encodes `value` with `codec` (verified); if that succeeds, the bytes
/// must decode back to an equal value: never "encodes fine, then fails
/// to decode". A refusal must name the type and suggest a codec.
fn fate<T>(reg: &CodecRegistry, codec: Codec, value: &T) -> Fate
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match reg.encode_checked(codec, value) {
        Err(e) => {
            assert!(e.contains(std::any::type_name::<T>()), "names the type: {e}");
            for hint in ["Codec::Json", "Codec::Bincode"] {
                if e.contains(&format!("use {hint}")) {
                    return Fate::Refused(hint);
                }
            }
            panic!("{codec:?} refused a {} without suggesting a codec: {e}", std::any::type_name::<T>())
        }
        Ok(bytes) => match reg.decode::<T>(&bytes) {
            Ok(back) => {
                assert_eq!(&back, value, "{codec:?} decoded a different value");
                Fate::RoundTrip
            }
            Err(e) => panic!("{codec:?} encoded a {} it cannot decode: {e}", std::any::type_name::<T>()),
        },
    }
}

#[test]
fn every_codec_round_trips_or_refuses_every_serde_shape() {
    use Fate::{Refused, RoundTrip};
    let mut ints = std::collections::HashMap::new();
    ints.insert(7u32, "seven".to_owned());
    ints.insert(11u32, "eleven".to_owned());
    let mut pairs = std::collections::BTreeMap::new();
    pairs.insert((1u8, 2u8), "a".to_owned());
    pairs.insert((3u8, 4u8), "b".to_owned());
    let reg = registry();
    let json_like = [RoundTrip, RoundTrip, RoundTrip, RoundTrip, RoundTrip, RoundTrip, RoundTrip];
    let bincode_like = [
        Refused("Codec::Json"),
        Refused("Codec::Json"),
        Refused("Codec::Json"),
        Refused("Codec::Json"),
        Refused("Codec::Json"),
        RoundTrip,
        RoundTrip,
    ];
    let cases = [
        (Codec::Json, json_like, Refused("Codec::Bincode")),
        (Codec::Bincode, bincode_like, RoundTrip),
        (Codec::Custom(200), json_like, Refused("Codec::Bincode")),
        (Codec::Custom(201), bincode_like, RoundTrip),
    ];
    for (codec, expected, tuple_keys) in cases {
        let fates = [
            fate(&reg, codec, &Tagged::Card { last4: "4242".into(), note: None }),
            fate(&reg, codec, &vec![Untagged::Number(3), Untagged::Text("x".into())]),
            fate(&reg, codec, &Flattened { id: 9, meta: Meta { region: "eu".into(), priority: 2 } }),
            fate(&reg, codec, &Skipping { id: 1, note: None, tags: vec!["t".into()] }),
            fate(&reg, codec, &serde_json::json!({"a": [1, "two", null, {"b": 2.5}]})),
            fate(&reg, codec, &Order { id: 1, items: vec!["x".into()], total: None }),
            fate(&reg, codec, &ints),
        ];
        assert_eq!(fates, expected, "{codec:?}");
        assert_eq!(fate(&reg, codec, &pairs), tuple_keys, "{codec:?} with tuple keys");
        assert_eq!(fate(&reg, codec, &Tagged::Cash), expected[0], "{codec:?} unit variant");
    }
}

#[test]
fn a_refusal_names_the_type_the_codec_and_a_codec_that_works() {
    let e = CodecRegistry::builtin().encode_checked(Codec::Bincode, &Tagged::Cash).unwrap_err();
    assert!(e.contains("Tagged") && e.contains("bincode") && e.contains("use Codec::Json"), "{e}");
    assert!(e.contains("AnyNotSupported"), "keeps the codec's own message: {e}");
    let e = CodecRegistry::builtin().encode_checked(Codec::Json, &f64::NAN).unwrap_err();
    assert!(e.contains("f64") && e.contains("use Codec::Bincode"), "{e}");
    let e = CodecRegistry::builtin().encode_checked(Codec::Custom(250), &1u8).unwrap_err();
    assert!(e.contains("unknown codec tag 250"), "{e}");
}

/// bincode tag, then a varint length prefix of 2^56 for a string.
const HOSTILE_STRING: [u8; 10] = [1, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1];

#[test]
fn a_hostile_length_prefix_is_an_error_not_an_abort() {
    let err = Codec::decode::<String>(&HOSTILE_STRING).unwrap_err();
    assert!(err.contains("bincode") && err.contains("limit"), "{err}");
    let err = Codec::decode::<Vec<u8>>(&HOSTILE_STRING).unwrap_err();
    assert!(err.contains("bincode"), "{err}");
    // Inside a value, and through the erased path of a wrapper codec.
    let nested = [1, 1, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1];
    assert!(Codec::decode::<Vec<String>>(&nested).is_err());
    assert!(Codec::decode::<Option<String>>(&nested).is_err());
    let reg = registry();
    let wrapped: Vec<u8> = std::iter::once(201).chain(HOSTILE_STRING[1..].iter().map(|b| b ^ 0xa5)).collect();
    let err = reg.decode::<String>(&wrapped).unwrap_err();
    assert!(err.contains("xor (tag 201)") && err.contains("limit"), "{err}");
    // A hostile sequence length only costs what the bytes hold.
    assert!(Codec::decode::<Vec<u64>>(&HOSTILE_STRING).is_err());
}

#[test]
fn valid_payloads_stay_within_the_bincode_limit() {
    // A u128 of one byte claims 16: the worst ratio a valid payload has.
    let wide = vec![0u128; 10_000];
    let small = (0..5_000u64).collect::<Vec<_>>();
    let text = "x".repeat(100_000);
    let reg = registry();
    for codec in [Codec::Bincode, Codec::Custom(201)] {
        assert_eq!(reg.decode::<Vec<u128>>(&reg.encode_checked(codec, &wide).unwrap()).unwrap(), wide);
        assert_eq!(reg.decode::<Vec<u64>>(&reg.encode_checked(codec, &small).unwrap()).unwrap(), small);
        assert_eq!(reg.decode::<String>(&reg.encode_checked(codec, &text).unwrap()).unwrap(), text);
    }
}

#[test]
fn limits_grow_with_the_payload_in_powers_of_16() {
    assert_eq!(limit_bucket(0), Ok(0));
    assert_eq!(limit_bucket(256), Ok(0), "16 × 256 = 4 KiB");
    assert_eq!(limit_bucket(257), Ok(1));
    assert_eq!(limit_bucket(4096), Ok(1));
    assert_eq!(limit_bucket(4097), Ok(2));
    if usize::BITS >= 64 {
        assert_eq!(limit_bucket(1 << 32), Ok(6));
        assert!(limit_bucket((1 << 32) + 1).unwrap_err().contains("4 GiB"));
    }
}

#[test]
fn custom_codecs_are_dispatched_by_tag_and_checked_at_registration() {
    let reg = registry();
    let v = Order { id: 3, items: vec!["a".into()], total: Some(1) };
    let bytes = reg.encode_checked(Codec::Custom(200), &v).unwrap();
    assert_eq!(bytes[0], 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&bytes[1..]).is_err(), "not plain JSON");
    assert_eq!(reg.decode::<Order>(&bytes).unwrap(), v);
    // Without the codec: a clear error, no panic.
    let err = Codec::decode::<Order>(&bytes).unwrap_err();
    assert!(err.contains("unknown codec tag 200") && err.contains("register_codec"), "{err}");
    let err = CodecRegistry::builtin().decode::<Order>(&bytes).unwrap_err();
    assert!(err.contains("unknown codec tag 200"), "{err}");
    assert!(Codec::decode::<Order>(&[5, 0]).unwrap_err().contains("reserved"));
    assert!(Codec::Custom(200).encode(&v).is_err(), "custom codecs encode through a registry");
    // Registration: reserved and duplicate tags are refused.
    let err = CodecRegistry::with_custom(vec![Arc::new(Json)]).unwrap_err();
    assert!(err.contains("tag 2") && err.contains("reserved"), "{err}");
    let err = CodecRegistry::with_custom(vec![
        Arc::new(Xor { tag: 130, key: 1, inner: Json }),
        Arc::new(Xor { tag: 130, key: 2, inner: Bincode }),
    ])
    .unwrap_err();
    assert!(err.contains("tag 130"), "{err}");
    assert!(reg.supports(Codec::Custom(201)) && !reg.supports(Codec::Custom(202)));
    // Trailing bytes after a wrapped value are an error too.
    let mut long = reg.encode(Codec::Custom(201), &5u32).unwrap();
    long.push(0xa5);
    assert!(reg.decode::<u32>(&long).unwrap_err().contains("trailing"));
    let mut long = reg.encode(Codec::Custom(200), &5u32).unwrap();
    long.extend_from_slice(&[b' ' ^ 0x5a, b'x' ^ 0x5a]);
    assert!(reg.decode::<u32>(&long).is_err());
}

/// A recursive type: each level costs one byte with bincode (the variant).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

fn tree(depth: usize) -> Tree {
    (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
}

/// Recursion through a sequence and a newtype struct.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Rose(Vec<Rose>);

/// Recursion through `Some` and a struct.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Chain {
    next: Option<Box<Chain>>,
}

/// The bincode tag, a million bytes of 1 (`Node`, a sequence of one, `Some`),
/// then a 0 (`Leaf`, an empty sequence, `None`).
fn hostile_nesting() -> Vec<u8> {
    let mut bytes = vec![Bincode::TAG];
    bytes.extend(std::iter::repeat_n(1u8, 1_000_000));
    bytes.push(0);
    bytes
}

/// The same payload under the wrapper codec with tag 201 (XOR 0xa5 around Bincode).
fn wrapped_201(bincode_payload: &[u8]) -> Vec<u8> {
    std::iter::once(201).chain(bincode_payload[1..].iter().map(|b| b ^ 0xa5)).collect()
}

// Without a depth limit this overflows the stack and aborts the whole test
// process (run it alone: `cargo test -p hydra-runtime --lib codec::tests::a_hostile_nesting`).
#[test]
fn a_hostile_nesting_is_an_error_not_a_stack_overflow() {
    let hostile = hostile_nesting();
    let reg = registry();
    let errors = [
        Codec::decode::<Tree>(&hostile).unwrap_err(),
        Codec::decode::<Rose>(&hostile).unwrap_err(),
        Codec::decode::<Chain>(&hostile).unwrap_err(),
        // The erased path of a wrapper codec around Bincode.
        reg.decode::<Tree>(&wrapped_201(&hostile)).unwrap_err(),
        reg.decode::<Rose>(&wrapped_201(&hostile)).unwrap_err(),
    ];
    for err in &errors[..3] {
        assert!(err.starts_with("bincode: nesting deeper than 128 levels"), "{err}");
    }
    for err in &errors[3..] {
        assert!(err.contains("xor (tag 201)") && err.contains("nesting deeper than 128 levels"), "{err}");
    }
}

/// The bincode tag, then a varint length prefix of u64::MAX.
const HOSTILE_COUNT: [u8; 10] = [1, 0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

#[derive(Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Unit;

// Without an element budget this loops ~2^64 times over elements that take
// no bytes (a hang, not an error): run the unfixed version under `timeout 20`.
#[test]
fn a_hostile_count_of_zero_sized_elements_is_an_error_not_a_hang() {
    let reg = registry();
    let errors = [
        Codec::decode::<Vec<()>>(&HOSTILE_COUNT).unwrap_err(),
        Codec::decode::<Vec<Unit>>(&HOSTILE_COUNT).unwrap_err(),
        Codec::decode::<Vec<[u64; 0]>>(&HOSTILE_COUNT).unwrap_err(),
        Codec::decode::<std::collections::BTreeMap<(), ()>>(&HOSTILE_COUNT).unwrap_err(),
        Codec::decode::<std::collections::HashSet<Unit>>(&HOSTILE_COUNT).unwrap_err(),
        reg.decode::<Vec<()>>(&wrapped_201(&HOSTILE_COUNT)).unwrap_err(),
    ];
    for err in &errors {
        assert!(err.contains("elements") && err.contains("9 bytes"), "{err}");
    }
    assert!(errors[0].starts_with("bincode: "), "{}", errors[0]);
    assert!(errors[5].contains("xor (tag 201)"), "{}", errors[5]);
}

#[test]
fn legitimate_nesting_round_trips_and_too_deep_is_refused_at_encode() {
    let reg = registry();
    for codec in [Codec::Bincode, Codec::Custom(201)] {
        let shallow = tree(100);
        let bytes = reg.encode_checked(codec, &shallow).unwrap();
        assert_eq!(reg.decode::<Tree>(&bytes).unwrap(), shallow, "{codec:?}");
        let deep = tree(200);
        let e = reg.encode_checked(codec, &deep).unwrap_err();
        assert!(e.contains(std::any::type_name::<Tree>()), "names the type: {e}");
        assert!(e.contains("nesting deeper than 128 levels"), "{codec:?}: {e}");
        // JSON nests at most 128 levels too: no codec to suggest, and no
        // claim about self-describing shapes.
        assert!(e.contains("no built-in codec reads it back either"), "{codec:?}: {e}");
        assert!(!e.contains("self-describing") && !e.contains("use Codec::"), "{codec:?}: {e}");
        // What is stored can be read back: the refused bytes would not.
        let raw = reg.encode(codec, &deep).unwrap();
        assert!(reg.decode::<Tree>(&raw).unwrap_err().contains("nesting deeper than 128 levels"));
    }
    // JSON refuses it too, and says why.
    let e = reg.encode_checked(Codec::Json, &tree(200)).unwrap_err();
    assert!(e.contains("no built-in codec reads it back either") && !e.contains("cannot write maps"), "{e}");
}

#[test]
fn legitimate_zero_sized_elements_round_trip_within_the_budget() {
    let reg = registry();
    for codec in [Codec::Bincode, Codec::Custom(201)] {
        let few = vec![(); 1000];
        assert_eq!(reg.decode::<Vec<()>>(&reg.encode_checked(codec, &few).unwrap()).unwrap(), few);
        // Beyond 16 per byte + 1024: refused at encode time, with JSON
        // (which spends bytes on each element) suggested.
        let many = vec![(); 5000];
        let e = reg.encode_checked(codec, &many).unwrap_err();
        assert!(e.contains("elements") && e.contains("use Codec::Json"), "{codec:?}: {e}");
        assert!(!e.contains("self-describing"), "{codec:?}: {e}");
    }
}

// Through erased-serde (a wrapper codec) an error is re-wrapped at every
// level of nesting, and bincode displays it as `OtherString("…")` with the
// message escaped inside: left alone, its size doubles per level (at depth
// 100, a hang and then out of memory).
#[test]
fn an_error_deep_in_a_wrapped_payload_keeps_its_size() {
    let mut bad_variant = vec![Bincode::TAG];
    bad_variant.extend(std::iter::repeat_n(1u8, 100));
    let truncated = bad_variant.clone();
    bad_variant.push(7);
    let reg = registry();
    let cases = [
        (&bad_variant, "invalid value: integer `7`, expected variant index 0 <= i < 2"),
        (&truncated, "UnexpectedEnd { additional: 1 }"),
    ];
    for (bytes, says) in cases {
        let err = reg.decode::<Tree>(&wrapped_201(bytes)).unwrap_err();
        assert_eq!(err, format!("xor (tag 201): {says}"));
        let err = Codec::decode::<Tree>(bytes).unwrap_err();
        assert_eq!(err, format!("bincode: {says}"));
    }
    // A hostile length prefix inside a wrapped value is still explained.
    let nested = wrapped_201(&[1, 1, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1]);
    let err = reg.decode::<Vec<String>>(&nested).unwrap_err();
    assert!(err.contains("bincode limit exceeded"), "{err}");
}

#[test]
fn bincode_messages_are_unwrapped_from_their_debug_form() {
    let text = "a \"quoted\" \\ back\tslash\n, é, \u{200b}, \0 end";
    let once = format!("{:?}", ::bincode::error::DecodeError::OtherString(text.into()));
    let twice = format!("{:?}", ::bincode::error::DecodeError::OtherString(once.clone()));
    assert!(twice.starts_with("OtherString(\"OtherString(\\\""), "{twice}");
    assert_eq!(unwrap_other_string(once), text);
    assert_eq!(unwrap_other_string(twice), text);
    for kept in ["LimitExceeded", "Serde(AnyNotSupported)", "OtherString(\"a\" \"b\")", "OtherString(\"\\x\")"] {
        assert_eq!(unwrap_other_string(kept.into()), kept);
    }
}
