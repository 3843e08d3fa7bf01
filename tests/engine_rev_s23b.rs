//! Session 23: a second `shutdown` while the first is stuck in a user's `Drop` as it empties
//! the shards.
//!
//! Model: a `shutdown` called while another is under way returns once the first has finished,
//! or once the first has stayed in one key's or value's `Drop` for the engine's patience with
//! such code (a second): that `Drop` may wait for a lock of the user's that the second caller
//! holds. Either way, lookups after the second call returns miss, as after any shutdown. Every
//! test runs under [`no_hang`].

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::user_locks::Locker;
use common::{no_hang, wait_until};
use memokit_engine::{Engine, ManualClock};

/// The second caller holds the user's lock that the first shutdown's `Drop` waits for. It used
/// to wait for the first for ever (and the first for it); now it gives up on the stuck `Drop`
/// after the patience, empties what the first has not reached yet, and returns.
#[test]
fn a_second_shutdown_does_not_wait_for_a_first_stuck_in_a_drop() {
    let locker = Locker::new();
    // Several shards, so that the first shutdown is stuck with shards left to empty.
    let engine: Engine<u64, Locker> = Engine::builder()
        .shards(8)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("build the engine");
    for k in 0..64 {
        engine.insert(k, locker.clone());
    }
    engine.flush();
    assert_eq!(engine.len(), 64);
    // The first value the first shutdown drops waits for the user's lock, held here.
    let held = locker.lock.lock().expect("the user's lock");
    locker.armed.store(true, Ordering::SeqCst);
    let first = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.shutdown())
    };
    wait_until("the first shutdown runs a value's Drop that waits for the user's lock", || {
        locker.entered.load(Ordering::SeqCst)
    });
    let second = engine.clone();
    let found_after = no_hang("a second shutdown while the first is stuck in a Drop", move || {
        second.shutdown();
        (0..64).filter(|k| second.get(k).is_some()).count()
    });
    assert_eq!(found_after, 0, "lookups after the second shutdown returned found values");
    drop(held);
    first.join().expect("the first shutdown");
    assert!(locker.left.load(Ordering::SeqCst), "the stuck Drop finished once the lock was free");
    assert!(engine.get(&0).is_none());
}

/// Without a stuck `Drop`, the second caller still waits for the first to finish: the first's
/// `Drop`s run (slowly, a few milliseconds in all) on its own thread, and when the second call
/// returns every one of them has run. Model: the number of values dropped equals the number
/// stored once any `shutdown` call has returned.
#[test]
fn a_second_shutdown_waits_for_a_first_that_is_only_slow() {
    use std::sync::atomic::AtomicU64;
    struct Slow(Arc<AtomicU64>, Arc<std::sync::atomic::AtomicBool>);
    impl Clone for Slow {
        fn clone(&self) -> Self {
            Slow(self.0.clone(), self.1.clone())
        }
    }
    impl Drop for Slow {
        fn drop(&mut self) {
            if self.1.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_micros(200));
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let dropped = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine: Engine<u64, Slow> =
        Engine::builder().shards(4).workers(1).build().expect("build the engine");
    for k in 0..40 {
        engine.insert(k, Slow(dropped.clone(), counting.clone()));
    }
    engine.flush();
    counting.store(true, Ordering::SeqCst);
    let first = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.shutdown())
    };
    wait_until("the first shutdown drops a value", || dropped.load(Ordering::SeqCst) > 0);
    let second = engine.clone();
    let after = no_hang("a second shutdown", move || {
        second.shutdown();
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(after, 40, "the second shutdown returned before the first had dropped everything");
    first.join().expect("the first shutdown");
}
