//! Review s24b: the engine used directly as a server's cache. Borrowed-key lookups, fallible
//! single flight under concurrency, deadlines on a manual clock, generations racing
//! computations, weights, exact counters, and the clones a hit, a miss and a waiter cost.
//! The tests that failed when it was written (its findings) pass since their fixes (sessions
//! 24 and 25): see their doc comments.
mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{manual_engine, manual_engine_with, no_hang, wait_until, Gate};
use memokit_engine::{Engine, Equivalent, InsertOptions};

/// A value whose clones are counted.
#[derive(Debug)]
struct Counted(u64, Arc<AtomicUsize>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.1.fetch_add(1, Ordering::SeqCst);
        Counted(self.0, self.1.clone())
    }
}

/// `(String, u64)` keys by their borrowed parts (a plain `(&str, u64)` cannot: see
/// `Equivalent`'s docs).
#[derive(Hash)]
struct Borrowed<'a>(&'a str, u64);

impl Equivalent<(String, u64)> for Borrowed<'_> {
    fn equivalent(&self, k: &(String, u64)) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

#[test]
fn keys_are_found_and_computed_by_borrowed_forms() {
    let (e, _clock) = manual_engine::<(String, u64), u64>(100);
    e.insert(("user".to_string(), 7), 70);
    // Still pending: the slow path compares the borrowed form with the pending key.
    assert_eq!(e.get(&Borrowed("user", 7)), Some(70));
    assert_eq!((e.get(&Borrowed("user", 8)), e.get(&Borrowed("use", 7))), (None, None));
    e.flush();
    assert_eq!(e.get(&Borrowed("user", 7)), Some(70));
    assert_eq!(e.get_map(&Borrowed("user", 7), |v| v + 1), Some(71));
    e.remove(&Borrowed("user", 7));
    assert_eq!(e.get(&("user".to_string(), 7)), None);
    e.flush();
    assert_eq!(e.len(), 0);
    // `String` keys computed by `&str`: the key is made once per computation, never on a hit.
    let (e, _clock) = manual_engine::<String, u64>(100);
    let owned = AtomicUsize::new(0);
    let get = |k: &str, v: u64| -> u64 {
        let to_owned = |k: &str| {
            owned.fetch_add(1, Ordering::SeqCst);
            k.to_owned()
        };
        let r = e.get_or_try_insert_with_ref(k, InsertOptions::new(), to_owned, || Ok(v));
        r.unwrap_or_else(|never: Infallible| match never {})
    };
    assert_eq!(get("a", 1), 1);
    assert_eq!(get("a", 2), 1, "a hit (pending)");
    e.flush();
    assert_eq!(get("a", 3), 1, "a hit (resident)");
    assert_eq!(owned.load(Ordering::SeqCst), 1);
    assert_eq!(e.get("a"), Some(1));
}

/// A leader's `Err` is not cached; its waiters neither hang nor see its error; the value one
/// of them stores on retry is the one its own computation returned; each caller counts once.
#[test]
fn an_error_under_waiters_is_not_cached_and_every_caller_gets_its_own_answer() {
    const WAITERS: u64 = 6;
    no_hang("error under waiters", || {
        let (e, _clock) = manual_engine::<String, u64>(100);
        let gate = Gate::new();
        let leader = {
            let (e, gate) = (e.clone(), gate.clone());
            std::thread::spawn(move || {
                e.get_or_try_insert_with_ref("k", InsertOptions::new(), str::to_owned, || {
                    gate.enter_and_wait();
                    Err::<u64, String>("backend down".into())
                })
            })
        };
        gate.wait_entered();
        let waiters: Vec<_> = (1..=WAITERS)
            .map(|id| {
                let e = e.clone();
                std::thread::spawn(move || {
                    let compute = || Ok::<u64, String>(100 + id);
                    (
                        id,
                        e.get_or_try_insert_with_ref(
                            "k",
                            InsertOptions::new(),
                            str::to_owned,
                            compute,
                        ),
                    )
                })
            })
            .collect();
        wait_until("every waiter joined", || e.stats().single_flight_waits == WAITERS);
        gate.open();
        assert_eq!(leader.join().unwrap(), Err("backend down".to_string()));
        let got: Vec<(u64, u64)> = waiters
            .into_iter()
            .map(|h| h.join().unwrap())
            .map(|(id, r)| (id, r.expect("a waiter never sees the leader's error")))
            .collect();
        let s = e.stats();
        assert_eq!((s.hits + s.misses, s.single_flight_waits), (1 + WAITERS, WAITERS), "{s:?}");
        let stored = e.get("k").expect("a retrying waiter led a computation and stored it");
        assert!(got.iter().any(|&(id, v)| v == stored && v == 100 + id), "{stored}: {got:?}");
        assert!(got.iter().all(|&(id, v)| v == 100 + id || v == stored), "{stored}: {got:?}");
    });
}

/// Even keys always fail, odd keys compute `k`: under concurrent callers no error is ever
/// cached (no even key is ever found), and no caller gets another key's value.
#[test]
fn errors_are_never_cached_under_concurrent_callers() {
    let e: Engine<u64, u64> =
        Engine::builder().max_capacity(64).shards(2).workers(2).build().unwrap();
    let barrier = Barrier::new(4);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (e, barrier) = (&e, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..4_000u64 {
                    let k = (i * 7 + t) % 8;
                    let compute = || if k % 2 == 0 { Err(k) } else { Ok(k) };
                    let r = e.get_or_try_insert_with_ref(&k, InsertOptions::new(), |k| *k, compute);
                    assert_eq!(r, if k % 2 == 0 { Err(k) } else { Ok(k) });
                    if i % 16 == 0 {
                        e.remove(&(k | 1));
                    }
                    assert_eq!(e.get(&(k & !1)), None, "an error was cached");
                }
            });
        }
    });
    e.flush();
    assert!((0..8).step_by(2).all(|k| e.get(&k).is_none()));
}

#[test]
fn deadlines_hold_pending_and_resident_to_the_nanosecond() {
    let (e, clock) = manual_engine::<u64, u64>(100);
    let ttl = Duration::from_secs(5);
    e.insert_with_ttl(1, 10, ttl);
    e.flush(); // 1 resident
    e.insert_with_ttl(2, 20, ttl); // pending
    clock.advance(ttl - Duration::from_nanos(1));
    assert_eq!((e.get(&1), e.get(&2)), (Some(10), Some(20)));
    clock.advance(Duration::from_nanos(1));
    assert_eq!((e.get(&1), e.get(&2)), (None, None));
    assert_eq!(e.get_or_insert_with(2, || 21), 21, "an expired pending value is a miss");
    e.insert_with_ttl(2, 22, Duration::ZERO);
    assert_eq!(e.get(&2), None, "a zero TTL drops the older value");
    // A computed value's TTL runs from its store, not from the start of the computation.
    let opts = InsertOptions::new().ttl(ttl);
    let v = e.get_or_insert_with_options(3, opts, || {
        clock.advance(Duration::from_secs(3));
        30
    });
    clock.advance(ttl - Duration::from_nanos(1));
    assert_eq!((v, e.get(&3)), (30, Some(30)));
    e.run_maintenance();
    let s = e.stats();
    assert_eq!((e.len(), s.expirations, s.entries), (1, 1, 1), "{s:?}");
    clock.advance(Duration::from_nanos(1));
    assert_eq!(e.get(&3), None);
}

#[test]
fn huge_ttls_never_expire_and_one_just_short_of_the_end_does() {
    let (e, clock) = manual_engine::<u64, u64>(100);
    e.insert_with_ttl(1, 1, Duration::MAX);
    e.insert_with_ttl(2, 2, Duration::from_nanos(u64::MAX));
    e.insert_with_ttl(3, 3, Duration::from_nanos(u64::MAX - 10));
    e.flush();
    clock.advance(Duration::from_secs(400 * 365 * 86_400));
    e.run_maintenance();
    assert_eq!((e.get(&1), e.get(&2), e.get(&3)), (Some(1), Some(2), Some(3)));
    clock.advance(Duration::MAX); // saturates at u64::MAX - 1 ns: past key 3's deadline
    assert_eq!((e.get(&1), e.get(&2), e.get(&3)), (Some(1), Some(2), None));
    e.run_maintenance();
    assert_eq!((e.len(), e.stats().expirations), (2, 1));
    assert_eq!(e.validate(), Ok(()));
}

/// Retiring a generation while its computation runs: the waiter already there gets the
/// value, a caller after the retirement does not join, nothing is stored or counted.
#[test]
fn a_computation_racing_a_retirement_is_handed_over_but_never_stored() {
    no_hang("retire racing a computation", || {
        let (e, _clock) = manual_engine::<u64, u64>(100);
        let g = e.new_generation();
        let opts = InsertOptions::new().generations(g, None);
        let gate = Gate::new();
        let spawn = |v: u64, gate: Option<Gate>| {
            let e = e.clone();
            std::thread::spawn(move || {
                e.get_or_insert_with_options(1, opts, || {
                    gate.inspect(Gate::enter_and_wait);
                    v
                })
            })
        };
        let leader = spawn(10, Some(gate.clone()));
        gate.wait_entered();
        let waiter = spawn(11, None);
        wait_until("the waiter joined", || e.stats().single_flight_waits == 1);
        e.retire(g);
        assert_eq!(e.get_or_insert_with_options(1, opts, || 12), 12, "computes for itself");
        gate.open();
        assert_eq!((leader.join().unwrap(), waiter.join().unwrap()), (10, 10));
        assert_eq!(e.get(&1), None);
        e.run_maintenance();
        assert_eq!((e.len(), e.generation_entries(g)), (0, 0));
        let g2 = InsertOptions::new().generations(e.new_generation(), None);
        assert_eq!((e.get_or_insert_with_options(1, g2, || 13), e.get(&1)), (13, Some(13)));
    });
}

fn weighted(cap: u64, shards: usize, workers: usize) -> Engine<u64, u64> {
    let b = Engine::builder().max_capacity(cap).shards(shards).workers(workers);
    manual_engine_with(b.weigher(|_, v: &u64| *v as u32)).0
}

#[test]
fn weights_add_up_after_flush_and_too_heavy_drops_the_old_value() {
    let e = weighted(10, 1, 1);
    e.insert(1, 3);
    e.insert(2, 3);
    e.insert(3, 0);
    e.flush();
    assert_eq!((e.len(), e.weighted_size()), (3, 6));
    e.insert(1, 11); // heavier than the capacity: not stored, the old value dropped
    assert_eq!(e.get(&1), None);
    e.flush();
    assert_eq!((e.len(), e.weighted_size()), (2, 3));
    e.insert(2, 10); // exactly the capacity
    e.flush();
    assert_eq!((e.get(&2), e.weighted_size()), (Some(10), 10));
    e.remove(&2);
    e.flush();
    let s = e.stats();
    assert_eq!((s.weight, e.weighted_size(), s.entries), (0, 0, e.len()), "{s:?}");
}

/// Heavy entries that fit together are all kept, however the shards split the capacity.
#[test]
fn heavy_entries_that_fit_are_kept_in_any_number_of_shards() {
    for (shards, workers) in [(1, 1), (4, 1), (4, 3), (16, 2), (64, 3)] {
        let e = weighted(100, shards, workers);
        e.insert(1, 40);
        e.insert(2, 40);
        e.insert(3, 19);
        e.flush();
        let s = e.stats();
        assert_eq!((e.len(), s.weight, s.evictions), (3, 99, 0), "{shards}/{workers}: {s:?}");
    }
}

/// With a weigher, a store the policy then refuses evicts no unrelated resident entry. 1 and
/// 2 are hot, 3 (19) is cold; 4 (60) comes in. The policy's order is 3, then 4 itself; 4
/// alone covers the excess, so 3 must stay (session 24's finding: it was evicted too, and the
/// engine ended at 80 of 100 without it; fixed in session 25 by setting victims aside until
/// the excess is covered).
#[test]
fn a_store_that_is_itself_evicted_evicts_nothing_else() {
    let e = weighted(100, 1, 1);
    e.insert(1, 40);
    e.insert(2, 40);
    e.flush();
    for _ in 0..3 {
        assert_eq!((e.get(&1), e.get(&2)), (Some(40), Some(40)));
    }
    e.insert(3, 19);
    e.flush();
    e.insert(4, 60);
    e.flush();
    let kept: Vec<u64> = (1..=4).filter(|k| e.get(k).is_some()).collect();
    assert_eq!(kept, [1, 2, 3], "weight {}", e.weighted_size());
    assert_eq!(e.stats().evictions, 1);
}

/// The same without reads, over shard and worker counts where 4 may share a shard with any of
/// the others: whatever the policy chose, no evicted entry would still fit beside what stayed
/// (session 24 saw ~30% of such runs lose one).
#[test]
fn no_victim_is_evicted_that_would_still_fit() {
    let weights = [40u64, 40, 19, 60];
    for round in 0..40 {
        let (shards, workers) = (1 + round % 16, 1 + round % 2);
        let e = weighted(100, shards, workers);
        for (k, &w) in weights.iter().enumerate().take(3) {
            e.insert(k as u64 + 1000 * round as u64, w);
        }
        e.flush();
        e.insert(3 + 1000 * round as u64, 60);
        e.flush();
        let total = e.weighted_size();
        for (k, &w) in weights.iter().enumerate() {
            let key = k as u64 + 1000 * round as u64;
            if e.get(&key).is_none() {
                assert!(total + w > 100, "{shards}/{workers}: {key} ({w}) evicted at {total}");
            }
        }
    }
}

#[test]
fn stats_are_exact_after_flush_in_a_simple_sequence() {
    let (e, clock) = manual_engine::<u64, u64>(100);
    e.insert(1, 1);
    e.insert(2, 2);
    e.insert_with_ttl(3, 3, Duration::from_secs(1));
    assert_eq!(e.get(&1), Some(1)); // hit (pending)
    e.flush();
    assert_eq!((e.get(&2), e.get(&9)), (Some(2), None)); // hit, miss
    assert!(e.contains_key(&1)); // hit
    assert_eq!(e.get_map(&2, |v| *v), Some(2)); // hit
    assert_eq!(e.get_or_insert_with(4, || 4), 4); // miss, stored
    assert_eq!(e.get_or_insert_with(4, || 0), 4); // hit
    e.insert(1, 10); // in place
    e.remove(&2);
    clock.advance(Duration::from_secs(1));
    assert_eq!(e.get(&3), None); // miss (expired)
    e.run_maintenance();
    let s = e.stats();
    assert_eq!((s.hits, s.misses, s.single_flight_waits), (5, 3, 0), "{s:?}");
    assert_eq!((s.inserts, s.evictions, s.expirations), (5, 0, 1), "{s:?}");
    assert_eq!((s.entries, s.weight, e.len()), (2, 2, 2), "{s:?}");
}

/// Every lookup counts once as a hit, a miss or a wait, under concurrent computations,
/// stores, removes, deadlines and retirements (no computation fails here).
#[test]
fn lookups_add_up_to_hits_misses_and_waits() {
    for cap in [0u64, 8, 1000] {
        let e: Engine<u64, u64> =
            Engine::builder().max_capacity(cap).shards(2).workers(2).build().unwrap();
        let (calls, g) = (AtomicUsize::new(0), std::sync::Mutex::new(e.new_generation()));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (e, calls, g) = (&e, &calls, &g);
                s.spawn(move || {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for i in 0..5_000u64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let k = x % 16;
                        let gens = InsertOptions::new().generations(*g.lock().unwrap(), None);
                        let ttl = InsertOptions::new().ttl(Duration::from_micros(x % 50));
                        let slow = || (0..x % 200).fold(k, |a, _| std::hint::black_box(a));
                        let op = (x >> 20) % 11;
                        calls.fetch_add(usize::from(op < 8), Ordering::Relaxed);
                        match op {
                            0 => drop(e.get(&k)),
                            1 => drop(e.contains_key(&k)),
                            2 => drop(e.get_map(&k, |v| *v)),
                            3..=5 => drop(e.get_or_insert_with(k, slow)),
                            6 => drop(e.get_or_insert_with_options(k, ttl, slow)),
                            7 => drop(e.get_or_insert_with_options(k, gens, slow)),
                            8 => e.insert(k, k),
                            9 => e.remove(&k),
                            _ if i % 50 == 0 => e.retire(std::mem::replace(
                                &mut *g.lock().unwrap(),
                                e.new_generation(),
                            )),
                            _ => {}
                        }
                    }
                });
            }
        });
        let s = e.stats();
        assert_eq!(
            s.hits + s.misses + s.single_flight_waits,
            calls.into_inner() as u64,
            "{cap}: {s:?}"
        );
        e.flush();
        assert!(e.len() <= cap && e.validate().is_ok(), "{cap}: {:?}", e.stats());
    }
}

#[test]
fn clones_of_a_hit_a_miss_and_a_store() {
    let (e, _clock) = manual_engine::<u64, Counted>(100);
    let c = Arc::new(AtomicUsize::new(0));
    let delta = |f: &dyn Fn()| {
        let before = c.load(Ordering::SeqCst);
        f();
        c.load(Ordering::SeqCst) - before
    };
    assert_eq!(delta(&|| e.insert(1, Counted(1, c.clone()))), 0, "insert");
    assert_eq!(delta(&|| assert_eq!(e.get(&1).map(|v| v.0), Some(1))), 1, "pending hit");
    e.flush();
    assert_eq!(delta(&|| assert_eq!(e.get(&1).map(|v| v.0), Some(1))), 1, "resident hit");
    assert_eq!(delta(&|| assert_eq!(e.get_map(&1, |v| v.0), Some(1))), 0, "get_map");
    let hit = delta(&|| assert_eq!(e.get_or_insert_with(1, || unreachable!()).0, 1));
    assert_eq!(hit, 1, "a hit through get_or_insert_with");
    let miss = delta(&|| assert_eq!(e.get_or_insert_with(2, || Counted(2, c.clone())).0, 2));
    assert_eq!(miss, 1, "a miss nobody waits for: one clone, for the store");
    let opts = InsertOptions::new().ttl(Duration::ZERO);
    assert_eq!(delta(&|| drop(e.get_or_insert_with_options(3, opts, || Counted(3, c.clone())))), 0);
    let failed: &dyn Fn() = &|| {
        let r = e.get_or_try_insert_with_ref(
            &4,
            InsertOptions::new(),
            |k| *k,
            || Err::<Counted, _>(()),
        );
        assert!(r.is_err());
    };
    assert_eq!(delta(failed), 0);
}

/// Clones with callers waiting: one for the store (none with a zero TTL), one for the
/// waiters, and one by each waiter (documented; the last waiter could take the value).
#[test]
fn a_miss_with_waiters_clones_for_the_store_for_them_and_each() {
    const WAITERS: usize = 4;
    for (ttl, store) in [(Duration::MAX, 1), (Duration::ZERO, 0)] {
        let (e, _clock) = manual_engine::<u64, Counted>(100);
        let (clones, gate) = (Arc::new(AtomicUsize::new(0)), Gate::new());
        let opts = InsertOptions::new().ttl(ttl);
        let leader = {
            let (e, gate, c) = (e.clone(), gate.clone(), clones.clone());
            std::thread::spawn(move || {
                let compute = || {
                    gate.enter_and_wait();
                    Counted(1, c)
                };
                e.get_or_insert_with_options(1, opts, compute).0
            })
        };
        gate.wait_entered();
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || {
                    e.get_or_insert_with_options(1, opts, || unreachable!()).0
                })
            })
            .collect();
        wait_until("waiters joined", || e.stats().single_flight_waits == WAITERS as u64);
        gate.open();
        assert_eq!(leader.join().unwrap(), 1);
        assert!(waiters.into_iter().all(|w| w.join().unwrap() == 1));
        assert_eq!(clones.load(Ordering::SeqCst), store + 1 + WAITERS, "{ttl:?}");
        assert_eq!(e.get(&1).is_some(), store == 1);
    }
}

/// `contains_key` answers yes or no without cloning the value (found by this review: it was
/// `get(key).is_some()`, a deep copy for an expensive `Clone`; failed before).
#[test]
fn contains_key_does_not_clone_the_value() {
    let (e, _clock) = manual_engine::<u64, Counted>(100);
    let c = Arc::new(AtomicUsize::new(0));
    e.insert(1, Counted(1, c.clone()));
    e.flush();
    assert!(e.contains_key(&1));
    assert_eq!(c.load(Ordering::SeqCst), 0, "contains_key cloned the value");
}

/// A store from `get_map`'s `read` works on a value resident in the shard's table (run under
/// its read lock), and panics with a message naming the case on a value still being handed
/// to the worker (run under the pending table's lock). Found by this review: the crate docs
/// promised the first case only and the message named neither `get_map` nor the pending
/// value; both say so now (the behaviour is unchanged: a store there would wait for the lock
/// its caller holds).
#[test]
fn a_store_from_get_maps_read_works_resident_and_panics_pending() {
    let (e, _clock) =
        manual_engine_with::<u64, u64>(Engine::builder().max_capacity(100_000).shards(1));
    e.insert(1, 1);
    e.flush();
    assert_eq!(e.get_map(&1, |_| e.insert(2, 2)), Some(()), "resident: works");
    e.insert(3, 3); // pending: one store of a new key does not wake the worker
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        e.get_map(&3, |_| e.insert(4, 4))
    }));
    let msg = common::panic_message(&*r.expect_err("pending: the store panics"));
    assert!(
        msg.starts_with("memokit:")
            && msg.contains("`get_map`'s `read`")
            && msg.contains("pending"),
        "the message names the case: {msg}"
    );
    e.flush();
    assert_eq!((e.get(&2), e.get(&3), e.get(&4)), (Some(2), Some(3), None));
    e.validate().unwrap();
}
