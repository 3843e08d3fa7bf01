//! Shared helpers of the engine benches: the caches under test behind one small trait, the
//! sharded `RwLock<HashMap>` baseline, seeded Zipf key streams, the ARC trace reader, a calibrated
//! busy compute, and a few statistics helpers.
//!
//! Each bench binary includes this module with `#[path = "common/mod.rs"] mod common;` and uses
//! only a part of it, hence the `dead_code` allowance below.
#![allow(dead_code)]

pub(crate) mod caches;
pub(crate) mod trace;
pub(crate) mod zipf;

use std::time::{Duration, Instant};

use rand::{rngs::StdRng, SeedableRng};

/// Shards of the `RwLock<HashMap>` baseline (and of the retire bench's engine): 4 × cores
/// rounded up to a power of two, quick_cache's default (8 on our 2-core machine). memokit's
/// engine in the other benches uses its own default (4-8 per core, chosen by capacity).
pub(crate) fn shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).next_power_of_two()
}

/// A seeded RNG; every bench derives its streams from fixed seeds.
pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Busy-waits for about `d` (the "~200 ns compute" of the `get_or_insert_with` benches).
#[inline(never)]
pub(crate) fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// True when run by `cargo bench` (which passes `--bench`); otherwise (e.g. `cargo test
/// --benches`) the plain-program benches run a tiny smoke version.
pub(crate) fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// True when `MEMOKIT_BENCH_QUICK` is set to anything but `0`.
pub(crate) fn quick_mode() -> bool {
    std::env::var("MEMOKIT_BENCH_QUICK").is_ok_and(|v| v != "0")
}

/// The median of `xs` (the mean of the middle two for an even count).
pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
