//! The caller-to-worker hand-over: read-your-writes, overwrite order, removes, the pending
//! table's backpressure (also with a user's `Drop` storing from the worker), `clear` and
//! maintenance racing callers, shutdown while callers store.

use super::*;

/// A shard of 256 entries gathers 2 stores of new keys before it wakes its worker (also under
/// the model checker, where the pending table's limit is 4); one of 100 wakes it at every
/// store. (With 3, above half that limit, a caller held back by a full table waited for a
/// worker that the stores refilling it had not woken: a deadlock.)
const GATHERING: u64 = 256;

#[test]
fn a_store_is_visible_to_every_later_lookup() {
    store_visible(100);
}

#[test]
fn a_store_is_visible_to_every_later_lookup_while_stores_gather() {
    store_visible(GATHERING);
}

fn store_visible(capacity: u64) {
    check(move || {
        let e = engine(capacity, 1, 1);
        // How many of the writer's stores have returned.
        let stored = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (e, stored) = (e.clone(), stored.clone());
            thread::spawn(move || {
                for k in 0..3u64 {
                    e.insert(k, k * 10);
                    assert_eq!(e.get(&k), Some(k * 10), "the writer's own lookup");
                    stored.store(k as usize + 1, Ordering::SeqCst);
                }
            })
        };
        let reader = {
            let (e, stored) = (e.clone(), stored.clone());
            thread::spawn(move || {
                for round in 0..3u64 {
                    // Stores of its own keep the worker applying batches meanwhile.
                    e.insert(100 + round, round);
                    let n = stored.load(Ordering::SeqCst) as u64;
                    for k in 0..n {
                        assert_eq!(e.get(&k), Some(k * 10), "a store that had returned");
                    }
                }
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        e.flush();
        for k in 0..3u64 {
            assert_eq!(e.get(&k), Some(k * 10));
        }
        e.validate().unwrap();
    });
}

#[test]
fn overwrites_are_never_seen_out_of_order() {
    check(|| {
        let e = engine(100, 1, 1);
        let writer = spawn_with(&e, move |e| {
            for v in 1..=3u64 {
                // The first goes through the worker; later ones may replace in place.
                e.insert(0, v);
                assert_eq!(e.get(&0), Some(v));
            }
        });
        let reader = spawn_with(&e, move |e| {
            let mut last = 0;
            for _ in 0..4 {
                if let Some(v) = e.get(&0) {
                    assert!(v >= last, "saw {v} after {last}");
                    last = v;
                }
            }
        });
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(e.get(&0), Some(3));
        e.flush();
        assert_eq!(e.get(&0), Some(3));
        e.validate().unwrap();
    });
}

#[test]
fn a_remove_after_a_store_is_never_undone() {
    let seen = std::sync::Arc::new(Seen::default());
    let outcomes = seen.clone();
    check(move || {
        let seen = outcomes.clone();
        let e = engine(100, 1, 1);
        e.insert(1, 1); // resident: the store below may take the in-place path
        e.flush();
        let stored = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (e, stored) = (e.clone(), stored.clone());
            thread::spawn(move || {
                e.insert(0, 10);
                e.insert(1, 11);
                stored.store(1, Ordering::SeqCst);
            })
        };
        let remover = {
            let (e, stored) = (e.clone(), stored.clone());
            thread::spawn(move || {
                let after = observe(&stored, &seen);
                e.remove(&0);
                e.remove(&1);
                if after {
                    // Otherwise a store may still land after the remove, legitimately.
                    assert_eq!((e.get(&0), e.get(&1)), (None, None), "the remover's own lookup");
                }
                after
            })
        };
        writer.join().unwrap();
        let after = remover.join().unwrap();
        let (zero, one) = (e.get(&0), e.get(&1));
        if after {
            assert_eq!((zero, one), (None, None), "removes that began after the stores");
        }
        assert!(zero.is_none() || zero == Some(10));
        assert!(one.is_none() || one == Some(11));
        e.flush();
        assert_eq!((e.get(&0), e.get(&1)), (zero, one), "applying changed the answer");
        e.validate().unwrap();
    });
    seen.assert_both();
}

#[test]
fn callers_held_back_by_a_full_pending_table_are_let_go() {
    held_back(100);
}

#[test]
fn callers_held_back_by_a_full_pending_table_are_let_go_while_stores_gather() {
    held_back(GATHERING);
}

fn held_back(capacity: u64) {
    check(move || {
        // Under the model checker a shard holds at most 4 pending operations before storing
        // callers wait for its worker to drain it (down to 2): twelve stores from two threads
        // into one shard reach that wait, and a lost wake-up would be a deadlock here (the
        // real build also wakes every 50 ms, which would hide it).
        let e = engine(capacity, 1, 1);
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                spawn_with(&e, move |e| {
                    for k in (0..6u64).map(|i| t * 100 + i) {
                        e.insert(k, k);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        for k in (0..6u64).flat_map(|i| [i, 100 + i]) {
            assert_eq!(e.get(&k), Some(k));
        }
        e.flush();
        assert_eq!(e.len(), 12);
        e.validate().unwrap();
    });
}

#[test]
fn callers_held_back_by_pending_removes_are_let_go() {
    check(|| {
        // Removes count against the pending limit (4 under the model checker) like stores.
        let e = engine(100, 1, 1);
        for k in 0..12u64 {
            e.insert(k, k);
        }
        e.flush();
        let removers: Vec<_> = (0..2u64)
            .map(|t| {
                spawn_with(&e, move |e| {
                    for k in (0..6u64).map(|i| t * 6 + i) {
                        e.remove(&k);
                        assert_eq!(e.get(&k), None);
                    }
                })
            })
            .collect();
        for r in removers {
            r.join().unwrap();
        }
        e.flush();
        assert_eq!(e.len(), 0);
        e.validate().unwrap();
    });
}

/// A key whose `Drop` may run a hook (once).
struct HookedKey(u64, std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl HookedKey {
    fn new(id: u64) -> Self {
        HookedKey(id, std::sync::Mutex::new(None))
    }
}

impl std::hash::Hash for HookedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for HookedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for HookedKey {}

impl Drop for HookedKey {
    fn drop(&mut self) {
        if let Some(hook) = self.1.get_mut().ok().and_then(Option::take) {
            hook();
        }
    }
}

#[test]
fn a_drop_on_the_worker_may_store_while_a_caller_is_held_back() {
    check(|| {
        // The worker drops a removed key whose `Drop` stores, while a caller fills the pending
        // table (limit 4 here) and is held back: the caller must wait holding no lock the
        // worker's store needs (it once waited holding the flights lock: a deadlock).
        let e: Engine<HookedKey, u64> = Engine::builder()
            .max_capacity(100)
            .shards(1)
            .workers(1)
            .clock(ManualClock::new())
            .build()
            .expect("build");
        let hooked = HookedKey::new(0);
        let hook_engine = e.clone();
        *hooked.1.lock().unwrap() =
            Some(Box::new(move || hook_engine.insert(HookedKey::new(100), 1)));
        e.insert(hooked, 0);
        e.flush();
        let remover = spawn_with(&e, move |e| e.remove(&HookedKey::new(0)));
        let writer = spawn_with(&e, move |e| {
            for k in 1..=6u64 {
                e.insert(HookedKey::new(k), k);
            }
        });
        remover.join().unwrap();
        writer.join().unwrap();
        e.flush();
        assert_eq!(e.get(&HookedKey::new(100)), Some(1), "the hook's store");
        assert_eq!(e.len(), 7);
        e.validate().unwrap();
    });
}

#[test]
fn clear_racing_stores_leaves_a_consistent_engine() {
    let seen = std::sync::Arc::new(Seen::default());
    let outcomes = seen.clone();
    check(move || {
        let seen = outcomes.clone();
        let e = engine(100, 2, 1);
        let stored = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (e, stored) = (e.clone(), stored.clone());
            thread::spawn(move || {
                e.insert(1, 10);
                e.insert(2, 20);
                stored.store(1, Ordering::SeqCst);
            })
        };
        let after = observe(&stored, &seen);
        e.clear();
        if after {
            assert_eq!((e.get(&1), e.get(&2)), (None, None), "stores that returned before");
        }
        writer.join().unwrap();
        let seen = (e.get(&1), e.get(&2));
        assert!(seen.0.is_none() || seen.0 == Some(10));
        assert!(seen.1.is_none() || seen.1 == Some(20));
        e.flush();
        assert_eq!((e.get(&1), e.get(&2)), seen, "applying changed the answer");
        assert_eq!(e.len(), u64::from(seen.0.is_some()) + u64::from(seen.1.is_some()));
        e.validate().unwrap();
    });
    seen.assert_both();
}

#[test]
fn maintenance_racing_lookups_serves_nothing_dead() {
    check(|| {
        let (e, clock) = engine_and_clock(100, 1, 1);
        let g = e.new_generation();
        e.insert_with_ttl(1, 10, Duration::from_secs(1));
        e.insert_with_options(2, 20, InsertOptions::new().generations(g, None));
        e.insert(3, 30);
        e.flush();
        clock.advance(Duration::from_secs(2));
        e.retire(g);
        let reader = spawn_with(&e, move |e| {
            for _ in 0..2 {
                assert_eq!((e.get(&1), e.get(&2), e.get(&3)), (None, None, Some(30)));
            }
        });
        e.run_maintenance();
        reader.join().unwrap();
        assert_eq!(e.len(), 1, "expired and retired entries reclaimed");
        assert_eq!(e.generation_entries(g), 0);
        e.validate().unwrap();
    });
}

#[test]
fn shutdown_while_callers_store_never_hangs() {
    check(|| {
        let e = engine(100, 2, 2);
        let callers: Vec<_> = (0..2u64)
            .map(|t| {
                spawn_with(&e, move |e| {
                    e.insert(t, t);
                    let _ = e.get(&t);
                    e.get_or_insert_with(10 + t, || t)
                })
            })
            .collect();
        e.shutdown();
        for (t, c) in callers.into_iter().enumerate() {
            assert_eq!(c.join().unwrap(), t as u64, "computed without storing, if need be");
        }
        assert_eq!(e.get(&0), None, "lookups after shutdown miss");
        e.flush(); // returns at once after shutdown
    });
}

/// Two threads shut the engine down at once: whichever returns second, as the first, returns
/// with the engine shut down (lookups miss, nothing resident or counted). The second used to
/// return at once, while the first was still joining the workers, before the shards were
/// emptied.
#[test]
fn two_shutdowns_at_once_both_return_with_the_engine_shut_down() {
    check(|| {
        let e = engine(100, 2, 2);
        let g = e.new_generation();
        for k in 0..2u64 {
            e.insert_with_options(k, k, InsertOptions::new().generations(g, None));
        }
        e.flush();
        let other = spawn_with(&e, move |e| {
            e.shutdown();
            (e.get(&0), e.get(&1), e.len(), e.generation_entries(g))
        });
        e.shutdown();
        let here = (e.get(&0), e.get(&1), e.len(), e.generation_entries(g));
        assert_eq!(here, (None, None, 0, 0), "after shutdown returned");
        assert_eq!(other.join().unwrap(), (None, None, 0, 0), "after shutdown returned");
    });
}
