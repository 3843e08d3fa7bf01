//! Model-checked tests: the whole engine, its worker threads included, under
//! [shuttle](https://docs.rs/shuttle), which runs the threads one at a time and switches
//! between them at every lock, atomic, channel and spin operation of the engine
//! (`src/sync.rs`), exploring a different interleaving in each iteration. A thread that waits
//! forever fails the test as a deadlock.
//!
//! Run with `RUSTFLAGS="--cfg memokit_shuttle" cargo test -p memokit-engine --test shuttle`
//! (`.ci/run` does, in its own target directory); ordinary builds compile nothing here.
//! `MEMOKIT_SHUTTLE_ITERATIONS` sets the iterations per scheduler (default 1000).
//!
//! What each test checks, against which model:
//! - the caller-to-worker hand-over: a value is visible to its writer at once and to every
//!   lookup that starts after its store returned (read-your-writes), on any thread, while the
//!   worker applies batches; overwrites of one key are never seen out of order; a remove that
//!   starts after a store returned is never undone;
//! - single flight: one computation per key, however the callers interleave; a panicking
//!   computation wakes its waiters, which then compute for themselves;
//! - retirement: once `retire` returns, no lookup returns a value of that generation, even
//!   one whose computation was running during the retirement;
//! - eviction with several workers (the settle requests between them) and shutdown while
//!   callers store: never a wrong value, never over capacity after `flush`, never a hang.
#![cfg(memokit_shuttle)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use memokit_engine::{Engine, InsertOptions, ManualClock};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::sync::Arc;
use shuttle::thread;

fn iterations() -> usize {
    std::env::var("MEMOKIT_SHUTTLE_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

/// Runs `f` under shuttle's random scheduler and under PCT (which favours the few
/// preemptions that most bugs need; depth 3), both seeded so that a failure replays.
fn check(f: impl Fn() + Send + Sync + 'static) {
    let f = std::sync::Arc::new(f);
    let mut config = shuttle::Config::new();
    // The engine's debug-build frames (hashbrown, the worker loop) outgrow shuttle's default
    // coroutine stacks.
    config.stack_size = 1 << 20;
    let n = iterations();
    let g = f.clone();
    shuttle::Runner::new(RandomScheduler::new_from_seed(0x5eed, n), config.clone())
        .run(move || g());
    shuttle::Runner::new(PctScheduler::new_from_seed(0x5eed, 3, n), config).run(move || f());
}

fn engine(capacity: u64, shards: usize, workers: usize) -> Engine<u64, u64> {
    engine_and_clock(capacity, shards, workers).0
}

/// An engine on a manual clock (no timers: expiry and reclamation only when a test asks).
fn engine_and_clock(
    capacity: u64,
    shards: usize,
    workers: usize,
) -> (Engine<u64, u64>, ManualClock) {
    let clock = ManualClock::new();
    let e = Engine::builder()
        .max_capacity(capacity)
        .shards(shards)
        .workers(workers)
        .clock(clock.clone())
        .build()
        .expect("build");
    (e, clock)
}

/// Both outcomes of an [`observe`], counted over all the executions of one test.
#[derive(Default)]
struct Seen([std::sync::atomic::AtomicUsize; 2]);

impl Seen {
    /// Fails unless both outcomes occurred, so that no conditional assertion goes untested.
    fn assert_both(&self) {
        let [no, yes] = [0, 1].map(|i| self.0[i].load(std::sync::atomic::Ordering::SeqCst));
        assert!(no > 0 && yes > 0, "outcomes seen: {yes} finished, {no} not: widen the test");
    }
}

/// Whether the other thread has set `flag` (finished its part), read after giving the
/// scheduler a few chances to run it: without them the random scheduler almost never lets it
/// finish first, and the assertions that depend on it would go unchecked.
fn observe(flag: &AtomicUsize, seen: &Seen) -> bool {
    for _ in 0..4 {
        thread::yield_now();
    }
    let done = flag.load(Ordering::SeqCst) == 1;
    seen.0[usize::from(done)].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    done
}

#[test]
fn a_store_is_visible_to_every_later_lookup() {
    check(|| {
        let e = engine(100, 1, 1);
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
        let writer = {
            let e = e.clone();
            thread::spawn(move || {
                for v in 1..=3u64 {
                    // The first goes through the worker; later ones may replace in place.
                    e.insert(0, v);
                    assert_eq!(e.get(&0), Some(v));
                }
            })
        };
        let reader = {
            let e = e.clone();
            thread::spawn(move || {
                let mut last = 0;
                for _ in 0..4 {
                    if let Some(v) = e.get(&0) {
                        assert!(v >= last, "saw {v} after {last}");
                        last = v;
                    }
                }
            })
        };
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
    check(|| {
        // Under the model checker a shard holds at most 4 pending operations before storing
        // callers wait for its worker to drain it (down to 2): twelve stores from two threads
        // into one shard reach that wait, and a lost wake-up would be a deadlock here (the
        // real build also wakes every 50 ms, which would hide it).
        let e = engine(100, 1, 1);
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let e = e.clone();
                thread::spawn(move || {
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
                let e = e.clone();
                thread::spawn(move || {
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
        let remover = {
            let e = e.clone();
            thread::spawn(move || e.remove(&HookedKey::new(0)))
        };
        let writer = {
            let e = e.clone();
            thread::spawn(move || {
                for k in 1..=6u64 {
                    e.insert(HookedKey::new(k), k);
                }
            })
        };
        remover.join().unwrap();
        writer.join().unwrap();
        e.flush();
        assert_eq!(e.get(&HookedKey::new(100)), Some(1), "the hook's store");
        assert_eq!(e.len(), 7);
        e.validate().unwrap();
    });
}

#[test]
fn single_flight_computes_each_key_once() {
    check(|| {
        let e = engine(100, 1, 1);
        let computed = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (e, computed) = (e.clone(), computed.clone());
                thread::spawn(move || {
                    e.get_or_insert_with(7, || {
                        computed.fetch_add(1, Ordering::SeqCst);
                        70
                    })
                })
            })
            .collect();
        for c in callers {
            assert_eq!(c.join().unwrap(), 70);
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        assert_eq!(e.get(&7), Some(70));
        e.validate().unwrap();
    });
}

#[test]
fn a_panicking_computation_wakes_its_waiters() {
    check(|| {
        let e = engine(100, 1, 1);
        let failing = {
            let e = e.clone();
            thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| e.get_or_insert_with(7, || panic!("compute"))))
                    .is_err()
            })
        };
        let waiting = {
            let e = e.clone();
            thread::spawn(move || e.get_or_insert_with(7, || 70))
        };
        let panicked = failing.join().unwrap();
        assert_eq!(waiting.join().unwrap(), 70);
        // The panicking call either ran its computation or found 70.
        assert_eq!(e.get(&7), Some(70));
        let _ = panicked;
        e.validate().unwrap();
    });
}

/// Waits (yielding to the scheduler) until `flag` is set.
fn wait_for(flag: &AtomicUsize) {
    while flag.load(Ordering::SeqCst) == 0 {
        thread::yield_now();
    }
}

/// Spawns a caller computing key 7 (value 70) through single flight under `opts`; the returned
/// flag is set once its computation runs, which then yields twice before returning.
fn spawn_computation(
    e: &Engine<u64, u64>,
    opts: InsertOptions,
) -> (thread::JoinHandle<u64>, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let (e, flag) = (e.clone(), started.clone());
    let handle = thread::spawn(move || {
        e.get_or_insert_with_options(7, opts, || {
            flag.store(1, Ordering::SeqCst);
            thread::yield_now();
            thread::yield_now();
            70
        })
    });
    (handle, started)
}

#[test]
fn a_computation_running_when_its_key_is_removed_is_not_stored() {
    check(|| {
        let e = engine(100, 1, 1);
        let (computing, started) = spawn_computation(&e, InsertOptions::new());
        let removing = {
            let (e, started) = (e.clone(), started.clone());
            thread::spawn(move || {
                wait_for(&started);
                e.remove(&7);
                assert_eq!(e.get(&7), None, "the remover's own lookup");
            })
        };
        assert_eq!(computing.join().unwrap(), 70, "the computing caller gets its value");
        removing.join().unwrap();
        e.flush();
        assert_eq!(e.get(&7), None, "stored although removed while computing");
        e.validate().unwrap();
    });
}

#[test]
fn an_insert_supersedes_a_running_computation() {
    check(|| {
        let e = engine(100, 1, 1);
        let (computing, started) = spawn_computation(&e, InsertOptions::new());
        let inserting = {
            let (e, started) = (e.clone(), started.clone());
            thread::spawn(move || {
                wait_for(&started);
                e.insert(7, 700);
                assert_eq!(e.get(&7), Some(700), "the inserter's own lookup");
            })
        };
        assert_eq!(computing.join().unwrap(), 70);
        inserting.join().unwrap();
        e.flush();
        assert_eq!(e.get(&7), Some(700), "the computation's value was stored over the insert");
        e.validate().unwrap();
    });
}

#[test]
fn a_computation_is_never_stored_over_an_insert_it_raced() {
    check(|| {
        // No flag: the insert may land before the computation starts (then the computation
        // finds 700 and returns it, or runs and is superseded), or after its value (then 700
        // replaces it). Either way the insert, which ends before `flush`, is what remains.
        let e = engine(100, 1, 1);
        let computing = {
            let e = e.clone();
            thread::spawn(move || e.get_or_insert_with(7, || 70))
        };
        let inserting = {
            let e = e.clone();
            thread::spawn(move || e.insert(7, 700))
        };
        let got = computing.join().unwrap();
        assert!(got == 70 || got == 700, "{got}");
        inserting.join().unwrap();
        e.flush();
        assert_eq!(e.get(&7), Some(700), "a computation stored over a completed insert");
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
fn waiters_of_a_removed_computation_never_store_its_value() {
    check(|| {
        let e = engine(100, 1, 1);
        let (leader, started) = spawn_computation(&e, InsertOptions::new());
        let other = {
            let (e, started) = (e.clone(), started.clone());
            thread::spawn(move || {
                wait_for(&started);
                e.get_or_insert_with(7, || 71)
            })
        };
        let remover = {
            let (e, started) = (e.clone(), started.clone());
            thread::spawn(move || {
                wait_for(&started);
                e.remove(&7);
            })
        };
        assert_eq!(leader.join().unwrap(), 70);
        let got = other.join().unwrap();
        assert!(got == 70 || got == 71, "joined the running computation or computed its own");
        remover.join().unwrap();
        e.flush();
        // 70 was computed when the remove began: never stored; 71 may have been (after it).
        assert_ne!(e.get(&7), Some(70), "a removed computation's value was stored");
        e.validate().unwrap();
    });
}

#[test]
fn callers_after_a_retirement_never_join_its_computation() {
    check(|| {
        let e = engine(100, 1, 1);
        let g = e.new_generation();
        let (leader, started) = spawn_computation(&e, InsertOptions::new().generations(g, None));
        let late = {
            let (e, started) = (e.clone(), started.clone());
            thread::spawn(move || {
                wait_for(&started);
                e.retire(g);
                // Under the retired generation: computed here, never joined, never stored.
                let v = e.get_or_insert_with_options(
                    7,
                    InsertOptions::new().generations(g, None),
                    || 71,
                );
                assert_eq!(v, 71, "joined a computation of a retired generation");
                assert_eq!(e.get(&7), None);
            })
        };
        assert_eq!(leader.join().unwrap(), 70);
        late.join().unwrap();
        e.flush();
        assert_eq!(e.get(&7), None);
        e.validate().unwrap();
    });
}

#[test]
fn a_failed_computation_stores_nothing_and_its_waiters_retry() {
    check(|| {
        let e = engine(100, 1, 1);
        let failing = {
            let e = e.clone();
            thread::spawn(move || {
                e.get_or_try_insert_with_ref(&7, InsertOptions::new(), |k| *k, || Err::<u64, _>(()))
            })
        };
        let waiting = {
            let e = e.clone();
            thread::spawn(move || {
                e.get_or_try_insert_with_ref(&7, InsertOptions::new(), |k| *k, || Ok::<_, ()>(70))
            })
        };
        let failed = failing.join().unwrap();
        assert!(failed.is_err() || failed == Ok(70), "an error, or the other's value");
        assert_eq!(waiting.join().unwrap(), Ok(70), "a waiter retries after the error");
        assert_eq!(e.get(&7), Some(70));
        e.validate().unwrap();
    });
}

#[test]
fn an_expired_value_is_never_served_after_the_clock_passes_its_deadline() {
    let seen = std::sync::Arc::new(Seen::default());
    let outcomes = seen.clone();
    check(move || {
        let seen = outcomes.clone();
        let (e, clock) = engine_and_clock(100, 1, 1);
        let stored = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (e, stored) = (e.clone(), stored.clone());
            thread::spawn(move || {
                e.insert_with_ttl(1, 10, Duration::from_secs(1));
                stored.store(1, Ordering::SeqCst);
            })
        };
        let before = observe(&stored, &seen);
        clock.advance(Duration::from_secs(2));
        let seen = e.get(&1);
        if before {
            assert_eq!(seen, None, "served past its deadline");
        }
        writer.join().unwrap();
        e.run_maintenance();
        // Otherwise it may have been stored after the advance (deadline 3 s, still ahead).
        let after = e.get(&1);
        assert!(after.is_none() || (!before && after == Some(10)), "{after:?}");
        e.validate().unwrap();
    });
    seen.assert_both();
}

#[test]
fn clear_detaches_a_running_computation() {
    check(|| {
        let e = engine(100, 1, 1);
        let (computing, started) = spawn_computation(&e, InsertOptions::new());
        wait_for(&started);
        e.clear();
        assert_eq!(computing.join().unwrap(), 70);
        e.flush();
        assert_eq!(e.get(&7), None, "stored although cleared while computing");
        assert_eq!(e.len(), 0);
        e.validate().unwrap();
    });
}

#[test]
fn an_insert_that_cannot_be_kept_still_drops_the_previous_value() {
    check(|| {
        let e = engine(100, 1, 1);
        e.insert(1, 10);
        e.flush();
        let dropping = {
            let e = e.clone();
            thread::spawn(move || {
                // A zero TTL stores nothing; the resident value must go all the same.
                e.insert_with_ttl(1, 11, Duration::ZERO);
                assert_eq!(e.get(&1), None, "the previous value survived");
            })
        };
        let reading = {
            let e = e.clone();
            thread::spawn(move || {
                let v = e.get(&1);
                assert!(v.is_none() || v == Some(10), "{v:?}");
            })
        };
        dropping.join().unwrap();
        reading.join().unwrap();
        e.flush();
        assert_eq!(e.get(&1), None);
        assert_eq!(e.len(), 0);
        e.validate().unwrap();
    });
}

#[test]
fn nothing_of_a_retired_generation_is_returned() {
    check(|| {
        let e = engine(100, 1, 1);
        let g = e.new_generation();
        e.insert_with_options(1, 10, InsertOptions::new().generations(g, None));
        let computing = {
            let e = e.clone();
            thread::spawn(move || {
                e.get_or_insert_with_options(7, InsertOptions::new().generations(g, None), || 70)
            })
        };
        let retiring = {
            let e = e.clone();
            thread::spawn(move || {
                e.retire(g);
                assert_eq!(e.get(&1), None, "stored before the retirement");
                assert_eq!(e.get(&7), None, "computed during the retirement");
            })
        };
        assert_eq!(computing.join().unwrap(), 70, "the caller still gets its value");
        retiring.join().unwrap();
        e.run_maintenance();
        assert_eq!((e.get(&1), e.get(&7)), (None, None));
        assert_eq!(e.generation_entries(g), 0);
        e.validate().unwrap();
    });
}

#[test]
fn a_retirement_racing_stores_on_two_workers_leaves_nothing_behind() {
    check(|| {
        let e = engine(100, 2, 2);
        let g = e.new_generation();
        let storing = {
            let e = e.clone();
            thread::spawn(move || {
                for k in 0..3u64 {
                    e.insert_with_options(k, k, InsertOptions::new().generations(g, None));
                }
            })
        };
        let retiring = {
            let e = e.clone();
            thread::spawn(move || {
                e.retire(g);
                for k in 0..3u64 {
                    assert_eq!(e.get(&k), None, "key {k} of a retired generation");
                }
            })
        };
        storing.join().unwrap();
        retiring.join().unwrap();
        e.run_maintenance();
        assert_eq!(e.generation_entries(g), 0);
        assert_eq!(e.len(), 0, "entries of the retired generation left behind");
        e.validate().unwrap();
    });
}

#[test]
fn eviction_across_workers_stays_in_bounds() {
    check(|| {
        // Two shards on two workers: a worker over capacity may ask the other to settle.
        let e = engine(2, 2, 2);
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let e = e.clone();
                thread::spawn(move || {
                    for k in (0..3u64).map(|i| t * 100 + i) {
                        e.insert(k, k * 10);
                        if let Some(v) = e.get(&(t * 100)) {
                            assert_eq!(v, t * 1000, "a wrong value");
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        e.flush();
        assert!(e.len() <= 2, "{} entries after flush, capacity 2", e.len());
        for k in [0, 1, 2, 100, 101, 102] {
            assert!(e.get(&k).is_none_or(|v| v == k * 10));
        }
        e.validate().unwrap();
    });
}

#[test]
fn dead_entries_go_before_live_ones_across_workers() {
    check(|| {
        // Two workers; two expired entries, wherever they landed, are never reclaimed by a
        // timer (manual clock): a worker over capacity must reclaim its own and ask the other
        // worker to reclaim its, before any live entry is evicted, and `flush` waits for
        // those requests.
        let (e, clock) = engine_and_clock(4, 2, 2);
        for k in [1000, 1001] {
            e.insert_with_ttl(k, k, Duration::from_secs(1));
        }
        e.flush();
        clock.advance(Duration::from_secs(2));
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let e = e.clone();
                thread::spawn(move || {
                    for k in [t * 10, t * 10 + 1] {
                        e.insert(k, k);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        e.flush();
        for k in [0, 1, 10, 11] {
            assert_eq!(e.get(&k), Some(k), "live key {k} evicted while dead entries remained");
        }
        assert_eq!(e.len(), 4);
        e.validate().unwrap();
    });
}

#[test]
fn shutdown_while_callers_wait_for_one_computation_never_hangs() {
    check(|| {
        let e = engine(100, 1, 1);
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let e = e.clone();
                thread::spawn(move || e.get_or_insert_with(7, || 70))
            })
            .collect();
        e.shutdown();
        for c in callers {
            assert_eq!(c.join().unwrap(), 70);
        }
        assert_eq!(e.get(&7), None, "lookups after shutdown miss");
    });
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
        let reader = {
            let e = e.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    assert_eq!((e.get(&1), e.get(&2), e.get(&3)), (None, None, Some(30)));
                }
            })
        };
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
                let e = e.clone();
                thread::spawn(move || {
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
