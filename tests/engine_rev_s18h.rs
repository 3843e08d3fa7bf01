//! Review s18h: a weigher calling back into *another* engine.
//!
//! Model: the weigher runs under its engine's flights lock (of the key's shard), like a key's
//! `Eq` under a lock; so whatever would wait for a worker (`flush`, `clear`,
//! `run_maintenance`, `shutdown`) or for another thread's computation, of any engine, panics
//! from it with a `memokit:` message instead of waiting: that worker (a user's `Drop` storing
//! into the weigher's engine) or that computation may wait for the flights lock the weigher's
//! caller holds. What a weigher may do still works: look values up, in its own engine (also
//! through the pending table) and in others, and store into another engine.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use common::{no_hang, panic_message, Gate, HookedKey};
use memokit_engine::{Engine, ManualClock};

type E1 = Engine<HookedKey, u64>;

/// The value whose weighing calls back into the other engine.
const CALL: u64 = 7;

/// An engine of `u64 -> u64`, one shard and one worker, whose weigher runs `call` (once the
/// test has set it) on a value of [`CALL`], after opening `weighing`.
fn weighed_engine(
    call: Arc<OnceLock<Box<dyn Fn() + Send + Sync>>>,
    weighing: Gate,
) -> Engine<u64, u64> {
    Engine::builder()
        .max_capacity(1_000)
        .shards(1)
        .workers(1)
        .clock(ManualClock::new())
        .weigher(move |_, v| {
            if *v == CALL {
                weighing.open(); // this thread holds the engine's flights lock
                (call.get().expect("the call"))();
            }
            1
        })
        .build()
        .expect("engine")
}

fn one_worker() -> E1 {
    Engine::builder()
        .max_capacity(1_000)
        .shards(1)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("engine")
}

/// `e2`'s weigher runs `what` on `e1` while `e1`'s only worker is held in a key's `Drop`
/// that, once released, stores into `e2` (waiting for the flights lock the weigher's caller
/// holds). Expects the weigher's call to panic with a `memokit:` message (it hung: the worker
/// waited for the lock, the weigher's caller for the worker).
fn weigher_waits_for_a_worker_storing_into_its_engine(name: &'static str, what: fn(&E1)) {
    no_hang(name, move || {
        let call: Arc<OnceLock<Box<dyn Fn() + Send + Sync>>> = Arc::default();
        let weighing = Gate::new();
        let e2 = weighed_engine(call.clone(), weighing.clone());
        let e1 = one_worker();
        let e1b = e1.clone();
        assert!(call.set(Box::new(move || what(&e1b))).is_ok());
        // e1's worker drops this key (removed below) and waits in its `Drop` until released.
        let (held, e2b) = (Gate::new(), e2.clone());
        let h = held.clone();
        e1.insert(
            HookedKey::with_drop(1, move || {
                h.enter_and_wait();
                e2b.insert(2, 2); // e2's only shard: its flights lock
            }),
            1,
        );
        e1.flush();
        e1.remove(&HookedKey::new(1));
        held.wait_entered();
        let e2c = e2.clone();
        let storer = std::thread::spawn(move || e2c.insert(1, CALL));
        weighing.wait_open();
        held.open();
        let err = storer.join().expect_err("the weigher's call panics");
        let msg = panic_message(&*err);
        assert!(msg.starts_with("memokit:"), "{name}: {msg}");
        // Both engines stay usable: the worker's `Drop` got the lock and stored.
        e1.flush();
        e2.flush();
        assert_eq!(e2.get(&2), Some(2), "{name}");
        assert_eq!(e2.get(&1), None, "{name}: the store whose weigher panicked");
        e2.insert(3, 3);
        assert_eq!(e2.get(&3), Some(3));
    });
}

#[test]
fn a_weigher_flushing_another_engine_does_not_hang() {
    weigher_waits_for_a_worker_storing_into_its_engine("weigher: e1.flush()", |e| e.flush());
}

#[test]
fn a_weigher_clearing_another_engine_does_not_hang() {
    weigher_waits_for_a_worker_storing_into_its_engine("weigher: e1.clear()", |e| e.clear());
}

#[test]
fn a_weigher_running_maintenance_of_another_engine_does_not_hang() {
    weigher_waits_for_a_worker_storing_into_its_engine("weigher: e1.run_maintenance()", |e| {
        e.run_maintenance()
    });
}

#[test]
fn a_weigher_shutting_another_engine_down_does_not_hang() {
    weigher_waits_for_a_worker_storing_into_its_engine("weigher: e1.shutdown()", |e| e.shutdown());
}

/// `e2`'s weigher waits for `e1`'s computation of a key that another thread leads, whose
/// computation stores into `e2` (waiting for the flights lock the weigher's caller holds).
/// It hung; now the weigher's wait panics.
#[test]
fn a_weigher_waiting_for_another_engines_computation_does_not_hang() {
    no_hang("weigher: e1.get_or_insert_with of a key being computed", || {
        let call: Arc<OnceLock<Box<dyn Fn() + Send + Sync>>> = Arc::default();
        let weighing = Gate::new();
        let e2 = weighed_engine(call.clone(), weighing.clone());
        let e1: Engine<u64, u64> = Engine::builder()
            .max_capacity(1_000)
            .workers(1)
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        let e1b = e1.clone();
        assert!(call.set(Box::new(move || assert_eq!(e1b.get_or_insert_with(5, || 0), 5))).is_ok());
        let (computing, e1c, e2b) = (Gate::new(), e1.clone(), e2.clone());
        let c = computing.clone();
        let leader = std::thread::spawn(move || {
            e1c.get_or_insert_with(5, || {
                c.enter_and_wait();
                e2b.insert(2, 2); // e2's only shard: its flights lock
                5
            })
        });
        computing.wait_entered();
        let e2c = e2.clone();
        let storer = std::thread::spawn(move || e2c.insert(1, CALL));
        weighing.wait_open();
        computing.open();
        let err = storer.join().expect_err("the weigher's wait panics");
        let msg = panic_message(&*err);
        assert!(msg.starts_with("memokit:"), "{msg}");
        assert_eq!(leader.join().expect("the leader"), 5);
        e2.flush();
        assert_eq!(e2.get(&2), Some(2));
        assert_eq!(e1.get(&5), Some(5));
    });
}

/// What a weigher may do still works: look values up in its own engine (a value still in the
/// pending table too) and in another, store into another engine, and lead a computation of
/// another engine's key that nobody computes.
#[test]
fn a_weigher_may_look_up_and_store_into_another_engine() {
    no_hang("weigher: lookups and stores into another engine", || {
        let call: Arc<OnceLock<Box<dyn Fn() + Send + Sync>>> = Arc::default();
        let weighing = Gate::new();
        let e2 = weighed_engine(call.clone(), weighing.clone());
        let e1: Engine<u64, u64> = Engine::builder()
            .max_capacity(1_000)
            .workers(1)
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        let done = Arc::new(AtomicBool::new(false));
        let (e1b, e2b, d) = (e1.clone(), e2.clone(), done.clone());
        assert!(call
            .set(Box::new(move || {
                assert_eq!(e2b.get(&10), Some(10), "own engine, resident");
                assert_eq!(e2b.get(&11), Some(11), "own engine, pending");
                assert_eq!(e2b.get(&12), None, "own engine, missing");
                assert_eq!(e1b.get(&20), Some(20), "other engine");
                e1b.insert(21, 21);
                e1b.remove(&20);
                assert_eq!(e1b.get_or_insert_with(22, || 22), 22);
                d.store(true, Ordering::SeqCst);
            }))
            .is_ok());
        e2.insert(10, 10);
        e2.flush();
        e2.insert(11, 11); // perhaps still pending
        e1.insert(20, 20);
        e1.flush();
        e2.insert(1, CALL);
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(e2.get(&1), Some(CALL));
        e1.flush();
        assert_eq!((e1.get(&20), e1.get(&21), e1.get(&22)), (None, Some(21), Some(22)));
    });
}

/// `e2`'s weigher stores into `e1` and finds `e1`'s shard's pending table full, while `e1`'s
/// only worker is held in a key's `Drop` that, once released, stores into `e2`: the
/// backpressure wait (for that worker) is skipped in a weigher, as in other user code run
/// under a lock, and the store goes through.
#[test]
fn a_weigher_storing_into_another_engines_full_shard_does_not_hang() {
    no_hang("weigher: e1.insert into a full pending table", || {
        const LIMIT: u64 = 4096; // `PENDING_LIMIT`
        let call: Arc<OnceLock<Box<dyn Fn() + Send + Sync>>> = Arc::default();
        let weighing = Gate::new();
        let e2 = weighed_engine(call.clone(), weighing.clone());
        let e1: E1 = Engine::builder()
            .max_capacity(100_000)
            .shards(1)
            .workers(1)
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        let e1b = e1.clone();
        assert!(call.set(Box::new(move || e1b.insert(HookedKey::new(LIMIT), 0))).is_ok());
        let (held, e2b) = (Gate::new(), e2.clone());
        let h = held.clone();
        e1.insert(
            HookedKey::with_drop(1 << 40, move || {
                h.enter_and_wait();
                e2b.insert(2, 2); // e2's only shard: its flights lock
            }),
            1,
        );
        e1.flush();
        e1.remove(&HookedKey::new(1 << 40));
        held.wait_entered();
        // One short of full: the weigher's store fills the table.
        (0..LIMIT - 1).for_each(|k| e1.insert(HookedKey::new(k), k));
        let e2c = e2.clone();
        let storer = std::thread::spawn(move || e2c.insert(1, CALL));
        weighing.wait_open();
        held.open();
        storer.join().expect("the weigher's store");
        e1.flush();
        e2.flush();
        assert_eq!((e2.get(&1), e2.get(&2)), (Some(CALL), Some(2)));
        assert_eq!(e1.get(&HookedKey::new(LIMIT)), Some(0));
        assert_eq!(e1.len(), LIMIT);
    });
}
