//! Hit ratio at equal capacity: memokit against moka and quick_cache on the ARC traces (OLTP, P3;
//! Megiddo & Modha, FAST 03) and on synthetic Zipf workloads with and without scans; then two
//! workloads that probe the policy's weak spots: a loop over 1.5 × the capacity (defeats
//! recency: LRU and FIFO never hit) and a Zipf 0.9 whose popularity order is reshuffled every
//! 200k requests (defeats long-lived frequency counts).
//!
//! A plain program (no timing): for every request, `get`; on a miss, `insert`. memokit applies
//! inserts on its workers, so it is run twice: `memokit` flushes after every miss (the policy
//! sees each insert before the next request: deterministic), `memokit~` never flushes (what a
//! server sees). moka is given `run_pending_tasks` nowhere: its own maintenance runs as usual.
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

    println!("hit ratio (%) at equal capacity; memokit flushes after each miss, memokit~ never;");
    println!(
        "Zipf: 1M keys; scans: a scan of `capacity` new keys after every 5 x capacity requests"
    );
    println!("loop: keys 0..1.5 x capacity in turn; shifting: new keys for every rank each 200k");
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>8} {:>11} {:>9} {:>8} {:>10}",
        "workload",
        "capacity",
        "memokit",
        "memokit~",
        "moka",
        "quick_cache",
        "best peer",
        "vs best",
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
    // The four simulations are independent (and deterministic, but for `memokit~`): run them
    // side by side.
    let (flushed, realistic, moka, quick) = std::thread::scope(|s| {
        let flushed = s.spawn(|| simulate(&Memokit::<()>::new(cap), requests, true));
        let realistic = s.spawn(|| simulate(&Memokit::<()>::new(cap), requests, false));
        let moka = s.spawn(|| simulate(&Moka::<()>::new(cap), requests, false));
        let quick = simulate(&Quick::<()>::new(cap), requests, false);
        let join = |h: std::thread::ScopedJoinHandle<'_, f64>| h.join().expect("simulation");
        (join(flushed), join(realistic), join(moka), quick)
    });
    let best = moka.max(quick);
    println!(
        "{name:<20} {cap:>8} {:>8.2} {:>8.2} {:>8.2} {:>11.2} {:>9.2} {:>+8.2} {:>10}",
        flushed * 100.0,
        realistic * 100.0,
        moka * 100.0,
        quick * 100.0,
        best * 100.0,
        (flushed - best) * 100.0,
        requests.len(),
    );
}

/// get; on a miss insert (and `sync` when `flush_each_miss`); returns hits / requests.
fn simulate<C: BenchCache<()>>(cache: &C, requests: &[u64], flush_each_miss: bool) -> f64 {
    let mut hits = 0u64;
    for &k in requests {
        if cache.get(k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, ());
            if flush_each_miss {
                cache.sync();
            }
        }
    }
    hits as f64 / requests.len() as f64
}
