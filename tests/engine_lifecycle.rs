//! Lifecycle: dropping the last handle or `shutdown()` stops and joins every worker; after
//! shutdown the engine answers without storing and never hangs; `flush()` and `clear()`.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{manual_engine, no_hang, Gate};
use memokit_engine::{Engine, InsertOptions, ManualClock};

const _: () = {
    const fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<Engine<u64, u64>>();
    send_sync_clone::<Engine<String, Arc<Vec<u8>>>>();
};

/// Runs [`worker_threads_child`] alone in a child process, so that no other test's threads
/// disturb the thread count of the process.
#[cfg(target_os = "linux")]
#[test]
fn drop_and_shutdown_join_every_worker() {
    common::run_child("worker_threads_child");
}

/// Waits until the process is back to `n` threads. An exited thread can stay listed in
/// /proc for a moment after `join` returns, so this waits for the condition; a worker that
/// was never joined keeps it false and fails the test.
#[cfg(target_os = "linux")]
fn back_to(n: usize, what: &str) {
    common::wait_until(what, || common::thread_count() == n);
}

/// A value holding a handle to the engine that stores it.
#[cfg(target_os = "linux")]
#[derive(Clone)]
struct Holder {
    _engine: Arc<parking_lot::Mutex<Option<Engine<u64, Holder>>>>,
}

/// The body of [`drop_and_shutdown_join_every_worker`]; only meaningful alone in a process.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by drop_and_shutdown_join_every_worker"]
fn worker_threads_child() {
    let before = common::thread_count();

    // Real clock, several workers; a clone keeps the workers alive, the last drop joins them.
    let e: Engine<u64, u64> = Engine::builder().shards(8).workers(3).build().unwrap();
    e.insert_with_ttl(1, 1, Duration::from_secs(60));
    e.flush();
    assert_eq!(e.get(&1), Some(1));
    let during = common::thread_count();
    assert!(during >= before + 3, "3 workers expected: {before} threads before, {during} after");
    let clone = e.clone();
    drop(e);
    clone.insert(2, 2);
    clone.flush();
    assert_eq!(clone.get(&2), Some(2), "a remaining clone still works");
    assert_eq!(common::thread_count(), during, "dropping a clone stops nothing");
    drop(clone);
    back_to(before, "every worker joined after the last handle was dropped");

    // shutdown() joins while handles are still alive.
    let e: Engine<u64, u64> = Engine::builder().workers(2).build().unwrap();
    e.insert(1, 1);
    e.flush();
    e.shutdown();
    back_to(before, "every worker joined after shutdown()");
    drop(e);
    back_to(before, "drop after shutdown");

    // Manual clock; last handle dropped on another thread; pending commands at drop time.
    let (e, _clock) = manual_engine::<u64, u64>(1000);
    for i in 0..1000 {
        e.insert(i, i);
    }
    std::thread::spawn(move || drop(e)).join().unwrap();
    back_to(before, "every worker joined after a drop on another thread");

    // The last handle is dropped by a worker: it sits in a stored value that a remove
    // makes the worker drop. No deadlock (a worker cannot join itself), every thread exits.
    {
        let e = Engine::<u64, Holder>::builder().workers(2).build().unwrap();
        e.insert(1, Holder { _engine: Arc::new(parking_lot::Mutex::new(Some(e.clone()))) });
        e.flush();
        e.remove(&1);
        drop(e); // the value in the worker's hands now holds the only handle
    }
    back_to(before, "every thread exited after a worker dropped the last handle");

    // Many engines come and go.
    for i in 0..20 {
        let e: Engine<u64, u64> = Engine::builder().workers(1 + i % 3).build().unwrap();
        e.insert(i as u64, 0);
    }
    back_to(before, "after 20 engines were built and dropped");
}

#[test]
fn after_shutdown_nothing_is_stored_and_nothing_hangs() {
    let (e, clock) = manual_engine::<u64, u64>(1000);
    let g = e.new_generation();
    for i in 0..10 {
        e.insert(i, i);
    }
    e.flush();
    let other = e.clone();
    no_hang("shutdown", {
        let e = e.clone();
        move || e.shutdown()
    });
    no_hang("calls after shutdown", move || {
        for i in 0..10 {
            assert_eq!(other.get(&i), None, "get after shutdown misses");
        }
        other.insert(20, 20);
        other.insert_with_options(21, 21, InsertOptions::new().generations(g, None));
        assert_eq!(other.get(&20), None, "inserts after shutdown are dropped");
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            let v = other.get_or_insert_with(30, || {
                calls.fetch_add(1, Ordering::SeqCst);
                300
            });
            assert_eq!(v, 300);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "computes without storing");
        let r: Result<u64, ()> =
            other.get_or_try_insert_with_ref(&31, InsertOptions::new(), |k| *k, || Ok(310));
        assert_eq!(r, Ok(310));
        assert!(!other.contains_key(&31));
        other.remove(&1);
        other.retire(g);
        let _ = other.new_generation();
        other.flush();
        other.run_maintenance();
        other.clear();
        other.shutdown();
        let _ = (other.stats(), other.len(), other.is_empty(), other.weighted_size());
    });
    clock.advance(Duration::from_secs(10));
    no_hang("drop after shutdown", move || drop(e));
}

/// shutdown() does not wait for a computation in flight; its callers still get the value.
#[test]
fn shutdown_does_not_wait_for_computations() {
    let (e, _clock) = manual_engine::<u64, u64>(1000);
    let gate = Gate::new();
    let leader = {
        let (e, gate) = (e.clone(), gate.clone());
        std::thread::spawn(move || {
            e.get_or_insert_with(1, || {
                gate.enter_and_wait();
                11
            })
        })
    };
    gate.wait_entered();
    no_hang("shutdown with a computation in flight", {
        let e = e.clone();
        move || e.shutdown()
    });
    gate.open();
    assert_eq!(no_hang("the computation's caller", move || leader.join().unwrap()), 11);
    assert_eq!(e.get(&1), None);
}

#[test]
fn flush_returns_after_many_commands() {
    let (e, _clock) = manual_engine::<u64, u64>(100_000);
    let e2 = e.clone();
    no_hang("flush", move || {
        e2.flush();
        for i in 0..20_000u64 {
            e2.insert(i, i);
            if i % 3 == 0 {
                e2.remove(&(i / 2));
            }
        }
        e2.flush();
        e2.flush();
    });
    let expected = (0..20_000u64).filter(|&k| e.get(&k).is_some()).count() as u64;
    assert_eq!(e.len(), expected, "len exact after flush");
}

#[test]
fn clear_empties_everything() {
    let (e, clock) = manual_engine::<u64, u64>(100_000);
    let g = e.new_generation();
    for i in 0..3000u64 {
        match i % 3 {
            0 => e.insert(i, i),
            1 => e.insert_with_ttl(i, i, Duration::from_secs(5)),
            _ => e.insert_with_options(i, i, InsertOptions::new().generations(g, None)),
        }
    }
    // No flush: clear must also cover inserts still in the mailboxes.
    e.clear();
    assert_eq!(e.len(), 0);
    assert!(e.is_empty());
    assert_eq!(e.stats().entries, 0);
    assert_eq!(e.weighted_size(), 0);
    for i in 0..3000u64 {
        assert_eq!(e.get(&i), None, "key {i} after clear");
    }
    // Timers of cleared entries must not hit the entries inserted afterwards.
    e.insert(1, 100);
    clock.advance(Duration::from_secs(10));
    e.run_maintenance();
    assert_eq!(e.get(&1), Some(100));
    assert_eq!(e.len(), 1);
}

/// The documented default constructor works and joins on drop.
#[test]
fn engine_new_defaults() {
    let e: Engine<u64, u64> = Engine::new(100);
    e.insert(1, 1);
    assert_eq!(e.get(&1), Some(1));
    e.flush();
    assert_eq!(e.len(), 1);
    no_hang("drop of Engine::new", move || drop(e));
    let _ = ManualClock::new().now();
}

/// `shutdown()` while other threads are busy with the engine (including stores that fill the
/// pending table): every thread finishes, nothing panics, and a lookup that starts after
/// `shutdown()` returned misses.
#[test]
fn shutdown_under_load() {
    use std::sync::atomic::AtomicBool;
    let clock = ManualClock::new();
    let e: Engine<u64, u64> =
        Engine::builder().max_capacity(1_000).shards(2).workers(2).clock(clock).build().unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..3u64)
        .map(|t| {
            let (e, progress, stopped) = (e.clone(), progress.clone(), stopped.clone());
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let k = (i * 31 + t) % 5_000;
                    let after_shutdown = stopped.load(Ordering::SeqCst);
                    match i % 4 {
                        0 | 1 => e.insert(k, k),
                        2 => assert_eq!(e.get_or_insert_with(k, || k), k),
                        _ => {
                            let got = e.get(&k);
                            assert!(got.is_none() || got == Some(k));
                            assert!(!after_shutdown || got.is_none(), "hit after shutdown");
                        }
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    common::wait_until("the threads made progress", || progress.load(Ordering::Relaxed) > 3000);
    let e2 = e.clone();
    no_hang("shutdown under load", move || e2.shutdown());
    stopped.store(true, Ordering::SeqCst);
    no_hang("threads using the engine during shutdown", move || {
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(e.get(&1), None);
}
