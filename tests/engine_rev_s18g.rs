//! Review s18g: `flush` waiting on `retiring`, a second `shutdown` waiting for the first, and
//! the store's caller-owned key/value slot.
//!
//! Model: `shutdown` empties every shard whatever a user's `Drop` does (workers and `clear`
//! swallow a panicking `Drop` of a user's key or value; so must shutdown), so that afterwards
//! lookups miss, as documented, and a second `shutdown` that waited for the first returns to
//! an engine that is shut down and empty. A store keeps the resident key when it replaces a
//! value in place, runs the weigher once, and never loses a write.
//!
//! Every test runs under [`no_hang`].

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{no_hang, this_thread_id, wait_asleep_or_done, Gate, HookedKey};
use memokit_engine::{Engine, InsertOptions, ManualClock};

type E = Engine<HookedKey, u64>;

/// Many shards, one worker, a manual clock: shutdown empties the shards one after another.
fn many_shards() -> E {
    Engine::builder()
        .max_capacity(100_000)
        .shards(256)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("engine")
}

const VALUES: u64 = 2_000;
const LEADERS: u64 = 4;

/// Stores `VALUES` keys, then starts `LEADERS` computations (keys `1_000_000 + i`) held in
/// their compute by `gate`; each leader's key panics when dropped, after running `before`.
/// Returns the leaders' threads once they all compute.
fn values_and_panicking_flights(
    e: &E,
    gate: &Gate,
    before: impl Fn() + Send + Sync + Clone + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    for k in 0..VALUES {
        e.insert(HookedKey::new(k), k);
    }
    e.flush();
    let running = Arc::new(AtomicUsize::new(0));
    let leaders: Vec<_> = (0..LEADERS)
        .map(|i| {
            let (e, gate, running, before) =
                (e.clone(), gate.clone(), running.clone(), before.clone());
            std::thread::spawn(move || {
                let id = 1_000_000 + i;
                let key = HookedKey::with_drop(id, move || {
                    before();
                    panic!("the user's key {id} panics in its Drop");
                });
                let v = e.get_or_insert_with(key, || {
                    running.fetch_add(1, Ordering::SeqCst);
                    gate.enter_and_wait();
                    id
                });
                assert_eq!(v, id);
            })
        })
        .collect();
    common::wait_until("every leader computes", || {
        running.load(Ordering::SeqCst) == LEADERS as usize
    });
    leaders
}

fn visible(e: &E) -> Vec<u64> {
    (0..VALUES).filter(|&k| e.get(&HookedKey::new(k)).is_some()).collect()
}

/// A running computation's key whose `Drop` panics when `shutdown` detaches it: the shards
/// after its own were left full (lookups after shutdown found their values, and a second
/// shutdown returned at once without emptying them). Shutdown must empty every shard.
#[test]
fn shutdown_empties_every_shard_when_a_detached_computations_key_panics_in_its_drop() {
    no_hang("shutdown with panicking flight keys", || {
        let e = many_shards();
        let gate = Gate::new();
        let leaders = values_and_panicking_flights(&e, &gate, || {});
        let first = catch_unwind(AssertUnwindSafe(|| e.shutdown()));
        e.shutdown(); // a second call, on this thread, once the first is over
        let seen = visible(&e);
        gate.open();
        // A leader whose flight was not detached drops its key itself: that panic is the
        // user's, on the leader's thread.
        leaders.into_iter().for_each(|l| drop(l.join()));
        assert!(
            seen.is_empty(),
            "after shutdown ({}), lookups found {} of {VALUES} values, e.g. {:?}",
            if first.is_ok() { "returned" } else { "panicked" },
            seen.len(),
            &seen[..seen.len().min(5)]
        );
        assert_eq!(e.len(), 0, "shards left full after shutdown");
    });
}

/// A second `shutdown` waits for the first; when the first's emptying meets a panicking
/// `Drop`, the second must return to an engine that is empty, as it would after a first
/// that finished.
#[test]
fn a_second_shutdown_returns_to_an_empty_engine_when_the_first_meets_a_panicking_drop() {
    no_hang("two shutdowns, the first meeting a panicking Drop", || {
        let e = many_shards();
        let (gate, held) = (Gate::new(), Gate::new());
        let h = held.clone();
        let tid = Arc::new(Mutex::new(String::new()));
        let leaders = values_and_panicking_flights(&e, &gate, move || h.enter_and_wait());
        let e1 = e.clone();
        let first = std::thread::spawn(move || catch_unwind(AssertUnwindSafe(|| e1.shutdown())));
        held.wait_entered(); // the first is dropping a detached key, held
        let (e2, t2, done) = (e.clone(), tid.clone(), Arc::new(AtomicBool::new(false)));
        let d2 = done.clone();
        let second = std::thread::spawn(move || {
            *t2.lock().unwrap() = this_thread_id();
            e2.shutdown();
            d2.store(true, Ordering::SeqCst);
            visible(&e2)
        });
        common::wait_until("the second shutdown's thread id", || !tid.lock().unwrap().is_empty());
        let t = tid.lock().unwrap().clone();
        let waited =
            wait_asleep_or_done("the second shutdown waits", &t, || done.load(Ordering::SeqCst));
        assert!(waited, "the second shutdown returned while the first was under way");
        held.open();
        let _ = first.join().expect("the first shutdown's thread");
        let seen = second.join().expect("the second shutdown's thread");
        gate.open();
        leaders.into_iter().for_each(|l| drop(l.join()));
        assert!(
            seen.is_empty(),
            "after the second shutdown returned, {} values were found",
            seen.len()
        );
    });
}

/// A value replaced in place keeps the resident key (the one it was stored with), drops the
/// new key and the old value at once, after the locks, and runs the weigher once per store.
#[test]
fn an_in_place_replacement_keeps_the_resident_key_and_weighs_once() {
    no_hang("in-place replacement", || {
        let weighed = Arc::new(AtomicUsize::new(0));
        let w = weighed.clone();
        let e: Engine<HookedKey, u64> = Engine::builder()
            .max_capacity(1_000)
            .shards(1)
            .workers(1)
            .weigher(move |_, _| {
                w.fetch_add(1, Ordering::SeqCst);
                1
            })
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let key = |tag: &'static str| {
            let d = dropped.clone();
            HookedKey::with_drop(7, move || d.lock().unwrap().push(tag))
        };
        e.insert(key("resident"), 1);
        e.flush();
        assert_eq!(weighed.swap(0, Ordering::SeqCst), 1);
        for v in 2..10 {
            e.insert(key("new"), v);
            assert_eq!(weighed.swap(0, Ordering::SeqCst), 1, "store of {v} weighed");
            assert_eq!(e.get(&HookedKey::new(7)), Some(v), "read your write of {v}");
            assert_eq!(dropped.lock().unwrap().last(), Some(&"new"), "store of {v}");
            assert!(!dropped.lock().unwrap().contains(&"resident"), "store of {v}");
        }
        e.flush();
        assert_eq!(e.stats().inserts, 9);
        e.remove(&HookedKey::new(7));
        e.flush();
        assert_eq!(dropped.lock().unwrap().last(), Some(&"resident"));
        assert_eq!(e.validate(), Ok(()));
    });
}

/// Stores through every path (in place, pending, after a computation, under a generation,
/// one that cannot be kept) from two threads: each key's last write is read back, and the
/// generation counts match what is resident.
#[test]
fn every_store_path_reads_its_own_write() {
    no_hang("store paths", || {
        let e: Engine<HookedKey, u64> = Engine::builder()
            .max_capacity(10_000)
            .shards(4)
            .workers(1)
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        let g = e.new_generation();
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let e = e.clone();
                std::thread::spawn(move || {
                    for round in 0..200u64 {
                        for k in (t * 100)..(t * 100 + 50) {
                            let v = round * 1_000 + k;
                            match (round + k) % 4 {
                                0 => e.insert(HookedKey::new(k), v),
                                1 => e.insert_with_options(
                                    HookedKey::new(k),
                                    v,
                                    InsertOptions::new().generations(g, None),
                                ),
                                2 => {
                                    e.remove(&HookedKey::new(k));
                                    assert_eq!(e.get_or_insert_with(HookedKey::new(k), || v), v);
                                }
                                _ => {
                                    e.insert(HookedKey::new(k), v);
                                    e.insert_with_ttl(
                                        HookedKey::new(k),
                                        v + 1,
                                        std::time::Duration::ZERO,
                                    );
                                    assert_eq!(e.get(&HookedKey::new(k)), None, "zero ttl");
                                    e.insert(HookedKey::new(k), v);
                                }
                            }
                            assert_eq!(e.get(&HookedKey::new(k)), Some(v), "key {k} round {round}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a writer");
        }
        e.flush();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.len(), 100);
        let under_g = (0..2u64)
            .flat_map(|t| (t * 100)..(t * 100 + 50))
            .filter(|&k| (199 + k) % 4 == 1)
            .count() as u64;
        assert_eq!(e.generation_entries(g), under_g);
    });
}

/// `clear` detaches running computations shard by shard before asking the workers to clear:
/// a detached key whose `Drop` panicked ended it there, before the workers were asked, so
/// every value stayed.
#[test]
fn clear_removes_every_value_when_a_detached_computations_key_panics_in_its_drop() {
    no_hang("clear with panicking flight keys", || {
        let e = many_shards();
        let gate = Gate::new();
        let leaders = values_and_panicking_flights(&e, &gate, || {});
        let cleared = catch_unwind(AssertUnwindSafe(|| e.clear()));
        let seen = visible(&e);
        gate.open();
        leaders.into_iter().for_each(|l| drop(l.join()));
        assert!(
            seen.is_empty(),
            "after clear ({}), lookups found {} of {VALUES} values",
            if cleared.is_ok() { "returned" } else { "panicked" },
            seen.len()
        );
        e.flush();
        assert_eq!(e.len(), 0, "the detached leaders' values are not stored");
        e.insert(HookedKey::new(1), 1);
        assert_eq!(e.get(&HookedKey::new(1)), Some(1), "usable after clear");
    });
}

/// Two engines shut down at once from two threads, each holding a key whose `Drop` shuts
/// the other engine down: each `Drop` runs in its engine's first shutdown, as it empties the
/// shards, and each second call waited for the other thread's first shutdown, which was
/// waiting in the same way (a hang; before the second call waited, both returned at once).
#[test]
fn two_engines_shutting_each_other_down_from_their_keys_drops_do_not_hang() {
    no_hang("two engines shutting each other down", || {
        let (e1, e2) = (many_shards(), many_shards());
        let both_inside = Arc::new(std::sync::Barrier::new(2));
        for (mine, other) in [(&e1, &e2), (&e2, &e1)] {
            let (other, both_inside) = (other.clone(), both_inside.clone());
            mine.insert(
                HookedKey::with_drop(1, move || {
                    both_inside.wait(); // both threads inside their first shutdown
                    other.shutdown();
                }),
                1,
            );
            mine.flush();
        }
        let threads: Vec<_> = [e1.clone(), e2.clone()]
            .into_iter()
            .map(|e| std::thread::spawn(move || e.shutdown()))
            .collect();
        threads.into_iter().for_each(|t| t.join().expect("a shutdown"));
        assert_eq!((e1.len(), e2.len()), (0, 0));
    });
}

/// A key whose `Eq` retires a generation of its engine (user code under the pending table or
/// the core's write lock: `retire` waits for nothing but `flush`'s momentary hold of
/// `retiring`), while other threads flush an engine kept over capacity by stores under
/// generations being retired: every call returns, and the engine ends within capacity.
#[test]
fn retire_from_a_keys_eq_under_a_lock_while_others_flush_never_hangs() {
    use std::sync::OnceLock;
    #[derive(Clone)]
    struct RKey(u64, Arc<OnceLock<Engine<RKey, u64>>>);
    impl std::hash::Hash for RKey {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            self.0.hash(h);
        }
    }
    impl PartialEq for RKey {
        fn eq(&self, other: &Self) -> bool {
            if let Some(e) = self.1.get() {
                let g = e.new_generation();
                e.retire(g);
            }
            self.0 == other.0
        }
    }
    impl Eq for RKey {}
    no_hang("retire under a lock while flushing", || {
        let cell = Arc::new(OnceLock::new());
        let e: Engine<RKey, u64> = Engine::builder()
            .max_capacity(64)
            .shards(8)
            .workers(2)
            .clock(ManualClock::new())
            .build()
            .expect("engine");
        assert!(cell.set(e.clone()).is_ok());
        let stop = Arc::new(AtomicBool::new(false));
        let flushers: Vec<_> = (0..2)
            .map(|_| {
                let (e, stop) = (e.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        e.flush();
                    }
                })
            })
            .collect();
        for round in 0..300u64 {
            let g = e.new_generation();
            for k in 0..32 {
                let key = RKey(round * 32 + k % 8, cell.clone());
                e.insert_with_options(key, k, InsertOptions::new().generations(g, None));
            }
            e.retire(g);
        }
        stop.store(true, Ordering::SeqCst);
        flushers.into_iter().for_each(|t| t.join().expect("a flusher"));
        e.flush();
        assert!(e.stats().weight <= 64, "over capacity after flush: {}", e.stats().weight);
        assert_eq!(e.validate(), Ok(()));
        // The engine holds itself through the keys' cell: let it go.
        e.shutdown();
    });
}

/// Another engine's weigher shutting this engine down while this engine's first shutdown
/// drops a key whose `Drop` stores into that other engine: the weigher runs under the other
/// engine's flights lock, which that `Drop` waits for, and the second shutdown waited for
/// the first (a hang; before the second call waited, it returned at once). Since review
/// s18h a weigher's `shutdown` of any engine panics instead (it waits for workers, which may
/// wait for the lock the weigher runs under: `tests/engine_rev_s18h.rs`); still no hang.
#[test]
fn a_second_shutdown_from_another_engines_weigher_does_not_hang() {
    no_hang("a second shutdown from another engine's weigher", || {
        let e1 = many_shards();
        let (in_drop, weighing) = (Arc::new(AtomicBool::new(false)), Gate::new());
        let slot: Arc<std::sync::OnceLock<E>> = Arc::default();
        let (s, i, w) = (slot.clone(), in_drop.clone(), weighing.clone());
        let e2: Engine<u64, u64> = Engine::builder()
            .shards(1)
            .workers(1)
            .clock(ManualClock::new())
            .weigher(move |_, v| {
                if *v == 7 {
                    // e1's first shutdown is in the key's Drop
                    common::wait_until("e1's key dropped", || i.load(Ordering::SeqCst));
                    w.open();
                    s.get().expect("e1").shutdown();
                }
                1
            })
            .build()
            .expect("e2");
        assert!(slot.set(e1.clone()).is_ok());
        let (e2b, i) = (e2.clone(), in_drop.clone());
        let w = weighing.clone();
        e1.insert(
            HookedKey::with_drop(1, move || {
                i.store(true, Ordering::SeqCst);
                w.wait_open(); // the weigher holds e2's flights lock
                e2b.insert(2, 2);
            }),
            1,
        );
        e1.flush();
        let e1b = e1.clone();
        let first = std::thread::spawn(move || e1b.shutdown());
        let msg = common::expect_panic("a shutdown from a weigher", || e2.insert(1, 7));
        assert!(msg.starts_with("memokit:"), "{msg}");
        first.join().expect("the first shutdown");
        assert_eq!(e1.len(), 0);
    });
}
