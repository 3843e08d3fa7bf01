//! Bad input gets a clear answer, never a panic inside the engine or a hang: zero shards or
//! workers, zero capacity, odd settings, keys whose `Hash` or `Eq` panic.
mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{expect_panic, manual_engine, no_hang, Evil, Gate};
use memokit_engine::{BuildError, Engine, InsertOptions, ManualClock};

#[test]
fn zero_shards_or_workers_is_a_build_error() {
    let r = Engine::<u64, u64>::builder().shards(0).build();
    let err = r.expect_err("shards(0) must fail to build");
    assert!(matches!(err, BuildError::ZeroShards), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("shard"), "the message names the setting: {msg:?}");

    let err = Engine::<u64, u64>::builder().workers(0).build().expect_err("workers(0)");
    assert!(matches!(err, BuildError::ZeroWorkers), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("worker"), "the message names the setting: {msg:?}");
    let _: &dyn std::error::Error = &err;

    let err = Engine::<u64, u64>::builder().shards(0).workers(0).build().err();
    assert!(matches!(err, Some(BuildError::ZeroShards | BuildError::ZeroWorkers)), "{err:?}");
}

#[test]
fn capacity_zero_stores_nothing() {
    let (e, _clock) = manual_engine::<u64, u64>(0);
    let g = e.new_generation();
    e.insert(1, 1);
    e.insert_with_ttl(2, 2, Duration::from_secs(1));
    e.insert_with_options(3, 3, InsertOptions::new().generations(g, None));
    for k in 1..=3 {
        assert_eq!(e.get(&k), None);
    }
    let calls = AtomicUsize::new(0);
    for i in 0..3u64 {
        let v = e.get_or_insert_with(4, || {
            calls.fetch_add(1, Ordering::SeqCst);
            40 + i
        });
        assert_eq!(v, 40 + i);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "nothing stored: every call computes");
    e.flush();
    e.run_maintenance();
    assert_eq!(e.len(), 0);
    assert_eq!(e.weighted_size(), 0);
    assert_eq!(e.stats().entries, 0);

    // Also by weight.
    let w: Engine<u64, u64> = Engine::builder()
        .max_capacity(0)
        .weigher(|_, _| 1)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    w.insert(1, 1);
    w.flush();
    assert_eq!(w.get(&1), None);
    assert_eq!(w.len(), 0);
}

/// Shard counts that are not powers of two, more workers than shards, a huge capacity.
#[test]
fn odd_but_valid_settings_work() {
    for (shards, workers) in [(3, 1), (5, 2), (1, 4), (1000, 2)] {
        let r = Engine::<u64, u64>::builder()
            .shards(shards)
            .workers(workers)
            .max_capacity(u64::MAX)
            .clock(ManualClock::new())
            .build();
        let e = match r {
            Ok(e) => e,
            // More workers than shards may be refused, but with a message.
            Err(err) if workers > shards => {
                assert!(!err.to_string().is_empty());
                continue;
            }
            Err(err) => panic!("shards {shards}, workers {workers}: {err}"),
        };
        for i in 0..100 {
            e.insert(i, i);
        }
        e.flush();
        assert_eq!(e.len(), 100, "shards {shards}, workers {workers}");
        assert_eq!(e.get(&42), Some(42));
    }
}

/// A zero tick or clock resolution must neither panic nor hang (refusing it is fine).
#[test]
fn zero_tick_or_resolution_does_not_hang() {
    let clock = ManualClock::new();
    let r = Engine::<u64, u64>::builder()
        .tick(Duration::ZERO)
        .clock_resolution(Duration::ZERO)
        .clock(clock.clone())
        .build();
    if let Ok(e) = r {
        no_hang("zero tick with a manual clock", move || {
            e.insert_with_ttl(1, 1, Duration::from_millis(5));
            clock.advance(Duration::from_secs(3600));
            e.run_maintenance();
            assert_eq!(e.get(&1), None);
        });
    }
    let r = Engine::<u64, u64>::builder().clock_resolution(Duration::ZERO).build();
    if let Ok(e) = r {
        no_hang("zero resolution with the real clock", move || {
            e.insert_with_ttl(1, 1, Duration::from_secs(3600));
            e.flush();
            assert_eq!(e.get(&1), Some(1));
            drop(e);
        });
    }
}

/// The engine still does everything right for ordinary keys.
fn assert_usable(e: &Engine<Evil, u64>, base: u32) {
    let e = e.clone();
    no_hang("the engine after a panicking key", move || {
        for i in base..base + 50 {
            e.insert(Evil::new(i), u64::from(i));
        }
        e.flush();
        for i in base..base + 50 {
            assert_eq!(e.get(&Evil::new(i)), Some(u64::from(i)), "key {i}");
        }
        assert_eq!(e.get_or_insert_with(Evil::new(base + 100), || 7), 7);
        assert_eq!(e.get(&Evil::new(base + 100)), Some(7));
        e.run_maintenance();
    });
}

#[test]
fn panicking_hash_reaches_the_caller_only() {
    let (e, _clock) = manual_engine::<Evil, u64>(10_000);
    e.insert(Evil::new(1), 1);
    let calls = AtomicUsize::new(0);
    let msgs = [
        expect_panic("get", || e.get(&Evil::bad_hash(1))),
        expect_panic("contains_key", || e.contains_key(&Evil::bad_hash(1))),
        expect_panic("remove", || e.remove(&Evil::bad_hash(1))),
        expect_panic("insert", || e.insert(Evil::bad_hash(2), 2)),
        expect_panic("get_or_insert_with", || {
            e.get_or_insert_with(Evil::bad_hash(3), || calls.fetch_add(1, Ordering::SeqCst) as u64)
        }),
        expect_panic("get_or_try_insert_with_ref", || {
            let r: Result<u64, ()> = e.get_or_try_insert_with_ref(
                &Evil::bad_hash(4),
                InsertOptions::new(),
                |k| k.clone(),
                || Ok(4),
            );
            r
        }),
    ];
    for m in msgs {
        assert!(m.contains("evil hash"), "the caller sees the key's own panic: {m:?}");
    }
    assert_eq!(e.get(&Evil::new(1)), Some(1), "the entry survived");
    // The key of the failed single-flight call computes normally afterwards.
    assert_eq!(e.get_or_insert_with(Evil::new(3), || 33), 33);
    assert_usable(&e, 1000);
}

#[test]
fn panicking_eq_on_lookup_reaches_the_caller() {
    let (e, _clock) = manual_engine::<Evil, u64>(10_000);
    e.insert(Evil::new(1), 1);
    e.flush();
    let m = expect_panic("get with an armed eq", || e.get(&Evil::bad_eq(1)));
    assert!(m.contains("evil eq"), "{m:?}");
    let m = expect_panic("get_or_insert_with with an armed eq", || {
        e.get_or_insert_with(Evil::bad_eq(1), || 0)
    });
    assert!(m.contains("evil eq"), "{m:?}");
    assert_eq!(e.get(&Evil::new(1)), Some(1));
    assert_usable(&e, 1000);
}

/// `Eq` panicking while another caller's computation of the same key is in flight: the
/// panicking caller sees it, the computation completes and is stored, nothing is stuck.
#[test]
fn panicking_eq_against_a_flight() {
    let (e, _clock) = manual_engine::<Evil, u64>(10_000);
    let gate = Gate::new();
    let leader = {
        let (e, gate) = (e.clone(), gate.clone());
        std::thread::spawn(move || {
            e.get_or_insert_with(Evil::new(2), || {
                gate.enter_and_wait();
                22
            })
        })
    };
    gate.wait_entered();
    let e2 = e.clone();
    let r = no_hang("a caller whose eq panics against a flight", move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            e2.get_or_insert_with(Evil::bad_eq(2), || 0)
        }))
        .map_err(|p| common::panic_message(&*p))
    });
    let m = r.expect_err("eq must be called to join the flight of an equal-hash key");
    assert!(m.contains("evil eq"), "{m:?}");
    gate.open();
    assert_eq!(no_hang("leader", move || leader.join().unwrap()), 22);
    assert_eq!(e.get(&Evil::new(2)), Some(22));
    assert_usable(&e, 1000);
}

/// `Eq` that panics once the key is handed to the engine (it is compared with the stored
/// key of the same id wherever the engine applies the insert or remove). The caller may or may
/// not see the panic, but the engine must stay usable: no dead worker, no hang.
#[test]
fn panicking_eq_inside_the_engine_does_not_break_it() {
    let (e, _clock) = manual_engine::<Evil, u64>(10_000);
    e.insert(Evil::new(1), 1);
    e.insert(Evil::new(2), 2);
    e.flush();
    let armed = Evil::new(1);
    let bomb = armed.eq_bomb.clone();
    bomb.store(true, Ordering::SeqCst);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.insert(armed, 10)));
    let armed2 = Evil::bad_eq(2);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.remove(&armed2)));
    let e2 = e.clone();
    no_hang("flush after a panicking eq", move || e2.flush());
    bomb.store(false, Ordering::SeqCst); // the key (maybe stored) behaves again
    assert_usable(&e, 1000);
    let v = e.get(&Evil::new(1));
    assert!(matches!(v, Some(1) | Some(10) | None), "{v:?}");
    let e3 = e.clone();
    no_hang("drop after a panicking eq", move || drop(e3));
    no_hang("drop of the last handle", move || drop(e));
}

/// `Eq` that starts panicking while the key's computation runs: the engine compares the
/// leader's key with the (expired, still resident) entry of the same key when it stores the
/// computed value. The leader's caller sees the panic; the waiter must be woken, not parked
/// forever (same failure path as a panicking weigher, see engine_single_flight.rs).
#[test]
fn panicking_eq_while_storing_a_computed_value_wakes_waiters() {
    let (e, clock) = manual_engine::<Evil, u64>(10_000);
    e.insert_with_ttl(Evil::new(5), 1, Duration::from_millis(1));
    e.flush();
    clock.advance(Duration::from_millis(10)); // expired, not reclaimed (no maintenance)
    let key = Evil::new(5);
    let bomb = key.eq_bomb.clone();
    let entered = Gate::new();
    let leader = {
        let (e, entered) = (e.clone(), entered.clone());
        std::thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                e.get_or_insert_with(key, || {
                    entered.open();
                    let e2 = e.clone();
                    common::wait_until("the waiter joined", || e2.stats().single_flight_waits >= 1);
                    bomb.store(true, Ordering::SeqCst);
                    55
                })
            }))
            .map_err(|p| common::panic_message(&*p))
        })
    };
    entered.wait_open();
    let waiter = {
        let e = e.clone();
        std::thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                e.get_or_insert_with(Evil::new(5), || 66)
            }))
            .map_err(|p| common::panic_message(&*p))
        })
    };
    let led = no_hang("leader", move || leader.join().unwrap());
    if let Err(m) = &led {
        assert!(m.contains("evil eq"), "{m:?}");
    }
    let waited =
        no_hang("a waiter whose leader panicked while storing", move || waiter.join().unwrap());
    // The armed key may still be stored: comparisons with it may panic, that is the key's own
    // doing. What must not happen is a waiter parked forever.
    assert!(
        matches!(&waited, Ok(55) | Ok(66)) || waited.as_ref().is_err_and(|m| m.contains("evil eq")),
        "{waited:?}"
    );
}

/// A panicking `to_owned` (user code building the owned key) reaches the caller and leaves no
/// flight registered: the key computes normally afterwards, on the same thread too.
#[test]
fn panicking_to_owned_leaves_nothing_behind() {
    let (e, _clock) = manual_engine::<String, u64>(100);
    let m = expect_panic("to_owned", || {
        let r: Result<u64, ()> = e.get_or_try_insert_with_ref(
            "k",
            InsertOptions::new(),
            |_: &str| -> String { panic!("to_owned failed") },
            || Ok(1),
        );
        r
    });
    assert!(m.contains("to_owned failed"), "{m:?}");
    let e2 = e.clone();
    let v = no_hang("the same key after a panicking to_owned", move || {
        e2.get_or_insert_with("k".to_string(), || 2)
    });
    assert_eq!(v, 2);
    assert_eq!(e.get("k"), Some(2));
}

/// A key whose `Eq` panics once a countdown runs out, and whose `Drop` may run a hook.
struct Hooked {
    id: u32,
    /// `Eq` calls left before one panics (`usize::MAX`: never).
    eq_left: Arc<AtomicUsize>,
    on_drop: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Hooked {
    fn new(id: u32) -> Self {
        Hooked { id, eq_left: Arc::new(AtomicUsize::new(usize::MAX)), on_drop: Default::default() }
    }

    /// Key `id`, whose `Drop` runs `hook`.
    fn with_drop(id: u32, hook: impl FnOnce() + Send + 'static) -> Self {
        let key = Self::new(id);
        *key.on_drop.lock() = Some(Box::new(hook));
        key
    }

    /// Key `id`, whose `Drop` stores `then` (value 2) into `e`: a `Drop` calling back into
    /// the engine.
    fn inserting_on_drop(id: u32, e: &Engine<Hooked, u64>, then: u32) -> Self {
        let e = e.clone();
        Self::with_drop(id, move || e.insert(Hooked::new(then), 2))
    }
}

/// An engine of one shard for `Hooked` keys (so that a hook's store lands in the shard whose
/// locks the engine may hold).
fn one_shard(capacity: u64) -> Engine<Hooked, u64> {
    Engine::builder().max_capacity(capacity).shards(1).build().expect("build")
}

impl Hash for Hooked {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialEq for Hooked {
    fn eq(&self, other: &Self) -> bool {
        for k in [self, other] {
            let left = k.eq_left.fetch_sub(1, Ordering::SeqCst);
            assert!(left != 1, "evil eq of key {}", k.id);
        }
        self.id == other.id
    }
}

impl Eq for Hooked {}

impl Drop for Hooked {
    fn drop(&mut self) {
        if let Some(hook) = self.on_drop.get_mut().take() {
            hook();
        }
    }
}

/// The key of a computation that an insert supersedes is dropped after the flights lock even
/// when the insert then unwinds (the user's `Eq` panics), so a `Drop` that calls back into the
/// engine (here, another insert into the same shard) does not deadlock. (The key and value
/// being inserted are dropped during that unwinding under the shard's lock; the docs of
/// `Engine::insert_with_options` say so.)
#[test]
fn a_drop_while_an_insert_unwinds_may_call_into_the_engine() {
    let clock = ManualClock::new();
    let e: Engine<Hooked, u64> =
        Engine::builder().max_capacity(100).shards(1).clock(clock.clone()).build().expect("build");
    // Resident but expired (no maintenance with a manual clock): a lookup misses, and a store
    // of the same key compares with it.
    e.insert_with_ttl(Hooked::new(1), 1, Duration::from_millis(1));
    e.flush();
    clock.advance(Duration::from_millis(10));
    let gate = Gate::new();
    let leader_key = Hooked::inserting_on_drop(1, &e, 2);
    let leader = {
        let (e, gate) = (e.clone(), gate.clone());
        std::thread::spawn(move || {
            e.get_or_insert_with(leader_key, || {
                gate.enter_and_wait();
                11
            })
        })
    };
    gate.wait_entered();
    let e2 = e.clone();
    let inserted =
        no_hang("an insert whose unwinding drops a key that calls into the engine", move || {
            let key = Hooked::new(1);
            // The first `Eq` (finding the running computation) passes; the next, against the
            // resident entry while storing, panics.
            key.eq_left.store(2, Ordering::SeqCst);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e2.insert(key, 12)))
                .map_err(|p| common::panic_message(&*p))
        });
    assert!(inserted.as_ref().is_err_and(|m| m.contains("evil eq")), "{inserted:?}");
    gate.open();
    assert_eq!(no_hang("the superseded leader", move || leader.join().unwrap()), 11);
    assert_eq!(e.get(&Hooked::new(2)), Some(2), "the hook's insert landed");
    e.flush();
    e.validate().unwrap();
}

/// The keys and values a store displaces are dropped after every lock of the engine, on the
/// normal path too: the key kept out of the core by an in-place replacement, and a pending
/// store superseded by a later one. A `Drop` that calls back into the same shard must not
/// deadlock (it did for a few commits, when an explicit insert began to hold the flights lock
/// across its store; found by a review).
#[test]
fn what_a_store_displaces_is_dropped_outside_the_locks() {
    let e = one_shard(100);
    // In place: key 1 is resident, so the new key is dropped and the value swapped.
    e.insert(Hooked::new(1), 1);
    e.flush();
    let (e2, key) = (e.clone(), Hooked::inserting_on_drop(1, &e, 2));
    no_hang("an in-place replacement dropping its key", move || e2.insert(key, 5));
    assert_eq!((e.get(&Hooked::new(1)), e.get(&Hooked::new(2))), (Some(5), Some(2)));
    // Through the pending table: a store with a deadline never replaces in place, and the
    // second one supersedes the first if the worker has not applied it yet (then the caller
    // drops the first key; otherwise the worker does, which never deadlocked). Repeated until
    // the caller's case has happened, which is nearly always at once.
    let e3 = e.clone();
    let on_caller = no_hang("a superseded pending store", move || {
        let on_caller = Arc::new(AtomicUsize::new(0));
        let caller = std::thread::current().id();
        for round in 0..50u32 {
            let id = 10 + 2 * round;
            let (hook_engine, counted) = (e3.clone(), on_caller.clone());
            let key = Hooked::with_drop(id, move || {
                if std::thread::current().id() == caller {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                hook_engine.insert(Hooked::new(id + 1), 2);
            });
            e3.insert_with_ttl(key, 1, Duration::from_secs(100));
            e3.insert_with_ttl(Hooked::new(id), 2, Duration::from_secs(100));
            if on_caller.load(Ordering::SeqCst) > 0 {
                break;
            }
        }
        on_caller.load(Ordering::SeqCst)
    });
    assert!(on_caller > 0, "the superseded store was never the caller's to drop");
    e.flush();
    e.validate().unwrap();
}

/// A single-flight computation whose value is not stored (a zero TTL: the memoizer's
/// `timeout = 0`) drops its owned key after the flights lock.
#[test]
fn an_unstored_computation_drops_its_key_outside_the_locks() {
    let e = one_shard(100);
    let key = Hooked::inserting_on_drop(1, &e, 2);
    let e2 = e.clone();
    let v = no_hang("a computation stored nowhere dropping its key", move || {
        e2.get_or_insert_with_options(key, InsertOptions::new().ttl(Duration::ZERO), || 7)
    });
    assert_eq!(v, 7);
    assert_eq!((e.get(&Hooked::new(1)), e.get(&Hooked::new(2))), (None, Some(2)));
}

/// A user's `Drop` running on a worker (a removed key, dropped after the batch) may store,
/// even past the pending table's limit: a worker never waits for itself to drain it.
#[test]
fn a_drop_on_a_worker_may_store_past_the_pending_limit() {
    let e = one_shard(10_000);
    let hook_engine = e.clone();
    let key = Hooked::with_drop(0, move || {
        for id in 1..=5000 {
            hook_engine.insert(Hooked::new(id), u64::from(id));
        }
    });
    e.insert(key, 0);
    e.flush();
    let e2 = e.clone();
    no_hang("a worker storing 5000 keys from a Drop", move || {
        e2.remove(&Hooked::new(0));
        e2.flush(); // the worker drops the key, whose hook stores
        e2.flush(); // what the hook stored
    });
    assert_eq!(e.len(), 5000);
    assert_eq!(e.get(&Hooked::new(4321)), Some(4321));
    e.validate().unwrap();
}

/// A value whose `clone` panics when its shared countdown reaches 1.
#[derive(Debug)]
struct PanicClone(u64, Arc<AtomicUsize>);

impl Clone for PanicClone {
    fn clone(&self) -> Self {
        let left = self.1.fetch_sub(1, Ordering::SeqCst);
        assert!(left != 1, "evil clone");
        PanicClone(self.0, self.1.clone())
    }
}

/// A computation whose value's `Clone` panics for the store abandons its flight like a
/// panicking computation: later callers compute again instead of joining a finished flight
/// for good (for one commit of session 6; found by a review). With nobody waiting, that clone
/// is the only one: the leader clones its value for waiters only when some caller waits
/// (session 24), so a value whose second clone would panic is stored and returned.
#[test]
fn a_panicking_clone_of_a_computed_value_leaves_no_flight_behind() {
    for clones_before_panic in [1, 2] {
        let e: Engine<u64, PanicClone> =
            Engine::builder().max_capacity(100).shards(1).build().expect("build");
        let opts = InsertOptions::new().ttl(Duration::from_secs(100));
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            e.get_or_insert_with_options(1, opts, || {
                PanicClone(1, Arc::new(AtomicUsize::new(clones_before_panic)))
            })
        }));
        assert_eq!(
            first.is_err(),
            clones_before_panic == 1,
            "the store's clone panics and reaches the caller; no second clone without a waiter"
        );
        if clones_before_panic == 2 {
            // Stored; its next clone (a hit) would panic: removed before looking again.
            e.flush();
            assert_eq!(e.len(), 1, "the value was stored");
            e.remove(&1);
        }
        let e2 = e.clone();
        let (computed, v) = no_hang("a later caller on another thread", move || {
            let computed = AtomicBool::new(false);
            let v = e2.get_or_insert_with_options(1, opts, || {
                computed.store(true, Ordering::SeqCst);
                PanicClone(2, Arc::new(AtomicUsize::new(usize::MAX)))
            });
            (computed.load(Ordering::SeqCst), v.0)
        });
        assert!(computed && v == 2, "joined an orphaned flight: got {v}");
        e.validate().unwrap();
    }
}

/// The same with a caller waiting: the leader's value is stored (its first clone), then its
/// clone for the waiters panics. The flight is abandoned: the waiter wakes instead of hanging,
/// and finds the stored value; the panic reaches the leader's caller.
#[test]
fn a_panicking_clone_for_the_waiters_wakes_them() {
    let e: Engine<u64, PanicClone> =
        Engine::builder().max_capacity(100).shards(1).build().expect("build");
    let (leader_e, waiter_e) = (e.clone(), e.clone());
    let (v, leader_panicked) = no_hang("a waiter of a leader whose clone panics", move || {
        let computing = AtomicBool::new(false);
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    leader_e.get_or_insert_with(1, || {
                        computing.store(true, Ordering::SeqCst);
                        // Until the other caller waits for this computation.
                        while leader_e.stats().single_flight_waits == 0 {
                            std::thread::yield_now();
                        }
                        PanicClone(1, Arc::new(AtomicUsize::new(2)))
                    })
                }))
                .is_err()
            });
            // Only once the leader has registered its flight.
            while !computing.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let v = waiter_e
                .get_or_insert_with(1, || PanicClone(9, Arc::new(AtomicUsize::new(usize::MAX))));
            (v.0, leader.join().expect("the leader's thread"))
        })
    });
    assert!(leader_panicked, "the waiters' clone panics and reaches the leader's caller");
    assert_eq!(v, 1, "the waiter finds the stored value");
    assert_eq!(e.get(&1).map(|v| v.0), Some(1));
    e.validate().unwrap();
}
