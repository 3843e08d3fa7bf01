//! Review s19d: the per-shard pending limit (a small shard holds its callers back after 64
//! operations) and the stopping of engines from worker threads.
//!
//! Model: a caller is held back only while the worker is behind in engine code, never while
//! the worker runs a user's `Drop` that may be waiting for that very caller (a lock of the
//! user's it holds); and a `shutdown` made on a worker thread never waits for another worker,
//! which may be waiting for this one. Every test runs under [`no_hang`].

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use common::{no_hang, wait_until, HookedKey};
use memokit_engine::{Engine, ManualClock};

/// A value whose `Drop` takes a lock of the user's (as a pool giving a connection back
/// would), after recording that it started.
#[derive(Clone)]
struct Locker {
    lock: Arc<Mutex<()>>,
    entered: Arc<AtomicBool>,
}

impl Drop for Locker {
    fn drop(&mut self) {
        self.entered.store(true, Ordering::SeqCst);
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// A caller stores a few hundred new keys into a 1,000-entry engine while holding a lock of
/// its own, which the worker's `Drop` of a removed value waits for. Hung since the limit
/// became a shard's share / 8 (125 here; it was 4,096): the caller waited at the limit for
/// the worker, the worker for the caller's lock.
#[test]
fn a_caller_holding_a_lock_the_workers_drop_waits_for_is_not_held_back() {
    no_hang("stores under a lock the worker's Drop needs", || {
        let e: Engine<u64, Option<Locker>> = Engine::builder()
            .max_capacity(1_000)
            .shards(1)
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        let lock = Arc::new(Mutex::new(()));
        let entered = Arc::new(AtomicBool::new(false));
        e.insert(u64::MAX, Some(Locker { lock: lock.clone(), entered: entered.clone() }));
        e.flush();
        entered.store(false, Ordering::SeqCst);
        let held = lock.lock().unwrap();
        e.remove(&u64::MAX);
        wait_until("the worker is in the value's Drop", || entered.load(Ordering::SeqCst));
        for k in 0..300 {
            e.insert(k, None);
        }
        drop(held);
        e.flush();
        assert_eq!(e.len(), 300);
    });
}

/// Two engines with one worker each; a value of each, removed at once, whose `Drop` (on its
/// worker) shuts the other engine down. Hung before: each first `shutdown` on a worker thread
/// joined the other engine's worker, itself in the other `Drop`, joining the first.
#[test]
fn two_workers_shutting_each_others_engine_down_do_not_wait_for_each_other() {
    no_hang("two workers shutting each other's engine down", || {
        let one = || -> Engine<HookedKey, u64> {
            Engine::builder()
                .max_capacity(100)
                .shards(1)
                .workers(1)
                .clock(ManualClock::new())
                .build()
                .expect("engine")
        };
        let (e1, e2) = (one(), one());
        let both = Arc::new(Barrier::new(2));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for (e, other) in [(&e1, &e2), (&e2, &e1)] {
            let (other, both, done) = (other.clone(), both.clone(), done.clone());
            e.insert(
                HookedKey::with_drop(1, move || {
                    both.wait();
                    other.shutdown();
                    // Shut down: the other engine's values are gone, and it stores nothing.
                    assert_eq!(other.get(&HookedKey::new(2)), None);
                    other.insert(HookedKey::new(3), 3);
                    assert_eq!(other.get(&HookedKey::new(3)), None);
                    done.fetch_add(1, Ordering::SeqCst);
                }),
                1,
            );
            e.insert(HookedKey::new(2), 2);
            e.flush();
        }
        e1.remove(&HookedKey::new(1));
        e2.remove(&HookedKey::new(1));
        wait_until("both Drops returned", || done.load(Ordering::SeqCst) == 2);
        assert_eq!((e1.get(&HookedKey::new(2)), e2.get(&HookedKey::new(2))), (None, None));
    });
}

/// An engine's last handle dropped where it may not wait (a `get_map` read, under another
/// engine's read lock): its first worker to stop empties the shards, and a key whose `Drop`
/// panics there does not keep the others from being dropped (each under its own
/// `catch_unwind`, as on the workers; the worker does not die of it).
#[test]
fn a_panicking_drop_while_a_worker_empties_an_abandoned_engine_spares_the_rest() {
    no_hang("a panicking Drop in the emptying of an abandoned engine", || {
        let e1: Engine<HookedKey, u64> = Engine::builder()
            .max_capacity(100)
            .shards(1)
            .workers(1)
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        let dropped = Arc::new(AtomicBool::new(false));
        let d = dropped.clone();
        e1.insert(HookedKey::with_drop(1, || panic!("a key's Drop panics")), 1);
        e1.insert(HookedKey::with_drop(2, move || d.store(true, Ordering::SeqCst)), 2);
        e1.flush();
        let e2: Engine<u64, u64> = Engine::new(10);
        e2.insert(1, 1);
        e2.flush();
        let slot = Arc::new(Mutex::new(Some(e1)));
        let s = slot.clone();
        assert!(e2.get_map(&1, move |_| drop(s.lock().unwrap().take())).is_some());
        assert!(slot.lock().unwrap().is_none(), "the read dropped the last handle");
        wait_until("the other key dropped", || dropped.load(Ordering::SeqCst));
    });
}
