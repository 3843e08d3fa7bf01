//! Review s23g: commit bd74ab5, `take_what_is_left` (a later `shutdown` and a `clear` on a
//! shut-down engine hand what they take to the first shutdown, or to the drop of the last
//! handle) and `worker::forget_panic`; nothing repeated from `engine_rev_s23d.rs`, `_s23e.rs`,
//! `_s23f.rs`.
//!
//! Model (docs of `Engine::clear` and `Engine::shutdown` in `engine/src/engine/admin.rs`, the
//! table in `engine/src/engine/lifecycle.rs`): once `clear` has returned, lookups miss and the
//! engine counts nothing (`len`, `entries`, `weighted_size`, `generation_entries`); what
//! it takes after a shutdown is dropped by that shutdown, exactly once; from user code run under
//! any engine's lock it panics; a `Drop` that panics on a worker is caught and the worker goes
//! on serving; nothing the user hands the engine is leaked once the last handle is gone.
//! Every test runs under `no_hang`, with gates and flags; no sleeps.
//!
//! One failed against bd74ab5 (`a_second_panic_payload_is_not_leaked`: the payload of a
//! payload's panicking `Drop` was forgotten, with what it held); payloads are now dropped a few
//! levels deep before one is forgotten.

mod common;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use common::drop_log::DropCounts;
use common::user_locks::{engine_of, RETURN_LIMIT};
use common::{expect_panic, no_hang, wait_until, wait_until_or, Gate};
use memokit_engine::{Engine, InsertOptions};

const IDS: usize = 100;
/// For [`Log::hook`]: the first armed drop, whatever its id.
const ANY: usize = usize::MAX;

type Hook = Box<dyn FnOnce() + Send>;

/// Drop counts by id, the thread of each drop, and hooks run by the drop of an id.
#[derive(Default)]
struct Log {
    armed: AtomicBool,
    counts: DropCounts,
    hooks: Mutex<HashMap<usize, Hook>>,
}

impl Log {
    fn new() -> Arc<Self> {
        Arc::new(Log { counts: DropCounts::new(IDS), ..Log::default() })
    }

    fn hook(&self, id: usize, h: impl FnOnce() + Send + 'static) {
        self.hooks.lock().unwrap().insert(id, Box::new(h));
    }

    fn on_drop(&self, id: usize) {
        if !self.armed.load(SeqCst) {
            return;
        }
        self.counts.record(id);
        let hook = {
            let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
            hooks.remove(&id).or_else(|| hooks.remove(&ANY))
        };
        if let Some(h) = hook {
            h();
        }
    }
}

impl std::ops::Deref for Log {
    type Target = DropCounts;
    fn deref(&self) -> &DropCounts {
        &self.counts
    }
}

/// A value counted by id in its log (never cloned by these tests: lookups use `get_map`).
#[derive(Clone)]
struct Val(usize, Option<Arc<Log>>);

impl Drop for Val {
    fn drop(&mut self) {
        if let Some(log) = &self.1 {
            log.on_drop(self.0);
        }
    }
}

type E = Engine<u64, Val>;

/// An engine of `shards` shards (one worker) holding values `0..n` of `log`, half applied,
/// half pending, all under one generation; returns it with that generation.
fn filled(shards: usize, n: usize, log: &Arc<Log>) -> (E, memokit_engine::Generation) {
    let engine: E = engine_of(shards);
    let g = engine.new_generation();
    for id in 0..n {
        let opts = InsertOptions::new().generations(g, None);
        engine.insert_with_options(id as u64, Val(id, Some(log.clone())), opts);
        if id == n / 2 {
            engine.flush();
        }
    }
    (engine, g)
}

fn found(engine: &E, n: usize) -> Vec<usize> {
    (0..n).filter(|&id| engine.get_map(&(id as u64), |_| ()).is_some()).collect()
}

/// (found, len, entries, weighted_size, generation_entries) of `engine`.
fn measures(engine: &E, g: memokit_engine::Generation, n: usize) -> (usize, u64, u64, u64, u64) {
    let s = engine.stats();
    let (w, gen) = (engine.weighted_size(), engine.generation_entries(g));
    (found(engine, n).len(), engine.len(), s.entries, w, gen)
}

/// A panic payload whose own `Drop` panics, with a payload carrying a counted value: user
/// data handed to the engine (through the panic of a value's `Drop`) like any other.
struct Nested(Option<Val>);

impl Drop for Nested {
    fn drop(&mut self) {
        let inner = self.0.take();
        std::panic::panic_any(inner);
    }
}

// ---------------------------------------------------------------------------------------------

/// Model: a `clear` made by a value's `Drop` that the first shutdown runs on its own thread
/// (the engine is shut down; the first has emptied only the first non-empty shard) returns;
/// right after it, inside that `Drop`, lookups miss and every count is 0; what it took is
/// dropped afterwards by the first, on the first's thread, before the first returns; every
/// value exactly once. (Passes.)
#[test]
fn a_clear_from_a_drop_the_first_shutdown_runs_hands_what_is_left_to_it() {
    no_hang("clear inside the first shutdown's Drop", || {
        let log = Log::new();
        let (engine, g) = filled(4, 64, &log);
        let seen = Arc::new(Mutex::new(None));
        {
            let (e, seen, l) = (engine.clone(), seen.clone(), log.clone());
            log.hook(ANY, move || {
                e.clear();
                *seen.lock().unwrap() = Some((measures(&e, g, 64), l.total()));
            });
        }
        log.armed.store(true, SeqCst);
        engine.shutdown();
        let me = std::thread::current().id();
        let seen = seen.lock().unwrap().take().expect("the hook ran");
        assert_eq!(seen.0, (0, 0, 0, 0, 0), "(found, len, entries, weight, gen) after clear");
        assert_eq!(seen.1, 1, "values dropped by the time clear returned (the hooked one only)");
        assert_eq!(log.wrong(0..64), vec![], "(id, drops) once the first returned");
        let elsewhere: Vec<usize> = (0..64).filter(|&i| log.dropped_on(i) != Some(me)).collect();
        assert_eq!(elsewhere, vec![], "values not dropped on the first's thread");
        drop(engine);
        assert_eq!(log.wrong(0..64), vec![], "(id, drops) after the last handle");
    });
}

/// Model: `clear` on a shut-down engine made by a value's `Drop` on *another* engine's worker,
/// while the first shutdown is stuck in a `Drop`: it returns (its worker goes on serving),
/// lookups miss after it, and the values it took are dropped once, by the first, once its
/// `Drop` returns. (Passes.)
#[test]
fn a_clear_on_a_stuck_shut_down_engine_from_another_engines_worker_returns() {
    no_hang("clear from another engine's worker while the first is stuck", || {
        let (l1, l2) = (Log::new(), Log::new());
        let (e1, g) = filled(4, 64, &l1);
        let stuck = Gate::new();
        {
            let stuck = stuck.clone();
            l1.hook(ANY, move || stuck.enter_and_wait());
        }
        l1.armed.store(true, SeqCst);
        let first = {
            let e1 = e1.clone();
            std::thread::spawn(move || e1.shutdown())
        };
        let first_id = first.thread().id();
        stuck.wait_entered();
        assert!(!found(&e1, 64).is_empty(), "precondition: values the first has not reached");
        let e2: E = engine_of(1);
        e2.insert(0, Val(0, Some(l2.clone())));
        e2.flush();
        let seen = Arc::new(Mutex::new(None));
        {
            let (e1, seen) = (e1.clone(), seen.clone());
            l2.hook(0, move || {
                e1.clear();
                *seen.lock().unwrap() = Some(measures(&e1, g, 64));
            });
        }
        l2.armed.store(true, SeqCst);
        e2.remove(&0);
        let returned = wait_until_or(RETURN_LIMIT, || seen.lock().unwrap().is_some());
        e2.insert(1, Val(1, Some(l2.clone())));
        e2.flush();
        let served = e2.get_map(&1, |v| v.0);
        stuck.open();
        first.join().expect("the first shutdown");
        assert!(returned, "clear from e2's worker did not return within {RETURN_LIMIT:?}");
        assert_eq!(*seen.lock().unwrap(), Some((0, 0, 0, 0, 0)), "e1 after clear");
        assert_eq!(served, Some(1), "e2's worker serves after its Drop called clear");
        assert_eq!(l1.wrong(0..64), vec![], "(id, drops) of e1 once the first returned");
        let elsewhere: Vec<usize> =
            (0..64).filter(|&i| l1.dropped_on(i) != Some(first_id)).collect();
        assert_eq!(elsewhere, vec![], "e1's values not dropped on the first's thread");
    });
}

/// A key of a live engine whose `Eq` (run under its shard's read lock) can run a callback.
#[derive(Clone)]
struct CbKey(u64, Option<Arc<dyn Fn() + Send + Sync>>);

impl Hash for CbKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl PartialEq for CbKey {
    fn eq(&self, other: &Self) -> bool {
        for f in [&self.1, &other.1].into_iter().flatten() {
            f();
        }
        self.0 == other.0
    }
}

impl Eq for CbKey {}

/// Model (`Engine::clear`, Panics): from code that any engine runs under one of its locks
/// (here a key's `Eq` of a live engine, under its read lock), `clear` panics, also on an
/// engine that is shut down with its first shutdown stuck; it neither hangs nor takes
/// anything; the live engine goes on serving, and the shut-down one is emptied once the
/// first's `Drop` returns. (Passes.)
#[test]
fn a_clear_on_a_shut_down_engine_from_a_keys_eq_panics() {
    no_hang("clear on a shut-down engine from another engine's Eq", || {
        let log = Log::new();
        let (e1, _) = filled(2, 16, &log);
        let stuck = Gate::new();
        {
            let stuck = stuck.clone();
            log.hook(ANY, move || stuck.enter_and_wait());
        }
        log.armed.store(true, SeqCst);
        let first = {
            let e1 = e1.clone();
            std::thread::spawn(move || e1.shutdown())
        };
        stuck.wait_entered();
        let e2: Engine<CbKey, u64> = engine_of(1);
        e2.insert(CbKey(1, None), 1);
        e2.flush();
        let cb: Arc<dyn Fn() + Send + Sync> = {
            let e1 = e1.clone();
            Arc::new(move || e1.clear())
        };
        let msg = expect_panic("clear from Eq", || e2.get(&CbKey(1, Some(cb))));
        let left = found(&e1, 16).len();
        stuck.open();
        first.join().expect("the first shutdown");
        assert!(msg.contains("memokit"), "unexpected panic: {msg}");
        assert!(left > 0, "clear from Eq took values ({left} left) instead of panicking first");
        assert_eq!(e2.get(&CbKey(1, None)), Some(1), "e2 serves after the refused call");
        assert_eq!(log.wrong(0..16), vec![]);
    });
}

/// Model: a value's `Drop` that panics on a worker (a plain `remove`, no shutdown), with a
/// payload whose own `Drop` panics, is caught: the worker survives and goes on serving
/// (applies stores, drops what is removed). (Passes.)
#[test]
fn a_worker_survives_a_drop_whose_panic_payload_panics() {
    no_hang("a worker meeting a panic payload that panics", || {
        let log = Log::new();
        let engine: E = engine_of(1);
        for id in 0..8 {
            engine.insert(id as u64, Val(id, Some(log.clone())));
        }
        engine.flush();
        log.hook(3, || std::panic::panic_any(Nested(None)));
        log.armed.store(true, SeqCst);
        engine.remove(&3);
        engine.flush();
        wait_until("value 3 dropped", || log.of(3) == 1);
        engine.insert(10, Val(10, Some(log.clone())));
        engine.remove(&5);
        engine.flush();
        assert_eq!(engine.get_map(&10, |v| v.0), Some(10), "a store after the panic applied");
        wait_until("value 5 dropped by the worker", || log.of(5) == 1);
        assert_eq!(engine.len(), 7, "0..8 without 3 and 5, with 10");
        drop(engine);
        assert_eq!(log.wrong([0, 1, 2, 3, 4, 5, 6, 7, 10]), vec![]);
    });
}

/// Model: nothing the user hands the engine is leaked: a value's `Drop` on a worker panics
/// with a payload whose `Drop` panics in turn with a payload carrying a counted value (user
/// data, like the values). Once the last handle is gone, that value has been dropped once.
///
/// Expected to FAIL: `worker::forget_panic` (`engine/src/worker.rs`) `mem::forget`s the second
/// payload, so the value inside it is never dropped (leaked with its allocation).
#[test]
fn a_second_panic_payload_is_not_leaked() {
    no_hang("a payload's payload", || {
        let log = Log::new();
        let engine: E = engine_of(1);
        engine.insert(1, Val(1, Some(log.clone())));
        engine.flush();
        {
            let l = log.clone();
            log.hook(1, move || std::panic::panic_any(Nested(Some(Val(50, Some(l))))));
        }
        log.armed.store(true, SeqCst);
        engine.remove(&1);
        engine.flush();
        wait_until("value 1 dropped", || log.of(1) == 1);
        engine.insert(2, Val(2, Some(log.clone())));
        engine.flush();
        drop(engine);
        assert_eq!(log.wrong([1, 2]), vec![]);
        assert_eq!(
            log.of(50),
            1,
            "the value carried by the payload of a panicking payload's Drop was never dropped \
             (leaked) after the last handle went"
        );
    });
}
