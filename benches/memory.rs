//! Bytes per entry at 1M entries (`u64 -> Arc<[u8; 64]>`) beyond a plain
//! `Vec<(u64, Arc<[u8; 64]>)>` floor, for memokit, quick_cache, moka and the sharded
//! `RwLock<HashMap>` baseline.
//!
//! Each structure is measured in a fresh process: this binary re-executes itself as
//! `memory child <structure>`, the child fills the structure (capacity = entries) and reports its
//! RSS growth from `/proc/self/statm` and, as a cross-check, the growth of live heap bytes counted
//! by a wrapping global allocator (RSS also holds freed-but-kept allocator memory and transient
//! buffers such as mailboxes; the heap count does not).
//!
//! `cargo bench --bench memory`; with `MEMOKIT_MEMORY_DETAIL=1`, each structure's heap growth
//! is also broken down by allocation size class (powers of two). With `MEMOKIT_MEMORY_CHURN=3`
//! each cache is given three times its capacity in distinct keys, so it has evicted twice its
//! size: the steady state of a busy server, where hashbrown tables that tombstones have filled
//! have doubled and memokit's frequency sketch (allocated at a shard's first eviction) exists.
//! The target in `../shared/spec/engine.md` is the plain fill (the default).

#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use common::caches::{BenchCache, Memokit, Moka, Quick, RwLockMap};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
/// Live bytes by allocation size class (`floor(log2(size))`), for `MEMOKIT_MEMORY_DETAIL`.
static LIVE_BY_CLASS: [AtomicIsize; 64] = [const { AtomicIsize::new(0) }; 64];

fn count(size: usize, delta: isize) {
    LIVE_BYTES.fetch_add(delta, Ordering::Relaxed);
    LIVE_BY_CLASS[size.max(1).ilog2() as usize].fetch_add(delta, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -(layout.size() as isize));
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -(layout.size() as isize));
            count(new_size, new_size as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

type Val = Arc<[u8; 64]>;

const STRUCTURES: [&str; 5] = ["vec_floor", "memokit", "quick_cache", "moka", "rwlock_map"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let n: u64 = args[3].parse().expect("entry count");
        child(&args[2], n);
        return;
    }
    let n: u64 = if common::bench_mode() { 1_000_000 } else { 10_000 };
    let exe = std::env::current_exe().expect("path of this bench binary");
    println!("memory at {n} entries, u64 -> Arc<[u8; 64]>, one fresh process per structure");
    println!(
        "{:<12} {:>9} {:>11} {:>11} {:>12} {:>12}",
        "structure", "resident", "RSS B/ent", "heap B/ent", "RSS beyond", "heap beyond"
    );
    let mut floor = None;
    for name in STRUCTURES {
        let out = Command::new(&exe).args(["child", name, &n.to_string()]).output();
        let out = out.expect("re-execute the bench binary");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = text.split_whitespace().map(|x| x.parse().expect("a number")).collect();
        let (len, rss, heap) = (f[0], f[1], f[2]);
        let per = (rss / len, heap / len);
        let (floor_rss, floor_heap) = *floor.get_or_insert(per);
        println!(
            "{name:<12} {len:>9} {:>11.1} {:>11.1} {:>12.1} {:>12.1}",
            per.0,
            per.1,
            per.0 - floor_rss,
            per.1 - floor_heap
        );
        print!("{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Builds `name` with `n` entries and prints `resident_entries rss_growth heap_growth`.
fn child(name: &str, n: u64) {
    let value = |k: u64| -> Val { Arc::new([k as u8; 64]) };
    let classes0: Vec<isize> = LIVE_BY_CLASS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let (rss0, heap0) = (rss_bytes(), LIVE_BYTES.load(Ordering::Relaxed));
    let (len, keep): (u64, Box<dyn std::any::Any>) = match name {
        "vec_floor" => {
            let v: Vec<(u64, Val)> = (0..n).map(|k| (k, value(k))).collect();
            (v.len() as u64, Box::new(v))
        }
        "memokit" => {
            let c = Memokit::<Val>::new(n);
            for k in 0..n * churn_rounds() {
                c.insert(k, value(k));
                if k % 65_536 == 65_535 {
                    c.sync(); // bound the mailboxes, as a steady server would
                }
            }
            fill_done(c)
        }
        "quick_cache" => fill(Quick::<Val>::new(n), n, value),
        "moka" => fill(Moka::<Val>::new(n), n, value),
        "rwlock_map" => fill(RwLockMap::<Val>::new(n), n, value),
        other => panic!("unknown structure {other:?}"),
    };
    let (rss1, heap1) = (rss_bytes(), LIVE_BYTES.load(Ordering::Relaxed));
    println!("{len} {} {}", rss1 - rss0, heap1 - heap0);
    if std::env::var_os("MEMOKIT_MEMORY_DETAIL").is_some() {
        // Where the heap growth sits, by allocation size: which structure is which is
        // usually plain from the sizes (the values are the 80-byte `Arc` blocks).
        for (k, c) in LIVE_BY_CLASS.iter().enumerate() {
            let per = (c.load(Ordering::Relaxed) - classes0[k]) as f64 / len as f64;
            if per.abs() >= 0.05 {
                eprintln!("    allocations of [2^{k}, 2^{}) bytes: {per:>7.2} B/entry", k + 1);
            }
        }
    }
    drop(black_box(keep));
}

/// How many times the capacity in distinct keys a cache is filled with: 1 (a cache just
/// filled), or `MEMOKIT_MEMORY_CHURN` (e.g. 3: a cache that has evicted twice its capacity,
/// as a server's does in steady state).
fn churn_rounds() -> u64 {
    std::env::var("MEMOKIT_MEMORY_CHURN").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

fn fill<C: BenchCache<Val> + 'static>(
    c: C,
    n: u64,
    value: impl Fn(u64) -> Val,
) -> (u64, Box<dyn std::any::Any>) {
    for k in 0..n * churn_rounds() {
        c.insert(k, value(k));
    }
    fill_done(c)
}

fn fill_done<C: BenchCache<Val> + 'static>(c: C) -> (u64, Box<dyn std::any::Any>) {
    c.sync();
    let len = c.len();
    (len, Box::new(c))
}

/// Resident set size from `/proc/self/statm` (second field, in pages).
fn rss_bytes() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: isize = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("rss");
    pages * 4096
}
