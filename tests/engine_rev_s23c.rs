//! Review s23 (continued from `tests/engine_rev_s23.rs`, which has the lease pool and
//! thread-local teardown): lookups counted on per-thread striped counters (`engine/src/counters.rs`,
//! commits 3e378a8 and 426a002). A thread leases one of 16 stripes for its lifetime (a global
//! pool, given back by a thread-local destructor) and counts there with a relaxed load and
//! store; threads beyond 16 count on 16 shared stripes with `fetch_add`. The engine's hits
//! and misses and the memoizer's per-function hits, misses and waits use the same type
//! (`memokit_engine::__Striped`), and so the same lease pool.
//!
//! Model, common to every test: every count is kept exactly once, whatever thread makes it (one
//! of more than 16, one that came after others left, one that counts while others come and go,
//! one in its own thread-local teardown, an engine worker running a user's `Drop`), and a sum
//! (`stats()`) sees every count made before it in the happens-before sense (a thread joined by
//! `JoinHandle::join`, which returns after its thread-local destructors ran). For the engine, a
//! lookup counts one hit if it returned a value it did not compute, one miss if it returned
//! none or its caller computed; a single-flight waiter counts in `single_flight_waits` only.
//!
//! Each test says what it checks; all are deterministic (joins, barriers and conditions, no
//! sleeps). Tests marked `#[ignore]` are children run in a process of their own by the test of
//! the same name without `child_` ([`common::run_child`]): a fresh lease pool, and an abort in
//! a thread-local destructor reported as a failure instead of killing this binary.
mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier, LazyLock};
use std::thread;

use common::lookups::*;
use common::wait_until;
use memokit::{memoize, Memoizer};
use memokit_engine::{Engine, ManualClock};
// ---------------------------------------------------------------------------------------------
// Engine lookups from many threads.

/// Model: with 40 threads at once (more than the leases) making every kind of lookup, hits
/// and misses are exact once they are joined; a second engine built with
/// `count_lookups(false)`, looked up by the same threads in between, counts nothing, and a
/// third counting engine gets its own lookups only.
#[test]
fn engine_exact_with_more_threads_than_leases_every_lookup_kind() {
    const THREADS: usize = 40;
    const ROUNDS: u64 = 25;
    let e = engine_with(32);
    let quiet: Engine<u64, u64> = Engine::builder()
        .max_capacity(1 << 20)
        .count_lookups(false)
        .clock(ManualClock::new())
        .build()
        .expect("engine");
    let other = engine_with(4);
    let before_other = hm(&other);
    let start = Barrier::new(THREADS);
    let total = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (e, quiet, other, start) = (&e, &quiet, &other, &start);
                s.spawn(move || {
                    let mut mine = Tally::default();
                    start.wait();
                    for j in 0..ROUNDS {
                        every_lookup(e, 32, j + t as u64, &mut mine);
                        quiet.get_or_insert_with(j % 8, || j);
                        quiet.get(&(j % 8));
                        quiet.get(&99);
                    }
                    assert_eq!(other.get(&1), Some(10));
                    mine
                })
            })
            .collect();
        hs.into_iter().fold(Tally::default(), |a, h| a.plus(h.join().expect("thread")))
    });
    assert_eq!(hm(&e), total.pair(), "(hits, misses) of 40 threads");
    assert_eq!(hm(&quiet), (0, 0), "count_lookups(false)");
    let o = hm(&other);
    assert_eq!((o.0 - before_other.0, o.1 - before_other.1), (THREADS as u64, 0));
}

/// Model: threads that come and go many times (one at a time, and in overlapping groups,
/// while a long-lived thread keeps looking up), each joined, leave exact hits and misses; and
/// while they run, successive `stats()` read by one observer never go down (each stripe has
/// one writer at a time, which starts from the value its predecessor left).
#[test]
fn engine_exact_and_monotone_while_threads_come_and_go() {
    let e = engine_with(16);
    let done = AtomicBool::new(false);
    let (total, steps) = thread::scope(|s| {
        let steady = s.spawn(|| {
            let mut mine = Tally::default();
            let mut j = 0;
            while j < 200 || !done.load(SeqCst) {
                mine.found(e.get(&(j % 32)).is_some());
                j += 1;
            }
            mine
        });
        let observer = s.spawn(|| {
            let mut last = (0, 0);
            let mut steps = 0u64;
            while !done.load(SeqCst) {
                let now = hm(&e);
                assert!(
                    now.0 >= last.0 && now.1 >= last.1,
                    "stats went down: {last:?} then {now:?}"
                );
                last = now;
                steps += 1;
            }
            steps
        });
        let mut total = Tally::default();
        // One at a time, then groups of 2 to 20 overlapping each other.
        for i in 0..60u64 {
            let h = s.spawn(|| {
                let mut mine = Tally::default();
                for j in 0..40 {
                    mine.found(e.get(&(j % 24)).is_some());
                }
                mine
            });
            total = total.plus(h.join().expect("one-at-a-time thread"));
            total.found(e.contains_key(&(i % 20)));
        }
        for g in 0..30usize {
            let hs: Vec<_> = (0..2 + g % 19)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Tally::default();
                        for j in 0..30 {
                            mine.found(e.get_map(&(j % 20), |v| *v).is_some());
                        }
                        mine
                    })
                })
                .collect();
            for h in hs {
                total = total.plus(h.join().expect("group thread"));
            }
        }
        done.store(true, SeqCst);
        let total = total.plus(steady.join().expect("steady"));
        (total, observer.join().expect("observer"))
    });
    assert!(steps > 0);
    assert_eq!(hm(&e), total.pair());
}

/// Model: lookups of values still in the pending table (stored, not yet applied: the slow
/// path), and of keys removed (hidden at once), from 24 threads, are counted once each by what
/// they returned; and a key stored by a thread is found by that thread (read-your-writes).
#[test]
fn engine_slow_path_lookups_counted_from_many_threads() {
    const THREADS: usize = 24;
    let e = engine_with(0);
    let start = Barrier::new(THREADS);
    let total = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS as u64)
            .map(|t| {
                let (e, start) = (&e, &start);
                s.spawn(move || {
                    let mut mine = Tally::default();
                    start.wait();
                    for j in 0..60u64 {
                        let k = t * 1_000 + j;
                        e.insert(k, k);
                        let found = e.get(&k);
                        assert_eq!(found, Some(k), "read-your-writes");
                        mine.found(true);
                        mine.found(e.get_map(&k, |v| *v).is_some());
                        let computed = Cell::new(false);
                        e.get_or_insert_with(k, || {
                            computed.set(true);
                            0
                        });
                        mine.found(!computed.get());
                        e.remove(&k);
                        assert!(!e.contains_key(&k), "removed: hidden at once");
                        mine.found(false);
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().fold(Tally::default(), |a, h| a.plus(h.join().expect("thread")))
    });
    assert_eq!(hm(&e), total.pair());
    assert_eq!(total.pair(), (THREADS as u64 * 60 * 3, THREADS as u64 * 60));
}

// ---------------------------------------------------------------------------------------------
// Lookups from a user's `Drop` on an engine worker.

/// A value whose last copy's `Drop` looks up [`WORKER_ENGINE`]: one hit (key `HOOK_HIT`),
/// one miss, one `contains_key` hit, then counts itself in [`WORKER_DROPS`].
struct Hooked;

impl Drop for Hooked {
    fn drop(&mut self) {
        let e = &*WORKER_ENGINE;
        assert!(e.get(&HOOK_HIT).is_some(), "the resident key");
        assert!(e.get(&(1 << 60)).is_none());
        assert!(e.contains_key(&HOOK_HIT));
        WORKER_DROPS.fetch_add(1, SeqCst);
    }
}

const HOOK_HIT: u64 = 7;
static WORKER_DROPS: AtomicU64 = AtomicU64::new(0);
static WORKER_ENGINE: LazyLock<Engine<u64, Arc<Hooked>>> = LazyLock::new(|| {
    Engine::builder()
        .max_capacity(1 << 20)
        .shards(4)
        .workers(4)
        .clock(ManualClock::new())
        .build()
        .expect("engine")
});

/// Model: lookups made by a value's `Drop` running on the engine's workers (each worker is a
/// thread of its own, with a lease of its own) are counted like any other, and seen by
/// `stats()` once the drops are known to have run (an atomic the `Drop` sets after its
/// lookups, read with `SeqCst`). Lookups by 20 caller threads run meanwhile.
#[test]
fn engine_lookups_from_drops_on_worker_threads_are_counted() {
    const VALUES: u64 = 200;
    let e = &*WORKER_ENGINE;
    e.insert(HOOK_HIT, Arc::new(Hooked));
    e.flush();
    for k in 0..VALUES {
        e.insert(1_000 + k, Arc::new(Hooked));
    }
    e.flush();
    let before = hm(e);
    let callers = thread::scope(|s| {
        let hs: Vec<_> = (0..20u64)
            .map(|t| {
                s.spawn(move || {
                    let mut mine = Tally::default();
                    for j in 0..VALUES / 20 {
                        let k = 1_000 + t * (VALUES / 20) + j;
                        // A copy dropped on this thread: not the last, no hook.
                        mine.found(e.get(&k).is_some());
                        e.remove(&k);
                        mine.found(e.get(&k).is_some());
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().fold(Tally::default(), |a, h| a.plus(h.join().expect("caller")))
    });
    assert_eq!(callers.pair(), (VALUES, VALUES));
    e.flush();
    wait_until("every removed value dropped", || WORKER_DROPS.load(SeqCst) >= VALUES);
    assert_eq!(WORKER_DROPS.load(SeqCst), VALUES);
    let got = hm(e);
    assert_eq!(
        (got.0 - before.0, got.1 - before.1),
        (callers.hits + 2 * VALUES, callers.misses + VALUES),
        "(hits, misses): callers' and the drops' on the workers"
    );
}

// ---------------------------------------------------------------------------------------------
// The memoizer, which counts each function's calls with the same type.

static SHARED_M: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(1 << 20).build().expect("memoizer"));
static SHARED_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &SHARED_M)]
fn shared_twice(x: u64) -> u64 {
    SHARED_RUNS.fetch_add(1, SeqCst);
    x * 2
}

/// Model: 40 threads (more than the leases), each calling a memoized function (on keys
/// computed before: hits; on keys of its own: one miss each, then hits) and looking up an
/// engine in between, leave the function's hits, misses and waits exact (no waits: no two
/// threads compute one key) and the engine's hits and misses exact: the two crates' counters
/// share the lease pool without sharing counts.
#[test]
fn memoizer_and_engine_counted_exactly_from_the_same_threads() {
    const THREADS: u64 = 40;
    const OWN: u64 = 10;
    const SHARED: u64 = 8;
    for x in 0..SHARED {
        assert_eq!(shared_twice(x), x * 2);
    }
    let before = shared_twice_memo().stats();
    assert_eq!((before.hits, before.misses), (0, SHARED));
    let e = engine_with(8);
    let start = Barrier::new(THREADS as usize);
    let total = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (e, start) = (&e, &start);
                s.spawn(move || {
                    let mut mine = Tally::default();
                    start.wait();
                    for round in 0..3 {
                        for x in 0..SHARED {
                            assert_eq!(shared_twice(x), x * 2);
                            mine.found(e.get(&x).is_some());
                        }
                        for j in 0..OWN {
                            let x = 1_000 + t * OWN + j;
                            assert_eq!(shared_twice(x), x * 2, "round {round}");
                            mine.found(e.get(&(100 + j)).is_some());
                        }
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().fold(Tally::default(), |a, h| a.plus(h.join().expect("thread")))
    });
    let s = shared_twice_memo().stats();
    let calls = THREADS * 3 * (SHARED + OWN);
    assert_eq!(SHARED_RUNS.load(SeqCst), SHARED + THREADS * OWN, "each key computed once");
    assert_eq!(
        (s.hits, s.misses, s.single_flight_waits),
        (calls - THREADS * OWN, SHARED + THREADS * OWN, 0),
        "the function's (hits, misses, waits)"
    );
    assert_eq!(hm(&e), total.pair(), "the engine's (hits, misses)");
    assert_eq!(total.pair(), (THREADS * 3 * SHARED, THREADS * 3 * OWN));
}

static FLIGHT_M: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static FLIGHT_RUNS: AtomicU64 = AtomicU64::new(0);
const FLIGHT_CALLERS: u64 = 3 * LEASES as u64;

#[memoize(memoizer = &FLIGHT_M)]
fn held_square(x: u64) -> u64 {
    FLIGHT_RUNS.fetch_add(1, SeqCst);
    // Holds the computation until every other caller has joined it.
    wait_until("every other caller joined", || {
        FLIGHT_M.stats().single_flight_waits >= FLIGHT_CALLERS - 1
    });
    x * x
}

/// Model: 48 callers of one key at once (three times the leases): one computes (one miss),
/// the 47 others wait for it (47 waits, no hit); then each calls again (48 hits). The
/// function's `stats()` counts each exactly, the waits being counted on the callers' stripes.
#[test]
fn memoizer_single_flight_counts_exact_with_more_callers_than_leases() {
    let start = Barrier::new(FLIGHT_CALLERS as usize);
    thread::scope(|s| {
        let hs: Vec<_> = (0..FLIGHT_CALLERS)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    assert_eq!(held_square(9), 81);
                })
            })
            .collect();
        for h in hs {
            h.join().expect("caller");
        }
    });
    assert_eq!(FLIGHT_RUNS.load(SeqCst), 1, "one computation");
    let s = held_square_memo().stats();
    assert_eq!((s.hits, s.misses, s.single_flight_waits), (0, 1, FLIGHT_CALLERS - 1));
    thread::scope(|s| {
        let hs: Vec<_> = (0..FLIGHT_CALLERS).map(|_| s.spawn(|| held_square(9))).collect();
        for h in hs {
            assert_eq!(h.join().expect("caller"), 81);
        }
    });
    let s = held_square_memo().stats();
    assert_eq!((s.hits, s.misses, s.single_flight_waits), (FLIGHT_CALLERS, 1, FLIGHT_CALLERS - 1));
}

static CHURN_M: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(1 << 20).build().expect("memoizer"));

#[memoize(memoizer = &CHURN_M)]
fn churn_id(x: u64) -> u64 {
    x
}

/// Model: a memoized function called by threads that come and go 150 times (each joined),
/// two at a time, plus the test's own thread between them: hits and misses exact (each key
/// computed once by the one thread that asks for it first, one thread per key).
#[test]
fn memoizer_exact_while_threads_come_and_go() {
    const ROUNDS: u64 = 75;
    for round in 0..ROUNDS {
        thread::scope(|s| {
            let hs: Vec<_> = (0..2u64)
                .map(|t| {
                    s.spawn(move || {
                        let x = round * 2 + t;
                        for _ in 0..5 {
                            assert_eq!(churn_id(x), x);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("caller");
            }
        });
        assert_eq!(churn_id(round * 2), round * 2);
    }
    let s = churn_id_memo().stats();
    assert_eq!((s.hits, s.misses, s.single_flight_waits), (ROUNDS * 2 * 4 + ROUNDS, ROUNDS * 2, 0));
}
