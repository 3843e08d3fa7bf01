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

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use rand::{rngs::StdRng, SeedableRng};

/// Shards of the `RwLock<HashMap>` baseline (and of the retire bench's engine): 4 × cores
/// rounded up to a power of two, quick_cache's default (8 on our 2-core machine). memokit's
/// engine in the other benches is *not* given this count: it uses the engine's own default
/// (one shard per 1,024 entries, 4-32 per core: 64 at 100k entries on 2 cores, 32 at 50k).
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

/// One workload on one cache: runs `iters` operations and returns their wall time.
pub(crate) type Runner<'a> = (&'static str, Box<dyn FnMut(u64) -> Duration + 'a>);

/// The paired mode's chunk in milliseconds, from `MEMOKIT_BENCH_CHUNK_MS` (default 10): a
/// run of operations ended by the cache's sync (memokit's `flush`).
fn chunk_ms() -> f64 {
    std::env::var("MEMOKIT_BENCH_CHUNK_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0)
}

/// The rounds of the paired mode, from `MEMOKIT_BENCH_PAIRED=<rounds>` (`None`: criterion).
pub(crate) fn paired_rounds() -> Option<usize> {
    std::env::var("MEMOKIT_BENCH_PAIRED").ok().and_then(|s| s.parse().ok())
}

/// Measures one group of runners: in the paired mode ([`run_paired`]) when `paired` gives its
/// rounds, else as a criterion group (each runner through `iter_custom`) set up by `setup`.
pub(crate) fn run_group(
    c: &mut Criterion,
    paired: Option<usize>,
    name: &str,
    runners: &mut [Runner<'_>],
    setup: impl FnOnce(&mut BenchmarkGroup<'_, WallTime>),
) {
    match paired {
        Some(rounds) => run_paired(name, runners, rounds),
        None => {
            let mut g = c.benchmark_group(name);
            setup(&mut g);
            for (bench, run) in runners.iter_mut() {
                g.bench_function(*bench, |b| b.iter_custom(&mut *run));
            }
            g.finish();
        }
    }
}

/// The paired mode (`MEMOKIT_BENCH_PAIRED=<rounds>`): the runners take turns, ~100 ms each, for
/// `rounds` rounds, so that load from other processes falls on all of them alike. Prints the
/// median throughput (and time per operation) of each and the median over rounds of the first
/// runner's throughput relative to each (above 1: the first is faster).
pub(crate) fn run_paired(name: &str, runners: &mut [Runner<'_>], rounds: usize) {
    // Calibrate: operations per ~10 ms chunk, per runner (`MEMOKIT_BENCH_CHUNK_MS` sets the
    // chunk; each chunk ends with the cache's sync, so longer chunks measure a longer sustained
    // load). A turn runs chunks until 100 ms (or one chunk, if longer) have passed, so a slow
    // phase (a lock convoy under load) cannot stretch a turn much.
    let chunk_secs = chunk_ms() / 1000.0;
    let chunk: Vec<u64> = runners
        .iter_mut()
        .map(|(_, run)| {
            let probe = 10_000;
            let t = run(probe).as_secs_f64().max(1e-6);
            ((chunk_secs / t) * probe as f64).max(1000.0) as u64
        })
        .collect();
    let mut ops: Vec<Vec<f64>> = vec![Vec::new(); runners.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in runners.iter_mut().enumerate() {
            let (mut n, mut spent) = (0u64, 0.0f64);
            while spent < 0.1f64.max(chunk_secs) {
                spent += run(chunk[i]).as_secs_f64();
                n += chunk[i];
            }
            ops[i].push(n as f64 / spent);
        }
    }
    let first = runners.first().map_or("", |r| r.0);
    println!("{name} (paired, {rounds} rounds of ~100 ms turns)");
    for (i, (bench, _)) in runners.iter().enumerate() {
        let rel: Vec<f64> = ops[0].iter().zip(&ops[i]).map(|(m, p)| m / p).collect();
        let per_sec = median(&ops[i]);
        println!(
            "  {bench:<26} {:>8.2} Mops/s {:>8.2} ns/op   {first}/this {:>5.2}x",
            per_sec / 1e6,
            1e9 / per_sec,
            median(&rel)
        );
    }
}

/// Runs `iters` operations split over two threads; `op(thread, position)`; returns the wall time
/// from the first thread's first operation to the slower thread's end. `pos` carries each
/// thread's place in its stream from one sample to the next.
///
/// Each thread reads the clock itself, after the start barrier and after its last operation:
/// the spawning thread, a third runnable thread on two cores, may be descheduled as the barrier
/// opens and read the clock only after the workers have done much (or all) of their work.
pub(crate) fn two_threads(
    iters: u64,
    pos: &mut [usize; 2],
    op: impl Fn(usize, usize) + Sync,
) -> Duration {
    let per = (iters / 2).max(1) as usize;
    let start = Barrier::new(2);
    let (start, op) = (&start, &op);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = pos
            .iter()
            .enumerate()
            .map(|(t, p)| {
                let first = *p;
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    for i in first..first + per {
                        op(t, i);
                    }
                    (t0, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    for p in pos.iter_mut() {
        *p += per;
    }
    let first = spans.iter().map(|s| s.0).min().expect("two threads");
    let last = spans.iter().map(|s| s.1).max().expect("two threads");
    last - first
}
