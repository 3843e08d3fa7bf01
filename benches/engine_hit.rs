//! Hit latency and multi-threaded throughput of the memokit engine against a plain sharded
//! `RwLock<HashMap>`, quick_cache and moka, all measured in the same run (see `BENCHMARKS.md`).
//!
//! Groups (criterion; one element = one cache operation, so `thrpt` is ops/s):
//! - `hit_1t`: one thread, `get` of a resident key, 100k resident entries, uniform keys.
//! - `miss_1t`: the same, `get` of absent keys.
//! - `zipf1.0_95r5w_2t` / `zipf1.0_50r50w_2t`: two threads, Zipf 1.0 over 1M keys, capacity
//!   100k (the map baseline is unbounded), reads `get`, writes `insert` of a fresh `Arc`.
//! - `zipf1.0_50r50w_weighted_2t`: the 50/50 mix with a weigher (1 to 16 by key, the same
//!   function for each cache), capacity 850k in weight (about 100k entries); the map baseline
//!   has no weights and is left out. memokit runs twice: with its default shards for a weigher
//!   (4 per core: it cannot tell how many entries a weight holds) and, as `memokit_shards`,
//!   with the count its `shards` docs advise for 100k entries (quick_cache is told the 100k).
//! - `zipf1.0_50r50w_ttl2s_2t`: the 50/50 mix with every store expiring after 2 s (memokit
//!   with the TTL, moka with `time_to_live`, memokit without): the cost of expiry at capacity.
//!   Its ratio column is `memokit_ttl/this`.
//! - `get_or_insert_zipf0.9_2t`: two threads, `get_or_insert_with` (moka: `get_with`) with a
//!   ~200 ns compute, Zipf 0.9 over 1M keys, capacity 50k.
//!
//! A two-thread run's time ends with the cache's `sync` (memokit `flush`, memokit_ttl
//! `run_maintenance`, moka `run_pending_tasks`): each cache pays for the work its own
//! operations deferred.
//!
//! Expiry in `zipf1.0_50r50w_ttl2s_2t`: moka expires only in its housekeeping, which runs on the
//! caller's threads (in its operations and in the timed `run_pending_tasks`), so moka_ttl pays
//! for all of its expiry. memokit_ttl's workers expire on their own 1 s tick, whenever it falls;
//! in the paired mode that is often during another cache's turn, where the work was not
//! charged to memokit_ttl (and took a core from the cache being timed). So memokit_ttl's timed
//! sync is `run_maintenance` (a flush, then every worker expires whatever is due now), and each
//! of its runs pays for the expiry of everything that came due up to its end. What remains
//! uncharged: a tick that falls in another cache's turn still expires what came due since
//! memokit_ttl's last run ended (at most one tick a second, each with at most the entries due
//! in the ~200 ms since; the tick is left at its default, since the default is what is
//! measured). In criterion's mode memokit_ttl runs alone, and its worker's ticks fall in its
//! own samples (or in criterion's pauses between them).
//!
//! Then (not timed) the duplicate-computation check: two threads ask for the same fresh keys at
//! once; a single-flight cache computes each key exactly once.
//!
//! Quick look: `cargo bench --bench engine_hit -- --warm-up-time 1 --measurement-time 3`.
//! On a loaded machine, `MEMOKIT_BENCH_PAIRED=15 cargo bench --bench engine_hit` runs the same
//! workloads with the caches taking turns instead (see `common::run_paired`): better ratios, no
//! criterion. Each turn runs chunks of ~10 ms, each ended by the cache's sync;
//! `MEMOKIT_BENCH_CHUNK_MS=100` measures a longer sustained load between syncs (memokit's
//! `get_or_insert_with` ratio dropped by about a fifth there on the AMD machine of session 21,
//! not on the Intel machine of session 24; its 95/5 and 50/50 ratios rose: `BENCHMARKS.md`).
//! `MEMOKIT_BENCH_ONLY=hit_1t` runs only the groups whose name contains `hit_1t`;
//! `MEMOKIT_BENCH_CACHES=memokit` only the caches whose name contains `memokit` (to profile;
//! `memokit|quick` keeps those whose name contains either).

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::caches::{BenchCache, Memokit, Moka, Quick, RwLockMap};
use common::zipf::{op_stream, Zipf, WRITE};
use common::{run_group, Runner};
use criterion::{Criterion, Throughput};
use rand::Rng;

type Val = Arc<u64>;

/// Length of every pre-drawn key stream (a power of two; streams are read cyclically).
const STREAM: usize = 1 << 20;
const MASK: usize = STREAM - 1;

const KEYS: u64 = 1_000_000;
const COMPUTE: Duration = Duration::from_nanos(200);
/// The capacity of the weighted group, in weight: about 100k entries of 8.5 on average.
const WEIGHED: u64 = 850_000;
/// The TTL of the `_ttl2s` group's stores.
const TTL: Duration = Duration::from_secs(2);

fn main() {
    let paired = common::paired_rounds();
    // `MEMOKIT_BENCH_ONLY=<substring>`: run only the groups whose name contains it.
    let only = std::env::var("MEMOKIT_BENCH_ONLY").unwrap_or_default();
    // `MEMOKIT_BENCH_CACHES=<substring>[|<substring>...]`: measure only the caches whose name
    // contains one of them (for a profiler; the ratio column then compares the remaining ones).
    let caches = std::env::var("MEMOKIT_BENCH_CACHES").unwrap_or_default();
    let mut c = Criterion::default().configure_from_args();
    let mut group = |name: &str, mut runners: Vec<Runner<'_>>| {
        runners.retain(|r| caches.split('|').any(|c| r.0.contains(c)));
        if name.contains(only.as_str()) && !runners.is_empty() {
            run_group(&mut c, paired, name, &mut runners, |g| {
                g.throughput(Throughput::Elements(1));
                g.sample_size(20);
            });
        }
    };

    // hit_1t: one thread, `get` of resident keys, 100k resident, uniform keys. Capacity above
    // the resident count so that approximate policies keep every entry.
    const RESIDENT: u64 = 100_000;
    let mut rng = common::rng(1);
    let keys: Vec<u64> = (0..STREAM).map(|_| rng.gen_range(0..RESIDENT)).collect();
    let (m, r, q, k) = four(RESIDENT * 2, RESIDENT);
    group("hit_1t", vec![hit(&m, &keys), hit(&r, &keys), hit(&q, &keys), hit(&k, &keys)]);
    // miss_1t: the same caches, `get` of absent keys (the first step of every miss).
    let absent: Vec<u64> = keys.iter().map(|k| k + (1 << 40)).collect();
    group("miss_1t", vec![hit(&m, &absent), hit(&r, &absent), hit(&q, &absent), hit(&k, &absent)]);
    drop((m, r, q, k));

    // Two threads, Zipf 1.0 over 1M keys, capacity 100k, reads and writes.
    let zipf = Zipf::new(KEYS, 1.0);
    for (name, write_ratio) in [("zipf1.0_95r5w_2t", 0.05), ("zipf1.0_50r50w_2t", 0.5)] {
        let s =
            [op_stream(&zipf, 11, STREAM, write_ratio), op_stream(&zipf, 12, STREAM, write_ratio)];
        let (m, r, q, k) = four(100_000, 100_000);
        group(name, vec![mixed(&m, &s), mixed(&r, &s), mixed(&q, &s), mixed(&k, &s)]);
    }

    // The same 50/50 mix with a weigher: each entry weighs 1 to 16 by its key
    // (`caches::weight_of`), in a capacity of 850k, about the 100k entries of the row above.
    let s = [op_stream(&zipf, 11, STREAM, 0.5), op_stream(&zipf, 12, STREAM, 0.5)];
    // memokit twice: with its default shards for a weigher, and with those its `shards` docs
    // advise for the 100k entries expected (as quick_cache is told them).
    let (m, ms, q, k) = (
        Memokit::weighted(WEIGHED, None),
        Memokit::weighted(WEIGHED, Some(100_000)),
        Quick::weighted(WEIGHED, 100_000),
        Moka::weighted(WEIGHED),
    );
    fill(&m, 100_000);
    fill(&ms, 100_000);
    fill(&q, 100_000);
    fill(&k, 100_000);
    let runners = vec![mixed(&m, &s), mixed(&ms, &s), mixed(&q, &s), mixed(&k, &s)];
    group("zipf1.0_50r50w_weighted_2t", runners);
    drop((m, ms, q, k));

    // The 50/50 mix at capacity with every store expiring 2 s after it (a tick is 1 s), so
    // that expired entries keep piling up for the workers to reclaim before they evict:
    // memokit with the TTL first, so that the ratio column compares it with moka's
    // `time_to_live` like for like; then memokit without the TTL (its row: with ÷ without).
    let zipf = Zipf::new(KEYS, 1.0);
    let s = [op_stream(&zipf, 11, STREAM, 0.5), op_stream(&zipf, 12, STREAM, 0.5)];
    drop(zipf);
    let (mt, kt, m) =
        (Memokit::with_ttl(100_000, TTL), Moka::with_ttl(100_000, TTL), Memokit::new(100_000));
    fill(&mt, 100_000);
    fill(&kt, 100_000);
    fill(&m, 100_000);
    group("zipf1.0_50r50w_ttl2s_2t", vec![mixed(&mt, &s), mixed(&kt, &s), mixed(&m, &s)]);
    drop((m, mt, kt));

    // Two threads, get_or_insert_with (moka: get_with), ~200 ns compute, Zipf 0.9, capacity 50k.
    let zipf = Zipf::new(KEYS, 0.9);
    let s = [zipf.stream(&mut common::rng(21), STREAM), zipf.stream(&mut common::rng(22), STREAM)];
    drop(zipf);
    let (m, _, q, k) = four(50_000, 50_000);
    group("get_or_insert_zipf0.9_2t", vec![goi(&m, &s), goi(&q, &s), goi(&k, &s)]);
    drop((m, q, k));

    c.final_summary();
    duplicate_computations();
}

/// The four caches with `capacity`, each holding keys `0..warm` (the most popular).
fn four(capacity: u64, warm: u64) -> (Memokit<Val>, RwLockMap<Val>, Quick<Val>, Moka<Val>) {
    let caches = (
        Memokit::new(capacity),
        RwLockMap::new(capacity),
        Quick::new(capacity),
        Moka::new(capacity),
    );
    fill(&caches.0, warm);
    fill(&caches.1, warm);
    fill(&caches.2, warm);
    fill(&caches.3, warm);
    caches
}

fn fill<C: BenchCache<Val>>(cache: &C, n: u64) {
    for k in 0..n {
        cache.insert(k, Arc::new(k));
    }
    cache.sync();
    let held = (0..n).filter(|&k| cache.get(k).is_some()).count() as u64;
    if held != n {
        println!("note: {} holds {held} of the {n} keys put in", cache.name());
    }
}

fn hit<'a, C: BenchCache<Val>>(cache: &'a C, keys: &'a [u64]) -> Runner<'a> {
    let mut i = 0usize;
    let run = move |iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(cache.get(black_box(keys[i & MASK])));
            i = i.wrapping_add(1);
        }
        start.elapsed()
    };
    (cache.name(), Box::new(run))
}

fn mixed<'a, C: BenchCache<Val>>(cache: &'a C, streams: &'a [Vec<u64>; 2]) -> Runner<'a> {
    let mut pos = [0usize; 2];
    let run = move |iters| {
        let ran = common::two_threads(iters, &mut pos, |t, i| {
            let op = streams[t][i & MASK];
            if op & WRITE != 0 {
                let k = op & !WRITE;
                cache.insert(k, Arc::new(k));
            } else {
                black_box(cache.get(op));
            }
        });
        ran + synced(cache)
    };
    (cache.name(), Box::new(run))
}

fn goi<'a, C: BenchCache<Val>>(cache: &'a C, streams: &'a [Vec<u64>; 2]) -> Runner<'a> {
    let mut pos = [0usize; 2];
    let run = move |iters| {
        let ran = common::two_threads(iters, &mut pos, |t, i| {
            let k = streams[t][i & MASK];
            black_box(cache.get_or_insert_with(k, || {
                common::spin_for(COMPUTE);
                Arc::new(k)
            }));
        });
        ran + synced(cache)
    };
    (cache.name(), Box::new(run))
}

/// The time `cache` takes to apply the work its operations left pending (memokit: stores still
/// in its workers' mailboxes, and with a TTL the expiry of what is due; moka: its read and
/// write logs, expiry included), charged to the run that left it.
/// Otherwise a cache that defers work ends each turn with a backlog that its threads work off
/// during the next cache's turn (in the paired mode) or sample.
fn synced<C: BenchCache<Val>>(cache: &C) -> Duration {
    let start = Instant::now();
    cache.sync();
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Duplicate computations

fn duplicate_computations() {
    let (lockstep, rendezvous) = if common::bench_mode() { (100_000, 2_000) } else { (1_000, 100) };
    println!();
    println!("duplicate computations, two threads asking for the same fresh keys at once");
    println!("(lockstep: both walk {lockstep} keys in the same order; rendezvous: a barrier before each of {rendezvous} keys)");
    println!("{:<12} {:>10} {:>11}", "cache", "lockstep", "rendezvous");
    let cap = 2 * lockstep as u64;
    report_dups(&Memokit::<Val>::new(cap), &Memokit::<Val>::new(cap), lockstep, rendezvous);
    report_dups(&Quick::<Val>::new(cap), &Quick::<Val>::new(cap), lockstep, rendezvous);
    report_dups(&Moka::<Val>::new(cap), &Moka::<Val>::new(cap), lockstep, rendezvous);
    report_dups(&RwLockMap::<Val>::new(cap), &RwLockMap::<Val>::new(cap), lockstep, rendezvous);
}

fn report_dups<C: BenchCache<Val>>(a: &C, b: &C, lockstep: usize, rendezvous: usize) {
    let l = count_dups(a, lockstep, false);
    let r = count_dups(b, rendezvous, true);
    let note = if a.name() == "rwlock_map" { "  (no single flight: for scale)" } else { "" };
    println!("{:<12} {l:>10} {r:>11}{note}", a.name());
}

/// Both threads ask for keys `0..n` in order; returns computations beyond one per key.
fn count_dups<C: BenchCache<Val>>(cache: &C, n: usize, barrier_each: bool) -> u64 {
    let computes = AtomicU64::new(0);
    let barrier = Barrier::new(2);
    // A longer compute under the barrier so both callers are surely inside at once.
    let work = if barrier_each { Duration::from_micros(200) } else { COMPUTE };
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for k in 0..n as u64 {
                    if barrier_each {
                        barrier.wait();
                    }
                    let v = cache.get_or_insert_with(k, || {
                        computes.fetch_add(1, Ordering::Relaxed);
                        common::spin_for(work);
                        Arc::new(k)
                    });
                    assert_eq!(*v, k, "{}: wrong value for key {k}", cache.name());
                }
            });
        }
    });
    computes.load(Ordering::Relaxed) - n as u64
}
