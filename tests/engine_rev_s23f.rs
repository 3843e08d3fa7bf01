//! Review s23f: commits d66df8c and 93cc023, a second `shutdown` while a first is under way
//! (`engine/src/engine/lifecycle.rs`); nothing repeated from `engine_rev_s23d.rs`/`_s23e.rs`.
//!
//! Model (docs of `Engine::shutdown` and `Engine::clear` in `engine/src/engine/admin.rs`, the
//! table in `lifecycle.rs`): once a `shutdown` call or a `clear` has returned, lookups miss; a
//! later call that gives up on a first stuck in one `Drop` drops none of what it takes on its
//! own thread and returns even when it holds a lock the `Drop`s need; a `Drop` that panics as
//! the shards are emptied is caught and the emptying goes on; every key and value is dropped
//! exactly once. Every test runs under `no_hang`, with gates and flags, no sleeps; a test that
//! needs a later call to give up waits for the engine's patience (a second).
//!
//! Three tests failed against 93cc023 (`clear` while the first was stuck; a third `shutdown`
//! dropping a computation's key on its own thread; a panic payload whose `Drop` panics); they
//! pass since the fix that followed (see `TESTING.md`).

mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};

use common::drop_log::DropCounts;
use common::user_locks::{engine_of, UserLock, RETURN_LIMIT};
use common::{no_hang, wait_until, wait_until_or, Gate};
use memokit_engine::{Engine, Generation, InsertOptions};

/// Ids counted by a [`Log`]: values `0..100`, keys of computations `100..200`.
const IDS: usize = 200;
/// For [`Log::hook`]: the first armed drop, of any id.
const ANY: usize = usize::MAX;

type Hook = Box<dyn FnOnce() + Send>;

/// What the armed `Drop`s of keys and values do, by id, and what they saw. Ids are stored
/// plus one (0: none).
#[derive(Default)]
struct Log {
    armed: AtomicBool,
    counts: DropCounts,
    /// The first armed drop waits for `g1`.
    stall_first: AtomicBool,
    g1: Gate,
    /// The drop of this id waits for `g2`.
    stall_id: AtomicUsize,
    g2: Gate,
    /// The drop of this id takes `pool` (as a pooled connection given back would).
    pool_id: AtomicUsize,
    pool: UserLock,
    /// The first armed drop panics with a payload whose own `Drop` panics.
    bomb_first: AtomicBool,
    /// Every id divisible by 3 panics in its `Drop` (after being counted).
    panic_mod3: AtomicBool,
    /// Runs on the drop of `.0` (any id: [`ANY`]), which then does nothing else.
    hook: Mutex<Option<(usize, Hook)>>,
}

/// A panic payload whose own `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the panic payload's own Drop panics");
    }
}

impl Log {
    fn new() -> Arc<Self> {
        Arc::new(Log { counts: DropCounts::new(IDS), ..Log::default() })
    }

    fn on_drop(&self, id: usize) {
        if !self.armed.load(SeqCst) {
            return;
        }
        self.counts.record(id);
        let mut hook = self.hook.lock().unwrap_or_else(|p| p.into_inner());
        if hook.as_ref().is_some_and(|h| h.0 == id + 1 || h.0 == ANY) {
            let (_, run) = hook.take().expect("checked");
            drop(hook);
            return run();
        }
        drop(hook);
        if self.stall_first.swap(false, SeqCst) {
            self.g1.enter_and_wait();
        }
        if self.stall_id.load(SeqCst) == id + 1 {
            self.g2.enter_and_wait();
        }
        if self.pool_id.load(SeqCst) == id + 1 {
            self.pool.lock();
            self.pool.unlock();
        }
        if self.bomb_first.swap(false, SeqCst) {
            std::panic::panic_any(Bomb);
        }
        if self.panic_mod3.load(SeqCst) && id % 3 == 0 {
            panic!("value {id}'s Drop panics");
        }
    }
}

impl std::ops::Deref for Log {
    type Target = DropCounts;
    fn deref(&self) -> &DropCounts {
        &self.counts
    }
}

/// A value counted by id in its log, if it has one.
#[derive(Clone)]
struct Val(usize, Option<Arc<Log>>);

impl Drop for Val {
    fn drop(&mut self) {
        if let Some(log) = &self.1 {
            log.on_drop(self.0);
        }
    }
}

/// A key hashed and compared by id, counted in its log when dropped, if it has one.
struct Key(u64, Option<Arc<Log>>);

fn k(id: u64) -> Key {
    Key(id, None)
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Key {}

impl Drop for Key {
    fn drop(&mut self) {
        if let Some(log) = &self.1 {
            log.on_drop(self.0 as usize);
        }
    }
}

type E = Engine<Key, Val>;

/// An engine of `shards` shards holding values `0..n` (half applied, half stored after a
/// flush) under generation `g`, counted in `log`.
fn filled(shards: usize, n: usize, log: &Arc<Log>) -> (E, Generation) {
    let engine: E = engine_of(shards);
    let g = engine.new_generation();
    for id in 0..n {
        let opts = InsertOptions::new().generations(g, None);
        engine.insert_with_options(k(id as u64), Val(id, Some(log.clone())), opts);
        if id == n / 2 {
            engine.flush();
        }
    }
    (engine, g)
}

/// The ids of `0..n` that a lookup finds (no clone made).
fn found(engine: &E, n: usize) -> Vec<usize> {
    (0..n).filter(|&id| engine.get_map(&k(id as u64), |_| ()).is_some()).collect()
}

fn spawn_shutdown(engine: &E) -> JoinHandle<()> {
    let engine = engine.clone();
    std::thread::spawn(move || engine.shutdown())
}

/// Arms `log` to stall the first drop and starts the first shutdown, which stalls there
/// (in the first non-empty shard); returns it with the ids still found (the shards it has not
/// reached: what a second call takes).
fn stuck_first(engine: &E, log: &Log, n: usize) -> (JoinHandle<()>, Vec<usize>) {
    log.stall_first.store(true, SeqCst);
    log.armed.store(true, SeqCst);
    let first = spawn_shutdown(engine);
    log.g1.wait_entered();
    let left = found(engine, n);
    assert!(!left.is_empty(), "precondition: values left in shards the first has not reached");
    (first, left)
}

/// Calls `shutdown` on another thread (under `no_hang`): a second call, given up on the first
/// after its patience. Checks that lookups miss once it has returned; returns its thread.
fn second_shutdown(engine: &E, n: usize) -> ThreadId {
    let second = engine.clone();
    let (found, id) = no_hang("a later shutdown", move || {
        second.shutdown();
        (found(&second, n), std::thread::current().id())
    });
    assert_eq!(found, Vec::<usize>::new(), "lookups after the second shutdown returned found");
    id
}

// ---------------------------------------------------------------------------------------------

/// Model: `clear` removes every value and returns when done; a shutdown under way on another
/// thread (stuck in the first value's `Drop`, shards after it not emptied yet) does not change
/// that: once `clear` has returned, lookups of the values stored before it miss.
///
/// Fails: the first joined the workers, so `clear`'s `broadcast` (`admin.rs`, `Engine::clear`)
/// finds every mailbox disconnected and returns at once, emptying nothing; only the flights
/// are taken. The shards the stuck first has not reached keep their values.
#[test]
fn a_clear_while_the_first_shutdown_is_stuck_removes_every_value() {
    no_hang("clear while the first shutdown is stuck in a Drop", || {
        let log = Log::new();
        let (engine, _) = filled(4, 64, &log);
        let (first, left) = stuck_first(&engine, &log, 64);
        engine.clear();
        let after_clear = found(&engine, 64);
        log.g1.open();
        first.join().expect("the first shutdown");
        assert_eq!(
            after_clear,
            Vec::<usize>::new(),
            "clear returned while the first shutdown was stuck ({} values left in the shards it \
             had not reached), and lookups still found these",
            left.len()
        );
        assert_eq!(log.wrong(0..64), vec![], "(id, drops) not dropped exactly once");
    });
}

/// Model: a later call that gives up on the first drops nothing on its own thread and returns
/// even when it holds a lock every key's `Drop` needs (a pool). Here the first has set
/// `handed_over.done` and is stuck in a value a second call handed over to it; a computation
/// begun after that registered its key in the shard's table of flights; a third call, holding
/// the pool's lock that this key's `Drop` takes, shuts down.
///
/// Fails: after its patience the third call takes the computation's slot (`take_shard`) and,
/// `done` being set, drops it itself (`lifecycle.rs`, `shutdown`: `drop_taken(taken, None)`):
/// the key's `Drop` waits there for the pool's lock held by this very thread, for ever
/// (the hang s23d's first test fixed, for a call that comes once the first set `done`).
#[test]
fn a_later_shutdown_once_the_first_set_done_drops_nothing_on_its_own_thread() {
    no_hang("a third shutdown holding the pool lock a computation's key needs", || {
        const KEY: usize = 150;
        let log = Log::new();
        let (engine, _) = filled(4, 64, &log);
        let (first, left) = stuck_first(&engine, &log, 64);
        // A value the second call hands over: the first gets stuck in it again, after `done`.
        log.stall_id.store(left[0] + 1, SeqCst);
        second_shutdown(&engine, 64);
        log.g1.open();
        log.g2.wait_entered();
        // A computation begun now: its key stays in its shard's table of flights meanwhile.
        let g3 = Gate::new();
        let leader = {
            let (engine, log, g3) = (engine.clone(), log.clone(), g3.clone());
            std::thread::spawn(move || {
                let key = Key(KEY as u64, Some(log));
                engine
                    .get_or_insert_with(key, || {
                        g3.enter_and_wait();
                        Val(7, None)
                    })
                    .0
            })
        };
        g3.wait_entered();
        log.pool_id.store(KEY + 1, SeqCst);
        let returned = Arc::new(AtomicBool::new(false));
        let third = {
            let (engine, log, returned) = (engine.clone(), log.clone(), returned.clone());
            std::thread::spawn(move || {
                log.pool.lock();
                engine.shutdown();
                returned.store(true, SeqCst);
                log.pool.unlock();
            })
        };
        let third_id = third.thread().id();
        let in_time = wait_until_or(RETURN_LIMIT, || returned.load(SeqCst));
        if !in_time {
            log.pool.unlock();
        }
        third.join().expect("the third shutdown");
        log.g2.open();
        g3.open();
        assert_eq!(leader.join().expect("the leader"), 7);
        first.join().expect("the first shutdown");
        let on_third = log.dropped_on(KEY) == Some(third_id);
        assert!(
            in_time,
            "the third shutdown did not return within {RETURN_LIMIT:?}: the computation's key \
             was dropped on its thread ({on_third}), waiting for the pool lock it holds"
        );
        assert!(!on_third, "the computation's key was dropped on the third caller's thread");
        assert_eq!(log.wrong((0..64).chain([KEY])), vec![]);
    });
}

/// Model: a `Drop` that panics as the shards are emptied is caught and the emptying goes on
/// (`Engine::shutdown` docs): so a later `shutdown` returns with every value gone, and each is
/// dropped once the first has ended, also when the panic's payload panics in turn as it is
/// dropped (a payload is user data too: `std::panic::panic_any`).
///
/// Fails: `worker::drop_each` (`engine/src/worker.rs`) drops the `Err` payload that
/// `catch_unwind` returned outside any `catch_unwind` (`let _ = catch_unwind(..)`): that panic
/// unwinds out of `drop_taken`/`empty_shards`, out of the first `shutdown` (`Finish` then
/// marks it ended), leaving every shard after that one full and `handed_over.done` unset. A
/// later call sees the first ended and returns at once: lookups find the values, which stay
/// undropped until the last handle goes.
#[test]
fn a_drop_whose_panic_payload_panics_does_not_stop_the_emptying() {
    no_hang("a shutdown meeting a panic payload that panics", || {
        let log = Log::new();
        let (engine, _) = filled(4, 64, &log);
        log.bomb_first.store(true, SeqCst);
        log.armed.store(true, SeqCst);
        let first_panicked = spawn_shutdown(&engine).join().is_err();
        engine.shutdown();
        let left = found(&engine, 64);
        let undropped: Vec<usize> = (0..64).filter(|&id| log.of(id) == 0).collect();
        drop(engine);
        let wrong_at_the_end = log.wrong(0..64);
        assert_eq!(
            (left.len(), undropped.len()),
            (0, 0),
            "after a later shutdown returned (the first panicked out: {first_panicked}), \
             lookups found ids {left:?}, and ids {undropped:?} were not dropped"
        );
        assert_eq!(wrong_at_the_end, vec![], "(id, drops) once the last handle was dropped");
    });
}

// ---------------------------------------------------------------------------------------------
// Regression guards (pass).
// ---------------------------------------------------------------------------------------------

/// Model: once the second call has returned (the first still stuck), the engine holds nothing
/// by every measure (`len`, `is_empty`, `stats().entries`, `weighted_size`,
/// `generation_entries` of the values' generation, applied and pending stores alike); what it
/// handed over is dropped by the first, on the first's thread, after that (none by then), each
/// exactly once, also when a third of the values panic in their `Drop` (caught: the first
/// returns normally). Guard: passes.
#[test]
fn handed_over_values_some_panicking_are_dropped_once_by_the_first() {
    no_hang("handed-over values with panicking Drops", || {
        let log = Log::new();
        let (engine, g) = filled(4, 64, &log);
        assert_eq!(engine.generation_entries(g), 64, "precondition");
        log.panic_mod3.store(true, SeqCst);
        let (first, left) = stuck_first(&engine, &log, 64);
        let first_id = first.thread().id();
        second_shutdown(&engine, 64);
        let (s, e) = (engine.stats(), &engine);
        let measures =
            (e.len(), e.is_empty(), s.entries, e.weighted_size(), e.generation_entries(g));
        let early: Vec<usize> = left.iter().copied().filter(|&id| log.of(id) > 0).collect();
        log.g1.open();
        let first_result = first.join();
        let elsewhere: Vec<usize> =
            left.iter().copied().filter(|&id| log.dropped_on(id) != Some(first_id)).collect();
        assert!(first_result.is_ok(), "a panicking Drop escaped the first shutdown");
        assert_eq!(measures, (0, true, 0, 0, 0), "(len, is_empty, entries, weight, gen entries)");
        assert_eq!(early, vec![], "handed-over ids dropped before the stuck first went on");
        assert_eq!(elsewhere, vec![], "handed-over ids not dropped on the first's thread");
        assert_eq!(log.wrong(0..64), vec![], "(id, drops) not dropped exactly once");
        drop(engine);
        assert_eq!(log.wrong(0..64), vec![], "(id, drops) after the last handle went");
    });
}

/// Model: the first is a `shutdown` called from a value's `Drop` on the engine's worker (it
/// empties the shards there) and gets stuck in another value's `Drop`; the second call
/// returns, lookups miss, and once the first (on the worker) returns, every value has been
/// dropped once, the handed-over ones on that worker; dropping the last handle afterwards
/// drops nothing again. Guard: passes.
#[test]
fn a_first_on_a_worker_drops_what_was_handed_over_once() {
    no_hang("a first shutdown on a worker, stuck; a second hands over", || {
        const TRIGGER: usize = 99;
        let log = Log::new();
        let (engine, _) = filled(4, 64, &log);
        engine.insert(k(TRIGGER as u64), Val(TRIGGER, Some(log.clone())));
        engine.flush();
        let (shut, worker) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(None)));
        let hook: Hook = {
            let (engine, shut, worker) = (engine.clone(), shut.clone(), worker.clone());
            Box::new(move || {
                *worker.lock().expect("worker") = Some(std::thread::current().id());
                engine.shutdown();
                shut.store(true, SeqCst);
            })
        };
        *log.hook.lock().expect("hook") = Some((TRIGGER + 1, hook));
        log.stall_first.store(true, SeqCst);
        log.armed.store(true, SeqCst);
        engine.remove(&k(TRIGGER as u64));
        log.g1.wait_entered();
        let left = found(&engine, 64);
        assert!(!left.is_empty(), "precondition: values left for the second");
        second_shutdown(&engine, 64);
        assert!(!shut.load(SeqCst), "the first cannot have returned: it is stuck");
        log.g1.open();
        wait_until("the first shutdown, on the worker, returns", || shut.load(SeqCst));
        let worker = worker.lock().expect("worker").expect("the worker's id");
        let elsewhere: Vec<usize> =
            left.iter().copied().filter(|&id| log.dropped_on(id) != Some(worker)).collect();
        assert_eq!(elsewhere, vec![], "handed-over ids not dropped on the worker");
        assert_eq!(log.wrong((0..64).chain([TRIGGER])), vec![]);
        drop(engine);
        assert_eq!(log.wrong((0..64).chain([TRIGGER])), vec![], "after the last handle");
    });
}

/// Model: no user lock at all: the first's stuck `Drop` asks for a key whose computation is
/// led by the thread that, inside that computation, calls the second `shutdown` (each waits
/// for the other). The second gives up after its patience and takes the computation's slot
/// out (handing it over); the computation then ends, unstored; the `Drop` gets the leader's
/// value (it waited for it, rather than computing its own), and everything returns. Guard:
/// passes.
#[test]
fn the_stuck_drop_waits_for_a_computation_whose_leader_calls_the_second_shutdown() {
    no_hang("a first waiting for the second's computation", || {
        const KEY: u64 = 150;
        let log = Log::new();
        let (engine, _) = filled(1, 8, &log);
        let (entered, registered) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let got = Arc::new(AtomicUsize::new(0));
        let hook: Hook = {
            let (engine, entered, registered, got) =
                (engine.clone(), entered.clone(), registered.clone(), got.clone());
            Box::new(move || {
                entered.store(true, SeqCst);
                wait_until("the leader computes", || registered.load(SeqCst));
                got.store(engine.get_or_insert_with(k(KEY), || Val(1, None)).0, SeqCst);
            })
        };
        *log.hook.lock().expect("hook") = Some((ANY, hook));
        log.armed.store(true, SeqCst);
        let first = spawn_shutdown(&engine);
        // The first has taken the shard (flights included): the computation registers after.
        wait_until("the first shutdown runs the hooked Drop", || entered.load(SeqCst));
        let leader = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let e = engine.clone();
                let v = engine.get_or_insert_with(k(KEY), move || {
                    registered.store(true, SeqCst);
                    e.shutdown();
                    Val(9, None)
                });
                (v.0, found(&engine, 8), engine.get_map(&k(KEY), |_| ()).is_some())
            })
        };
        let (v, found_after, key_found) =
            no_hang("the leader", move || leader.join().expect("leader"));
        first.join().expect("the first shutdown");
        assert_eq!(v, 9);
        assert_eq!(got.load(SeqCst), 9, "the stuck Drop got the leader's value");
        assert_eq!((found_after, key_found), (vec![], false), "found after the second returned");
        assert_eq!(log.wrong(0..8), vec![]);
    });
}

/// Model: computations running as the shutdowns begin, spread over the shards (most in shards
/// the second takes and hands over), are not stored when they finish after the second
/// returned; the caller waiting for each gets its leader's value; each leader's key is dropped
/// exactly once (by the first, or by its leader). Guard: passes.
#[test]
fn computations_handed_over_by_the_second_are_not_stored_and_dropped_once() {
    no_hang("computations across the shards during two shutdowns", || {
        let log = Log::new();
        let (engine, _) = filled(4, 64, &log);
        let (gate, computing) = (Gate::new(), Arc::new(AtomicUsize::new(0)));
        let call = |id: u64, lead: bool| {
            let (engine, log, gate, computing) =
                (engine.clone(), log.clone(), gate.clone(), computing.clone());
            std::thread::spawn(move || {
                let key = Key(id, lead.then_some(log));
                let v = engine.get_or_insert_with(key, || {
                    assert!(lead, "a waiter computed");
                    computing.fetch_add(1, SeqCst);
                    gate.enter_and_wait();
                    Val(id as usize, None)
                });
                v.0
            })
        };
        let leaders: Vec<_> = (100..116).map(|id| call(id, true)).collect();
        wait_until("every leader computes", || computing.load(SeqCst) == 16);
        let waiters: Vec<_> = (100..116).map(|id| call(id, false)).collect();
        wait_until("every waiter waits", || engine.stats().single_flight_waits == 16);
        let (first, _) = stuck_first(&engine, &log, 64);
        let second = second_shutdown(&engine, 64);
        gate.open();
        let got: Vec<usize> =
            leaders.into_iter().chain(waiters).map(|t| t.join().expect("a caller")).collect();
        let stored: Vec<u64> =
            (100..116).filter(|&id| engine.get_map(&k(id), |_| ()).is_some()).collect();
        log.g1.open();
        first.join().expect("the first shutdown");
        let expected: Vec<usize> = (100..116).chain(100..116).collect();
        assert_eq!(got, expected, "each leader and its waiter get the leader's value");
        assert_eq!(stored, vec![], "computations stored after the second shutdown returned");
        let on_second: Vec<usize> =
            (100..116).filter(|&id| log.dropped_on(id) == Some(second)).collect();
        assert_eq!(on_second, vec![], "keys dropped on the second caller's thread");
        assert_eq!(log.wrong((0..64).chain(100..116)), vec![]);
    });
}
