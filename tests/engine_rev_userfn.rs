//! User code that the engine runs while it holds one of its own locks, calling back into the
//! engine: a key's `Eq` (probes under the core's read lock, the pending table, the flights
//! lock, or the write lock of an in-place replacement), a value's `Clone` (every hit, under
//! the read lock), the key conversion `to_owned` (under the flights lock), and, to check
//! that they never run under a lock, a key's `Hash` and `Drop`.
//!
//! Model: such a call either works or panics with a message naming the mistake; it never
//! hangs, also when the shard's worker is queued for the write lock at that moment (a
//! writer-preferring lock holds back a second read lock of the same thread behind it), and
//! the engine stays usable afterwards. Every test runs on a thread with a bound
//! ([`no_hang`]); the worker is held deterministically by a key whose `Drop` (run on the
//! worker) waits for a gate ([`Stalled`]).
mod common;

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{expect_panic, no_hang, Gate, Stalled, STALL};
use memokit_engine::{Engine, InsertOptions, ManualClock};

type Hook = Box<dyn FnOnce()>;
type DropHook = Box<dyn FnOnce() + Send>;

std::thread_local! {
    /// Run (once) by the next `Key::eq` on this thread.
    static ON_EQ: RefCell<Option<Hook>> = const { RefCell::new(None) };
    /// Run (once) by the next `Val::clone` on this thread.
    static ON_CLONE: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

fn on_next_eq(f: impl FnOnce() + 'static) {
    ON_EQ.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

fn on_next_clone(f: impl FnOnce() + 'static) {
    ON_CLONE.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

fn run(hook: &'static std::thread::LocalKey<RefCell<Option<Hook>>>) {
    if let Some(f) = hook.with(|h| h.borrow_mut().take()) {
        f();
    }
}

/// A key whose `Eq` runs the thread's armed hook, and whose `Drop` may run one of its own.
struct Key {
    id: u64,
    on_drop: Mutex<Option<DropHook>>,
}

impl Key {
    fn new(id: u64) -> Self {
        Key { id, on_drop: Mutex::new(None) }
    }

    fn with_drop(id: u64, hook: impl FnOnce() + Send + 'static) -> Self {
        Key { id, on_drop: Mutex::new(Some(Box::new(hook))) }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialEq for Key {
    /// Runs the hook only on a match: a probe's tag collision with another key does not take it.
    fn eq(&self, other: &Self) -> bool {
        if self.id == other.id {
            run(&ON_EQ);
        }
        self.id == other.id
    }
}

impl Eq for Key {}

impl Drop for Key {
    fn drop(&mut self) {
        let hook = self.on_drop.get_mut().map(Option::take).unwrap_or_default();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// A value whose `Clone` runs the thread's armed hook.
#[derive(Debug, PartialEq)]
struct Val(u64);

impl Clone for Val {
    fn clone(&self) -> Self {
        run(&ON_CLONE);
        Val(self.0)
    }
}

type E = Engine<Key, Val>;
/// A call back into the engine, by name.
type Op = (&'static str, fn(&E));

/// One shard, one worker, a manual clock: every key shares the shard and its locks.
fn engine() -> E {
    Engine::builder()
        .max_capacity(10_000)
        .shards(1)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("build")
}

fn get(e: &E, id: u64) -> Option<u64> {
    e.get(&Key::new(id)).map(|v| v.0)
}

/// Stalls the engine's worker (`common::Stalled`).
fn stall(e: &E) -> Stalled {
    common::stall(e, |h| h.map_or_else(|| Key::new(STALL), |h| Key::with_drop(STALL, h)), Val(0))
}

/// Asserts that `f` panics with the message for user code calling back under a lock.
fn panics_as_reentry<T>(what: &str, f: impl FnOnce() -> T) {
    let msg = expect_panic(what, f);
    assert!(msg.starts_with("memokit:") && msg.contains("called back"), "{what}: {msg}");
}

/// After a test: the engine answers, stores, flushes and is consistent.
fn still_usable(e: &E) {
    e.insert(Key::new(900), Val(900));
    e.flush();
    assert_eq!(get(e, 900), Some(900));
    e.run_maintenance();
    e.validate().unwrap();
}

/// A value's `Clone` on a hit (the core's read lock held) looks up, stores, removes, computes
/// and retires through its own engine while the worker is queued for that shard's write
/// lock. Before: the nested read lock waited behind the queued writer, which waited for the
/// outer read lock (a hang). Now it works.
#[test]
fn a_clone_on_a_hit_may_call_back_while_the_worker_waits_for_the_write_lock() {
    no_hang("a Clone on a hit calls back with the worker queued", || {
        let e = engine();
        e.insert(Key::new(1), Val(1));
        e.flush();
        let stalled = stall(&e);
        e.insert(Key::new(2), Val(2)); // pending: the worker has a batch to apply
        let (he, g) = (e.clone(), e.new_generation());
        on_next_clone(move || {
            stalled.release_until_queued();
            assert_eq!(get(&he, 1), Some(1));
            assert_eq!(get(&he, 2), Some(2));
            he.insert(Key::new(3), Val(3));
            assert_eq!(get(&he, 3), Some(3));
            he.remove(&Key::new(3));
            assert_eq!(get(&he, 3), None);
            assert_eq!(he.get_or_insert_with(Key::new(4), || Val(4)), Val(4));
            he.retire(g);
            assert_eq!(get(&he, 4), Some(4));
        });
        assert_eq!(get(&e, 1), Some(1));
        still_usable(&e);
        assert_eq!(get(&e, 4), Some(4));
    });
}

/// A value's `Clone` on a hit that waits for the workers: `clear`, `run_maintenance` and
/// `shutdown` take the write lock of every shard, `flush` of those with pending operations,
/// so each waited for its own caller (a hang). Now each panics.
#[test]
fn a_clone_on_a_hit_that_waits_for_the_workers_panics() {
    let ops: [Op; 4] = [
        ("flush", E::flush),
        ("clear", E::clear),
        ("run_maintenance", E::run_maintenance),
        ("shutdown", E::shutdown),
    ];
    for (name, op) in ops {
        no_hang(name, move || {
            let e = engine();
            e.insert(Key::new(1), Val(1));
            e.flush();
            let stalled = stall(&e);
            e.insert(Key::new(2), Val(2));
            let he = e.clone();
            on_next_clone(move || {
                stalled.release();
                op(&he);
            });
            panics_as_reentry(name, || get(&e, 1));
            if name != "shutdown" {
                assert_eq!(get(&e, 2), Some(2));
                still_usable(&e);
            }
        });
    }
}

/// The operations a nested call tries, by name.
fn ops() -> [Op; 5] {
    [
        ("insert", |e| e.insert(Key::new(50), Val(50))),
        ("remove", |e| e.remove(&Key::new(1))),
        ("get_or_insert_with", |e| {
            let _ = e.get_or_insert_with(Key::new(51), || Val(51));
        }),
        ("flush", E::flush),
        ("clear", E::clear),
    ]
}

/// A lookup of a pending key runs the key's `Eq` and the value's `Clone` with the shard's
/// pending table and read lock held. Calling back to store, remove or compute took the
/// pending table again (a self-deadlock); to flush or clear waited for the worker, queued
/// behind the read lock. Now each panics.
#[test]
fn eq_or_clone_in_a_lookup_of_a_pending_key_that_calls_back_panics() {
    for (name, op) in ops() {
        for clone in [false, true] {
            no_hang(name, move || {
                let e = engine();
                let stalled = stall(&e);
                e.insert(Key::new(2), Val(2));
                let he = e.clone();
                let hook = move || {
                    stalled.release();
                    op(&he);
                };
                if clone {
                    on_next_clone(hook);
                } else {
                    on_next_eq(hook);
                }
                panics_as_reentry(name, || get(&e, 2));
                e.flush();
                if name != "clear" {
                    assert_eq!(get(&e, 2), Some(2));
                }
                still_usable(&e);
            });
        }
    }
}

/// A lookup that hits, from a key's `Eq` in a lookup of a pending key (the shard's pending
/// table and read lock held) while the worker is queued for the write lock: works. Before,
/// debug builds panicked with the engine's own lock-order check ("memokit-engine bug"), and
/// release builds hung (the nested read queued behind the worker).
#[test]
fn a_lookup_that_hits_from_eq_in_a_slow_lookup_works() {
    no_hang("a hit from Eq in a slow lookup", || {
        let e = engine();
        e.insert(Key::new(1), Val(1));
        e.flush();
        let stalled = stall(&e);
        e.insert(Key::new(2), Val(2));
        let he = e.clone();
        on_next_eq(move || {
            stalled.release_until_queued();
            assert_eq!(get(&he, 1), Some(1));
        });
        assert_eq!(get(&e, 2), Some(2));
        still_usable(&e);
    });
}

/// `to_owned` runs under the shard's flights lock: storing, removing or computing took it
/// again (a self-deadlock). Flushing or clearing from there waits for a worker whose `Drop`
/// storing into the engine would wait for that lock, as from a weigher. Now each panics; a
/// lookup that hits works.
#[test]
fn to_owned_that_calls_back_panics_but_may_look_up() {
    for (name, op) in ops() {
        no_hang(name, move || {
            let e = engine();
            e.insert(Key::new(1), Val(1));
            e.flush();
            let he = e.clone();
            panics_as_reentry(name, || {
                e.get_or_try_insert_with_ref(
                    &Key::new(7),
                    InsertOptions::new(),
                    |k| {
                        op(&he);
                        Key::new(k.id)
                    },
                    || Ok::<_, ()>(Val(7)),
                )
            });
            let he = e.clone();
            let v = e.get_or_try_insert_with_ref(
                &Key::new(8),
                InsertOptions::new(),
                |k| {
                    assert_eq!(get(&he, 1), Some(1));
                    Key::new(k.id)
                },
                || Ok::<_, ()>(Val(8)),
            );
            assert_eq!(v, Ok(Val(8)));
            still_usable(&e);
        });
    }
}

/// An insert of a resident key replaces its value in place, comparing keys (`Eq`) under the
/// shard's write lock. A lookup from there waited for that lock (a self-deadlock). Now it
/// panics, and so does every other call back.
#[test]
fn eq_during_an_in_place_replacement_that_calls_back_panics() {
    let lookup: Op = ("get", |e| {
        let _ = e.get(&Key::new(1));
    });
    for (name, op) in std::iter::once(lookup).chain(ops()) {
        no_hang(name, move || {
            let e = engine();
            e.insert(Key::new(1), Val(1));
            e.flush();
            let he = e.clone();
            on_next_eq(move || op(&he));
            panics_as_reentry(name, || e.insert(Key::new(1), Val(2)));
            e.flush();
            still_usable(&e);
        });
    }
}

/// Two engines: A's `to_owned` (A's flights lock held) stores into B, whose `Eq` (B's write
/// lock held) stores into A: A's flights lock again, on the same thread (a hang). Now A's
/// store panics, and both engines stay usable.
#[test]
fn a_chain_through_a_second_engine_back_into_the_first_panics() {
    no_hang("A's to_owned stores into B, whose Eq stores into A", || {
        let (a, b) = (engine(), engine());
        b.insert(Key::new(1), Val(1));
        b.flush();
        let (ha, hb) = (a.clone(), b.clone());
        panics_as_reentry("the chain", || {
            a.get_or_try_insert_with_ref(
                &Key::new(7),
                InsertOptions::new(),
                move |k| {
                    let ha = ha.clone();
                    on_next_eq(move || ha.insert(Key::new(8), Val(8)));
                    hb.insert(Key::new(1), Val(2));
                    Key::new(k.id)
                },
                || Ok::<_, ()>(Val(7)),
            )
        });
        ON_EQ.with(|h| h.borrow_mut().take()); // disarmed, had the chain broken before B
        still_usable(&a);
        still_usable(&b);
    });
}

std::thread_local! {
    static HASHING: Cell<bool> = const { Cell::new(false) };
}

/// A key whose `Hash` flushes its engine (once per outermost call on a thread): were `Hash`
/// ever called under a lock, the flush would wait for its own caller. It also records a
/// call on a worker thread (the workers find entries by their stored hash).
struct FlushingKey(u64, Arc<Mutex<Option<Engine<FlushingKey, u64>>>>, Arc<AtomicBool>);

impl Hash for FlushingKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let worker = std::thread::current().name().is_some_and(|n| n.contains("memokit"));
        if worker {
            self.2.store(true, Ordering::SeqCst);
        } else if !HASHING.with(|h| h.replace(true)) {
            let e = self.1.lock().unwrap().clone();
            if let Some(e) = e {
                e.flush();
            }
            HASHING.with(|h| h.set(false));
        }
        self.0.hash(state);
    }
}

impl PartialEq for FlushingKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for FlushingKey {}

/// `Hash` never runs under a lock, nor on a worker: the table's growth rehashes by the
/// stored hash. Works before and after.
#[test]
fn hash_runs_under_no_lock_and_never_on_a_worker() {
    no_hang("a Hash that flushes", || {
        let slot = Arc::new(Mutex::new(None));
        let on_worker = Arc::new(AtomicBool::new(false));
        let e: Engine<FlushingKey, u64> = Engine::builder()
            .max_capacity(1_000)
            .shards(1)
            .workers(1)
            .clock(ManualClock::new())
            .build()
            .expect("build");
        *slot.lock().unwrap() = Some(e.clone());
        let k = |i| FlushingKey(i, slot.clone(), on_worker.clone());
        for i in 0..3_000 {
            e.insert(k(i), i); // grows the table, then evicts
            if i % 7 == 0 {
                e.insert(k(i), i + 1); // in place
                e.remove(&k(i / 2));
            }
            assert_eq!(e.get_or_insert_with(k(i + 10_000), || i), i);
            let _ = e.get(&k(i));
        }
        e.flush();
        assert!(!on_worker.load(Ordering::SeqCst), "a worker called the user's Hash");
        slot.lock().unwrap().take();
    });
}

/// The user's keys that a caller displaces (the new key of an in-place replacement, a
/// running computation's key detached by an insert, the key of a computation whose value is
/// not kept) are dropped after the caller's locks: a `Drop` that flushes and stores works.
/// Works before and after.
#[test]
fn keys_a_caller_displaces_are_dropped_under_no_lock() {
    no_hang("Drops of displaced keys call back", || {
        let e = engine();
        let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hook = |id: u64| {
            let (he, dropped) = (e.clone(), dropped.clone());
            move || {
                he.flush();
                he.insert(Key::new(id + 100), Val(id));
                dropped.fetch_add(1, Ordering::SeqCst);
            }
        };
        // In place: the new key is dropped, the resident one kept.
        e.insert(Key::new(1), Val(1));
        e.flush();
        e.insert(Key::with_drop(1, hook(1)), Val(2));
        assert_eq!(get(&e, 1), Some(2));
        // Not kept (a zero TTL): the leader's key is dropped after its flights lock.
        let zero = InsertOptions::new().ttl(std::time::Duration::ZERO);
        let h2 = hook(2);
        let v = e.get_or_try_insert_with_ref(
            &Key::new(2),
            zero,
            |k| Key::with_drop(k.id, h2),
            || Ok::<_, ()>(Val(2)),
        );
        assert_eq!(v, Ok(Val(2)));
        // Detached: an insert supersedes a running computation, whose key it drops.
        let gate = Gate::new();
        let (le, lg, h3) = (e.clone(), gate.clone(), hook(3));
        let leader = std::thread::spawn(move || {
            le.get_or_try_insert_with_ref(
                &Key::new(3),
                InsertOptions::new(),
                |k| Key::with_drop(k.id, h3),
                || {
                    lg.enter_and_wait();
                    Ok::<_, ()>(Val(30))
                },
            )
        });
        gate.wait_entered();
        e.insert(Key::new(3), Val(3));
        gate.open();
        assert_eq!(leader.join().unwrap(), Ok(Val(30)));
        e.flush();
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
        for id in 1..=3 {
            assert_eq!(get(&e, id + 100), Some(id));
        }
        assert_eq!(get(&e, 3), Some(3));
        still_usable(&e);
    });
}
