//! Micro-benchmarks of the per-step CPU paths that involve no database:
//! the payload codec round trip (bincode and JSON, on a plain struct and on
//! the serde shapes bincode cannot read back; encoded sizes are printed
//! once), step-ID formation and the replay of a 10,000-step history. Run
//! with `cargo bench -p hydra-runtime --bench cpu_paths` (add
//! `-- codec --quick` for the codec figures alone); criterion keeps the
//! previous run in `target/criterion` and reports the change against it.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hydra_runtime::{__private::replay_context, Codec, CodecRegistry, ExecutionId, RecordedStep, StepId};
use hydra_store::Store;
use serde::{Deserialize, Serialize};
use std::hint::black_box;

/// A payload of the size a typical step passes on: a few fields and a short list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    cents: i64,
    lines: Vec<(String, u32)>,
    paid: bool,
}

fn order() -> Order {
    Order {
        id: 42,
        customer: "customer-0001".into(),
        cents: 129_900,
        lines: (0..5).map(|i| (format!("sku-{i}"), i)).collect(),
        paid: true,
    }
}

// The serde shapes Rust users write, beside the plain `Order`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    Card {
        last4: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Cash,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Number(i64),
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    region: String,
    priority: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Flattened {
    id: u64,
    #[serde(flatten)]
    meta: Meta,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Skipping {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    tags: Vec<String>,
}

/// Benchmarks the encode + decode round trip of `value` under each built-in
/// codec, as the engine does it for a step output (encode verified by a
/// decode, then the replay's decode), and prints the encoded size once. A
/// codec that refuses the shape is reported, not timed.
fn codec_shape<T>(c: &mut Criterion, shape: &str, value: &T)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let codecs = CodecRegistry::builtin();
    for (name, codec) in [("bincode", Codec::Bincode), ("json", Codec::Json)] {
        let bytes = match codecs.encode_checked(codec, value) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!(
                    "codec {shape:>10} {name:>7}: refused at encode ({})",
                    e.chars().take(60).collect::<String>()
                );
                continue;
            }
        };
        assert_eq!(&codecs.decode::<T>(&bytes).expect("decodes"), value);
        eprintln!("codec {shape:>10} {name:>7}: {} bytes", bytes.len());
        c.bench_function(&format!("codec/{shape}/{name}/round_trip"), |b| {
            b.iter(|| {
                let bytes = codec.encode(black_box(value)).expect("encodes");
                let back: T = codecs.decode(black_box(&bytes)).expect("decodes");
                back
            })
        });
        c.bench_function(&format!("codec/{shape}/{name}/verified_round_trip"), |b| {
            b.iter(|| {
                let bytes = codecs.encode_checked(codec, black_box(value)).expect("encodes");
                let back: T = codecs.decode(black_box(&bytes)).expect("decodes");
                back
            })
        });
    }
}

fn codec(c: &mut Criterion) {
    codec_shape(c, "order", &order());
    codec_shape(c, "tagged", &Tagged::Card { last4: "4242".into(), note: None });
    codec_shape(c, "untagged", &vec![Untagged::Number(3), Untagged::Text("x".into())]);
    codec_shape(c, "flatten", &Flattened { id: 9, meta: Meta { region: "eu".into(), priority: 2 } });
    codec_shape(c, "skip", &Skipping { id: 1, note: None, tags: vec!["t".into()] });
    codec_shape(c, "value", &serde_json::json!({"a": [1, "two", null, {"b": 2.5}]}));
    let ints: std::collections::HashMap<u32, String> = (0..8).map(|i| (i, format!("v{i}"))).collect();
    codec_shape(c, "int_keys", &ints);
    let pairs: std::collections::BTreeMap<(u8, u8), String> = (0..8).map(|i| ((i, i + 1), format!("v{i}"))).collect();
    codec_shape(c, "tuple_keys", &pairs);
}

fn step_ids(c: &mut Criterion) {
    c.bench_function("step_id/first_call", |b| b.iter(|| StepId::new(black_box("charge_card"), black_box(1))));
    c.bench_function("step_id/repeated_call", |b| b.iter(|| StepId::new(black_box("charge_card"), black_box(17))));
}

const HISTORY: u32 = 10_000;

fn replay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("replay.db").display());
    // The store is never written: every step is answered from the history.
    let store: Store = rt.block_on(Store::connect(&url)).expect("store");
    let id = ExecutionId::from_string("0190f0f0-0000-7000-8000-000000000000");
    // The bincode figure is the historical one; JSON is the default codec.
    for (name, codec) in [("replay/10000_steps", Codec::Bincode), ("replay/10000_steps_json", Codec::Json)] {
        let output = codec.encode(&order()).expect("encodes");
        let history: Vec<RecordedStep> = (0..HISTORY)
            .map(|i| RecordedStep::completed(id.clone(), StepId::new("step", i + 1), i, output.clone()))
            .collect();
        c.bench_function(name, |b| {
            b.iter_batched(
                || history.clone(),
                |history| {
                    rt.block_on(async {
                        let ctx = replay_context(store.clone(), codec, history).expect("non-empty");
                        for _ in 0..HISTORY {
                            let o: Order = ctx
                                .step("step", |_| async { unreachable!("every step is in the history") })
                                .await
                                .expect("replayed");
                            black_box(o);
                        }
                    })
                },
                BatchSize::LargeInput,
            )
        });
    }
}

criterion_group!(benches, codec, step_ids, replay);
criterion_main!(benches);
