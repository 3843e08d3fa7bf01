//! Review s23: lookups counted on per-thread striped counters (`engine/src/counters.rs`,
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
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Barrier, LazyLock};
use std::thread;

use common::lookups::*;
use common::{run_child, wait_until};
use memokit::{memoize, Memoizer};
use memokit_engine::{__Striped as Striped, Engine};
// ---------------------------------------------------------------------------------------------
// `__Striped` on its own.

/// Model: `sum()[i]` equals the number of `add(i)` made, while threads holding leases count
/// continuously and others come and go many times around them (each round of newcomers takes
/// the leases the previous round gave back, and some rounds have more live threads than there
/// are leases). A lease given to a newcomer while its previous holder still counted would
/// make two writers of one stripe, whose plain load-and-store would lose counts; a newcomer
/// that did not see its predecessor's last count on the stripe it took over would lose them
/// too.
#[test]
fn striped_exact_while_threads_come_and_go_around_steady_ones() {
    const STEADY: usize = 10;
    const ROUNDS: usize = 40;
    const ADDS: u64 = 1_500;
    let c: Striped<3> = Striped::new();
    let churn_done = AtomicBool::new(false);
    let start = Barrier::new(STEADY + 1);
    let mut churned = 0u64;
    let steady: u64 = thread::scope(|s| {
        let hs: Vec<_> = (0..STEADY)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let mut n = 0u64;
                    while n < 20_000 || !churn_done.load(SeqCst) {
                        c.add(0);
                        n += 1;
                        if n % 256 == 0 {
                            thread::yield_now();
                        }
                    }
                    n
                })
            })
            .collect();
        start.wait();
        for round in 0..ROUNDS {
            // 3 to 12 newcomers: with the steady ten, up to 22 live counting threads.
            let newcomers = 3 + round % 10;
            let hs: Vec<_> = (0..newcomers)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..ADDS {
                            c.add(1);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("newcomer");
            }
            churned += newcomers as u64 * ADDS;
            // The test's own thread counts between the rounds.
            c.add(2);
        }
        churn_done.store(true, SeqCst);
        hs.into_iter().map(|h| h.join().expect("steady")).sum()
    });
    assert_eq!(c.sum(), [steady, churned, ROUNDS as u64]);
}

/// Model: with many more live threads than leases, all counting at once into two `Striped`
/// (as the engine's and a memoized function's counters share the pool), every count is kept
/// in each, and a counter not added to stays 0.
#[test]
fn striped_exact_with_three_times_more_threads_than_leases_on_two_counters() {
    const THREADS: usize = 3 * LEASES;
    const ADDS: u64 = 25_000;
    let a: Striped<2> = Striped::new();
    let b: Striped<3> = Striped::new();
    let start = Barrier::new(THREADS);
    thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (a, b, start) = (&a, &b, &start);
                s.spawn(move || {
                    start.wait();
                    for n in 0..ADDS {
                        a.add(0);
                        b.add(if (n + t as u64) % 2 == 0 { 0 } else { 2 });
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("counting thread");
        }
    });
    let total = THREADS as u64 * ADDS;
    assert_eq!(a.sum(), [total, 0]);
    assert_eq!(b.sum(), [total / 2, 0, total / 2]);
}

// ---------------------------------------------------------------------------------------------
// Counting during a thread's own thread-local teardown.

static TEARDOWN: LazyLock<Striped<3>> = LazyLock::new(Striped::new);

/// Adds `n` to counter `i` of [`TEARDOWN`] when dropped (a thread-local's destructor).
struct AddOnDrop {
    i: usize,
    n: u64,
}

impl Drop for AddOnDrop {
    fn drop(&mut self) {
        for _ in 0..self.n {
            TEARDOWN.add(self.i);
        }
    }
}

/// Touches [`INNER`] in its destructor (registering INNER's destructor during teardown),
/// then counts.
struct TouchInnerOnDrop;

impl Drop for TouchInnerOnDrop {
    fn drop(&mut self) {
        INNER.with(|_| ());
        for _ in 0..TD_N {
            TEARDOWN.add(1);
        }
    }
}

const TD_N: u64 = 500;

thread_local! {
    /// Touched before the thread first counts: destroyed after the lease's guard (destructors
    /// run in reverse order of registration), so it counts on a shared stripe.
    static EARLY: AddOnDrop = const { AddOnDrop { i: 0, n: TD_N } };
    /// Touched after the thread first counts: destroyed before the guard, on the lease.
    static LATE: AddOnDrop = const { AddOnDrop { i: 1, n: TD_N } };
    /// Its destructor is the thread's first count: it takes a lease during teardown.
    static ONLY: AddOnDrop = const { AddOnDrop { i: 2, n: TD_N } };
    static OUTER: TouchInnerOnDrop = const { TouchInnerOnDrop };
    static INNER: AddOnDrop = const { AddOnDrop { i: 2, n: TD_N } };
}

/// Model: counts made by thread-local destructors (before the lease goes back, after it has
/// gone back, as a thread's very first count, and from a destructor registered during
/// teardown) are all kept, while other threads take the leases given back and count on them
/// at the same time; `JoinHandle::join` returns after them, so the sum then is exact. Runs in a
/// process of its own (`child_…`).
#[test]
fn striped_counts_made_in_thread_local_teardown_are_kept() {
    run_child("child_striped_counts_made_in_thread_local_teardown_are_kept");
}

#[test]
#[ignore = "run in a child process by its parent test"]
fn child_striped_counts_made_in_thread_local_teardown_are_kept() {
    const WAVES: usize = 6;
    const PER_WAVE: usize = 24; // more than the leases
    const BODY: u64 = 2_000;
    let mut want = [0u64; 3];
    for _ in 0..WAVES {
        let start = Arc::new(Barrier::new(PER_WAVE));
        let hs: Vec<_> = (0..PER_WAVE)
            .map(|t| {
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    match t % 4 {
                        0 => {
                            EARLY.with(|_| ());
                            for _ in 0..BODY {
                                TEARDOWN.add(0);
                            }
                            LATE.with(|_| ());
                        }
                        1 => ONLY.with(|_| ()),
                        2 => {
                            OUTER.with(|_| ());
                            for _ in 0..BODY {
                                TEARDOWN.add(1);
                            }
                        }
                        _ => {
                            // Counts only in its body, while the others tear down.
                            for _ in 0..BODY {
                                TEARDOWN.add(2);
                            }
                        }
                    }
                })
            })
            .collect();
        for (t, h) in hs.into_iter().enumerate() {
            h.join().expect("thread");
            match t % 4 {
                0 => {
                    want[0] += BODY + TD_N;
                    want[1] += TD_N;
                }
                1 => want[2] += TD_N,
                2 => {
                    want[1] += BODY + TD_N;
                    want[2] += TD_N;
                }
                _ => want[2] += BODY,
            }
        }
        assert_eq!(TEARDOWN.sum(), want, "after a wave of joined threads");
    }
}

static HANDOVER: LazyLock<Striped<2>> = LazyLock::new(Striped::new);
static HANDOVER_ENGINE: LazyLock<Engine<u64, u64>> = LazyLock::new(|| engine_with(4));
/// Set by the exiting thread's late destructor once its lease has gone back.
static LEASE_GONE: AtomicBool = AtomicBool::new(false);
/// Set by the thread that took the lease over once it counts on it.
static TAKER_COUNTING: AtomicBool = AtomicBool::new(false);
/// Set by the exiting thread's late destructor once it has counted.
static LATE_DONE: AtomicBool = AtomicBool::new(false);
const LATE_ADDS: u64 = 100_000;
const LATE_LOOKUPS: u64 = 5_000;

/// Destroyed after the lease's guard (touched before the thread first counts): announces
/// that the lease is back in the pool, waits until another thread counts on it, then counts
/// on [`HANDOVER`] (or looks up [`HANDOVER_ENGINE`]) while that thread goes on counting.
struct CountAfterLeaseGone {
    engine: bool,
}

impl Drop for CountAfterLeaseGone {
    fn drop(&mut self) {
        LEASE_GONE.store(true, SeqCst);
        wait_until("the lease taken over", || TAKER_COUNTING.load(SeqCst));
        if self.engine {
            for j in 0..LATE_LOOKUPS {
                assert!(HANDOVER_ENGINE.get(&(j % 4)).is_some());
            }
        } else {
            for _ in 0..LATE_ADDS {
                HANDOVER.add(0);
            }
        }
        LATE_DONE.store(true, SeqCst);
    }
}

thread_local! {
    static AFTER_LEASE: Cell<Option<CountAfterLeaseGone>> = const { Cell::new(None) };
}

/// Model: a thread that counts in a thread-local destructor run after its lease went back to
/// the pool does not count on that lease's stripe any more: a thread that took the lease
/// over, counting on it at the same time (the two overlap for sure: each waits for the other),
/// loses nothing, and neither does the exiting thread. First on a `Striped`, then through an
/// engine's hits. Runs in a process of its own (`child_…`), so that the lease given back is
/// the one the next thread takes (the pool is a stack).
#[test]
fn counts_after_the_lease_went_back_do_not_share_its_stripe() {
    run_child("child_counts_after_the_lease_went_back_do_not_share_its_stripe");
}

#[test]
#[ignore = "run in a child process by its parent test"]
fn child_counts_after_the_lease_went_back_do_not_share_its_stripe() {
    for engine in [false, true] {
        LEASE_GONE.store(false, SeqCst);
        TAKER_COUNTING.store(false, SeqCst);
        LATE_DONE.store(false, SeqCst);
        let e: &Engine<u64, u64> = &HANDOVER_ENGINE;
        let before = hm(e);
        let exiting = thread::spawn(move || {
            AFTER_LEASE.with(|c| c.set(Some(CountAfterLeaseGone { engine })));
            // The first count: takes a lease (its guard is destroyed before AFTER_LEASE).
            if engine {
                assert!(e.get(&0).is_some());
            } else {
                HANDOVER.add(0);
            }
        });
        wait_until("the exiting thread's lease back", || LEASE_GONE.load(SeqCst));
        let taker = thread::spawn(move || {
            let mut n = 0u64;
            loop {
                if engine {
                    assert!(e.get(&1).is_some());
                } else {
                    HANDOVER.add(1);
                }
                n += 1;
                TAKER_COUNTING.store(true, SeqCst);
                if LATE_DONE.load(SeqCst) && n >= 1_000 {
                    break n;
                }
            }
        });
        exiting.join().expect("exiting thread");
        let n = taker.join().expect("taker");
        if engine {
            let got = hm(e);
            assert_eq!((got.0 - before.0, got.1 - before.1), (1 + LATE_LOOKUPS + n, 0));
        } else {
            assert_eq!(HANDOVER.sum(), [1 + LATE_ADDS, n]);
        }
    }
}

static TD_ENGINE: LazyLock<Engine<u64, u64>> = LazyLock::new(|| engine_with(16));
static TD_EXPECT: LazyLock<parking_lot::Mutex<Tally>> = LazyLock::new(Default::default);

/// Runs every kind of lookup on [`TD_ENGINE`] in its destructor and adds its tally to
/// [`TD_EXPECT`].
struct LookupOnDrop(u64);

impl Drop for LookupOnDrop {
    fn drop(&mut self) {
        let mut t = Tally::default();
        for j in 0..20 {
            every_lookup(&TD_ENGINE, 16, self.0 + j, &mut t);
        }
        let mut e = TD_EXPECT.lock();
        *e = e.plus(t);
    }
}

thread_local! {
    static LOOKUP_EARLY: Cell<Option<LookupOnDrop>> = const { Cell::new(None) };
    static LOOKUP_LATE: Cell<Option<LookupOnDrop>> = const { Cell::new(None) };
}

/// Model: an engine's lookups made from thread-local destructors (`get`, `get_map`,
/// `contains_key`, `get_or_insert_with` and `get_or_try_insert_with_ref`, hits and misses;
/// destroyed before and after the thread's lease went back, and as the thread's first
/// lookups) are each counted once, by what they returned, with more threads than leases at a
/// time. Runs in a process of its own (`child_…`).
#[test]
fn engine_lookups_in_thread_local_teardown_are_counted() {
    run_child("child_engine_lookups_in_thread_local_teardown_are_counted");
}

#[test]
#[ignore = "run in a child process by its parent test"]
fn child_engine_lookups_in_thread_local_teardown_are_counted() {
    const WAVES: usize = 3;
    const PER_WAVE: usize = 20;
    let e: &Engine<u64, u64> = &TD_ENGINE;
    let before = hm(e);
    let mut body = Tally::default();
    for w in 0..WAVES {
        let start = Arc::new(Barrier::new(PER_WAVE));
        let hs: Vec<_> = (0..PER_WAVE)
            .map(|t| {
                let start = start.clone();
                thread::spawn(move || {
                    let mut mine = Tally::default();
                    start.wait();
                    let id = (w * PER_WAVE + t) as u64 * 1000;
                    match t % 3 {
                        0 => {
                            LOOKUP_EARLY.with(|c| c.set(Some(LookupOnDrop(id))));
                            for j in 0..20 {
                                every_lookup(&TD_ENGINE, 16, j, &mut mine);
                            }
                            LOOKUP_LATE.with(|c| c.set(Some(LookupOnDrop(id + 500))));
                        }
                        1 => LOOKUP_EARLY.with(|c| c.set(Some(LookupOnDrop(id)))),
                        _ => {
                            for j in 0..20 {
                                every_lookup(&TD_ENGINE, 16, j, &mut mine);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        for h in hs {
            body = body.plus(h.join().expect("thread"));
        }
        let want = body.plus(*TD_EXPECT.lock());
        let got = hm(e);
        assert_eq!(
            (got.0 - before.0, got.1 - before.1),
            want.pair(),
            "after wave {w} (hits, misses)"
        );
    }
}

static TD_M: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(1 << 20).build().expect("memoizer"));

#[memoize(memoizer = &TD_M)]
fn td_plus_one(x: u64) -> u64 {
    x + 1
}

/// Calls [`td_plus_one`] in its destructor: 5 times on key 0 (computed before: hits), then
/// 3 times on a key of its own (one miss, two hits); also looks up [`TD_ENGINE`] once.
struct CallOnDrop(u64);

impl Drop for CallOnDrop {
    fn drop(&mut self) {
        for _ in 0..5 {
            assert_eq!(td_plus_one(0), 1);
        }
        for _ in 0..3 {
            assert_eq!(td_plus_one(self.0), self.0 + 1);
        }
        assert!(TD_ENGINE.get(&1).is_some());
    }
}

thread_local! {
    static CALL_EARLY: Cell<Option<CallOnDrop>> = const { Cell::new(None) };
}

/// Model: a memoized function called from thread-local destructors (after the thread's lease
/// went back, or as the thread's first counted call), by more threads than leases at once,
/// counts each call once in the function's `stats()`: a hit for a key computed before, one
/// miss and then hits for a key of the thread's own; the engine's lookups made there count in
/// the engine's `stats()`, not the function's. Runs in a process of its own (`child_…`).
#[test]
fn memoized_calls_in_thread_local_teardown_are_counted() {
    run_child("child_memoized_calls_in_thread_local_teardown_are_counted");
}

#[test]
#[ignore = "run in a child process by its parent test"]
fn child_memoized_calls_in_thread_local_teardown_are_counted() {
    const THREADS: u64 = 24;
    assert_eq!(td_plus_one(0), 1);
    let e: &Engine<u64, u64> = &TD_ENGINE;
    let before = hm(e);
    let start = Arc::new(Barrier::new(THREADS as usize));
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                CALL_EARLY.with(|c| c.set(Some(CallOnDrop(1_000 + t))));
                if t % 2 == 0 {
                    // Counts in its body too: the destructor then counts after the lease
                    // went back.
                    assert_eq!(td_plus_one(0), 1);
                    assert!(TD_ENGINE.get(&2).is_some());
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("thread");
    }
    let s = td_plus_one_memo().stats();
    let body = THREADS / 2;
    assert_eq!(
        (s.hits, s.misses, s.single_flight_waits),
        (THREADS * 7 + body, 1 + THREADS, 0),
        "the function's (hits, misses, waits)"
    );
    let got = hm(e);
    assert_eq!((got.0 - before.0, got.1 - before.1), (THREADS + body, 0));
}
