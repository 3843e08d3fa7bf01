//! A memoized call that hits, against the engine's own hit, the `cached` crate's `#[cached]`
//! and moka's `get_with`, for the same function in the same run.
//!
//! `cargo bench --bench memoize -- --warm-up-time 1 --measurement-time 3`
//!
//! Every variant caches `f(x) = Arc::new(x * x)` for the same 1 000 resident `u64` keys and
//! looks them up in the same order; values are `Arc<u64>`, so every hit clones an `Arc`.
//! `engine_get_in_key` is the engine's hit on entries written as the memoizer writes them:
//! under a generation declared in the key (`InsertOptions::primary_in_key`; the memoizer keys
//! results by its function's version), the fair baseline for the memoizer's own overhead.
//! `engine_get_versioned` is the hit on entries whose generation every lookup checks (as a
//! method's receiver version is). `memokit_timeout` is the memoized call with the default
//! timeout (300 s): its hit also reads the entry's deadline.

use std::hint::black_box;
use std::sync::{Arc, LazyLock};

use criterion::{criterion_group, criterion_main, Criterion};
use memokit::{memoize, Memoizer, Timeout};
use memokit_engine::{Engine, InsertOptions};

const KEYS: u64 = 1_000;

fn compute(x: u64) -> Arc<u64> {
    Arc::new(x.wrapping_mul(x))
}

static MEMO: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(100_000).build().expect("memoizer"));

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn memokit_square(x: u64) -> Arc<u64> {
    compute(x)
}

#[memoize(memoizer = &MEMO)]
fn memokit_square_timeout(x: u64) -> Arc<u64> {
    compute(x)
}

#[cached::proc_macro::cached]
fn cached_square(x: u64) -> Arc<u64> {
    compute(x)
}

fn hits(c: &mut Criterion) {
    let mut g = c.benchmark_group("memoized_hit");
    let keys: Vec<u64> = (0..KEYS).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20).collect();
    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) % keys.len();
        keys[i]
    };

    for k in 0..KEYS {
        memokit_square(k);
    }
    MEMO.flush();
    g.bench_function("memokit", |b| b.iter(|| memokit_square(black_box(next() % KEYS))));
    assert_eq!(memokit_square_memo().stats().misses, KEYS, "every measured memokit call hit");
    for k in 0..KEYS {
        memokit_square_timeout(k);
    }
    MEMO.flush();
    g.bench_function("memokit_timeout", |b| {
        b.iter(|| memokit_square_timeout(black_box(next() % KEYS)))
    });
    assert_eq!(memokit_square_timeout_memo().stats().misses, KEYS, "every measured call hit");

    let engine: Engine<u64, Arc<u64>> =
        Engine::builder().max_capacity(100_000).build().expect("engine");
    for k in 0..KEYS {
        engine.insert(k, compute(k));
    }
    engine.flush();
    g.bench_function("engine_get", |b| b.iter(|| engine.get(&black_box(next() % KEYS))));
    // The engine's own hit on entries written under a generation, as the memoizer writes them.
    let versioned: Engine<u64, Arc<u64>> =
        Engine::builder().max_capacity(100_000).build().expect("engine");
    let gen = versioned.new_generation();
    for k in 0..KEYS {
        versioned.insert_with_options(k, compute(k), InsertOptions::new().generations(gen, None));
    }
    versioned.flush();
    g.bench_function("engine_get_versioned", |b| {
        b.iter(|| versioned.get(&black_box(next() % KEYS)))
    });
    // As the memoizer stores: the generation is declared in the key, so no hit checks it.
    let in_key: Engine<u64, Arc<u64>> =
        Engine::builder().max_capacity(100_000).build().expect("engine");
    let gen = in_key.new_generation();
    let opts = InsertOptions::new().generations(gen, None).primary_in_key();
    for k in 0..KEYS {
        in_key.insert_with_options(k, compute(k), opts);
    }
    in_key.flush();
    g.bench_function("engine_get_in_key", |b| b.iter(|| in_key.get(&black_box(next() % KEYS))));
    g.bench_function("engine_get_or_insert_with", |b| {
        b.iter(|| {
            let k = black_box(next() % KEYS);
            engine.get_or_insert_with(k, || compute(k))
        })
    });

    for k in 0..KEYS {
        cached_square(k);
    }
    g.bench_function("cached", |b| b.iter(|| cached_square(black_box(next() % KEYS))));

    let moka: moka::sync::Cache<u64, Arc<u64>> = moka::sync::Cache::new(100_000);
    for k in 0..KEYS {
        moka.insert(k, compute(k));
    }
    g.bench_function("moka_get_with", |b| {
        b.iter(|| {
            let k = black_box(next() % KEYS);
            moka.get_with(k, || compute(k))
        })
    });
    g.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);
