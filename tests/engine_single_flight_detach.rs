//! Single flight against deletes: `remove`, `retire` and `clear` during a computation detach
//! it. Callers arriving afterwards do not join it (they compute while it is still blocked),
//! callers already waiting get its value, and that value is not stored.
//!
//! Overlap is made real with gates (a compute blocks until the test opens it) and with
//! `stats().single_flight_waits` (the waiters have joined), never with sleeps.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{no_hang, sharded_engine, wait_until, Gate};
use memokit_engine::{Engine, Generation, InsertOptions};

/// Starts a computation of `key` (under `opts`) on another thread that blocks on a gate;
/// returns once it is running.
fn blocked_leader(
    e: &Engine<u64, u64>,
    key: u64,
    opts: InsertOptions,
    value: u64,
) -> (Gate, std::thread::JoinHandle<u64>) {
    let gate = Gate::new();
    let leader = {
        let (e, gate) = (e.clone(), gate.clone());
        std::thread::spawn(move || {
            e.get_or_insert_with_options(key, opts, || {
                gate.enter_and_wait();
                value
            })
        })
    };
    gate.wait_entered();
    (gate, leader)
}

/// Starts a caller of `key` on another thread and returns once it waits on the flight in
/// progress (seen in `stats().single_flight_waits`).
fn joined_waiter(
    e: &Engine<u64, u64>,
    key: u64,
    opts: InsertOptions,
) -> std::thread::JoinHandle<u64> {
    let before = e.stats().single_flight_waits;
    let waiter = {
        let e = e.clone();
        std::thread::spawn(move || e.get_or_insert_with_options(key, opts, || 999))
    };
    let e = e.clone();
    wait_until("the waiter joined the flight (stats().single_flight_waits)", move || {
        e.stats().single_flight_waits > before
    });
    waiter
}

/// `remove` during a computation: callers arriving afterwards do not join it (they compute
/// while it is still blocked) and its value is not stored.
#[test]
fn remove_detaches_an_in_flight_compute() {
    let e = sharded_engine(2);
    let (gate, leader) = blocked_leader(&e, 1, InsertOptions::new(), 100);
    let e2 = e.clone();
    no_hang("remove during a computation", move || e2.remove(&1));
    let e3 = e.clone();
    let late = no_hang("a caller arriving after remove", move || e3.get_or_insert_with(1, || 300));
    assert_eq!(late, 300);
    assert_eq!(e.get(&1), Some(300));

    gate.open();
    assert_eq!(leader.join().unwrap(), 100, "the leader's caller gets its own value");
    e.flush();
    assert_eq!(e.get(&1), Some(300), "the detached value (100) must not be stored");
}

#[test]
fn remove_during_compute_stores_nothing() {
    let e = sharded_engine(2);
    let (gate, leader) = blocked_leader(&e, 1, InsertOptions::new(), 100);
    e.remove(&1);
    gate.open();
    assert_eq!(leader.join().unwrap(), 100);
    e.flush();
    assert_eq!(e.get(&1), None, "a value computed across a remove is not stored");
    e.run_maintenance();
    assert_eq!(e.len(), 0);
}

/// Callers already waiting when the key is removed get the detached flight's value.
#[test]
fn waiters_before_remove_get_the_detached_value() {
    let e = sharded_engine(2);
    let (gate, leader) = blocked_leader(&e, 1, InsertOptions::new(), 100);
    let waiter = joined_waiter(&e, 1, InsertOptions::new());
    e.remove(&1);
    gate.open();
    assert_eq!(leader.join().unwrap(), 100);
    assert_eq!(no_hang("waiter", move || waiter.join().unwrap()), 100);
    e.flush();
    assert_eq!(e.get(&1), None);
}

/// `retire(g)` during a computation under g: it never waits for the computation, callers
/// arriving afterwards do not join it, and neither its value nor theirs is stored.
#[test]
fn retire_detaches_an_in_flight_compute() {
    retire_detaches(|g| InsertOptions::new().generations(g, None));
}

/// The same for a primary generation declared in the key (`InsertOptions::primary_in_key`),
/// which lookups do not check: flights and stores still do.
#[test]
fn retire_detaches_an_in_flight_compute_under_a_primary_in_the_key() {
    retire_detaches(|g| InsertOptions::new().generations(g, None).primary_in_key());
}

fn retire_detaches(under: fn(Generation) -> InsertOptions) {
    let e = sharded_engine(2);
    let (g, g2) = (e.new_generation(), e.new_generation());
    let (gate, leader) = blocked_leader(&e, 1, under(g), 100);
    let e2 = e.clone();
    no_hang("retire during a computation", move || e2.retire(g));

    let calls = Arc::new(AtomicUsize::new(0));
    let (e3, c3) = (e.clone(), calls.clone());
    let late = no_hang("a caller under the retired generation", move || {
        e3.get_or_insert_with_options(1, under(g), || {
            c3.fetch_add(1, Ordering::SeqCst);
            300
        })
    });
    assert_eq!(late, 300);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(e.get(&1), None, "nothing stored under the retired generation");
    // Under the new version, a fresh computation is stored.
    let e4 = e.clone();
    let fresh = no_hang("a caller under the new generation", move || {
        e4.get_or_insert_with_options(1, under(g2), || 400)
    });
    assert_eq!(fresh, 400);
    assert_eq!(e.get(&1), Some(400));

    gate.open();
    assert_eq!(leader.join().unwrap(), 100);
    e.flush();
    assert_eq!(e.get(&1), Some(400), "the value computed under the retired generation is dropped");
}

#[test]
fn waiters_before_retire_get_the_detached_value() {
    let e = sharded_engine(2);
    let g = e.new_generation();
    let opts = InsertOptions::new().generations(g, None);
    let (gate, leader) = blocked_leader(&e, 1, opts, 100);
    let waiter = joined_waiter(&e, 1, opts);
    e.retire(g);
    gate.open();
    assert_eq!(leader.join().unwrap(), 100);
    assert_eq!(no_hang("waiter", move || waiter.join().unwrap()), 100);
    e.flush();
    assert_eq!(e.get(&1), None);
}

/// `clear()` during a computation: like `remove`, for every key.
#[test]
fn clear_detaches_an_in_flight_compute() {
    let e = sharded_engine(2);
    let (gate, leader) = blocked_leader(&e, 1, InsertOptions::new(), 100);
    let e2 = e.clone();
    no_hang("clear during a computation", move || e2.clear());
    let e3 = e.clone();
    let late = no_hang("a caller arriving after clear", move || e3.get_or_insert_with(1, || 300));
    assert_eq!(late, 300);
    gate.open();
    assert_eq!(leader.join().unwrap(), 100);
    e.flush();
    assert_eq!(e.get(&1), Some(300), "the value computed across clear() must not be stored");
}

/// A caller still under a retired generation (a thread that read the old version) arriving
/// while a computation under the new one runs: it computes for itself, joins nothing, and
/// leaves the live flight registered, so later callers under the new generation still join
/// it and its value is stored. (It used to replace the live flight: the live computation's
/// value was then never stored, and the next caller computed the same key again.)
#[test]
fn a_caller_under_a_retired_generation_does_not_displace_a_live_flight() {
    let e = sharded_engine(2);
    let (old, new) = (e.new_generation(), e.new_generation());
    e.retire(old);
    let under = |g| InsertOptions::new().generations(g, None);
    let (gate, leader) = blocked_leader(&e, 1, under(new), 100);

    let e2 = e.clone();
    let stale = no_hang("a caller under the retired generation", move || {
        e2.get_or_insert_with_options(1, under(old), || 300)
    });
    assert_eq!(stale, 300, "the stale caller computes for itself");

    let waiter = joined_waiter(&e, 1, under(new));
    gate.open();
    assert_eq!(leader.join().unwrap(), 100);
    assert_eq!(no_hang("waiter", move || waiter.join().unwrap()), 100);
    e.flush();
    assert_eq!(e.get(&1), Some(100), "the live flight's value is stored");
}
