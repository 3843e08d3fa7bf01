//! Hit ratio at equal capacity: memokit against moka and quick_cache on the ARC traces (OLTP, P3;
//! Megiddo & Modha, FAST 03) and on synthetic Zipf workloads with and without scans; then two
//! workloads that probe the policy's weak spots: a loop over 1.5 × the capacity (defeats
//! recency: LRU and FIFO never hit) and a Zipf 0.9 whose popularity order is reshuffled every
//! 200k requests (defeats long-lived frequency counts).
//!
//! A plain program (no timing): for every request, `get`; on a miss, `insert`. memokit and moka
//! both defer work (memokit applies inserts on its workers; moka logs reads and writes and
//! applies them, admission and eviction included, in its housekeeping), so each runs twice
//! with the same synchronisation points: `memokit` and `moka` sync after every miss (memokit
//! `flush`, moka `run_pending_tasks`: the policy sees each insert before the next request),
//! `memokit~` and `moka~` never do (what a server sees: memokit's workers and moka's own
//! housekeeping run as they would). quick_cache applies everything in the call: it needs no
//! sync and runs once, in both comparisons. "vs best" compares the synced columns,
//! "vs best~" the unsynced ones.
//!
//! `cargo bench --bench hit_ratio`; `MEMOKIT_BENCH_QUICK=1` shortens every workload;
//! `MEMOKIT_TRACES=<dir>` points at the trace folder (default `../shared/traces`).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use common::caches::{BenchCache, Memokit, Moka, Quick};
use common::trace::load_arc;
use common::zipf::Zipf;

/// One workload: a request stream and the capacities to try.
struct Workload {
    name: String,
    requests: Vec<u64>,
    capacities: Vec<u64>,
}

fn main() {
    let (quick, smoke) = (common::quick_mode(), !common::bench_mode());
    // Caps on requests per workload: full, quick, smoke (`cargo test --benches`).
    let limit = if smoke {
        20_000
    } else if quick {
        400_000
    } else {
        usize::MAX
    };
    let zipf_len = if smoke {
        20_000
    } else if quick {
        500_000
    } else {
        1_000_000
    };
    let started = Instant::now();

    let mut workloads = Vec::new();
    if let Some(requests) = load_arc("OLTP.lis.zst", limit) {
        let capacities = vec![1_000, 2_000, 5_000, 10_000];
        workloads.push(Workload { name: "ARC OLTP".into(), requests, capacities });
    }
    if let Some(requests) = load_arc("P3.lis.zst", limit) {
        let capacities = vec![16_000, 32_000, 64_000];
        workloads.push(Workload { name: "ARC P3".into(), requests, capacities });
    }
    for (i, s) in [0.8, 1.0].into_iter().enumerate() {
        let zipf = Zipf::new(1_000_000, s);
        let requests = zipf.stream(&mut common::rng(100 + i as u64), zipf_len);
        let capacities = vec![10_000, 100_000];
        workloads.push(Workload { name: format!("Zipf {s:.1}"), requests, capacities });
    }

    println!(
        "hit ratio (%) at equal capacity; memokit and moka sync after each miss (flush, \
         run_pending_tasks), memokit~ and moka~ never; quick_cache needs no sync"
    );
    println!(
        "Zipf: 1M keys; scans: a scan of `capacity` new keys after every 5 x capacity requests"
    );
    println!("loop: keys 0..1.5 x capacity in turn; shifting: new keys for every rank each 200k");
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "workload",
        "capacity",
        "memokit",
        "moka",
        "quick_cache",
        "vs best",
        "memokit~",
        "moka~",
        "vs best~",
        "requests"
    );
    for w in &workloads {
        for &cap in &w.capacities {
            row(&w.name, cap, &w.requests);
        }
    }
    // Zipf with periodic scans: after every 5 × capacity Zipf requests, a scan of `capacity`
    // keys never seen before (one-hit wonders that a scan-resistant policy keeps out).
    for (i, s) in [0.8, 1.0].into_iter().enumerate() {
        let zipf = Zipf::new(1_000_000, s);
        for cap in [10_000u64, 100_000] {
            let mut rng = common::rng(200 + i as u64);
            let mut requests = Vec::with_capacity(zipf_len * 6 / 5);
            let mut next_scan_key = 1u64 << 40;
            while requests.len() < zipf_len {
                requests.extend(zipf.stream(&mut rng, 5 * cap as usize));
                requests.extend(next_scan_key..next_scan_key + cap);
                next_scan_key += cap;
            }
            requests.truncate(zipf_len + zipf_len / 5);
            row(&format!("Zipf {s:.1} + scans"), cap, &requests);
        }
    }
    for cap in [10_000u64, 100_000] {
        let period = cap * 3 / 2;
        let requests: Vec<u64> = (0..zipf_len as u64).map(|t| t % period).collect();
        row("loop 1.5 x capacity", cap, &requests);
    }
    // Zipf 0.9 over 1M keys; every 200k requests, rank r maps to a new key (an odd multiplier
    // per epoch, a bijection of u64).
    let zipf = Zipf::new(1_000_000, 0.9);
    let ranks = zipf.stream(&mut common::rng(300), zipf_len);
    let requests: Vec<u64> = ranks
        .iter()
        .enumerate()
        .map(|(t, &r)| {
            let epoch = (t / 200_000) as u64;
            r.wrapping_mul((0x9E37_79B9_7F4A_7C15 ^ (epoch << 1)) | 1)
        })
        .collect();
    for cap in [10_000u64, 100_000] {
        row("Zipf 0.9 shifting", cap, &requests);
    }
    println!("(total {:.0} s)", started.elapsed().as_secs_f64());
}

fn row(name: &str, cap: u64, requests: &[u64]) {
    // The five simulations are independent (and deterministic, but for the unsynced ones and
    // moka's seeded-at-random hashing): run them side by side.
    let (memokit, memokit_u, moka, moka_u, quick) = std::thread::scope(|s| {
        let memokit = s.spawn(|| simulate(&Memokit::<()>::new(cap), requests, true));
        let memokit_u = s.spawn(|| simulate(&Memokit::<()>::new(cap), requests, false));
        let moka = s.spawn(|| simulate(&Moka::<()>::new(cap), requests, true));
        let moka_u = s.spawn(|| simulate(&Moka::<()>::new(cap), requests, false));
        // quick_cache's `sync` does nothing: one run serves both comparisons.
        let quick = simulate(&Quick::<()>::new(cap), requests, false);
        let join = |h: std::thread::ScopedJoinHandle<'_, f64>| h.join().expect("simulation");
        (join(memokit), join(memokit_u), join(moka), join(moka_u), quick)
    });
    println!(
        "{name:<20} {cap:>8} {:>8.2} {:>8.2} {:>11.2} {:>+8.2} {:>8.2} {:>8.2} {:>+8.2} {:>10}",
        memokit * 100.0,
        moka * 100.0,
        quick * 100.0,
        (memokit - moka.max(quick)) * 100.0,
        memokit_u * 100.0,
        moka_u * 100.0,
        (memokit_u - moka_u.max(quick)) * 100.0,
        requests.len(),
    );
}

/// get; on a miss insert, and `sync` when `sync_each_miss` (memokit `flush`, moka
/// `run_pending_tasks`, quick_cache nothing); returns hits / requests.
fn simulate<C: BenchCache<()>>(cache: &C, requests: &[u64], sync_each_miss: bool) -> f64 {
    let mut hits = 0u64;
    for &k in requests {
        if cache.get(k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, ());
            if sync_each_miss {
                cache.sync();
            }
        }
    }
    hits as f64 / requests.len() as f64
}
