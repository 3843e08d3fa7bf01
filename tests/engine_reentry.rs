//! User code that calls back into the engine it runs for: a key's `Drop` running on a worker
//! thread (the worker drops what it removes, evicts or reclaims) that calls `flush`,
//! `run_maintenance` or `clear`, and a weigher that stores, removes or computes through its
//! own engine.
//!
//! Model: such a call either completes (the `Drop` cases: what it promises holds for the
//! operations issued before it) or panics with a message that names the mistake (the
//! weigher); it never hangs, and the engine stays usable afterwards.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{no_hang, HookedKey};
use memokit_engine::{Engine, InsertOptions};

fn engine(workers: usize) -> Engine<HookedKey, u64> {
    Engine::builder().max_capacity(1000).shards(4).workers(workers).build().expect("build")
}

/// Stores key 1 with a `Drop` that runs `call` on the engine, then removes it, so that a
/// worker drops it; returns the engine once the hook has returned (or fails on a hang) and a
/// later `flush` from this thread has let the other workers finish what the hook asked of
/// them. Before the hook runs, key 2 is stored and key 3 removed.
fn drop_on_a_worker_calls(
    workers: usize,
    call: fn(&Engine<HookedKey, u64>),
) -> Engine<HookedKey, u64> {
    let e = engine(workers);
    let returned = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(None));
    let (hook_engine, hook_returned, hook_seen) = (e.clone(), returned.clone(), seen.clone());
    let key = HookedKey::with_drop(1, move || {
        assert!(
            std::thread::current().name().is_some_and(|n| n.contains("memokit")),
            "the hook should run on a worker: {:?}",
            std::thread::current().name()
        );
        call(&hook_engine);
        *hook_seen.lock().unwrap() = Some(hook_engine.get(&HookedKey::new(2)));
        hook_returned.store(true, Ordering::SeqCst);
    });
    e.insert(key, 1);
    e.insert(HookedKey::new(3), 3);
    e.flush();
    let e2 = e.clone();
    no_hang("a key's Drop on a worker calling back into the engine", move || {
        e2.insert(HookedKey::new(2), 2);
        e2.remove(&HookedKey::new(3));
        e2.remove(&HookedKey::new(1));
        e2.flush();
    });
    assert!(returned.load(Ordering::SeqCst), "the hook ran and returned");
    let e3 = e.clone();
    no_hang("the engine afterwards", move || {
        // Served after whatever the hook asked of the other workers (mailboxes are FIFO).
        e3.flush();
        e3.insert(HookedKey::new(4), 4);
        e3.flush();
        e3.run_maintenance();
        e3.validate().unwrap();
    });
    assert_eq!(e.get(&HookedKey::new(3)), None);
    assert_eq!(e.get(&HookedKey::new(4)), Some(4));
    assert!(seen.lock().unwrap().is_some());
    e
}

#[test]
fn a_drop_on_a_worker_may_flush() {
    for workers in [1, 2] {
        let e = drop_on_a_worker_calls(workers, |e| {
            e.flush();
            assert_eq!(e.get(&HookedKey::new(2)), Some(2));
        });
        assert_eq!(e.get(&HookedKey::new(2)), Some(2));
    }
}

#[test]
fn a_drop_on_a_worker_may_run_maintenance() {
    for workers in [1, 2] {
        let _ = drop_on_a_worker_calls(workers, |e| e.run_maintenance());
    }
}

#[test]
fn a_drop_on_a_worker_may_clear() {
    for workers in [1, 2] {
        // The hook's worker clears its shards at once, the others shortly after (it does
        // not wait for them: they may be waiting for it).
        let e = drop_on_a_worker_calls(workers, |e| e.clear());
        assert_eq!(e.get(&HookedKey::new(2)), None, "cleared");
    }
}

/// Where a self-weighing engine finds itself.
type Slot = Arc<Mutex<Option<Engine<u64, u64>>>>;

/// An engine of one shard whose weigher (weight 1) runs `on_weigh` with the engine itself and
/// the key. The engine refers to itself through the returned slot: empty it to let go.
fn self_weighing(
    on_weigh: impl Fn(&Engine<u64, u64>, u64) + Send + Sync + 'static,
) -> (Engine<u64, u64>, Slot) {
    let slot: Slot = Arc::new(Mutex::new(None));
    let in_weigher = slot.clone();
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(1000)
        .shards(1)
        .weigher(move |k, _| {
            let e = in_weigher.lock().unwrap().clone();
            if let Some(e) = e {
                on_weigh(&e, *k);
            }
            1
        })
        .build()
        .expect("build");
    *slot.lock().unwrap() = Some(e.clone());
    (e, slot)
}

/// A weigher that calls back into its own engine with an operation that would wait for a
/// lock its caller holds: a clear panic at the call, never a hang; the engine stays usable.
fn weigher_calls(what: &str, call: fn(&Engine<u64, u64>)) {
    let (e, slot) = self_weighing(move |e, k| {
        if k == 1 {
            call(e);
        }
    });
    let e2 = e.clone();
    let insert = no_hang(what, move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e2.insert(1, 1)))
            .map_err(|p| common::panic_message(&*p))
    });
    let msg = insert.expect_err("the weigher's call into its engine panics");
    assert!(msg.contains("weigher"), "{msg}");
    let e3 = e.clone();
    let computed = no_hang(what, move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e3.get_or_insert_with(1, || 7)))
            .map_err(|p| common::panic_message(&*p))
    });
    assert!(computed.expect_err("panics too").contains("weigher"));
    *slot.lock().unwrap() = None; // the engine no longer refers to itself
    let e4 = e.clone();
    no_hang("the engine afterwards", move || {
        e4.insert(1, 10);
        assert_eq!(e4.get(&1), Some(10));
        assert_eq!(e4.get_or_insert_with(2, || 20), 20);
        e4.flush();
        e4.validate().unwrap();
    });
}

#[test]
fn a_weigher_that_inserts_into_its_engine_panics_clearly() {
    weigher_calls("a weigher inserting", |e| e.insert(2, 2));
}

#[test]
fn a_weigher_that_removes_from_its_engine_panics_clearly() {
    weigher_calls("a weigher removing", |e| e.remove(&2));
}

#[test]
fn a_weigher_that_computes_through_its_engine_panics_clearly() {
    weigher_calls("a weigher computing", |e| {
        e.get_or_insert_with_options(2, InsertOptions::new(), || 2);
    });
}

#[test]
fn a_weigher_that_clears_its_engine_panics_clearly() {
    weigher_calls("a weigher clearing", |e| e.clear());
}

#[test]
fn a_weigher_that_flushes_its_engine_panics_clearly() {
    weigher_calls("a weigher flushing", |e| e.flush());
}

#[test]
fn a_weigher_that_runs_maintenance_panics_clearly() {
    weigher_calls("a weigher running maintenance", |e| e.run_maintenance());
}

/// Lookups wait for no lock the weigher's caller holds: allowed.
#[test]
fn a_weigher_may_look_up() {
    let (e, slot) = self_weighing(|e, k| {
        let _ = e.get(&(k + 100));
        let _ = e.get(&k);
    });
    let e2 = e.clone();
    no_hang("a weigher looking up", move || {
        e2.insert(1, 1);
        assert_eq!(e2.get_or_insert_with(2, || 2), 2);
        e2.flush();
        assert_eq!((e2.get(&1), e2.get(&2)), (Some(1), Some(2)));
    });
    *slot.lock().unwrap() = None;
}
