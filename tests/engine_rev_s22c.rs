//! Review s22c: commits 259be44 (a worker queued for a write lock counts as in a Drop
//! session), 72a6587 (a claim per shard; the caller only tries the write locks) and 233d3c9
//! (the caller tries for up to 50 ms).
//!
//! Model (docs of `Engine::clear`, `Engine` and `worker/clear.rs`): a value stored after
//! `clear` returned is kept; a shard the caller could not lock is emptied by the worker
//! before any lookup gets in, unless a lookup in user code holds it while its worker is
//! stuck *elsewhere*; shutdown does not wait for ever for a worker queued behind a lookup
//! whose `Eq` waits for the caller's lock ("the engine is shut down and emptied all the
//! same"). Every test runs under [`no_hang`].
//!
//! All three failed against those commits; 259be44 was then reverted (a worker queued for a
//! write lock is waited for again), so in these scenarios `clear` and `shutdown` hang as they
//! did before session 22: a lock cycle through a key's `Eq` run under a shard's read lock,
//! which the crate docs leave to the user. The tests are kept, ignored, as the record of why
//! giving up there is not enough (`cargo test --test engine_rev_s22c -- --ignored` shows the
//! hang).

mod common;

use common::user_locks::{gk, EqGate, GateKey, Locker};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{no_hang, wait_until};
use memokit_engine::{Engine, ManualClock};

#[derive(Clone)]
enum Val {
    Plain(#[allow(dead_code)] u64),
    Lock(#[allow(dead_code)] Locker),
}

fn engine() -> Engine<GateKey, Val> {
    Engine::builder().shards(1).workers(1).clock(ManualClock::new()).build().expect("engine")
}

/// The scenario shared by the `clear` tests. One shard, one worker. A lookup of key 1 runs
/// its `Eq` under the read lock, waiting for `gate.lock` (held by this thread). This thread
/// removes key 3, whose value's `Drop` waits for `locker.lock` (held by this thread too): the
/// worker's `Work` batch queues for the write lock behind the lookup. Then `clear`: after
/// its patience it gives up on the worker, tries the write lock for 50 ms (in vain) and
/// returns; the shard is left to the worker's `Clear`, queued behind the `Work`.
/// Then a thread stores key 5 (after `clear` returned) and this thread lets the lookup go:
/// the worker applies the `Work` batch, lets go of the write lock, and sticks in the
/// removed value's `Drop`, with its `Clear` still in the mailbox. Returns with that state
/// reached and the store of key 5 returned; the caller then lets `locker` go.
struct Scene {
    e: Engine<GateKey, Val>,
    locker: Locker,
    held_locker: Option<std::sync::MutexGuard<'static, ()>>,
}

fn scene() -> Scene {
    let e = engine();
    let gate = Arc::new(EqGate::default());
    // Leaked so that its guard can outlive this function (a test helper).
    let locker: &'static Locker = Box::leak(Box::new(Locker::new()));
    e.insert(GateKey { id: 1, gate: Some(gate.clone()) }, Val::Plain(1));
    e.insert(gk(3), Val::Lock(locker.clone()));
    e.insert(gk(4), Val::Plain(4));
    e.flush();
    let held_gate = gate.lock.lock().expect("the user's lock");
    gate.armed.store(true, Ordering::SeqCst);
    let lookup = {
        let e = e.clone();
        std::thread::spawn(move || e.get(&gk(1)).is_some())
    };
    wait_until("the lookup is in Eq", || gate.entered.load(Ordering::SeqCst));
    let held_locker = locker.lock.lock().expect("the Drop's lock");
    locker.armed.store(true, Ordering::SeqCst);
    e.remove(&gk(3));
    e.clear();
    // Stored after clear returned (on another thread: this one cannot take the read lock
    // while the worker is queued behind the lookup that waits for this thread).
    let store = {
        let e = e.clone();
        std::thread::spawn(move || e.insert(gk(5), Val::Plain(5)))
    };
    gate.armed.store(false, Ordering::SeqCst);
    drop(held_gate);
    let _ = lookup.join().expect("the lookup");
    store.join().expect("the store after clear");
    wait_until("the worker is in the removed value's Drop", || {
        locker.entered.load(Ordering::SeqCst)
    });
    Scene { e, locker: locker.clone(), held_locker: Some(held_locker) }
}

impl Scene {
    fn unstick(&mut self) {
        drop(self.held_locker.take());
        let left = self.locker.left.clone();
        wait_until("the removed value's Drop returns", || left.load(Ordering::SeqCst));
        self.e.flush();
    }
}

/// FAILS. A value stored after `clear` returned is lost: the docs of `Engine::clear` say
/// "a value stored after `clear` returned is kept". The worker, queued for the write lock
/// in an *earlier* `Work` when `clear` gave up, lets go of the lock after that batch; the
/// store of key 5 gets in (pending table), and the late `Clear` (claim still OPEN, since
/// `clear_for_stuck` could not lock the shard) wipes it (`take_locked` takes the pending
/// inserts).
#[test]
#[ignore = "known limitation (session 22): a lock cycle through a key's Eq under a shard's read lock hangs; giving up on the queued worker left stale values and lost stores (engine_rev_s22c)"]
fn a_store_after_clear_is_lost_when_the_worker_was_queued_in_an_earlier_command() {
    no_hang("store after clear, worker queued in an earlier Work", || {
        let mut s = scene();
        assert!(s.e.get(&gk(5)).is_some(), "read-your-writes before the late Clear");
        s.unstick();
        assert!(s.e.get(&gk(5)).is_some(), "key 5, stored after clear returned, was lost");
    });
}

/// FAILS. A value stored before `clear` is found after it returned, while no lookup in user
/// code holds the shard: the module docs say a shard the caller could not lock is "locked
/// for writing (the worker holds it or is queued for it, so no lookup gets in until it is
/// emptied)", but the worker was queued for it for an earlier `Work` and let go of it after
/// that batch, long before serving the `Clear`.
#[test]
#[ignore = "known limitation (session 22): a lock cycle through a key's Eq under a shard's read lock hangs; giving up on the queued worker left stale values and lost stores (engine_rev_s22c)"]
fn a_value_stored_before_clear_is_found_after_it_when_the_worker_was_queued_earlier() {
    no_hang("value found after clear, worker queued in an earlier Work", || {
        let mut s = scene();
        let found = s.e.get(&gk(4)).is_some();
        s.unstick();
        assert!(s.e.get(&gk(4)).is_none());
        assert!(!found, "key 4, stored before clear, found after clear returned");
    });
}

/// HANGS. Shutdown while the worker is queued for the write lock behind a lookup whose `Eq`
/// waits for this thread's lock. `join_patiently` gives up on the worker after a second
/// (259be44: the queued wait counts as a Drop session), as the `Engine` docs promise ("the
/// engine is shut down and emptied all the same"), but then `empty_shards` calls
/// `worker::clear` -> `take_all` -> `write_lock` on this (non-worker) thread, which queues
/// behind the same lookup: a deadlock.
#[test]
#[ignore = "known limitation (session 22): a lock cycle through a key's Eq under a shard's read lock hangs; giving up on the queued worker left stale values and lost stores (engine_rev_s22c)"]
fn shutdown_does_not_hang_with_the_worker_queued_behind_a_lookup_stuck_in_eq() {
    no_hang("shutdown, worker queued behind a lookup stuck in Eq", || {
        let e = engine();
        let gate = Arc::new(EqGate::default());
        e.insert(GateKey { id: 1, gate: Some(gate.clone()) }, Val::Plain(1));
        e.insert(gk(3), Val::Plain(3));
        e.flush();
        let held = gate.lock.lock().expect("the user's lock");
        gate.armed.store(true, Ordering::SeqCst);
        let lookup = {
            let e = e.clone();
            std::thread::spawn(move || e.get(&gk(1)).is_some())
        };
        wait_until("the lookup is in Eq", || gate.entered.load(Ordering::SeqCst));
        e.remove(&gk(3));
        e.shutdown();
        gate.armed.store(false, Ordering::SeqCst);
        drop(held);
        let _ = lookup.join().expect("the lookup");
        assert!(e.get(&gk(3)).is_none());
    });
}
