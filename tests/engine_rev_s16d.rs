//! Review s16d of single flight: a value's `Clone` that waits for a computation. Two ways it
//! hung, each with the test that found it:
//! - a *waiter's* `Clone` of the value it was handed ran under the flight's state lock; if it
//!   waited for a flight whose leader was another waiter of the same flight, that leader queued
//!   behind the lock and neither returned (the wait-cycle walk cannot see a lock);
//! - a *hit's* `Clone`, under the shard's read lock, that waited for a flight: the worker queued
//!   for the write lock behind that read, and the flight's leader, storing its value, queued
//!   behind the worker (parking_lot's lock lets no new reader past a waiting writer).
//!
//! The first now works (the value is cloned after the lock is released); the second panics
//! with the re-entry message (`reentry::may_wait_for_flight`), as any call back from code run
//! under an engine's lock that would wait for its own caller does.

mod common;

use std::cell::Cell;
use std::sync::OnceLock;

use common::{expect_panic, no_hang, wait_until, Gate};
use memokit_engine::Engine;

type E = Engine<u64, Val>;

thread_local! {
    /// Set on the thread whose next clone of a value asks its engine for key 2 (once).
    static ASKS: Cell<bool> = const { Cell::new(false) };
}

/// The engine a marked `Clone` asks (one per test: the tests of this file run in parallel).
static ENGINES: [OnceLock<E>; 2] = [OnceLock::new(), OnceLock::new()];

/// A value whose `Clone`, on a thread marked `ASKS`, asks its engine for key 2, which is being
/// computed (a computation of its own would be a bug in the test).
#[derive(Debug, PartialEq)]
struct Val(u64, usize);

impl Clone for Val {
    fn clone(&self) -> Self {
        if ASKS.with(|a| a.replace(false)) {
            let e = ENGINES[self.1].get().expect("engine set");
            e.get_or_insert_with(2, || unreachable!("key 2 is being computed"));
        }
        Val(self.0, self.1)
    }
}

fn waits(e: &E) -> u64 {
    e.stats().single_flight_waits
}

/// L leads key 1. A waits for it; so does B, which leads key 2 and needs key 1 for it. Key 1
/// is done: A wakes first (it came first) and clones its value, and that `Clone` waits for
/// key 2, led by B. B must be able to take its copy of key 1's value meanwhile. Before: A
/// cloned under key 1's lock, B queued for that lock, A waited for B: neither returned.
#[test]
fn a_waiters_clone_that_waits_for_another_waiters_flight_never_hangs() {
    const ID: usize = 0;
    let e: &'static E = ENGINES[ID]
        .get_or_init(|| Engine::builder().max_capacity(100).shards(4).build().expect("build"));
    for round in 0..10u64 {
        e.clear();
        let (base, misses) = (waits(e), e.stats().misses);
        let gate = Gate::new();
        let l = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                e.get_or_insert_with(1, || {
                    gate.enter_and_wait();
                    Val(10 + round, ID)
                })
            })
        };
        wait_until("L leads key 1", || e.stats().misses == misses + 1);
        let a = std::thread::spawn(move || {
            ASKS.with(|a| a.set(true));
            e.get_or_insert_with(1, || unreachable!("key 1 is being computed"))
        });
        wait_until("A waits for key 1", || waits(e) == base + 1);
        let b = std::thread::spawn(move || {
            e.get_or_insert_with(2, || {
                let one = e.get_or_insert_with(1, || unreachable!("key 1 is being computed"));
                Val(one.0 + 1, ID)
            })
        });
        wait_until("B waits for key 1", || waits(e) == base + 2);
        gate.open();
        let (l, a, b) = no_hang("the three callers", move || {
            (l.join().unwrap(), a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!((l.0, a.0, b.0), (10 + round, 10 + round, 11 + round));
        assert_eq!(e.get(&2).map(|v| v.0), Some(11 + round), "key 2 stored");
    }
}

/// T's hit on key 0 clones its value under the shard's read lock, and that `Clone` asks for
/// key 2, which L is computing. Waiting there could hang: a store on the shard sends its worker
/// for the write lock, queued behind T's read, and L's store of key 2 queues behind the worker.
/// So the wait panics with the re-entry message instead, at once, and everything goes on.
/// Before: T waited; the test, going on as if, queued the worker and opened L's gate: nobody
/// returned.
#[test]
fn a_hits_clone_that_would_wait_for_a_flight_panics_instead_of_hanging() {
    const ID: usize = 1;
    let e: &'static E = ENGINES[ID].get_or_init(|| {
        Engine::builder().max_capacity(100).shards(1).workers(1).build().expect("build")
    });
    e.insert(0, Val(0, ID));
    e.flush();
    assert_eq!(e.get(&0), Some(Val(0, ID)), "key 0 resident");
    let gate = Gate::new();
    let l = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            e.get_or_insert_with(2, || {
                gate.enter_and_wait();
                Val(2, ID)
            })
        })
    };
    wait_until("L leads key 2", || e.stats().misses >= 1);
    let t = std::thread::spawn(move || {
        ASKS.with(|a| a.set(true));
        expect_panic("a hit's Clone waiting for a flight", || e.get(&0))
    });
    // Before the fix, T was now waiting for key 2 with the read lock held: replace key 0 (its
    // worker goes for the write lock), then let L finish (its store needs the read lock).
    wait_until("T has asked", || waits(e) == 1 || t.is_finished());
    e.insert(0, Val(100, ID));
    gate.open();
    let (l, t) =
        no_hang("the hit and the computation", move || (l.join().unwrap(), t.join().unwrap()));
    assert_eq!(l, Val(2, ID));
    assert!(t.contains("memokit: user code that the engine runs while it holds a lock"), "{t}");
    assert_eq!(waits(e), 0, "the hit's clone never waited");
    // The engine stays usable.
    e.flush();
    assert_eq!(e.get(&0), Some(Val(100, ID)));
    assert_eq!(e.get(&2), Some(Val(2, ID)));
}
