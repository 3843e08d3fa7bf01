//! Review s18b of generations, expiry and lifecycle under concurrency (`engine/admin.rs`,
//! `engine.rs`): calls racing `shutdown`.
//!
//! The worker is held deterministically in a key's `Drop` waiting at a gate ([`Stalled`]),
//! and a thread is known to be blocked when Linux reports it asleep on many consecutive looks.

mod common;

use common::{
    manual_engine_with, no_hang, this_thread_id, wait_asleep, wait_asleep_or_done,
    HookedKey as Key, Stalled, STALL,
};
use memokit_engine::{Engine, InsertOptions};

type E = Engine<Key, u64>;

fn stall(e: &E) -> Stalled {
    common::stall(e, |h| h.map_or_else(|| Key::new(STALL), |h| Key::with_drop(STALL, h)), 0)
}

/// A second `shutdown` while a first is still joining the workers returns only once the
/// engine is shut down: afterwards lookups miss and nothing is resident or counted, as after
/// the first. It returned at once (the first had set the flag), and a lookup right after it
/// still found a value stored before: the first had not emptied the shards yet.
#[test]
fn a_second_shutdown_returns_once_the_engine_is_shut_down() {
    let (e, _clock) =
        manual_engine_with::<Key, u64>(Engine::builder().max_capacity(100).workers(1));
    let g = e.new_generation();
    e.insert_with_options(Key::new(1), 10, InsertOptions::new().generations(g, None));
    e.flush();
    let stalled = stall(&e);
    // The first shutdown: held joining the worker, which the gate holds in a `Drop`.
    let (tx, rx) = std::sync::mpsc::channel();
    let first = {
        let e = e.clone();
        std::thread::spawn(move || {
            tx.send(this_thread_id()).unwrap();
            e.shutdown();
        })
    };
    let tid = rx.recv().unwrap();
    wait_asleep("the first shutdown joining the stalled worker", &tid);
    let (tx, rx) = std::sync::mpsc::channel();
    let second = {
        let e = e.clone();
        std::thread::spawn(move || {
            tx.send(this_thread_id()).unwrap();
            e.shutdown();
            (e.get(&Key::new(1)), e.len(), e.generation_entries(g))
        })
    };
    // The second shutdown may only return once the first has finished: the worker is let go
    // once the second is blocked (or has returned, before the fix).
    let tid = rx.recv().unwrap();
    let blocked = wait_asleep_or_done("the second shutdown blocked", &tid, || second.is_finished());
    stalled.release();
    let seen = no_hang("the second shutdown", move || second.join().unwrap());
    no_hang("the first shutdown", move || first.join().unwrap());
    assert_eq!(
        seen,
        (None, 0, 0),
        "after shutdown returned (blocked until the first finished: {blocked})"
    );
}

/// Retirements (two threads retiring the same generations), stores under them, flushes and
/// maintenance from several threads, then shutdowns racing flushes: nothing hangs, and every
/// `flush` that returns while only retirements run beside it (the writers done) leaves the
/// engine within capacity.
#[test]
fn retirements_flushes_and_shutdowns_racing_never_hang() {
    no_hang("retire, flush and shutdown racing", || {
        for round in 0..20u64 {
            let e: Engine<u64, u64> =
                Engine::builder().max_capacity(64).shards(4).workers(2).build().unwrap();
            let gens: Vec<_> = (0..8).map(|_| e.new_generation()).collect();
            let writers: Vec<_> = (0..2u64)
                .map(|t| {
                    let (e, gens) = (e.clone(), gens.clone());
                    std::thread::spawn(move || {
                        for i in 0..400u64 {
                            let g = gens[(i % 8) as usize];
                            let opts = InsertOptions::new().generations(g, None);
                            e.insert_with_options(t * 10_000 + i, i, opts);
                            if i % 50 == 0 {
                                e.flush();
                            }
                        }
                    })
                })
                .collect();
            let retirers: Vec<_> = (0..2)
                .map(|_| {
                    let (e, gens) = (e.clone(), gens.clone());
                    std::thread::spawn(move || {
                        for &g in &gens {
                            e.retire(g);
                            e.run_maintenance();
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            e.flush();
            assert!(e.len() <= 64, "round {round}: {:?}", e.stats());
            for r in retirers {
                r.join().unwrap();
            }
            e.run_maintenance();
            assert_eq!(e.len(), 0, "round {round}: every generation retired: {:?}", e.stats());
            let flusher = {
                let e = e.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        e.flush();
                    }
                })
            };
            let other = {
                let e = e.clone();
                std::thread::spawn(move || e.shutdown())
            };
            e.shutdown();
            assert_eq!(e.len(), 0);
            other.join().unwrap();
            flusher.join().unwrap();
        }
    });
}

/// A value whose `Drop` shuts its own engine down again, run by `shutdown` itself as it
/// empties the shards (on the caller's thread, holding no lock): the inner call returns at
/// once, as it did before a second `shutdown` waited for the first. Waiting there, for the
/// very call that runs the `Drop`, hung.
#[test]
fn a_values_drop_that_shuts_the_engine_down_during_shutdown_returns() {
    use std::sync::{Arc, OnceLock};
    struct ShutsDown(Arc<OnceLock<Engine<u64, ShutsDown>>>);
    impl Clone for ShutsDown {
        fn clone(&self) -> Self {
            ShutsDown(self.0.clone())
        }
    }
    impl Drop for ShutsDown {
        fn drop(&mut self) {
            if let Some(e) = self.0.get() {
                e.shutdown();
            }
        }
    }
    no_hang("shutdown running a value's Drop that shuts down", || {
        let cell = Arc::new(OnceLock::new());
        let e: Engine<u64, ShutsDown> =
            Engine::builder().max_capacity(100).workers(1).build().unwrap();
        assert!(cell.set(e.clone()).is_ok());
        e.insert(1, ShutsDown(cell.clone()));
        e.flush();
        e.shutdown();
        assert_eq!(e.get(&1).map(|_| ()), None);
    });
}
