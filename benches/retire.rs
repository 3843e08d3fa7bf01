//! Retiring a generation that covers 1M entries: the `retire` call time, the time until the
//! workers have reclaimed every stale entry (`stats().stale_reclaimed`), and the read throughput
//! of a reader thread on other (live) keys during the reclamation against before it.
//!
//! A plain program (the scenario is too heavy for criterion's sampling): it runs the scenario
//! `RUNS` times and prints each run and the medians.
//! `cargo bench --bench retire`; `MEMOKIT_RETIRE_TICK_MS` sets the wheel tick (default 1000, the
//! engine's default); `MEMOKIT_BENCH_QUICK=1` runs once.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use memokit_engine::{Engine, InsertOptions};
use rand::Rng;

const LIVE: u64 = 100_000;
/// Live keys live above the stale ones.
const LIVE_BASE: u64 = 1 << 32;

struct Run {
    call: Duration,
    reclaim: Duration,
    /// From the first sign of reclamation to its end (the window `during_ops` covers).
    active: Duration,
    before_ops: f64,
    during_ops: f64,
    /// The longest time the reader took for 64 reads, before and from the `retire` call on.
    stall_before: Duration,
    stall_during: Duration,
}

fn main() {
    let smoke = !common::bench_mode();
    let stale: u64 = if smoke { 20_000 } else { 1_000_000 };
    let runs = if smoke || common::quick_mode() { 1 } else { 3 };
    let tick_ms: u64 =
        std::env::var("MEMOKIT_RETIRE_TICK_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let tick = Duration::from_millis(tick_ms);
    println!(
        "retire: {stale} entries under one generation, {LIVE} live entries, tick {tick_ms} ms"
    );
    println!(
        "{:>4} {:>12} {:>12} {:>8} {:>10} {:>14} {:>14} {:>7} {:>21}",
        "run",
        "retire call",
        "reclaimed in",
        "ticks",
        "active",
        "reads before/s",
        "reads during/s",
        "ratio",
        "64-read stall bef/dur"
    );
    let mut all = Vec::new();
    for run in 0..runs {
        let r = scenario(stale, tick);
        println!(
            "{:>4} {:>10.2}us {:>10.3} s {:>8.2} {:>8.1}ms {:>14.0} {:>14.0} {:>6.1}% {:>8.0}us/{:>8.0}us",
            run + 1,
            r.call.as_secs_f64() * 1e6,
            r.reclaim.as_secs_f64(),
            r.reclaim.as_secs_f64() / tick.as_secs_f64(),
            r.active.as_secs_f64() * 1e3,
            r.before_ops,
            r.during_ops,
            100.0 * r.during_ops / r.before_ops,
            r.stall_before.as_secs_f64() * 1e6,
            r.stall_during.as_secs_f64() * 1e6,
        );
        all.push(r);
    }
    let med = |f: &dyn Fn(&Run) -> f64| common::median(&all.iter().map(f).collect::<Vec<_>>());
    println!(
        "median: retire call {:.2} us, reclaimed in {:.3} s ({:.2} ticks; active {:.1} ms), \
         reads during/before {:.1}%, longest 64-read stall {:.0} us before / {:.0} us during",
        med(&|r| r.call.as_secs_f64() * 1e6),
        med(&|r| r.reclaim.as_secs_f64()),
        med(&|r| r.reclaim.as_secs_f64()) / tick.as_secs_f64(),
        med(&|r| r.active.as_secs_f64() * 1e3),
        med(&|r| 100.0 * r.during_ops / r.before_ops),
        med(&|r| r.stall_before.as_secs_f64() * 1e6),
        med(&|r| r.stall_during.as_secs_f64() * 1e6),
    );
}

fn scenario(stale: u64, tick: Duration) -> Run {
    let engine: Engine<u64, Arc<u64>> = Engine::builder()
        .max_capacity(2 * (stale + LIVE))
        .shards(common::shards())
        .tick(tick)
        .build()
        .expect("build the engine");
    let g = engine.new_generation();
    let opts = InsertOptions::new().generations(g, None);
    for k in 0..stale {
        engine.insert_with_options(k, Arc::new(k), opts);
        if k % 65_536 == 0 {
            engine.flush(); // keep the mailboxes short
        }
    }
    for k in 0..LIVE {
        engine.insert(LIVE_BASE + k, Arc::new(k));
    }
    engine.flush();
    assert_eq!(engine.len(), stale + LIVE, "every entry resident before the retirement");
    let reclaimed_before = engine.stats().stale_reclaimed;

    // The reader: `get` on live keys, counting completed reads.
    let reads = AtomicU64::new(0);
    let stall_ns = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut rng = common::rng(7);
    let keys: Vec<u64> = (0..1 << 16).map(|_| LIVE_BASE + rng.gen_range(0..LIVE)).collect();
    thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..16 {
                    let t = Instant::now();
                    for _ in 0..64 {
                        let v = engine.get(&keys[i & 0xffff]);
                        assert!(black_box(v).is_some(), "a live key was lost");
                        i += 1;
                    }
                    stall_ns.fetch_max(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                reads.fetch_add(1024, Ordering::Relaxed);
            }
        });
        let rate = |from: (Instant, u64)| {
            let n = reads.load(Ordering::Relaxed) - from.1;
            n as f64 / from.0.elapsed().as_secs_f64()
        };
        // Before: one second of reads (after a short warm-up).
        thread::sleep(Duration::from_millis(200));
        let mark = (Instant::now(), reads.load(Ordering::Relaxed));
        thread::sleep(Duration::from_secs(1));
        let before_ops = rate(mark);

        let stall_before = Duration::from_nanos(stall_ns.swap(0, Ordering::Relaxed));
        let t0 = Instant::now();
        engine.retire(g);
        let call = t0.elapsed();
        assert!(engine.get(&0).is_none(), "a retired entry was served");
        // Poll every millisecond: (time, reads so far, entries reclaimed so far).
        let deadline = t0 + 30 * tick.max(Duration::from_millis(100));
        let mut samples = vec![(t0, reads.load(Ordering::Relaxed), 0u64)];
        loop {
            thread::sleep(Duration::from_millis(1));
            let done = engine.stats().stale_reclaimed - reclaimed_before;
            samples.push((Instant::now(), reads.load(Ordering::Relaxed), done));
            if done >= stale {
                break;
            }
            if Instant::now() > deadline {
                println!(
                    "warning: {done} of {stale} stale entries reclaimed after {:?}; len {}",
                    t0.elapsed(),
                    engine.len()
                );
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let stall_during = Duration::from_nanos(stall_ns.load(Ordering::Relaxed));
        let last = samples[samples.len() - 1];
        let reclaim = last.0 - t0;
        // The reclamation window: from the last sample before any progress to the end.
        let first = samples.iter().rposition(|s| s.2 == 0).map_or(samples[0], |i| samples[i]);
        let window = (last.0 - first.0).as_secs_f64();
        let during_ops = (last.1 - first.1) as f64 / window;
        let active = Duration::from_secs_f64(window);
        engine.flush();
        assert_eq!(engine.len(), LIVE, "only live entries remain");
        Run { call, reclaim, active, before_ops, during_ops, stall_before, stall_during }
    })
}
