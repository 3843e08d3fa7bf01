//! Review s23d: commit d66df8c, a second `shutdown` while a first one is under way.
//!
//! The change: the first shutdown counts the keys and values it drops as it empties the shards
//! in a `UserDrops` session (`inner.first_shutdown`); a later caller waits for its end with
//! `wait_for_end()`, i.e. until it has finished or until it has stayed on one value of that
//! session for `STUCK_PATIENCE` (a second). Then that caller empties the shards itself
//! (`empty_shards(shared, None)`, dropping what it takes on its own thread) and returns.
//! Three tests failed against it (in `engine_rev_s23d.rs`: the second caller dropped values
//! whose `Drop` waits for its own lock, and hung; keys of detached computations were dropped
//! without moving the session on; the first's wait for a shard's lock counted as a stuck
//! `Drop`). Since then the second takes what is left out of the shards and leaves it to the
//! first to drop, and the first's session is open only while it drops.
//!
//! Model (docs of `Engine::shutdown`, `engine/src/engine/admin.rs`, and the table in
//! `engine/src/engine/lifecycle.rs`):
//! - after any `shutdown` call has returned, lookups miss, inserts are dropped and
//!   `get_or_insert_with` computes without storing;
//! - a call made while another is under way returns once that one has finished, or once that
//!   one has stayed in ONE key's or value's `Drop` for a second (that `Drop` may wait for a
//!   lock of the caller's); so a first that is only slow (quick `Drop`s, or anything that is
//!   not a `Drop`) is waited for, and every key and value it drops is dropped when the later
//!   call returns;
//! - the later call returns at all: the lock the stuck `Drop` waits for is held by its
//!   caller, so it must not wait for that lock either;
//! - every key and value is dropped exactly once, whoever drops it.
//!
//! Every test runs under [`no_hang`]; a test that needs the second call to give up waits for
//! the engine's patience (a second), so the file takes a few seconds. Sleeps appear only
//! inside user code (a `Drop` or a read made slow), never in place of a condition. A test that
//! expects a call to return waits for it up to [`RETURN_LIMIT`], then frees every lock so that
//! the threads end, and only then asserts (a failure leaves no thread blocked behind).

mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::user_locks::{engine_of, UserLock, RETURN_LIMIT};
use common::{no_hang, wait_until, wait_until_or, Gate};
use memokit_engine::Engine;

// ---------------------------------------------------------------------------------------------
// 1. Every value's Drop needs the lock the second caller holds (a connection pool).
// ---------------------------------------------------------------------------------------------

/// A connection pool: giving a connection back takes the pool's lock.
#[derive(Default)]
struct Pool {
    lock: UserLock,
    armed: AtomicBool,
    entered: AtomicUsize,
    given_back: AtomicUsize,
    /// The threads the `Drop`s that began ran on.
    entered_on: Mutex<Vec<std::thread::ThreadId>>,
}

/// A pooled connection: its `Drop`, when armed, gives it back under the pool's lock.
#[derive(Clone)]
struct Conn(Arc<Pool>);

impl Drop for Conn {
    fn drop(&mut self) {
        let pool = &self.0;
        if !pool.armed.load(Ordering::SeqCst) {
            return;
        }
        pool.entered_on.lock().unwrap_or_else(|p| p.into_inner()).push(std::thread::current().id());
        pool.entered.fetch_add(1, Ordering::SeqCst);
        pool.lock.lock();
        pool.lock.unlock();
        pool.given_back.fetch_add(1, Ordering::SeqCst);
    }
}

/// Model: the motivating case of the change is a `Drop` that waits for a lock of the user's
/// held by the second caller (a pool's lock). Such a `Drop` is the same for every value of the
/// type: every connection goes back to the pool. The second call must return (and then lets
/// go of the pool's lock); every connection is given back exactly once in the end.
///
/// Fails on d66df8c: after a second the second call empties the shards *on its own thread*
/// (`lifecycle::shutdown` -> `empty_shards(shared, None)` -> `worker::clear` -> `drop_each`),
/// so the next connection's `Drop` waits there for the pool's lock that this very thread holds:
/// it never returns. (`clear` avoids exactly this by handing what it took to the worker,
/// `worker/clear.rs`: "so that no user `Drop` runs on the caller (it may need the lock the
/// caller holds)".)
#[test]
fn a_second_shutdown_holding_the_pool_lock_that_every_value_needs_returns() {
    no_hang("a second shutdown holding a lock every value's Drop needs", || {
        let pool = Arc::new(Pool::default());
        let engine: Engine<u64, Conn> = engine_of(4);
        for k in 0..16 {
            engine.insert(k, Conn(pool.clone()));
        }
        engine.flush();
        assert_eq!(engine.len(), 16);
        pool.armed.store(true, Ordering::SeqCst);
        let (locked, go, returned) =
            (Arc::new(AtomicBool::new(false)), Gate::new(), Arc::new(AtomicBool::new(false)));
        // The second caller: takes the pool's lock, then (once the first is stuck) shuts the
        // engine down, and lets the lock go once that returns.
        let second = {
            let (engine, pool, locked, go, returned) =
                (engine.clone(), pool.clone(), locked.clone(), go.clone(), returned.clone());
            std::thread::spawn(move || {
                pool.lock.lock();
                locked.store(true, Ordering::SeqCst);
                go.enter_and_wait();
                engine.shutdown();
                let found = (0..16).filter(|k| engine.get_map(k, |_| ()).is_some()).count();
                returned.store(true, Ordering::SeqCst);
                pool.lock.unlock();
                found
            })
        };
        wait_until("the second caller holds the pool's lock", || locked.load(Ordering::SeqCst));
        let first = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.shutdown())
        };
        wait_until("the first shutdown gives a connection back", || {
            pool.entered.load(Ordering::SeqCst) >= 1
        });
        go.open();
        let in_time = wait_until_or(RETURN_LIMIT, || returned.load(Ordering::SeqCst));
        let entered_by_then = pool.entered.load(Ordering::SeqCst);
        let second_id = second.thread().id();
        let on_second = pool.entered_on.lock().expect("entered_on").contains(&second_id);
        if !in_time {
            // Free whoever waits for the pool, so that every thread ends.
            pool.lock.unlock();
        }
        let found = second.join().expect("the second caller");
        first.join().expect("the first shutdown");
        assert!(
            in_time,
            "the second shutdown did not return within {RETURN_LIMIT:?}: after giving up on \
             the first it drops the values left on its own thread, and {entered_by_then} \
             connections' Drops (the first's included; one on the second caller's thread: \
             {on_second}) wait for the pool lock that thread holds"
        );
        assert_eq!(found, 0, "lookups after the second shutdown returned found values");
        assert_eq!(pool.given_back.load(Ordering::SeqCst), 16, "every connection given back");
    });
}

// ---------------------------------------------------------------------------------------------
// 2. A first that is slow, not stuck: the second must wait for it.
// ---------------------------------------------------------------------------------------------

/// Keys whose `Drop`, when armed, takes `delay` (slow, never stuck) and is counted.
#[derive(Default)]
struct SlowProbe {
    armed: AtomicBool,
    delay_ms: AtomicUsize,
    dropped: AtomicUsize,
}

impl SlowProbe {
    fn on_drop(&self) {
        if self.armed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst) as u64));
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A key hashed and compared by `id`, whose `Drop` reports to a [`SlowProbe`].
struct SlowKey {
    id: u64,
    probe: Option<Arc<SlowProbe>>,
}

impl Hash for SlowKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
    }
}

impl PartialEq for SlowKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for SlowKey {}

impl Drop for SlowKey {
    fn drop(&mut self) {
        if let Some(p) = &self.probe {
            p.on_drop();
        }
    }
}

/// A value whose `Drop` reports to a [`SlowProbe`].
#[derive(Clone)]
struct SlowVal(Arc<SlowProbe>);

impl Drop for SlowVal {
    fn drop(&mut self) {
        self.0.on_drop();
    }
}

/// Model: a first shutdown that drops many values, each quickly (120 ms, well under the
/// patience) but for longer than a second in all, is waited for: when the second call
/// returns, every value has been dropped. (Regression guard of the counting in
/// `empty_shards`: passes.)
#[test]
fn a_second_shutdown_waits_for_many_quick_value_drops_lasting_over_a_second() {
    no_hang("a second shutdown while the first drops 12 values of 120 ms", || {
        let probe = Arc::new(SlowProbe::default());
        probe.delay_ms.store(120, Ordering::SeqCst);
        let engine: Engine<u64, SlowVal> = engine_of(2);
        for k in 0..12 {
            engine.insert(k, SlowVal(probe.clone()));
        }
        engine.flush();
        probe.armed.store(true, Ordering::SeqCst);
        let first = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.shutdown())
        };
        wait_until("the first shutdown drops a value", || {
            probe.dropped.load(Ordering::SeqCst) >= 1
        });
        let (second, p) = (engine.clone(), probe.clone());
        let dropped = no_hang("the second shutdown", move || {
            second.shutdown();
            p.dropped.load(Ordering::SeqCst)
        });
        first.join().expect("the first shutdown");
        assert_eq!(dropped, 12, "the second shutdown returned before the first had finished");
    });
}

/// Model: the same with the keys of running computations, which the first shutdown detaches
/// and drops as it empties each shard (`flight::drop_detached`): 20 keys of 100 ms each, two
/// seconds in all but no `Drop` near a second. The second call must return only once the first
/// has dropped them all.
///
/// Fails on d66df8c: `empty_shards` counts a step of its session (`next`) only ahead of the
/// keys and values of the shard (`worker::clear(shared, cell, next)`); the keys of the
/// detached computations are dropped by `crate::flight::drop_detached(flights)`
/// (`engine/src/engine/lifecycle.rs`, `empty_shards`), i.e. `drop_outside_now`, without
/// `next`. To the second caller the whole run looks like one `Drop` that has lasted a second:
/// it gives up, finds nothing left, and returns while the first is still dropping.
#[test]
fn a_second_shutdown_waits_for_a_first_dropping_many_keys_of_detached_computations() {
    no_hang("a second shutdown while the first drops 20 computation keys", || {
        const N: u64 = 20;
        let probe = Arc::new(SlowProbe::default());
        probe.delay_ms.store(100, Ordering::SeqCst);
        let engine: Engine<SlowKey, u64> = engine_of(1);
        let (gate, computing) = (Gate::new(), Arc::new(AtomicUsize::new(0)));
        let leaders: Vec<_> = (0..N)
            .map(|id| {
                let (engine, probe, gate, computing) =
                    (engine.clone(), probe.clone(), gate.clone(), computing.clone());
                std::thread::spawn(move || {
                    engine.get_or_insert_with(SlowKey { id, probe: Some(probe) }, || {
                        computing.fetch_add(1, Ordering::SeqCst);
                        gate.enter_and_wait();
                        id
                    })
                })
            })
            .collect();
        wait_until("every leader computes, its key in the shard's table of flights", || {
            computing.load(Ordering::SeqCst) == N as usize
        });
        probe.armed.store(true, Ordering::SeqCst);
        let first = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.shutdown())
        };
        wait_until("the first shutdown drops a computation's key", || {
            probe.dropped.load(Ordering::SeqCst) >= 1
        });
        let (second, p) = (engine.clone(), probe.clone());
        let (dropped, took) = no_hang("the second shutdown", move || {
            let start = Instant::now();
            second.shutdown();
            (p.dropped.load(Ordering::SeqCst), start.elapsed())
        });
        gate.open();
        for (id, l) in leaders.into_iter().enumerate() {
            assert_eq!(l.join().expect("a leader"), id as u64, "each leader gets its own value");
        }
        first.join().expect("the first shutdown");
        probe.armed.store(false, Ordering::SeqCst);
        assert!(
            (0..N).all(|id| engine.get(&SlowKey { id, probe: None }).is_none()),
            "a detached computation's value was stored after shutdown"
        );
        assert_eq!(
            dropped, N as usize,
            "the second shutdown returned after {took:?} with {dropped} of the first's {N} key \
             drops done (each 100 ms): it took the uncounted drops of detached computations for \
             one Drop stuck for a second"
        );
    });
}

/// Model: a first shutdown that waits for a shard's write lock while a lookup's `read`
/// (`get_map`, user code under the read lock) takes two seconds is slow, not in any `Drop`:
/// the second call must wait for it, and when it returns every value has been dropped.
///
/// Fails on d66df8c: the first's session begins before its first lock
/// (`UserDrops::enter_here` at the top of `empty_shards`), so its wait for the write lock
/// (`worker::clear` -> `take_all` -> `write_lock`) counts as one `Drop` that lasts: the second
/// gives up after a second, queues for the same write lock behind the first, finds the shard
/// empty and returns while the first is still dropping what it took (10 values, 50 ms each).
/// (The workers' own wait for a write lock is deliberately *not* counted as a session of
/// `Drop`s: `worker::write_lock`'s docs, the revert of 259be44, `tests/engine_rev_s22c.rs`.)
#[test]
fn a_second_shutdown_waits_for_a_first_queued_behind_a_slow_lookup() {
    no_hang("a second shutdown while the first waits for a slow lookup's lock", || {
        let probe = Arc::new(SlowProbe::default());
        probe.delay_ms.store(50, Ordering::SeqCst);
        let engine: Engine<u64, SlowVal> = engine_of(1);
        for k in 0..10 {
            engine.insert(k, SlowVal(probe.clone()));
        }
        engine.flush();
        probe.armed.store(true, Ordering::SeqCst);
        let reading = Arc::new(AtomicBool::new(false));
        let reader = {
            let (engine, reading) = (engine.clone(), reading.clone());
            std::thread::spawn(move || {
                engine.get_map(&0, |_| {
                    reading.store(true, Ordering::SeqCst);
                    // A slow read, under the shard's read lock: slow, not stuck, not a Drop.
                    std::thread::sleep(Duration::from_secs(2));
                })
            })
        };
        wait_until("the lookup reads under the read lock", || reading.load(Ordering::SeqCst));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let first = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                tid_tx.send(common::this_thread_id()).expect("send the thread id");
                engine.shutdown()
            })
        };
        // Blocked for good: queued for the shard's write lock behind the lookup (so it has
        // begun, and this thread's call below is the second). No store or lookup can show
        // it: they would queue behind it too.
        let tid = tid_rx.recv().expect("the first's thread id");
        common::wait_asleep("the first shutdown is queued for the write lock", &tid);
        let (second, p) = (engine.clone(), probe.clone());
        let dropped = no_hang("the second shutdown", move || {
            second.shutdown();
            p.dropped.load(Ordering::SeqCst)
        });
        reader.join().expect("the reader");
        first.join().expect("the first shutdown");
        assert_eq!(engine.get_map(&0, |_| ()), None, "a lookup after shutdown misses");
        assert_eq!(
            dropped, 10,
            "the second shutdown returned with {dropped} of 10 values dropped: the first, \
             queued for the write lock behind a slow lookup (no Drop at all), was taken for \
             stuck in a Drop"
        );
    });
}
