//! Micro-benchmarks of the per-step CPU paths that involve no database:
//! the payload codec round trip, step-ID formation and the replay of a
//! 10,000-step history. Run with
//! `cargo bench -p hydra-runtime --bench cpu_paths`; criterion keeps the
//! previous run in `target/criterion` and reports the change against it.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hydra_runtime::{__private::replay_context, Codec, ExecutionId, RecordedStep, StepId, Store};
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

fn codec(c: &mut Criterion) {
    let value = order();
    for (name, codec) in [("bincode", Codec::Bincode), ("json", Codec::Json)] {
        c.bench_function(&format!("codec/{name}/round_trip"), |b| {
            b.iter(|| {
                let bytes = codec.encode(black_box(&value)).expect("encodes");
                let back: Order = Codec::decode(black_box(&bytes)).expect("decodes");
                back
            })
        });
    }
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
    let output = Codec::Bincode.encode(&order()).expect("encodes");
    let history: Vec<RecordedStep> = (0..HISTORY)
        .map(|i| RecordedStep::completed(id.clone(), StepId::new("step", i + 1), i, output.clone()))
        .collect();
    c.bench_function("replay/10000_steps", |b| {
        b.iter_batched(
            || history.clone(),
            |history| {
                rt.block_on(async {
                    let ctx = replay_context(store.clone(), Codec::Bincode, history).expect("non-empty");
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

criterion_group!(benches, codec, step_ids, replay);
criterion_main!(benches);
