//! A memoized call that hits, against the engine's own hit, the `cached` crate's `#[cached]`
//! and moka's `get_with`, for the same function in the same run.
//!
//! `cargo bench --bench memoize -- --warm-up-time 1 --measurement-time 3` (criterion), or, on
//! a loaded machine, `MEMOKIT_BENCH_PAIRED=15 cargo bench --bench memoize`: the variants take
//! turns of ~100 ms and the ratios are medians over rounds (`common::run_paired`).
//!
//! Every variant caches `f(x) = Arc::new(x * x)` for the same 1 000 resident `u64` keys and
//! looks them up in the same order; values are `Arc<u64>`, so every hit clones an `Arc`.
//! `cached_timeout` is `cached` with a timeout (`#[cached(time = ..)]`, its `TimedCache`), the
//! peer of `memokit_timeout`. The group `memoized_hit_2t` makes the same hits from two threads
//! at once (`cached` keeps a function's results behind one mutex; memokit and moka shard them).
//! `engine_get_in_key` is the engine's hit on entries written as the memoizer writes them:
//! under a generation declared in the key (`InsertOptions::primary_in_key`; the memoizer keys
//! results by its function's version), the fair baseline for the memoizer's own overhead.
//! `engine_get_versioned` is the hit on entries whose generation every lookup checks (as a
//! method's receiver version is). `memokit_timeout` is the memoized call with a timeout (a
//! day, so that no run outlasts it; the default is 300 s): its hit also reads the entry's
//! deadline.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use common::{run_group, Runner};
use criterion::Criterion;
use memokit::{memoize, Memoizer, Timeout};
use memokit_engine::{Engine, InsertOptions};

const KEYS: u64 = 1_000;

/// Calls of `compute`: every one is a miss (or a warm-up store); none may happen while measuring.
static COMPUTES: AtomicU64 = AtomicU64::new(0);

fn compute(x: u64) -> Arc<u64> {
    COMPUTES.fetch_add(1, Ordering::Relaxed);
    Arc::new(x.wrapping_mul(x))
}

static MEMO: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(100_000).build().expect("memoizer"));

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn memokit_square(x: u64) -> Arc<u64> {
    compute(x)
}

#[memoize(memoizer = &MEMO, timeout = Timeout::After(Duration::from_secs(86_400)))]
fn memokit_square_timeout(x: u64) -> Arc<u64> {
    compute(x)
}

#[cached::proc_macro::cached]
fn cached_square(x: u64) -> Arc<u64> {
    compute(x)
}

/// `cached` with a timeout (its `TimedCache`), the peer of `memokit_timeout`.
#[cached::proc_macro::cached(time = 86_400)]
fn cached_square_timeout(x: u64) -> Arc<u64> {
    compute(x)
}

/// An engine holding every key, stored with `opts`.
fn engine_with(opts: impl Fn(&Engine<u64, Arc<u64>>) -> InsertOptions) -> Engine<u64, Arc<u64>> {
    let e = Engine::builder().max_capacity(100_000).build().expect("engine");
    let opts = opts(&e);
    for k in 0..KEYS {
        e.insert_with_options(k, compute(k), opts);
    }
    e.flush();
    e
}

/// A variant: `call` of every key in the shared order, `iters` times.
fn runner<'a>(name: &'static str, keys: &'a [u64], call: impl Fn(u64) + 'a) -> Runner<'a> {
    let mut i = 0usize;
    let run = move |iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            i = (i + 1) % keys.len();
            call(black_box(keys[i]));
        }
        start.elapsed()
    };
    (name, Box::new(run))
}

/// A two-thread variant: each thread calls `call` on the keys in the shared order, starting half
/// the key list apart; `iters` calls in all (see `common::two_threads`).
fn two_runner<'a>(
    name: &'static str,
    keys: &'a [u64],
    call: impl Fn(u64) + Sync + 'a,
) -> Runner<'a> {
    let mut pos = [0, keys.len() / 2];
    let run = move |iters: u64| {
        common::two_threads(iters, &mut pos, |_, i| call(black_box(keys[i % keys.len()])))
    };
    (name, Box::new(run))
}

fn main() {
    let keys: Vec<u64> =
        (0..KEYS).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) % KEYS).collect();
    for k in 0..KEYS {
        memokit_square(k);
        memokit_square_timeout(k);
        cached_square(k);
        cached_square_timeout(k);
    }
    MEMO.flush();
    let in_key = engine_with(|e| {
        InsertOptions::new().generations(e.new_generation(), None).primary_in_key()
    });
    let versioned = engine_with(|e| InsertOptions::new().generations(e.new_generation(), None));
    let plain = engine_with(|_| InsertOptions::new());
    let moka: moka::sync::Cache<u64, Arc<u64>> = moka::sync::Cache::new(100_000);
    for k in 0..KEYS {
        moka.insert(k, compute(k));
    }
    // As `MEMO.flush()` and `engine_with` do for memokit: no store's upkeep left for the
    // measured calls.
    moka.run_pending_tasks();

    let warm = COMPUTES.load(Ordering::Relaxed);

    let mut runners = vec![
        runner("memokit", &keys, |k| drop(black_box(memokit_square(k)))),
        runner("memokit_timeout", &keys, |k| drop(black_box(memokit_square_timeout(k)))),
        runner("engine_get_in_key", &keys, |k| drop(black_box(in_key.get(&k)))),
        runner("engine_get_versioned", &keys, |k| drop(black_box(versioned.get(&k)))),
        runner("engine_get", &keys, |k| drop(black_box(plain.get(&k)))),
        runner("engine_get_or_insert_with", &keys, |k| {
            drop(black_box(plain.get_or_insert_with(k, || compute(k))))
        }),
        runner("cached", &keys, |k| drop(black_box(cached_square(k)))),
        runner("cached_timeout", &keys, |k| drop(black_box(cached_square_timeout(k)))),
        runner("moka_get_with", &keys, |k| drop(black_box(moka.get_with(k, || compute(k))))),
    ];
    let mut c = Criterion::default().configure_from_args();
    run_group(&mut c, common::paired_rounds(), "memoized_hit", &mut runners, |_| {});
    drop(runners);

    // The same hits from two threads at once, each walking the keys from its own place.
    let mut two = vec![
        two_runner("memokit", &keys, |k| drop(black_box(memokit_square(k)))),
        two_runner("engine_get_in_key", &keys, |k| drop(black_box(in_key.get(&k)))),
        two_runner("cached", &keys, |k| drop(black_box(cached_square(k)))),
        two_runner("moka_get_with", &keys, |k| drop(black_box(moka.get_with(k, || compute(k))))),
    ];
    run_group(&mut c, common::paired_rounds(), "memoized_hit_2t", &mut two, |_| {});
    drop(two);
    c.final_summary();
    assert_eq!(memokit_square_memo().stats().misses, KEYS, "every measured memokit call hit");
    assert_eq!(memokit_square_timeout_memo().stats().misses, KEYS, "every measured call hit");
    // Every variant (the `cached` and moka ones included, which keep no count here) hit.
    assert_eq!(COMPUTES.load(Ordering::Relaxed), warm, "no measured call computed (missed)");
}
