//! Multi-threaded stress with an oracle that is sound under concurrency.
//!
//! Model checked against:
//! * Writer-owned keys. Each such key has exactly one writer thread. Every mutating operation
//!   of a key gets the next operation number `n` (per key); the writer publishes `pending = n`
//!   (SeqCst) before the operation and, once it has returned, `state = (n, expected)`, where
//!   `expected` is the version of the value the key must now hold (values encode
//!   `(key, version)` and the version of a value is the number of the insert that wrote it)
//!   or "absent" (after a remove, or a retirement of the generation the value was written
//!   under). A reader loads `state = (f, expected)`, does `get`, then loads `pending = p`:
//!   - if `p == f`, no later operation had started before the lookup ended, so the lookup
//!     must return exactly `expected` (read-your-writes, `remove`/`retire` hide at once); with
//!     a capacity below the key count a miss is also allowed (eviction);
//!   - otherwise a hit must carry a version in `[floor, p]`, where `floor` is `expected` if
//!     present or `f + 1` if absent: never a value superseded, removed or retired before the
//!     lookup began, never one from the future.
//!
//!   The writer also checks its own reads and `get_or_insert_with` results exactly.
//! * Shared keys. All threads call `get_or_insert_with` on them with a value that is a pure
//!   function of the key, and sometimes `remove` them. Every answer must be that value, and
//!   (without eviction) the number of computations is at most one per key plus one per remove.
//!
//! Bounded by iteration counts (`MEMOKIT_STRESS_ITERS` scales them), seeded
//! (`MEMOKIT_STRESS_SEED`), no wall-clock limits.
mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use common::{env_u64, no_hang};
use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WRITERS: u64 = 2;
const KEYS_PER_WRITER: u64 = 8;
const WRITER_KEYS: u64 = WRITERS * KEYS_PER_WRITER;
const READERS: u64 = 2;
const SHARED_BASE: u64 = 1_000;
const SHARED_KEYS: u64 = 8;
const ABSENT: u64 = u32::MAX as u64;

fn value(key: u64, version: u64) -> u64 {
    (key << 32) | version
}

fn shared_value(key: u64) -> u64 {
    key * 7 + 3
}

fn decode(v: u64) -> (u64, u64) {
    (v >> 32, v & 0xFFFF_FFFF)
}

struct KeyState {
    pending: AtomicU64,
    /// `(op number << 32) | expected version` (or `ABSENT`).
    state: AtomicU64,
}

struct Shared {
    engine: Engine<u64, u64>,
    keys: Vec<KeyState>,
    may_evict: bool,
    shared_computes: AtomicUsize,
    shared_removes: AtomicUsize,
}

struct Writer {
    key: u64,
    ops: u64,
    expected: u64,
    /// Generation of this key; the present value may have been written under it.
    generation: Generation,
    under_generation: bool,
}

fn writer(sh: &Shared, id: u64, seed: u64, iters: u64) {
    let e = &sh.engine;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keys: Vec<Writer> = (0..KEYS_PER_WRITER)
        .map(|i| Writer {
            key: id * KEYS_PER_WRITER + i,
            ops: 0,
            expected: ABSENT,
            generation: e.new_generation(),
            under_generation: false,
        })
        .collect();
    for _ in 0..iters {
        let w = &mut keys[rng.gen_range(0..KEYS_PER_WRITER as usize)];
        let ks = &sh.keys[w.key as usize];
        let choice = rng.gen_range(0..100);
        if choice < 20 {
            // A read by the writer itself: it knows the state exactly.
            let got = e.get(&w.key);
            let want = (w.expected != ABSENT).then(|| value(w.key, w.expected));
            if got != want && !(sh.may_evict && got.is_none()) {
                panic!("writer read of key {}: got {got:?}, expected {want:?}", w.key);
            }
            continue;
        }
        let n = w.ops + 1;
        w.ops = n;
        ks.pending.store(n, SeqCst);
        match choice {
            20..=49 => {
                e.insert(w.key, value(w.key, n));
                w.expected = n;
                w.under_generation = false;
            }
            50..=64 => {
                e.insert_with_options(
                    w.key,
                    value(w.key, n),
                    InsertOptions::new().generations(w.generation, None),
                );
                w.expected = n;
                w.under_generation = true;
            }
            65..=74 => {
                e.remove(&w.key);
                w.expected = ABSENT;
            }
            75..=84 => {
                e.retire(w.generation);
                w.generation = e.new_generation();
                if w.under_generation {
                    w.expected = ABSENT;
                    w.under_generation = false;
                }
            }
            _ => {
                let mut computed = false;
                let got = e.get_or_insert_with(w.key, || {
                    computed = true;
                    value(w.key, n)
                });
                if computed {
                    let ok = w.expected == ABSENT || sh.may_evict;
                    assert!(ok, "key {}: computed although {} was present", w.key, w.expected);
                    assert_eq!(got, value(w.key, n));
                    w.expected = n;
                    w.under_generation = false;
                } else {
                    assert_eq!(
                        decode(got),
                        (w.key, w.expected),
                        "writer get_or_insert_with of key {}: a hit must be the present value",
                        w.key
                    );
                }
            }
        }
        ks.state.store((n << 32) | w.expected, SeqCst);
    }
}

fn check_writer_key(sh: &Shared, key: u64) {
    let ks = &sh.keys[key as usize];
    let s = ks.state.load(SeqCst);
    let (f, expected) = (s >> 32, s & 0xFFFF_FFFF);
    let got = sh.engine.get(&key);
    let p = ks.pending.load(SeqCst);
    let want = (expected != ABSENT).then(|| value(key, expected));
    if p == f {
        if got != want && !(sh.may_evict && got.is_none()) {
            panic!(
                "key {key}: no operation in progress after op {f}; expected {:?}, got {:?}",
                want.map(decode),
                got.map(decode)
            );
        }
        return;
    }
    if let Some(v) = got {
        let (k, ver) = decode(v);
        let floor = if expected == ABSENT { f + 1 } else { expected };
        assert_eq!(k, key, "value of key {k} returned for key {key}");
        assert!(
            (floor..=p).contains(&ver),
            "key {key}: got version {ver}, outside [{floor}, {p}] (after op {f} the key held \
             {expected:?}; ops up to {p} had started)"
        );
    }
}

fn shared_op(sh: &Shared, rng: &mut StdRng) {
    let key = SHARED_BASE + rng.gen_range(0..SHARED_KEYS);
    match rng.gen_range(0..10) {
        0 => {
            sh.shared_removes.fetch_add(1, SeqCst);
            sh.engine.remove(&key);
        }
        1..=3 => {
            if let Some(v) = sh.engine.get(&key) {
                assert_eq!(v, shared_value(key), "shared key {key}");
            }
        }
        _ => {
            let v = sh.engine.get_or_insert_with(key, || {
                sh.shared_computes.fetch_add(1, SeqCst);
                shared_value(key)
            });
            assert_eq!(v, shared_value(key), "shared key {key}");
        }
    }
}

fn reader(sh: &Shared, seed: u64, iters: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..iters {
        match rng.gen_range(0..100) {
            0..=69 => check_writer_key(sh, rng.gen_range(0..WRITER_KEYS)),
            70..=94 => shared_op(sh, &mut rng),
            95..=97 => {
                let _ = (sh.engine.len(), sh.engine.stats());
            }
            _ if i % 2 == 0 => sh.engine.flush(),
            _ => sh.engine.run_maintenance(),
        }
    }
}

fn run(capacity: u64, shards: usize, workers: usize) {
    let seed = env_u64("MEMOKIT_STRESS_SEED", 0x5eed);
    let scale = env_u64("MEMOKIT_STRESS_ITERS", 1);
    let engine = Engine::builder()
        .max_capacity(capacity)
        .shards(shards)
        .workers(workers)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let sh = Arc::new(Shared {
        engine,
        keys: (0..WRITER_KEYS)
            .map(|_| KeyState { pending: AtomicU64::new(0), state: AtomicU64::new(ABSENT) })
            .collect(),
        may_evict: capacity < WRITER_KEYS + SHARED_KEYS,
        shared_computes: AtomicUsize::new(0),
        shared_removes: AtomicUsize::new(0),
    });
    let start = Arc::new(Barrier::new((WRITERS + READERS) as usize));
    let mut handles = Vec::new();
    for t in 0..WRITERS + READERS {
        let (sh, start) = (sh.clone(), start.clone());
        let seed = seed.wrapping_mul(31).wrapping_add(t);
        handles.push(std::thread::spawn(move || {
            start.wait();
            if t < WRITERS {
                writer(&sh, t, seed, 3_000 * scale);
                // Writers also exercise the shared keys, from other threads than the readers.
                let mut rng = StdRng::seed_from_u64(seed ^ 0xabc);
                for _ in 0..500 * scale {
                    shared_op(&sh, &mut rng);
                }
            } else {
                reader(&sh, seed, 6_000 * scale);
            }
        }));
    }
    no_hang("stress threads", move || {
        let mut first_panic = None;
        for h in handles {
            if let Err(p) = h.join() {
                first_panic.get_or_insert(p);
            }
        }
        if let Some(p) = first_panic {
            std::panic::resume_unwind(p);
        }
    });

    // Quiescent: every key holds exactly what its writer says, len() is exact after flush.
    let e = &sh.engine;
    e.flush();
    let mut live = 0;
    for key in 0..WRITER_KEYS {
        check_writer_key(&sh, key);
        live += u64::from(sh.keys[key as usize].state.load(SeqCst) & 0xFFFF_FFFF != ABSENT);
    }
    if !sh.may_evict {
        let computes = sh.shared_computes.load(SeqCst);
        let bound = (SHARED_KEYS as usize) + sh.shared_removes.load(SeqCst);
        assert!(computes <= bound, "{computes} computations of shared keys, at most {bound}");
        let shared_live = (0..SHARED_KEYS).filter(|k| e.get(&(SHARED_BASE + k)).is_some()).count();
        // Retired-but-unreclaimed entries may still be resident: reclaim them first.
        let target = live + shared_live as u64;
        let mut steps = 0;
        while e.len() != target && steps < 64 {
            e.run_maintenance();
            steps += 1;
        }
        assert_eq!(e.len(), target, "len after flush and {steps} maintenance steps");
        assert_eq!(e.stats().evictions, 0, "nothing may be evicted below capacity");
    } else {
        assert!(e.len() <= capacity, "len {} above capacity {capacity}", e.len());
    }
}

#[test]
fn stress_without_eviction() {
    run(10_000, 4, 2);
}

#[test]
fn stress_one_shard() {
    run(10_000, 1, 1);
}

#[test]
fn stress_with_eviction() {
    run(6, 2, 2);
}

/// Expiry under concurrency. One thread owns the manual clock and is the only writer: it
/// advances the clock, then inserts values that encode their own deadline (`now + ttl`, exact,
/// since the clock cannot move during the insert). Readers read the clock, then look up: a
/// value whose deadline (plus the resolution) had passed before the lookup began must never be
/// returned. Another thread runs maintenance concurrently (the wheel reclaims while readers
/// read).
#[test]
fn stress_expiry_never_serves_expired_values() {
    const KEYS: u64 = 16;
    let scale = env_u64("MEMOKIT_STRESS_ITERS", 1);
    let seed = env_u64("MEMOKIT_STRESS_SEED", 0x5eed);
    let clock = ManualClock::new();
    let engine: Engine<u64, u64> = Engine::builder()
        .max_capacity(10_000)
        .shards(4)
        .workers(2)
        .tick(std::time::Duration::from_millis(1))
        .clock_resolution(std::time::Duration::from_millis(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Arc::new(Barrier::new(4));
    let mut handles = Vec::new();
    {
        let (e, clock, done, start) = (engine.clone(), clock.clone(), done.clone(), start.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            start.wait();
            for _ in 0..4_000 * scale {
                clock.advance(std::time::Duration::from_micros(rng.gen_range(0..1500)));
                let key = rng.gen_range(0..KEYS);
                if rng.gen_range(0..8) == 0 {
                    e.remove(&key);
                    continue;
                }
                let ttl = std::time::Duration::from_micros(rng.gen_range(1..6000));
                let deadline = (clock.now() + ttl).as_nanos() as u64;
                e.insert_with_ttl(key, deadline, ttl);
            }
            done.store(true, SeqCst);
        }));
    }
    for r in 0..2u64 {
        let (e, clock, done, start) = (engine.clone(), clock.clone(), done.clone(), start.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ (r + 1));
            start.wait();
            let res = std::time::Duration::from_millis(1).as_nanos() as u64;
            while !done.load(SeqCst) {
                let key = rng.gen_range(0..KEYS);
                let before = clock.now().as_nanos() as u64;
                if let Some(deadline) = e.get(&key) {
                    assert!(
                        before < deadline + res,
                        "key {key}: value with deadline {deadline} ns served although the \
                         clock read {before} ns before the lookup began"
                    );
                }
            }
        }));
    }
    {
        let (e, done, start) = (engine.clone(), done.clone(), start.clone());
        handles.push(std::thread::spawn(move || {
            start.wait();
            while !done.load(SeqCst) {
                e.run_maintenance();
            }
        }));
    }
    no_hang("expiry stress threads", move || {
        for h in handles {
            h.join().unwrap();
        }
    });
    engine.flush();
    engine.validate().unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    engine.run_maintenance();
    assert_eq!(engine.len(), 0, "everything expired and reclaimed");
}

/// Capacity under concurrent writes: two threads store distinct keys into shards owned by two
/// workers. Model: the engine holds `min(capacity, distinct keys stored)` entries after
/// `flush()`; "while the engine holds fewer entries than its capacity, nothing is evicted", so
/// concurrent batches must not evict more than the excess between them. Several rounds, since
/// a bad interleaving is not certain in any one of them (a correct engine passes every one).
#[test]
fn concurrent_inserts_never_evict_below_capacity() {
    const CAPACITY: u64 = 1000;
    const PER_THREAD: u64 = 3000;
    let rounds = 8 * env_u64("MEMOKIT_STRESS_ITERS", 1);
    for round in 0..rounds {
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(CAPACITY)
            .shards(2)
            .workers(2)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (e, start) = (&e, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 0..PER_THREAD {
                        e.insert(t << 32 | i, i);
                    }
                });
            }
        });
        e.flush();
        let s = e.stats();
        assert_eq!(
            (e.len(), s.evictions),
            (CAPACITY, 2 * PER_THREAD - CAPACITY),
            "round {round}: {} stores of distinct keys into a capacity of {CAPACITY}",
            2 * PER_THREAD
        );
    }
}

/// `clear()` while a writer keeps storing fresh keys. Model: every key whose insert returned
/// before `clear()` was called is gone once `clear()` returns (keys are never reused, so a hit
/// on one of them is a survivor of the clear); keys stored afterwards are served.
#[test]
fn clear_under_concurrent_inserts() {
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(1_000_000)
        .shards(4)
        .workers(2)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = 5 * env_u64("MEMOKIT_STRESS_ITERS", 1);
    // Enough keys for the last round's wait (a fixed 200,000 could never be reached from 100
    // rounds on: `MEMOKIT_STRESS_ITERS=20` and up reported a hang).
    let keys = 2_000 * rounds + 2_000;
    let writer = {
        let (e, published, stop) = (e.clone(), published.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(SeqCst) && k < keys {
                e.insert(k, k);
                k += 1;
                published.store(k, SeqCst);
            }
        })
    };
    for round in 0..rounds {
        common::wait_until("the writer made progress", || published.load(SeqCst) > 2_000 * round);
        let before = published.load(SeqCst);
        e.clear();
        for k in (0..before).step_by(7) {
            assert_eq!(e.get(&k), None, "round {round}: key {k} (stored before clear) survived");
        }
    }
    stop.store(true, SeqCst);
    no_hang("writer", move || writer.join().unwrap());
    let last = published.load(SeqCst);
    e.insert(last, last);
    assert_eq!(e.get(&last), Some(last));
}
