//! Review of the re-entry change: user code on one engine thread that calls back into an
//! engine while another such call waits for it.
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expect_panic, no_hang, wait_until, wait_until_or, HookedKey};
use memokit_engine::Engine;

fn engine(workers: usize) -> Engine<HookedKey, u64> {
    Engine::builder().max_capacity(1000).shards(4).workers(workers).build().expect("build")
}

/// Keys of `e` dropped by worker 0 and by worker 1 (found by dropping a few on the workers
/// and recording which thread dropped each).
fn keys_on_two_workers(e: &Engine<HookedKey, u64>) -> (u64, u64) {
    let by: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    for id in 100..164 {
        let by = by.clone();
        e.insert(
            HookedKey::with_drop(id, move || {
                let name = std::thread::current().name().unwrap_or("").to_string();
                by.lock().unwrap().insert(id, name);
            }),
            id,
        );
    }
    e.flush();
    for id in 100..164 {
        e.remove(&HookedKey::new(id));
    }
    e.flush();
    let by = by.lock().unwrap();
    let on = |w: &str| *by.iter().find(|(_, n)| n.as_str() == w).expect("a key per worker").0;
    (on("memokit-worker-0"), on("memokit-worker-1"))
}

/// A hook that meets the other one (both `Drop`s running at once, each on its own worker),
/// then runs `call`, then records that it returned.
fn meeting_hook(
    met: &Arc<AtomicUsize>,
    returned: &Arc<AtomicUsize>,
    call: impl FnOnce() + Send + 'static,
) -> impl FnOnce() + Send + 'static {
    let (met, returned) = (met.clone(), returned.clone());
    move || {
        met.fetch_add(1, Ordering::SeqCst);
        // Only makes the overlap certain; the calls below must finish either way.
        wait_until_or(Duration::from_secs(5), || met.load(Ordering::SeqCst) >= 2);
        call();
        returned.fetch_add(1, Ordering::SeqCst);
    }
}

/// Two workers of one engine each run a `Drop` that flushes the engine: each does its own
/// share inline, and used to wait for the other's reply, which the other, busy in its own
/// `Drop`, never sent. On a worker thread, `flush` now asks the other workers without
/// waiting for them.
#[test]
fn drops_on_two_workers_of_one_engine_may_flush_at_once() {
    no_hang("two workers' Drops flush their engine at once", || {
        let e = engine(2);
        let (a, b) = keys_on_two_workers(&e);
        let (met, returned) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (ea, eb) = (e.clone(), e.clone());
        e.insert(HookedKey::with_drop(a, meeting_hook(&met, &returned, move || ea.flush())), 1);
        e.insert(HookedKey::with_drop(b, meeting_hook(&met, &returned, move || eb.flush())), 2);
        e.flush();
        e.remove(&HookedKey::new(a));
        e.remove(&HookedKey::new(b));
        wait_until("both Drops returned", || returned.load(Ordering::SeqCst) == 2);
        e.flush();
        assert_eq!(e.len(), 0);
    });
}

/// A worker of engine A runs a `Drop` that flushes B while a worker of B runs one that
/// flushes A: each used to wait for the other (confirmed by this test, then fixed as above).
#[test]
fn drops_on_workers_of_two_engines_may_flush_each_other_at_once() {
    no_hang("two engines' Drops flush each other at once", || {
        let (a, b) = (engine(1), engine(1));
        let (met, returned) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (fa, fb) = (b.clone(), a.clone());
        a.insert(HookedKey::with_drop(1, meeting_hook(&met, &returned, move || fa.flush())), 1);
        b.insert(HookedKey::with_drop(1, meeting_hook(&met, &returned, move || fb.flush())), 1);
        a.flush();
        b.flush();
        a.remove(&HookedKey::new(1));
        b.remove(&HookedKey::new(1));
        wait_until("both Drops returned", || returned.load(Ordering::SeqCst) == 2);
    });
}

/// A's weigher stores into B, whose weigher stores into A: the inner call is made under
/// A's flights lock, but the guard only remembers the innermost engine being weighed (B),
/// so A's store takes its own lock again instead of panicking.
#[test]
fn a_weigher_under_another_engines_weigher_may_not_store_into_the_outer_engine() {
    no_hang("nested weighers", || {
        type E = Engine<u64, u64>;
        let a_slot: Arc<Mutex<Option<E>>> = Arc::default();
        let b_slot: Arc<Mutex<Option<E>>> = Arc::default();
        let (to_b, to_a) = (b_slot.clone(), a_slot.clone());
        let (once_a, once_b) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let a: E = Engine::builder()
            .max_capacity(100)
            .shards(1)
            .weigher(move |k, _| {
                if !once_a.swap(true, Ordering::SeqCst) {
                    let b = to_b.lock().unwrap().clone().unwrap();
                    b.insert(*k, 0);
                }
                1
            })
            .build()
            .unwrap();
        let b: E = Engine::builder()
            .max_capacity(100)
            .shards(1)
            .weigher(move |k, _| {
                if !once_b.swap(true, Ordering::SeqCst) {
                    let a = to_a.lock().unwrap().clone().unwrap();
                    a.insert(*k + 1, 0);
                }
                1
            })
            .build()
            .unwrap();
        *a_slot.lock().unwrap() = Some(a.clone());
        *b_slot.lock().unwrap() = Some(b.clone());
        let msg = expect_panic("A's store, made from B's weigher under A's weigher", || {
            a.insert(1, 1);
        });
        assert!(msg.contains("weigher called back"), "{msg}");
        // Both engines stay usable.
        a.insert(5, 5);
        b.insert(5, 5);
        assert_eq!(a.get(&5), Some(5));
        assert_eq!(b.get(&5), Some(5));
        a_slot.lock().unwrap().take();
        b_slot.lock().unwrap().take();
    });
}

std::thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Keys whose `Drop` flushes, evicted on the worker while a writer keeps storing: each
/// inline flush applies the new batch and evicts, dropping another such key on the same
/// stack, whose flush does the same. The user's code is finite (one flush per `Drop`); the
/// nesting must not grow with the writer's pace (a deep enough one overflows the worker's
/// stack, which aborts the process).
#[test]
fn inline_flushes_do_not_nest_without_bound() {
    no_hang("evictions whose Drops flush, under a writer", || {
        let e: Engine<HookedKey, u64> =
            Engine::builder().max_capacity(1).shards(1).workers(1).build().expect("build");
        let deepest = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        for id in 0..200_000u64 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let (he, deepest, stop) = (e.clone(), deepest.clone(), stop.clone());
            e.insert(
                HookedKey::with_drop(id, move || {
                    let d = DEPTH.with(|c| {
                        c.set(c.get() + 1);
                        c.get()
                    });
                    deepest.fetch_max(d, Ordering::SeqCst);
                    if d >= 32 {
                        stop.store(true, Ordering::SeqCst); // spare the stack
                    } else {
                        he.flush();
                    }
                    DEPTH.with(|c| c.set(c.get() - 1));
                }),
                id,
            );
        }
        e.flush();
        let deepest = deepest.load(Ordering::SeqCst);
        assert!(deepest <= 2, "Drops nested {deepest} deep on the worker's stack");
    });
}

/// A weigher that flushes used to wait for the worker while holding the shard's flights
/// lock, and the worker, applying an earlier remove, was in a key's `Drop` storing into the
/// same shard, waiting for that lock: a deadlock (found by this test when the docs still
/// allowed a weigher to flush). Now the weigher's `flush` panics at once; the `Drop`'s store
/// then goes through and the engine stays usable.
#[test]
fn a_weigher_that_flushes_while_a_workers_drop_stores_panics_instead_of_hanging() {
    use common::Gate;
    no_hang("a weigher flushes while a worker's Drop stores", || {
        let slot: Arc<Mutex<Option<Engine<HookedKey, u64>>>> = Arc::default();
        let (dropping, weighing) = (Gate::new(), Gate::new());
        let (w_slot, w_dropping, w_weighing) = (slot.clone(), dropping.clone(), weighing.clone());
        let e: Engine<HookedKey, u64> = Engine::builder()
            .max_capacity(100)
            .shards(1)
            .workers(1)
            .weigher(move |k: &HookedKey, _| {
                if k.id == 99 {
                    w_dropping.wait_open(); // the worker is in key 1's Drop
                    w_weighing.open();
                    let e = w_slot.lock().unwrap().clone().unwrap();
                    e.flush();
                }
                1
            })
            .build()
            .unwrap();
        *slot.lock().unwrap() = Some(e.clone());
        let (he, hd, hw) = (e.clone(), dropping.clone(), weighing.clone());
        e.insert(
            HookedKey::with_drop(1, move || {
                hd.open();
                hw.wait_open(); // the weigher holds the flights lock now
                he.insert(HookedKey::new(2), 2);
            }),
            1,
        );
        e.flush();
        e.remove(&HookedKey::new(1));
        let stored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            e.insert(HookedKey::new(99), 99);
        }));
        let msg = common::panic_message(&*stored.expect_err("the weigher's flush panics"));
        assert!(msg.contains("weigher"), "{msg}");
        e.flush();
        assert_eq!(e.get(&HookedKey::new(2)), Some(2), "the Drop's store went through");
        assert_eq!(e.get(&HookedKey::new(99)), None);
        slot.lock().unwrap().take();
    });
}
