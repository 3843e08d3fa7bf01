//! Review s16c of the single-flight cycle detection (`flight::Waits`): the table of waits
//! must not take a flight's own lock, under which the engine runs the user's `Clone` (a
//! waiter clones the value it was handed while it holds the flight's state lock).

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use common::no_hang;
use memokit_engine::Engine;

type E = Engine<u64, Val>;

static ENGINE: OnceLock<E> = OnceLock::new();

thread_local! {
    /// Set on the thread whose next clone of a value asks the engine for key 3.
    static ASKS: Cell<bool> = const { Cell::new(false) };
}

/// A value whose `Clone`, on a thread marked `ASKS`, asks the engine for key 3 (once).
#[derive(Debug, PartialEq)]
struct Val(u64);

impl Clone for Val {
    fn clone(&self) -> Self {
        if ASKS.with(|a| a.replace(false)) {
            let e = ENGINE.get().unwrap();
            e.get_or_insert_with(3, || unreachable!("key 3 is being computed"));
        }
        Val(self.0)
    }
}

/// A gate a computation waits at until the test opens it.
#[derive(Default)]
struct Gate(AtomicBool);

impl Gate {
    fn wait(&self) {
        while !self.0.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
    fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn waits(e: &E) -> u64 {
    e.stats().single_flight_waits
}

fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            eprintln!("not within {limit:?}: {what}");
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// X waits for key 1 (led by P); so does W, whose computation of key 2 asks for it. When key
/// 1 is done, X clones its value under key 1's flight lock, and that `Clone` waits for key 3
/// (led by Q). Y then waits for key 2: a walk through W's wait, for key 1, must not take key
/// 1's lock (X holds it until key 3 is done) while holding the table of waits, which Q needs
/// to wait for key 4 (led by S) on its way to finishing key 3. Before: Y's walk blocked on
/// key 1's lock holding the table, Q on the table, X on key 3: nobody ever returned.
#[test]
fn a_walk_through_a_flight_whose_waiter_is_cloning_never_hangs() {
    let e: &'static E =
        ENGINE.get_or_init(|| Engine::builder().max_capacity(100).shards(4).build().unwrap());
    // The wake-up order of key 1's two waiters decides whether the case arises (X first;
    // parking_lot wakes them in the order they came, so X comes first).
    for _ in 0..40 {
        e.clear();
        ASKS.with(|a| a.set(false));
        let [gf, gq, gr] = [(); 3].map(|_| Arc::new(Gate::default()));
        let w_returned = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Barrier::new(4));
        let base = waits(e);
        let mut threads = Vec::new();
        for (key, gate, then) in
            [(1u64, gf.clone(), None), (3, gq.clone(), Some(4u64)), (4, gr.clone(), None)]
        {
            let started = started.clone();
            threads.push(std::thread::spawn(move || {
                e.get_or_insert_with(key, || {
                    started.wait();
                    gate.wait();
                    if let Some(k) = then {
                        e.get_or_insert_with(k, || unreachable!("key {k} is being computed"));
                    }
                    Val(key)
                });
            }));
        }
        started.wait();
        threads.push(std::thread::spawn(move || {
            ASKS.with(|a| a.set(true));
            e.get_or_insert_with(1, || unreachable!());
        }));
        assert!(until("X waits for key 1", Duration::from_secs(10), || waits(e) == base + 1));
        let wr = w_returned.clone();
        threads.push(std::thread::spawn(move || {
            e.get_or_insert_with(2, || {
                let one = e.get_or_insert_with(1, || unreachable!());
                wr.store(true, Ordering::SeqCst);
                Val(one.0 + 1)
            });
        }));
        assert!(until("W waits for key 1", Duration::from_secs(10), || waits(e) == base + 2));
        gf.open();
        // X's clone waits for key 3 (X holding key 1's lock until then).
        assert!(until("X's clone waits", Duration::from_secs(10), || waits(e) == base + 3));
        let hit = !w_returned.load(Ordering::SeqCst);
        if hit {
            // W has not left its wait for key 1, and cannot until X lets go of its lock.
            threads.push(std::thread::spawn(move || {
                e.get_or_insert_with(2, || unreachable!());
            }));
            // Y's walk passes through W's wait for key 1, whose lock X holds.
            let recorded =
                until("Y's wait recorded", Duration::from_secs(2), || waits(e) == base + 4);
            // Q now waits for key 4 on its way to finishing key 3 (which X's clone waits for).
            gq.open();
            gr.open();
            no_hang("the callers", move || threads.into_iter().for_each(|t| t.join().unwrap()));
            assert!(recorded, "Y was held behind key 1's lock (but everyone finished)");
            return;
        }
        gq.open();
        gr.open();
        no_hang("the callers", move || threads.into_iter().for_each(|t| t.join().unwrap()));
    }
    panic!("X never woke before W in 40 runs");
}
