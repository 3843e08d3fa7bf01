//! Review s19a: the last handle of an engine dropped where waiting is not allowed.
//!
//! Model: dropping an engine's last handle must never hang and never panic, wherever it
//! happens. From user code that an engine runs under one of its locks (a key's `Eq`, a
//! weigher, a value's `Clone` on a hit), or on a worker thread, the drop does not wait: it
//! stops the engine (lookups would miss, stores are dropped) and hands the joining of its
//! threads and the emptying of its shards to a thread of its own, which then ends; so every
//! value the engine held is still dropped, and no thread of the engine outlives it for longer
//! than those threads take to finish what they are doing. Elsewhere (a compute closure runs
//! under no lock) the drop joins at once, as before.
//!
//! The scenarios: engine E1's last handle is held in a slot that user code run by engine E2
//! (or by E1's own worker) empties, while E1's only worker is held in a key's `Drop` that,
//! once released, calls into E2 and so needs the lock E2's caller holds. Every test runs
//! under [`no_hang`].

mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{no_hang, wait_until, Gate, Hook, HookedKey};
use memokit_engine::{Engine, ManualClock};

type E1 = Engine<HookedKey, u64>;
type Slot = Arc<Mutex<Option<E1>>>;

/// A key whose `Eq` runs a hook once (after which it compares like a plain id).
struct EqKey {
    id: u64,
    on_eq: Arc<Mutex<Option<Hook>>>,
}

impl EqKey {
    fn new(id: u64) -> Self {
        EqKey { id, on_eq: Arc::default() }
    }
    fn with_eq(id: u64, hook: impl FnOnce() + Send + 'static) -> Self {
        EqKey { id, on_eq: Arc::new(Mutex::new(Some(Box::new(hook)))) }
    }
}

impl Hash for EqKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialEq for EqKey {
    fn eq(&self, other: &Self) -> bool {
        for k in [self, other] {
            let hook = k.on_eq.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.id == other.id
    }
}

impl Eq for EqKey {}

fn one_worker<K, V>() -> Engine<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Engine::builder()
        .max_capacity(1_000)
        .shards(1)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("engine")
}

/// E1, one shard and one worker, with a value whose key's `Drop` records that it was dropped
/// (set in the returned flag), and its worker held in a key's `Drop` until `released` opens;
/// then it runs `then`. Returns the slot holding E1's only handle.
fn held_engine(released: &Gate, then: impl FnOnce() + Send + 'static) -> (Slot, Arc<AtomicBool>) {
    let e1: E1 = one_worker();
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    e1.insert(HookedKey::with_drop(1, move || d.store(true, Ordering::SeqCst)), 1);
    let gate = released.clone();
    let held = Gate::new();
    let h = held.clone();
    e1.insert(
        HookedKey::with_drop(2, move || {
            h.open();
            gate.enter_and_wait();
            then();
        }),
        2,
    );
    e1.flush();
    e1.remove(&HookedKey::new(2));
    held.wait_open();
    (Arc::new(Mutex::new(Some(e1))), dropped)
}

/// After E1's last handle went: E1's values are dropped (its shards emptied) in the end.
fn wait_emptied(dropped: &AtomicBool) {
    wait_until("E1's shards emptied", || dropped.load(Ordering::SeqCst));
}

/// E2's key `Eq`, run under E2's write lock and pending table (a store of a resident key),
/// drops E1's last handle while E1's worker, held in a `Drop`, is about to store into E2.
/// Hung before: the drop joined E1's worker, which waited for E2's lock.
#[test]
fn last_handle_dropped_in_eq_of_a_store_while_its_worker_stores_there() {
    no_hang("last handle dropped in Eq of a store", || {
        let e2: Engine<EqKey, u64> = one_worker();
        e2.insert(EqKey::new(1), 1);
        e2.flush();
        let released = Gate::new();
        let e2w = e2.clone();
        let (slot, dropped) = held_engine(&released, move || e2w.insert(EqKey::new(3), 3));
        let s = slot.clone();
        let r = released.clone();
        e2.insert(
            EqKey::with_eq(1, move || {
                r.open();
                drop(s.lock().unwrap().take());
            }),
            10,
        );
        assert!(slot.lock().unwrap().is_none(), "the Eq ran and dropped the last handle");
        assert_eq!(e2.get(&EqKey::new(1)), Some(10));
        wait_until("E1's worker stored into E2", || e2.get(&EqKey::new(3)).is_some());
        wait_emptied(&dropped);
    });
}

/// E2's key `Eq` in a slow lookup (the key pending, so under E2's pending table) drops E1's
/// last handle while E1's worker is about to store into E2. Hung before, as above.
#[test]
fn last_handle_dropped_in_eq_of_a_slow_lookup_while_its_worker_stores_there() {
    no_hang("last handle dropped in Eq of a slow lookup", || {
        let e2: Engine<EqKey, u64> = one_worker();
        e2.insert(EqKey::new(1), 1); // pending: no flush
        let released = Gate::new();
        let e2w = e2.clone();
        let (slot, dropped) = held_engine(&released, move || e2w.insert(EqKey::new(3), 3));
        let s = slot.clone();
        let r = released.clone();
        let probe = EqKey::with_eq(1, move || {
            r.open();
            drop(s.lock().unwrap().take());
        });
        assert_eq!(e2.get(&probe), Some(1));
        assert!(slot.lock().unwrap().is_none(), "the Eq ran and dropped the last handle");
        wait_until("E1's worker stored into E2", || e2.get(&EqKey::new(3)).is_some());
        wait_emptied(&dropped);
    });
}

/// E2's weigher, run under E2's flights lock, drops E1's last handle while E1's worker is
/// about to store into E2's shard. Hung before: the drop joined the worker, which waited for
/// the flights lock.
#[test]
fn last_handle_dropped_in_a_weigher_while_its_worker_stores_there() {
    no_hang("last handle dropped in a weigher", || {
        let slot: Arc<Mutex<Option<Slot>>> = Arc::default();
        let armed = Arc::new(Mutex::new(None::<Gate>));
        let (sl, ar) = (slot.clone(), armed.clone());
        let e2: Engine<u64, u64> = Engine::builder()
            .max_capacity(1_000)
            .shards(1)
            .workers(1)
            .clock(ManualClock::new())
            .weigher(move |_, v| {
                if *v == 7 {
                    if let Some(r) = ar.lock().unwrap().take() {
                        r.open();
                        let s = sl.lock().unwrap().clone().expect("the slot");
                        drop(s.lock().unwrap().take());
                    }
                }
                1
            })
            .build()
            .expect("engine");
        let released = Gate::new();
        let e2w = e2.clone();
        let (e1, dropped) = held_engine(&released, move || e2w.insert(3, 3));
        *slot.lock().unwrap() = Some(e1.clone());
        *armed.lock().unwrap() = Some(released);
        e2.insert(1, 7);
        assert!(e1.lock().unwrap().is_none(), "the weigher dropped the last handle");
        assert_eq!(e2.get(&1), Some(7));
        wait_until("E1's worker stored into E2", || e2.get(&3).is_some());
        wait_emptied(&dropped);
    });
}

/// A value's `Clone` on a hit of E2 (under E2's read lock) drops E1's last handle while E1's
/// worker is about to store into E2.
#[test]
fn last_handle_dropped_in_a_hits_clone_while_its_worker_stores_there() {
    #[derive(Default)]
    struct Dropper(Mutex<Option<Box<dyn FnOnce() + Send>>>);
    impl Clone for Dropper {
        fn clone(&self) -> Self {
            let hook = self.0.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            Dropper::default()
        }
    }
    no_hang("last handle dropped in a hit's Clone", || {
        let e2: Engine<u64, Arc<Dropper>> = one_worker();
        let released = Gate::new();
        let e2w = e2.clone();
        let (slot, dropped) =
            held_engine(&released, move || e2w.insert(3, Arc::new(Dropper::default())));
        let (s, r) = (slot.clone(), released.clone());
        let v = Dropper(Mutex::new(Some(Box::new(move || {
            r.open();
            drop(s.lock().unwrap().take());
        }))));
        e2.insert(1, Arc::new(v));
        e2.flush();
        // `Arc`'s clone does not run ours: look up through `get_map`, which runs `read` under
        // the read lock as a `Clone` would.
        assert!(e2.get_map(&1, |v| drop(Dropper::clone(v))).is_some());
        assert!(slot.lock().unwrap().is_none(), "the read dropped the last handle");
        wait_until("E1's worker stored into E2", || e2.get(&3).is_some());
        wait_emptied(&dropped);
    });
}

/// A computation of E2 drops E1's last handle (no lock held there) while E1's worker is
/// about to store into E2 and look up the key being computed: the drop may wait.
#[test]
fn last_handle_dropped_in_a_compute() {
    no_hang("last handle dropped in a compute", || {
        let e2: Engine<u64, u64> = one_worker();
        let released = Gate::new();
        let e2w = e2.clone();
        let (slot, dropped) = held_engine(&released, move || {
            e2w.insert(3, 3);
            assert_eq!(e2w.get_or_insert_with(5, || 50), 50);
        });
        let (s, r) = (slot.clone(), released.clone());
        let v = e2.get_or_insert_with(5, move || {
            r.open();
            drop(s.lock().unwrap().take());
            50
        });
        assert_eq!(v, 50);
        assert!(slot.lock().unwrap().is_none());
        // The drop joined E1's worker: its store is visible, its shards emptied, at once.
        assert_eq!(e2.get(&3), Some(3));
        assert!(dropped.load(Ordering::SeqCst));
    });
}

/// A value's `Drop` on E1's own worker drops E1's last handle: no hang, the shards are
/// emptied, and (child process) every thread of the engine ends.
#[test]
fn last_handle_dropped_on_its_own_worker() {
    no_hang("last handle dropped on its own worker", || {
        let released = Gate::new();
        let slot: Slot = Arc::default();
        let gone = Arc::new(AtomicBool::new(false));
        let (s, g) = (slot.clone(), gone.clone());
        let (e1, dropped) = held_engine(&released, move || {
            drop(s.lock().unwrap().take());
            g.store(true, Ordering::SeqCst);
        });
        *slot.lock().unwrap() = e1.lock().unwrap().take();
        released.open();
        wait_until("the worker's Drop returned", || gone.load(Ordering::SeqCst));
        wait_emptied(&dropped);
    });
}

#[cfg(target_os = "linux")]
#[test]
fn no_thread_outlives_an_engine_whose_last_handle_went_under_a_lock() {
    common::run_child("threads_end_child");
}

/// The threads of both cases end: the last handle dropped on E1's own worker, and in E2's
/// `Eq` under its lock (with a real clock, so a refresher thread too).
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by no_thread_outlives_an_engine_whose_last_handle_went_under_a_lock"]
fn threads_end_child() {
    let before = common::thread_count();
    let wait_threads = |what: &str| wait_until(what, || common::thread_count() == before);
    {
        let released = Gate::new();
        let slot: Slot = Arc::default();
        let s = slot.clone();
        let (e1, dropped) = held_engine(&released, move || drop(s.lock().unwrap().take()));
        *slot.lock().unwrap() = e1.lock().unwrap().take();
        released.open();
        wait_emptied(&dropped);
    }
    wait_threads("the threads of an engine dropped on its worker ended");
    {
        let e2: Engine<EqKey, u64> = one_worker();
        let e1: E1 = Engine::builder().max_capacity(10).build().expect("engine");
        e1.insert(HookedKey::new(1), 1);
        e2.insert(EqKey::new(1), 1);
        e2.flush();
        let slot = Arc::new(Mutex::new(Some(e1)));
        let s = slot.clone();
        e2.insert(EqKey::with_eq(1, move || drop(s.lock().unwrap().take())), 2);
        assert!(slot.lock().unwrap().is_none());
    }
    wait_threads("the threads of an engine dropped under a lock ended");
}
