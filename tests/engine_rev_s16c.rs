//! Review s16c of the single-flight cycle detection (`flight::Waits`): a waiter's `Clone` of
//! the value it was handed may wait for another flight; that must hold up neither the other
//! waiters of the first flight nor the table of waits. (When this was written, the waiter
//! cloned under the flight's state lock and the walk for cycles took that lock under the table:
//! a chain of waits through such a flight hung. Since review s16d the walk takes no state lock
//! and the value is cloned after the lock is let go: `tests/engine_rev_s16d.rs`.)

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use common::{no_hang, wait_until, wait_until_or, Gate};
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

fn waits(e: &E) -> u64 {
    e.stats().single_flight_waits
}

/// X and W wait for key 1 (led by P). When key 1 is done, X's `Clone` of its value waits for
/// key 3 (led by Q, held at its gate). W must get its own copy of key 1 meanwhile, and a
/// newcomer waiting for key 2 (which W leads) must get through the table of waits: neither
/// may wait for X's `Clone`. Before: X cloned under key 1's lock, so W (and anyone whose
/// walk for cycles passed through W's wait) waited until key 3 was done.
#[test]
fn a_waiters_clone_that_waits_holds_up_no_other_waiter() {
    let e: &'static E =
        ENGINE.get_or_init(|| Engine::builder().max_capacity(100).shards(4).build().unwrap());
    for _ in 0..10 {
        e.clear();
        ASKS.with(|a| a.set(false));
        let [gf, gq] = [(); 2].map(|_| Gate::new());
        let w_returned = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Barrier::new(3));
        let base = waits(e);
        let mut threads = Vec::new();
        for (key, gate) in [(1u64, gf.clone()), (3, gq.clone())] {
            let started = started.clone();
            threads.push(std::thread::spawn(move || {
                e.get_or_insert_with(key, || {
                    started.wait();
                    gate.enter_and_wait();
                    Val(key)
                });
            }));
        }
        started.wait();
        threads.push(std::thread::spawn(move || {
            ASKS.with(|a| a.set(true));
            assert_eq!(e.get_or_insert_with(1, || unreachable!()), Val(1));
        }));
        wait_until("X waits for key 1", || waits(e) == base + 1);
        let wr = w_returned.clone();
        threads.push(std::thread::spawn(move || {
            e.get_or_insert_with(2, || {
                let one = e.get_or_insert_with(1, || unreachable!());
                wr.store(true, Ordering::SeqCst);
                Val(one.0 + 1)
            });
        }));
        wait_until("W waits for key 1", || waits(e) == base + 2);
        gf.open();
        wait_until("X's clone waits", || waits(e) >= base + 3);
        // Key 3 is still held at its gate, so X's `Clone` still waits.
        let w_free = wait_until_or(Duration::from_secs(10), || w_returned.load(Ordering::SeqCst));
        threads.push(std::thread::spawn(move || {
            assert_eq!(e.get_or_insert_with(2, || unreachable!()), Val(2));
        }));
        gq.open();
        no_hang("the callers", move || threads.into_iter().for_each(|t| t.join().unwrap()));
        assert!(w_free, "W waited for X's Clone of key 1 (but everyone finished)");
    }
}
