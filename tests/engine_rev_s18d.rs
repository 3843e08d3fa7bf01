//! Review s18d: a user's key or value dropped while the engine holds a lock.
//!
//! When a key's `Eq` or the weigher panics during a store, the key and value being stored are
//! dropped during the unwinding. They used to be dropped while a lock of the key's shard was
//! still held (the flights lock around every explicit store and every leader's store; the
//! pending table and the core's read lock, or its write lock, around the `Eq` calls), so a
//! `Drop` that called back into the engine there deadlocked (or, under the write lock, panicked
//! while unwinding). Model: the user's panic reaches the caller; the key and value are dropped
//! after every engine lock, so their `Drop` may store, remove, compute and flush like any other
//! code holding no lock; the engine stays usable and consistent.
//!
//! One shard (every key in it), one worker, a manual clock; every test runs under [`no_hang`].

mod common;

use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expect_panic, no_hang, panic_message, Gate, Hook};
use memokit_engine::{Engine, InsertOptions, ManualClock};

/// A key whose `Eq` panics while its switch is on, and whose `Drop` runs a hook once.
struct Key {
    id: u64,
    bomb: Arc<AtomicBool>,
    on_drop: Mutex<Option<Hook>>,
}

impl Key {
    fn plain(id: u64) -> Self {
        Key { id, bomb: Arc::default(), on_drop: Mutex::new(None) }
    }

    /// A key of `id` whose `Eq` panics while `bomb` is on and whose `Drop` runs `hook`.
    fn armed(id: u64, bomb: &Arc<AtomicBool>, hook: Hook) -> Self {
        Key { id, bomb: bomb.clone(), on_drop: Mutex::new(Some(hook)) }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        for k in [self, other] {
            assert!(!k.bomb.load(Ordering::SeqCst), "evil eq of key {}", k.id);
        }
        self.id == other.id
    }
}

impl Eq for Key {}

impl Drop for Key {
    fn drop(&mut self) {
        let hook = self.on_drop.get_mut().map(Option::take).unwrap_or_default();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// A value whose `Drop` runs a hook once (clones share it: the first drop runs it).
#[derive(Clone)]
struct Val {
    n: u64,
    on_drop: Arc<Mutex<Option<Hook>>>,
}

impl Val {
    fn plain(n: u64) -> Self {
        Val { n, on_drop: Arc::default() }
    }

    fn hooked(n: u64, hook: Hook) -> Self {
        Val { n, on_drop: Arc::new(Mutex::new(Some(hook))) }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        let hook = self.on_drop.lock().map(|mut h| h.take()).unwrap_or_default();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// The weight of a value: panics for this one.
const BOMB: u64 = 666;

fn engine() -> Engine<Key, Val> {
    Engine::builder()
        .max_capacity(100_000)
        .shards(1)
        .workers(1)
        .weigher(|_: &Key, v: &Val| {
            assert!(v.n != BOMB, "evil weigher");
            1
        })
        .clock(ManualClock::new())
        .build()
        .expect("engine")
}

fn engine_with_clock(clock: &ManualClock) -> Engine<Key, Val> {
    Engine::builder()
        .max_capacity(100_000)
        .shards(1)
        .workers(1)
        .clock(clock.clone())
        .build()
        .expect("engine")
}

/// What a hook's calls back into the engine returned: "ok" or the panic message of each.
type Outcomes = Arc<Mutex<Vec<String>>>;

/// A hook that stores key 2, removes key 3, computes key 4 and flushes, each under a
/// `catch_unwind` of its own (it runs while the caller unwinds), recording each outcome.
fn calls_back(e: &Engine<Key, Val>, out: &Outcomes) -> Hook {
    let (e, out) = (e.clone(), out.clone());
    Box::new(move || {
        let record = |r: std::thread::Result<()>| {
            let o = r.map_or_else(|p| panic_message(&*p), |()| "ok".to_string());
            out.lock().unwrap().push(o);
        };
        record(catch_unwind(AssertUnwindSafe(|| e.insert(Key::plain(2), Val::plain(20)))));
        record(catch_unwind(AssertUnwindSafe(|| e.remove(&Key::plain(3)))));
        record(catch_unwind(AssertUnwindSafe(|| {
            assert_eq!(e.get_or_insert_with(Key::plain(4), || Val::plain(40)).n, 40);
        })));
        record(catch_unwind(AssertUnwindSafe(|| e.flush())));
    })
}

/// The hook ran, every call back worked, and the engine holds what they left.
fn check_calls_back(e: &Engine<Key, Val>, out: &Outcomes) {
    assert_eq!(*out.lock().unwrap(), vec!["ok"; 4], "the calls back from the Drop");
    let get = |id| e.get(&Key::plain(id)).map(|v| v.n);
    assert_eq!((get(2), get(3), get(4)), (Some(20), None, Some(40)));
}

/// The engine is consistent and still stores.
fn check_usable(e: &Engine<Key, Val>) {
    e.flush();
    e.validate().expect("consistent");
    e.insert(Key::plain(9), Val::plain(90));
    assert_eq!(e.get(&Key::plain(9)).map(|v| v.n), Some(90));
    e.flush();
    e.validate().expect("consistent");
}

/// A new value for a resident key, swapped in place under the shard's write lock: the key's
/// `Eq` panics in that probe. (Before: the key was dropped under the write lock with the
/// engine marked, so its `Drop`'s calls back panicked, while unwinding.)
#[test]
fn eq_panics_in_an_in_place_store() {
    no_hang("in-place store whose Eq panics", || {
        let e = engine();
        e.insert(Key::plain(1), Val::plain(1));
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        let (bomb, out) = (Arc::new(AtomicBool::new(true)), Outcomes::default());
        let key = Key::armed(1, &bomb, calls_back(&e, &out));
        let msg = expect_panic("insert", || e.insert(key, Val::plain(10)));
        assert!(msg.contains("evil eq of key 1"), "{msg}");
        check_calls_back(&e, &out);
        assert_eq!(e.get(&Key::plain(1)).map(|v| v.n), Some(1), "the old value stays");
        check_usable(&e);
    });
}

/// A store of a key with a store pending: the key's `Eq` panics in the probe of the pending
/// table (the pending lock and the core's read lock held, the flights lock around them).
/// (Before: the key was dropped under the flights lock, and its `Drop`'s store deadlocked.)
#[test]
fn eq_panics_in_a_store_through_the_pending_table() {
    no_hang("store whose Eq panics in the pending probe", || {
        // No weigher: a store of a new key then does not wake the worker at once.
        let e = engine_with_clock(&ManualClock::new());
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        // Pending: a new key waits for more before the worker is woken (manual clock).
        e.insert(Key::plain(1), Val::plain(1));
        let (bomb, out) = (Arc::new(AtomicBool::new(true)), Outcomes::default());
        let key = Key::armed(1, &bomb, calls_back(&e, &out));
        let msg = expect_panic("insert", || e.insert(key, Val::plain(10)));
        assert!(msg.contains("evil eq of key 1"), "{msg}");
        check_calls_back(&e, &out);
        assert_eq!(e.get(&Key::plain(1)).map(|v| v.n), Some(1), "the pending value stays");
        check_usable(&e);
    });
}

/// The weigher panics on the store of a new key, whose value's `Drop` calls back.
/// (Before: the value was dropped under the flights lock: deadlock.)
#[test]
fn weigher_panics_on_a_new_key() {
    no_hang("store of a new key whose weigher panics", || {
        let e = engine();
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        let out = Outcomes::default();
        let value = Val::hooked(BOMB, calls_back(&e, &out));
        let opts = InsertOptions::new().ttl(Duration::from_secs(60));
        let msg = expect_panic("insert", || e.insert_with_options(Key::plain(1), value, opts));
        assert!(msg.contains("evil weigher"), "{msg}");
        check_calls_back(&e, &out);
        assert!(e.get(&Key::plain(1)).is_none(), "nothing stored");
        check_usable(&e);
    });
}

/// The weigher panics on a new value for a resident key, whose key's `Drop` calls back.
#[test]
fn weigher_panics_on_a_resident_key() {
    no_hang("store of a resident key whose weigher panics", || {
        let e = engine();
        e.insert(Key::plain(1), Val::plain(1));
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        let (bomb, out) = (Arc::new(AtomicBool::new(false)), Outcomes::default());
        let key = Key::armed(1, &bomb, calls_back(&e, &out));
        let msg = expect_panic("insert", || e.insert(key, Val::plain(BOMB)));
        assert!(msg.contains("evil weigher"), "{msg}");
        check_calls_back(&e, &out);
        assert_eq!(e.get(&Key::plain(1)).map(|v| v.n), Some(1), "the old value stays");
        check_usable(&e);
    });
}

/// A leader's store, after its computation: the key's `Eq` panics in the probe of the core,
/// which holds an expired entry of the key (the lookup missed without that `Eq` panicking:
/// the computation arms it). (Before: the key, moved from the flight's slot into the store,
/// was dropped under the flights lock, and its `Drop`'s store deadlocked.)
#[test]
fn eq_panics_in_a_leaders_store() {
    no_hang("leader's store whose Eq panics", || {
        let clock = ManualClock::new();
        let e = engine_with_clock(&clock);
        e.insert_with_ttl(Key::plain(1), Val::plain(1), Duration::from_secs(1));
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        clock.advance(Duration::from_secs(2));
        let (bomb, out) = (Arc::new(AtomicBool::new(false)), Outcomes::default());
        let key = Key::armed(1, &bomb, calls_back(&e, &out));
        let msg = expect_panic("get_or_insert_with", || {
            e.get_or_insert_with(key, || {
                bomb.store(true, Ordering::SeqCst);
                Val::plain(10)
            })
        });
        assert!(msg.contains("evil eq of key 1"), "{msg}");
        check_calls_back(&e, &out);
        assert!(e.get(&Key::plain(1)).is_none(), "the expired entry is not back");
        assert_eq!(e.get_or_insert_with(Key::plain(1), || Val::plain(11)).n, 11);
        check_usable(&e);
    });
}

/// The same leader's store with the weigher panicking, the value's `Drop` calling back: the
/// value the computation returned goes to the caller's unwinding (none waits for it).
#[test]
fn weigher_panics_in_a_leaders_store() {
    no_hang("leader's store whose weigher panics", || {
        let e = engine();
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        let out = Outcomes::default();
        let hook = calls_back(&e, &out);
        let msg = expect_panic("get_or_insert_with", || {
            e.get_or_insert_with(Key::plain(1), || Val::hooked(BOMB, hook))
        });
        assert!(msg.contains("evil weigher"), "{msg}");
        check_calls_back(&e, &out);
        assert!(e.get(&Key::plain(1)).is_none(), "nothing stored");
        check_usable(&e);
    });
}

/// Runs a computation of key `key` under `opts` on a thread of its own, held at `gate` until
/// the test opens it; returns once it is running (its flight registered).
fn running(
    e: &Engine<Key, Val>,
    key: Key,
    opts: InsertOptions,
    gate: &Gate,
) -> std::thread::JoinHandle<u64> {
    let (e2, g) = (e.clone(), gate.clone());
    let t = std::thread::spawn(move || {
        e2.get_or_insert_with_options(key, opts, || {
            g.enter_and_wait();
            Val::plain(100)
        })
        .n
    });
    gate.wait_entered();
    t
}

/// An insert of a key being computed: the key's `Eq` panics in the probe of the flights
/// table, before the store (the key and value, still the insert's arguments, are dropped
/// after the flights lock). Passed before the fix too: pins it.
#[test]
fn eq_panics_while_detaching_a_computation() {
    no_hang("insert whose Eq panics in the flights probe", || {
        let e = engine_with_clock(&ManualClock::new());
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        let gate = Gate::new();
        let leader = running(&e, Key::plain(1), InsertOptions::new(), &gate);
        let (bomb, out) = (Arc::new(AtomicBool::new(true)), Outcomes::default());
        let key = Key::armed(1, &bomb, calls_back(&e, &out));
        let msg = expect_panic("insert", || e.insert(key, Val::plain(10)));
        assert!(msg.contains("evil eq of key 1"), "{msg}");
        check_calls_back(&e, &out);
        gate.open();
        assert_eq!(leader.join().unwrap(), 100);
        assert_eq!(e.get(&Key::plain(1)).map(|v| v.n), Some(100), "the computation, stored");
        check_usable(&e);
    });
}

/// `to_owned` panics after the caller took out a stale flight (one started under a
/// generation retired since), whose key's `Drop` calls back: dropped after the flights lock.
/// Passed before the fix too: pins it.
#[test]
fn to_owned_panics_after_a_stale_flight_is_taken_out() {
    no_hang("to_owned panicking after a stale flight is taken out", || {
        let e = engine_with_clock(&ManualClock::new());
        e.insert(Key::plain(3), Val::plain(3));
        e.flush();
        let (g1, g2) = (e.new_generation(), e.new_generation());
        let (gate, out) = (Gate::new(), Outcomes::default());
        let key = Key::armed(1, &Arc::default(), calls_back(&e, &out));
        let leader = running(&e, key, InsertOptions::new().generations(g1, None), &gate);
        e.retire(g1);
        let msg = expect_panic("get_or_try_insert_with_ref", || {
            let opts = InsertOptions::new().generations(g2, None);
            let to_owned = |_: &Key| -> Key { panic!("evil to_owned") };
            e.get_or_try_insert_with_ref(&Key::plain(1), opts, to_owned, || {
                Ok::<_, ()>(Val::plain(5))
            })
        });
        assert!(msg.contains("evil to_owned"), "{msg}");
        check_calls_back(&e, &out);
        gate.open();
        assert_eq!(leader.join().unwrap(), 100, "the stale leader's own value");
        assert!(e.get(&Key::plain(1)).is_none(), "a detached computation is not stored");
        check_usable(&e);
    });
}
