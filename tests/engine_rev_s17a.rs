//! Review s17a of single flight and re-entry (`flight.rs`, `shared/single_flight.rs`,
//! `reentry.rs`): user code the engine runs under its locks calling back into it while other
//! threads hold the engine's other locks, and computations racing deletes and each other.
//!
//! Model: a call back either works or panics with a `memokit:` message, whatever other
//! threads are doing at that moment; it never hangs (every test runs under [`no_hang`]). The
//! worker is held deterministically in a key's `Drop` waiting at a gate ([`Stalled`]), and a
//! thread is known to be blocked when Linux reports it asleep on many consecutive looks.

mod common;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use common::{
    no_hang, this_thread_id, wait_asleep, wait_asleep_or_done, wait_until, Gate, HookedKey as Key,
    Stalled, HANG_LIMIT, STALL,
};
use memokit_engine::{Engine, ManualClock};

type Hook = Box<dyn FnOnce()>;

std::thread_local! {
    /// Run (once) by the next `Val::clone` on this thread.
    static ON_CLONE: RefCell<Option<Hook>> = const { RefCell::new(None) };
    /// Run (once) by the next weighing on this thread (engines built by [`engine`] with
    /// `weigher`).
    static ON_WEIGH: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

fn on_next_clone(f: impl FnOnce() + 'static) {
    ON_CLONE.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

/// A value whose `Clone` runs the thread's armed hook.
#[derive(Debug, PartialEq)]
struct Val(u64);

impl Clone for Val {
    fn clone(&self) -> Self {
        if let Some(f) = ON_CLONE.with(|h| h.borrow_mut().take()) {
            f();
        }
        Val(self.0)
    }
}

type E = Engine<Key, Val>;
/// A step another thread takes, by name, and one a hit's `Clone` takes.
type Holder = (&'static str, fn(&E, &Gate));
type Op = (&'static str, fn(&E));

/// One shard, one worker, a manual clock: every key shares the shard and its locks. With
/// `weigher`, every entry weighs 1 and the weighing runs the thread's `ON_WEIGH` hook.
fn engine(weigher: bool) -> E {
    let b = Engine::builder().max_capacity(10_000).shards(1).workers(1);
    let b = if weigher {
        b.weigher(|_: &Key, _: &Val| {
            if let Some(f) = ON_WEIGH.with(|h| h.borrow_mut().take()) {
                f();
            }
            1
        })
    } else {
        b
    };
    b.clock(ManualClock::new()).build().expect("build")
}

fn get(e: &E, id: u64) -> Option<u64> {
    e.get(&Key::new(id)).map(|v| v.0)
}

/// Stalls the engine's worker (`common::Stalled`).
fn stall(e: &E) -> Stalled {
    common::stall(e, |h| h.map_or_else(|| Key::new(STALL), |h| Key::with_drop(STALL, h)), Val(0))
}

/// Releases the stalled worker, then has it queue for the write lock of the shard this
/// thread reads (from user code run under that read lock): a lookup of the pending key
/// `pending` sends it the batch, and once it sleeps again it is queued.
fn release_until_queued(stalled: &Stalled, e: &E, pending: u64) {
    let tid = stalled.release_and_wait_returned();
    wait_asleep("the worker idle", &tid);
    assert_eq!(get(e, pending), Some(pending), "a pending key, read back");
    wait_asleep("the worker queued for the write lock", &tid);
}

/// After a test: the engine answers, stores, flushes and is consistent.
fn still_usable(e: &E) {
    e.insert(Key::new(900), Val(900));
    e.flush();
    assert_eq!(get(e, 900), Some(900));
    e.run_maintenance();
    e.validate().unwrap();
}

/// What another thread U does, once `gate` opens, that holds the shard's flights lock while
/// it reads the shard: a remove, an insert, a computation's store (its lookup is done
/// before: the computation waits at the gate), or an insert whose weigher (run under the
/// flights lock) looks a key up.
fn flights_holders() -> [Holder; 4] {
    [
        ("remove", |e, gate| {
            gate.enter_and_wait();
            e.remove(&Key::new(3));
        }),
        ("insert", |e, gate| {
            gate.enter_and_wait();
            e.insert(Key::new(3), Val(3));
        }),
        ("a computation's store", |e, gate| {
            let _ = e.get_or_insert_with(Key::new(3), || {
                gate.enter_and_wait();
                Val(3)
            });
        }),
        ("an insert whose weigher looks up", |e, gate| {
            let he = e.clone();
            ON_WEIGH.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || assert_eq!(get(&he, 1), Some(1))))
            });
            gate.enter_and_wait();
            e.insert(Key::new(3), Val(3));
        }),
    ]
}

/// What a hit's `Clone` does through its own engine (`crate::reentry`: each works).
fn nested_calls() -> [Op; 3] {
    [
        ("remove", |e| e.remove(&Key::new(3))),
        ("insert", |e| e.insert(Key::new(3), Val(3))),
        ("get_or_insert_with", |e| {
            assert_eq!(e.get_or_insert_with(Key::new(3), || Val(3)), Val(3));
        }),
    ]
}

/// A value's `Clone` on a hit (the shard's read lock held) may store, remove or compute
/// through its own engine (`crate::reentry`: it works). Meanwhile the worker is queued for the
/// write lock behind that read, and another thread U, holding the shard's flights lock for a
/// remove, an insert or a computation's store, goes for the read lock: it must not queue
/// behind the worker while it holds the flights lock the `Clone`'s call waits for. Before: U
/// queued behind the worker, the worker waited for the `Clone`'s read lock, and the `Clone`'s
/// call waited for U's flights lock (three threads, none returned: each of the twelve pairs).
#[test]
fn a_clone_on_a_hit_that_stores_while_another_thread_holds_the_flights_lock_never_hangs() {
    for (name, hold) in flights_holders() {
        for (nested, call) in nested_calls() {
            no_hang(&format!("U: {name}; from a hit's Clone: {nested}"), move || {
                let e = engine(name.contains("weigher"));
                e.insert(Key::new(1), Val(1));
                e.flush();
                let stalled = stall(&e);
                e.insert(Key::new(2), Val(2)); // pending: the worker has a batch to apply
                let (gate, (tx, rx)) = (Gate::new(), mpsc::channel());
                let u = {
                    let (e, gate) = (e.clone(), gate.clone());
                    std::thread::spawn(move || {
                        tx.send(this_thread_id()).unwrap();
                        hold(&e, &gate);
                    })
                };
                let tid = rx.recv_timeout(HANG_LIMIT).unwrap();
                gate.wait_entered();
                let (he, ran) = (e.clone(), Arc::new(AtomicBool::new(false)));
                let hran = ran.clone();
                on_next_clone(move || {
                    release_until_queued(&stalled, &he, 2);
                    gate.open();
                    // U either finishes or blocks (before the fix: in the read lock, behind
                    // the worker, with the flights lock held).
                    wait_asleep_or_done("U holds the flights lock", &tid, || u.is_finished());
                    call(&he);
                    u.join().unwrap();
                    hran.store(true, Ordering::SeqCst);
                });
                assert_eq!(get(&e, 1), Some(1));
                assert!(ran.load(Ordering::SeqCst), "the hook ran");
                e.flush();
                assert_eq!(get(&e, 2), Some(2));
                // The `Clone`'s call came last.
                let three = if nested == "remove" { None } else { Some(3) };
                assert_eq!(get(&e, 3), three);
                still_usable(&e);
            });
        }
    }
}

/// A key's `Drop` on the worker asks for a key that another thread L is computing, and L's
/// computation then flushes the engine (which waits for that worker). The `Drop` computes the
/// value itself (not stored: L's value is), and both return. Before: the `Drop` waited for L,
/// and L for the worker running it (documented as a `Drop` that must not join a computation,
/// but a hang all the same).
#[test]
fn a_drop_on_the_worker_that_asks_for_a_key_being_computed_does_not_wait() {
    no_hang("a worker's Drop waiting for a computation that flushes", || {
        let e = engine(false);
        let gate = Gate::new();
        let l = {
            let (e, gate) = (e.clone(), gate.clone());
            std::thread::spawn(move || {
                e.get_or_insert_with(Key::new(5), || {
                    gate.enter_and_wait();
                    e.flush();
                    Val(5)
                })
            })
        };
        gate.wait_entered();
        let misses = e.stats().misses;
        let (he, got) = (e.clone(), Arc::new(Mutex::new(None)));
        let hgot = got.clone();
        e.insert(
            Key::with_drop(6, move || {
                let v = he.get_or_insert_with(Key::new(5), || Val(55));
                *hgot.lock().unwrap() = Some(v);
            }),
            Val(6),
        );
        e.flush();
        e.remove(&Key::new(6));
        wait_until("the Drop computed for itself (or waits, before the fix)", || {
            e.stats().single_flight_waits == 1 || got.lock().unwrap().is_some()
        });
        gate.open();
        assert_eq!(l.join().unwrap(), Val(5));
        e.flush();
        assert_eq!(got.lock().unwrap().take(), Some(Val(55)), "the Drop's own value");
        assert_eq!(get(&e, 5), Some(5), "L's value stored, not the Drop's");
        let s = e.stats();
        assert_eq!((s.single_flight_waits, s.misses), (0, misses + 1), "{s:?}");
        still_usable(&e);
    });
}

/// A waiter's `Clone` of the value it was handed runs with no lock held (since review s16d),
/// so it may wait for the engine: here it flushes, clears and removes. Each works, and runs
/// after the leader's store (the leader stores before it wakes its waiters), so the clear
/// takes the stored value away.
#[test]
fn a_waiters_clone_may_flush_clear_and_remove() {
    no_hang("a waiter's Clone that flushes and clears", || {
        let e = engine(false);
        let gate = Gate::new();
        let l = {
            let (e, gate) = (e.clone(), gate.clone());
            std::thread::spawn(move || {
                e.get_or_insert_with(Key::new(1), || {
                    gate.enter_and_wait();
                    Val(1)
                })
            })
        };
        gate.wait_entered();
        let w = {
            let e = e.clone();
            std::thread::spawn(move || {
                let he = e.clone();
                on_next_clone(move || {
                    assert_eq!(get(&he, 1), Some(1), "the leader stored before waking");
                    he.flush();
                    he.clear();
                    he.remove(&Key::new(1));
                });
                e.get_or_insert_with(Key::new(1), || unreachable!("key 1 is being computed"))
            })
        };
        wait_until("W waits for key 1", || e.stats().single_flight_waits == 1);
        gate.open();
        assert_eq!(l.join().unwrap(), Val(1));
        assert_eq!(w.join().unwrap(), Val(1));
        e.flush();
        let s = e.stats();
        // The leader's miss, the waiter's wait, the hook's hit.
        assert_eq!((s.misses, s.single_flight_waits, s.hits), (1, 1, 1), "{s:?}");
        assert_eq!(get(&e, 1), None, "cleared after the store");
        still_usable(&e);
    });
}
