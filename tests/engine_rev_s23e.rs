//! Review s23d (continued from `tests/engine_rev_s23d.rs`): commit d66df8c, a second
//! `shutdown` while a first one is under way.
//!
//! The change: the first shutdown counts the keys and values it drops as it empties the shards
//! in a `UserDrops` session (`inner.first_shutdown`); a later caller waits for its end with
//! `wait_for_end()`, i.e. until it has finished or until it has stayed on one value of that
//! session for `STUCK_PATIENCE` (a second). Then that caller empties the shards itself
//! (`empty_shards(shared, None)`, dropping what it takes on its own thread) and returns.
//! Three tests failed against it (in `engine_rev_s23d.rs`: the second caller dropped values
//! whose `Drop` waits for its own lock, and hung; keys of detached computations were dropped
//! without moving the session on; the first's wait for a shard's lock counted as a stuck
//! `Drop`). Since then the second takes what is left out of the shards and leaves it to the
//! first to drop, and the first's session is open only while it drops.
//!
//! Model (docs of `Engine::shutdown`, `engine/src/engine/admin.rs`, and the table in
//! `engine/src/engine/lifecycle.rs`):
//! - after any `shutdown` call has returned, lookups miss, inserts are dropped and
//!   `get_or_insert_with` computes without storing;
//! - a call made while another is under way returns once that one has finished, or once that
//!   one has stayed in ONE key's or value's `Drop` for a second (that `Drop` may wait for a
//!   lock of the caller's); so a first that is only slow (quick `Drop`s, or anything that is
//!   not a `Drop`) is waited for, and every key and value it drops is dropped when the later
//!   call returns;
//! - the later call returns at all: the lock the stuck `Drop` waits for is held by its
//!   caller, so it must not wait for that lock either;
//! - every key and value is dropped exactly once, whoever drops it.
//!
//! Every test runs under [`no_hang`]; a test that needs the second call to give up waits for
//! the engine's patience (a second), so the file takes a few seconds. Sleeps appear only
//! inside user code (a `Drop` or a read made slow), never in place of a condition. A test that
//! expects a call to return waits for it up to [`RETURN_LIMIT`], then frees every lock so that
//! the threads end, and only then asserts (a failure leaves no thread blocked behind).

mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use common::user_locks::{engine_of, Locker};
use common::{no_hang, wait_until, Gate};
use memokit_engine::Engine;

// ---------------------------------------------------------------------------------------------
// 3. A first stuck in one Drop: what holds once the second returned.
// ---------------------------------------------------------------------------------------------

/// Drop counts by value id, and whether drops are counted yet.
struct Counts {
    armed: AtomicBool,
    per_id: Vec<AtomicU32>,
}

impl Counts {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Counts {
            armed: AtomicBool::new(false),
            per_id: (0..n).map(|_| 0.into()).collect(),
        })
    }

    /// The ids not dropped exactly once.
    fn wrong(&self) -> Vec<(usize, u32)> {
        let counts = self.per_id.iter().map(|c| c.load(Ordering::SeqCst));
        counts.enumerate().filter(|&(_, c)| c != 1).collect()
    }
}

/// A value counted by id when dropped (armed), carrying a `Locker` (the first of them dropped
/// once armed waits for the user's lock).
#[derive(Clone)]
struct Val {
    id: usize,
    counts: Arc<Counts>,
    _lock: Option<Locker>,
}

impl Drop for Val {
    fn drop(&mut self) {
        if self.counts.armed.load(Ordering::SeqCst) {
            self.counts.per_id[self.id].fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An engine of `shards` shards holding `flushed` values applied by the worker and `pending`
/// more stored after the flush (in the pending tables, or applied by a batch the threshold
/// woke the worker for); every value carries `locker`.
fn filled(
    shards: usize,
    flushed: usize,
    pending: usize,
) -> (Engine<u64, Val>, Locker, Arc<Counts>) {
    let locker = Locker::new();
    let counts = Counts::new(flushed + pending);
    let engine: Engine<u64, Val> = engine_of(shards);
    let val = |id| Val { id, counts: counts.clone(), _lock: Some(locker.clone()) };
    for id in 0..flushed {
        engine.insert(id as u64, val(id));
    }
    engine.flush();
    for id in flushed..flushed + pending {
        engine.insert(id as u64, val(id));
    }
    (engine, locker, counts)
}

/// Arms the values and starts the first shutdown, which gets stuck in the first value's
/// `Drop` (the `Locker`'s, waiting for `locker.lock`, which the caller must hold).
fn start_stuck_first<K, V>(
    engine: &Engine<K, V>,
    locker: &Locker,
    counts: Option<&Counts>,
) -> std::thread::JoinHandle<()>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    if let Some(c) = counts {
        c.armed.store(true, Ordering::SeqCst);
    }
    locker.armed.store(true, Ordering::SeqCst);
    let first = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.shutdown())
    };
    wait_until("the first shutdown is in a Drop waiting for the user's lock", || {
        locker.entered.load(Ordering::SeqCst)
    });
    first
}

/// How many of keys `0..n` a lookup finds (without cloning a value: a clone of a `Locker`
/// dropped here could be the one that waits).
fn found(engine: &Engine<u64, Val>, n: u64) -> usize {
    (0..n).filter(|k| engine.get_map(k, |_| ()).is_some()).count()
}

/// Model: with values in every shard and in the pending tables, a second call made while the
/// first is stuck in a value's `Drop` returns; lookups then miss; once the stuck `Drop` is let
/// go and the first returns, every value has been dropped exactly once (none twice by the two
/// emptyings, none left behind). Regression guard: passes.
#[test]
fn each_value_is_dropped_exactly_once_by_the_two_shutdowns() {
    no_hang("two shutdowns, the first stuck in a Drop", || {
        let (engine, locker, counts) = filled(8, 64, 16);
        let held = locker.lock.lock().expect("the user's lock");
        let first = start_stuck_first(&engine, &locker, Some(&counts));
        let second = engine.clone();
        let found_after = no_hang("the second shutdown", move || {
            second.shutdown();
            found(&second, 80)
        });
        drop(held);
        first.join().expect("the first shutdown");
        assert!(locker.left.load(Ordering::SeqCst), "the stuck Drop finished");
        assert_eq!(found_after, 0, "lookups after the second shutdown returned found values");
        assert_eq!(counts.wrong(), vec![], "(id, drops) of values not dropped exactly once");
        assert_eq!(engine.len(), 0);
    });
}

/// A key hashed and compared by `id`, carrying a `Locker` (its `Drop` may wait).
#[derive(Clone)]
struct LockKey {
    id: u64,
    _lock: Option<Locker>,
}

impl Hash for LockKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
    }
}

impl PartialEq for LockKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for LockKey {}

/// Model: the first stuck in a *key's* `Drop` is given up on like one stuck in a value's: the
/// second call returns after the patience and lookups miss; the stuck `Drop` finishes once the
/// lock is free. Regression guard: passes.
#[test]
fn a_second_shutdown_does_not_wait_for_a_first_stuck_in_a_keys_drop() {
    no_hang("a second shutdown, the first stuck in a key's Drop", || {
        let locker = Locker::new();
        let engine: Engine<LockKey, u64> = engine_of(4);
        for id in 0..32 {
            engine.insert(LockKey { id, _lock: Some(locker.clone()) }, id);
        }
        engine.flush();
        let held = locker.lock.lock().expect("the user's lock");
        let first = start_stuck_first(&engine, &locker, None);
        let second = engine.clone();
        let found_after = no_hang("the second shutdown", move || {
            second.shutdown();
            (0..32).filter(|&id| second.get(&LockKey { id, _lock: None }).is_some()).count()
        });
        drop(held);
        first.join().expect("the first shutdown");
        assert!(locker.left.load(Ordering::SeqCst), "the stuck key's Drop finished");
        assert_eq!(found_after, 0, "lookups after the second shutdown returned found values");
    });
}

/// Model: two more calls at once while the first is stuck (a second and a third, released
/// together), and a fourth after they returned: each returns, lookups miss after each, and
/// every value is dropped exactly once in the end. Regression guard: passes.
#[test]
fn three_more_shutdowns_while_the_first_is_stuck_all_return() {
    no_hang("three more shutdowns while the first is stuck", || {
        let (engine, locker, counts) = filled(8, 48, 8);
        let held = locker.lock.lock().expect("the user's lock");
        let first = start_stuck_first(&engine, &locker, Some(&counts));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let later: Vec<_> = (0..2)
            .map(|_| {
                let (engine, barrier) = (engine.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    engine.shutdown();
                    found(&engine, 56)
                })
            })
            .collect();
        let found_after: Vec<usize> = no_hang("the second and third shutdowns", move || {
            later.into_iter().map(|t| t.join().expect("a later shutdown")).collect()
        });
        let fourth = engine.clone();
        let found_fourth = no_hang("a fourth shutdown", move || {
            fourth.shutdown();
            found(&fourth, 56)
        });
        drop(held);
        first.join().expect("the first shutdown");
        assert_eq!(found_after, vec![0, 0], "lookups after a later shutdown found values");
        assert_eq!(found_fourth, 0);
        assert_eq!(counts.wrong(), vec![], "(id, drops) of values not dropped exactly once");
    });
}

/// Model: a computation in flight when the shutdowns begin (in the shard where the first is
/// stuck: the first has taken that shard's table of flights and not yet dropped it) is not
/// stored when it finishes after the second call returned: its leader and the caller waiting
/// for it get its value, and lookups miss. Regression guard: passes.
#[test]
fn a_computation_finishing_after_the_second_shutdown_is_not_stored() {
    no_hang("a computation finishing after the second shutdown", || {
        let (engine, locker, counts) = filled(1, 16, 0);
        let extra = Counts::new(1);
        let gate = Gate::new();
        let leader = {
            let (engine, gate, extra) = (engine.clone(), gate.clone(), extra.clone());
            std::thread::spawn(move || {
                let v = engine.get_or_insert_with(1_000, || {
                    gate.enter_and_wait();
                    Val { id: 0, counts: extra, _lock: None }
                });
                v.id
            })
        };
        gate.wait_entered();
        let waiter = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let v = engine.get_or_insert_with(1_000, || panic!("the waiter computed"));
                v.id
            })
        };
        wait_until("a caller waits for the computation", || {
            engine.stats().single_flight_waits == 1
        });
        let held = locker.lock.lock().expect("the user's lock");
        let first = start_stuck_first(&engine, &locker, Some(&counts));
        let second = engine.clone();
        no_hang("the second shutdown", move || second.shutdown());
        gate.open();
        assert_eq!(leader.join().expect("the leader"), 0);
        assert_eq!(waiter.join().expect("the waiter"), 0, "the waiter gets the leader's value");
        let stored = engine.get_map(&1_000, |_| ()).is_some();
        drop(held);
        first.join().expect("the first shutdown");
        assert!(!stored, "a computation that finished after shutdown was stored");
        assert!(engine.get_map(&1_000, |_| ()).is_none());
        assert_eq!(counts.wrong(), vec![], "(id, drops) of values not dropped exactly once");
    });
}

// ---------------------------------------------------------------------------------------------
// 4. User code calling into the engine: the stuck Drop itself, the second's thread, a worker.
// ---------------------------------------------------------------------------------------------

/// What a `Drop` calling into the engine saw.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    insert_found: bool,
    computed: Option<u64>,
    compute_found: bool,
    done: bool,
}

/// The user code of the re-entrant values: an engine handle, the user's lock, what its
/// `Drop` saw.
struct Calls {
    engine: OnceLock<Engine<u64, RVal>>,
    lock: Arc<Mutex<()>>,
    armed: AtomicBool,
    entered: AtomicBool,
    seen: Mutex<Seen>,
    /// For a trigger: whether its `shutdown` (on a worker) returned.
    shut: AtomicBool,
}

impl Calls {
    fn new() -> Arc<Self> {
        Arc::new(Calls {
            engine: OnceLock::new(),
            lock: Arc::new(Mutex::new(())),
            armed: AtomicBool::new(false),
            entered: AtomicBool::new(false),
            seen: Mutex::new(Seen::default()),
            shut: AtomicBool::new(false),
        })
    }
}

/// Stores, computes and looks up through `e` after shutdown, then flushes, clears, runs
/// maintenance and shuts down again: what a shut-down engine must take without hanging or
/// storing.
fn call_into(e: &Engine<u64, RVal>, base: u64) -> Seen {
    e.insert(base, RVal::Plain(5));
    let insert_found = e.get_map(&base, |_| ()).is_some();
    let computed = match e.get_or_insert_with(base + 1, || RVal::Plain(7)) {
        RVal::Plain(v) => Some(v),
        _ => None,
    };
    let compute_found = e.get_map(&(base + 1), |_| ()).is_some();
    e.flush();
    e.clear();
    e.run_maintenance();
    e.shutdown();
    Seen { insert_found, computed, compute_found, done: true }
}

#[derive(Clone)]
enum RVal {
    Plain(u64),
    /// Its `Drop`, when armed, waits for the user's lock, then calls into the engine.
    Reenter(Arc<Calls>),
    /// Its `Drop`, when armed, shuts the engine down (on the worker that drops it).
    Trigger(Arc<Calls>),
    Lock(#[allow(dead_code)] Locker),
}

impl Drop for RVal {
    fn drop(&mut self) {
        match self {
            RVal::Reenter(c) if c.armed.swap(false, Ordering::SeqCst) => {
                c.entered.store(true, Ordering::SeqCst);
                drop(c.lock.lock().unwrap_or_else(|p| p.into_inner()));
                let seen = call_into(c.engine.get().expect("the engine"), 500);
                *c.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
            }
            RVal::Trigger(c) if c.armed.swap(false, Ordering::SeqCst) => {
                c.engine.get().expect("the engine").shutdown();
                c.shut.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

fn rfound(engine: &Engine<u64, RVal>, n: u64) -> usize {
    (0..n).filter(|k| engine.get_map(k, |_| ()).is_some()).count()
}

/// Model: once the second call returned (the first still stuck), the engine behaves as shut
/// down on the second caller's thread: a store is dropped, `get_or_insert_with` computes
/// without storing, and `flush`, `clear`, `run_maintenance` and another `shutdown` return. The
/// stuck `Drop`, once let go, calls into the engine the same way from the first's thread, with
/// the same results, and the first returns. Regression guard: passes.
#[test]
fn the_engine_is_shut_down_for_the_second_caller_and_for_the_stuck_drop() {
    no_hang("calls into the engine after the second shutdown and from the stuck Drop", || {
        let calls = Calls::new();
        let engine: Engine<u64, RVal> = engine_of(4);
        assert!(calls.engine.set(engine.clone()).is_ok(), "set once");
        engine.insert(0, RVal::Reenter(calls.clone()));
        for k in 1..32 {
            engine.insert(k, RVal::Plain(k));
        }
        engine.flush();
        let held = calls.lock.lock().expect("the user's lock");
        calls.armed.store(true, Ordering::SeqCst);
        let first = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.shutdown())
        };
        wait_until("the first shutdown is in the re-entrant Drop", || {
            calls.entered.load(Ordering::SeqCst)
        });
        let second = engine.clone();
        let (found_after, seen_here) = no_hang("the second shutdown, then calls", move || {
            second.shutdown();
            (rfound(&second, 32), call_into(&second, 600))
        });
        drop(held);
        no_hang("the first shutdown", move || first.join().expect("the first shutdown"));
        let seen_in_drop = std::mem::take(&mut *calls.seen.lock().expect("seen"));
        let expected =
            Seen { insert_found: false, computed: Some(7), compute_found: false, done: true };
        assert_eq!(found_after, 0, "lookups after the second shutdown returned found values");
        assert_eq!(seen_here, expected, "on the second caller's thread after it returned");
        assert_eq!(seen_in_drop, expected, "in the stuck Drop, once let go");
        assert_eq!(rfound(&engine, 32) + usize::from(engine.get_map(&500, |_| ()).is_some()), 0);
        // The engine handle held by `calls` (a cycle through the values is gone by now).
        drop(calls);
    });
}

/// Model: the first shutdown is called from a value's `Drop` on the engine's worker (it then
/// empties the shards on the worker) and gets stuck there in another value's `Drop`, waiting
/// for the user's lock held by this thread; this thread's `shutdown` returns after the
/// patience, lookups miss, and once the lock is free the worker's shutdown returns too.
/// Regression guard: passes.
#[test]
fn a_second_shutdown_does_not_wait_for_a_first_stuck_on_a_worker() {
    no_hang("a second shutdown while the first, on a worker, is stuck in a Drop", || {
        let (calls, locker) = (Calls::new(), Locker::new());
        let engine: Engine<u64, RVal> = engine_of(4);
        assert!(calls.engine.set(engine.clone()).is_ok(), "set once");
        for k in 0..32 {
            engine.insert(k, RVal::Lock(locker.clone()));
        }
        engine.insert(999, RVal::Trigger(calls.clone()));
        engine.flush();
        let held = locker.lock.lock().expect("the user's lock");
        locker.armed.store(true, Ordering::SeqCst);
        calls.armed.store(true, Ordering::SeqCst);
        // The worker drops the trigger, whose `Drop` shuts the engine down there.
        engine.remove(&999);
        wait_until("the worker's shutdown is in a Locker's Drop", || {
            locker.entered.load(Ordering::SeqCst)
        });
        let second = engine.clone();
        let found_after = no_hang("the second shutdown", move || {
            second.shutdown();
            rfound(&second, 32)
        });
        let shut_early = calls.shut.load(Ordering::SeqCst);
        drop(held);
        wait_until("the worker's shutdown returns", || calls.shut.load(Ordering::SeqCst));
        assert!(!shut_early, "the worker's shutdown cannot have returned: its Drop was stuck");
        assert_eq!(found_after, 0, "lookups after the second shutdown returned found values");
        assert!(locker.left.load(Ordering::SeqCst));
        assert_eq!(rfound(&engine, 32), 0);
        drop(calls);
    });
}

/// Model: a second call made while the first is still joining the workers (its session of
/// `Drop`s not begun) waits for it: here the worker is stuck in a value's `Drop` waiting for
/// the user's lock held by this thread, the first gives up on it after the patience
/// (`join_patiently`), empties the shards and finishes, and this thread's `shutdown` returns
/// once it has: lookups miss, and every value has been dropped once (the first was never
/// stuck, so none is left to it). Regression guard: passes.
#[test]
fn a_second_shutdown_while_the_first_joins_a_stuck_worker_returns() {
    no_hang("a second shutdown while the first joins a worker stuck in a Drop", || {
        let (engine, locker, counts) = filled(2, 32, 0);
        let held = locker.lock.lock().expect("the user's lock");
        counts.armed.store(true, Ordering::SeqCst);
        locker.armed.store(true, Ordering::SeqCst);
        engine.remove(&0);
        wait_until("the worker is in the removed value's Drop", || {
            locker.entered.load(Ordering::SeqCst)
        });
        let first = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.shutdown())
        };
        // Shut down (by the first) once a store is dropped rather than found.
        let probe = Counts::new(1);
        wait_until("the first shutdown has begun", || {
            engine.insert(777, Val { id: 0, counts: probe.clone(), _lock: None });
            engine.get_map(&777, |_| ()).is_none()
        });
        let second = engine.clone();
        let (found_after, wrong_then) = no_hang("the second shutdown", move || {
            second.shutdown();
            (found(&second, 32), counts.wrong())
        });
        drop(held);
        first.join().expect("the first shutdown");
        wait_until("the worker's Drop finishes", || locker.left.load(Ordering::SeqCst));
        assert_eq!(found_after, 0, "lookups after the second shutdown returned found values");
        assert_eq!(wrong_then, vec![], "(id, drops) not dropped once when the second returned");
    });
}
