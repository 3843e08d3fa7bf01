//! Storing a new value for a key that is already resident.
//!
//! A store of an untimed value for a resident, visible, untimed entry with the same
//! generations and weight replaces the value in place (the caller, under the shard's write
//! lock) instead of going through the worker. Every other store goes through the worker. These
//! tests pin down that the two paths agree: the latest store wins whichever path each store
//! took, a new deadline, new generations or a new weight are never lost, and the counters
//! count a replacement as an insert.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{manual_engine, manual_engine_with, no_hang, Gate};
use memokit_engine::{Engine, InsertOptions};

#[test]
fn an_untimed_store_after_a_pending_timed_store_wins() {
    let (e, clock) = manual_engine::<u64, u64>(100);
    e.insert(1, 10);
    e.flush();
    // Pending (a deadline goes through the worker); the resident entry is hidden meanwhile.
    e.insert_with_ttl(1, 20, Duration::from_secs(1));
    e.insert(1, 30);
    assert_eq!(e.get(&1), Some(30), "before the worker applies anything");
    e.flush();
    assert_eq!(e.get(&1), Some(30), "after the worker applied both stores");
    clock.advance(Duration::from_secs(5));
    e.run_maintenance();
    assert_eq!(e.get(&1), Some(30), "the last store had no deadline");
    e.validate().unwrap();
}

#[test]
fn a_store_with_a_deadline_replacing_an_untimed_value_expires() {
    let (e, clock) = manual_engine::<u64, u64>(100);
    e.insert(1, 10);
    e.flush();
    e.insert_with_ttl(1, 20, Duration::from_secs(1));
    assert_eq!(e.get(&1), Some(20));
    e.flush();
    clock.advance(Duration::from_secs(2));
    assert_eq!(e.get(&1), None, "the new deadline holds");
    e.validate().unwrap();
}

#[test]
fn an_untimed_store_replacing_a_timed_value_has_no_deadline() {
    let (e, clock) = manual_engine::<u64, u64>(100);
    e.insert_with_ttl(1, 10, Duration::from_secs(1));
    e.flush();
    e.insert(1, 20);
    e.flush();
    clock.advance(Duration::from_secs(5));
    e.run_maintenance();
    assert_eq!(e.get(&1), Some(20), "the old deadline is gone with the old value");
    e.validate().unwrap();
}

#[test]
fn a_replacement_under_other_generations_is_stored_under_them() {
    let (e, _clock) = manual_engine::<u64, u64>(100);
    let (g1, g2) = (e.new_generation(), e.new_generation());
    e.insert_with_options(1, 10, InsertOptions::new().generations(g1, None));
    e.insert_with_options(2, 20, InsertOptions::new().generations(g1, None));
    e.flush();
    e.insert_with_options(1, 11, InsertOptions::new().generations(g2, None));
    e.insert_with_options(2, 21, InsertOptions::new().generations(g1, None));
    e.retire(g1);
    assert_eq!(e.get(&1), Some(11), "stored under g2 only");
    assert_eq!(e.get(&2), None, "stored under g1, now retired");
    e.flush();
    assert_eq!(e.get(&1), Some(11));
    assert_eq!(e.get(&2), None);
    assert_eq!(e.generation_entries(g2), 1);
    e.validate().unwrap();
}

#[test]
fn a_replacement_with_a_new_weight_is_weighed_again() {
    let (clock, e) = {
        let clock = memokit_engine::ManualClock::new();
        let e: Engine<u64, u32> = Engine::builder()
            .max_capacity(1000)
            .weigher(|_, v: &u32| *v)
            .clock(clock.clone())
            .build()
            .unwrap();
        (clock, e)
    };
    e.insert(1, 5);
    e.flush();
    assert_eq!(e.weighted_size(), 5);
    e.insert(1, 5);
    e.flush();
    assert_eq!(e.weighted_size(), 5, "same weight");
    e.insert(1, 7);
    e.flush();
    assert_eq!(e.weighted_size(), 7, "new weight");
    assert_eq!(e.get(&1), Some(7));
    drop(clock);
    e.validate().unwrap();
}

#[test]
fn a_replacement_counts_as_an_insert_and_keeps_one_entry() {
    let (e, _clock) = manual_engine::<u64, u64>(100);
    e.insert(1, 10);
    e.flush();
    for v in 11..=15 {
        e.insert(1, v);
        assert_eq!(e.get(&1), Some(v), "read your writes");
        // A store superseded before the worker applies it is not counted: flush each.
        e.flush();
    }
    let s = e.stats();
    assert_eq!((s.inserts, s.entries, s.weight, e.len()), (6, 1, 1, 1));
    e.validate().unwrap();
}

#[test]
fn remove_after_a_replacement_removes_it() {
    let (e, _clock) = manual_engine::<u64, u64>(100);
    e.insert(1, 10);
    e.flush();
    e.insert(1, 11);
    e.remove(&1);
    assert_eq!(e.get(&1), None);
    e.flush();
    assert_eq!(e.get(&1), None);
    assert_eq!(e.len(), 0);
    e.validate().unwrap();
}

/// The replaced value is dropped (not leaked, not kept): its `Arc` count returns to one.
#[test]
fn the_replaced_value_is_dropped() {
    let (e, _clock) = manual_engine::<u64, Arc<u64>>(100);
    let old = Arc::new(10);
    e.insert(1, Arc::clone(&old));
    e.flush();
    e.insert(1, Arc::new(11));
    e.flush();
    assert_eq!(Arc::strong_count(&old), 1);
    assert_eq!(e.get(&1).as_deref(), Some(&11));
}

/// Two threads store to the same resident keys while a third removes some of them. Found two
/// read-your-writes gaps (a lookup missing a key while another thread's store of it moved the
/// value from the core to the pending table): in the slow path between its two probes, and in
/// the fast path's "definitive miss" on an entry found hidden. Model:
/// each thread's own store is visible to it at once unless a remove of that key may have come
/// after it; a key that is never removed is found by every lookup (a reader thread, and its
/// `get_or_insert_with` never computes); after everyone stops and the engine is flushed, every key holds one of the values
/// stored for it (or nothing, if it was removed), and `validate()` holds.
#[test]
fn concurrent_replacements_agree_with_the_worker_path() {
    no_hang("concurrent replacements", || {
        let e: Engine<u64, u64> =
            Engine::builder().max_capacity(10_000).shards(2).workers(1).build().unwrap();
        for k in 0..64 {
            e.insert(k, k);
        }
        e.flush();
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let e = e.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let k = (i * 7 + t) % 64;
                        let v = 1_000_000 * (t + 1) + i;
                        if i % 5 == 0 {
                            e.insert_with_ttl(k, v, Duration::from_secs(3600));
                        } else {
                            e.insert(k, v);
                        }
                        // Keys 60.. are removed by the third thread; others must read back
                        // this thread's value or a later one of the other writer.
                        if k < 60 {
                            let Some(got) = e.get(&k) else {
                                let again = e.get(&k);
                                panic!("key {k} missed after store {i} of thread {t} (again: {again:?})");
                            };
                            assert!(got >= 1_000_000, "an initial value after a store: {got}");
                        }
                    }
                })
            })
            .collect();
        let remover = {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    e.remove(&(60 + i % 4));
                }
            })
        };
        // Keys below 60 hold a value at every instant: a lookup never misses and a
        // `get_or_insert_with` never computes.
        let reader = {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..40_000u64 {
                    let k = (i * 13) % 60;
                    if i % 2 == 0 {
                        assert!(e.get(&k).is_some(), "reader: key {k} missed");
                    } else {
                        e.get_or_insert_with(k, || panic!("reader: key {k} computed"));
                    }
                }
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        remover.join().unwrap();
        reader.join().unwrap();
        e.flush();
        e.validate().unwrap();
        for k in 0..60 {
            let v = e.get(&k).expect("every key below 60 is still stored");
            assert!(v >= 1_000_000 && v % 1_000_000 < 20_000, "key {k}: {v}");
        }
    });
}

/// Stores that replace entries already dead when the worker applies them: 976 expired
/// entries sit on the timer wheel's backlog (the wheel advanced past their deadline, and the
/// reclamation that made room stopped after its first slice of 1,024 once the engine was
/// within capacity), and each is replaced with a new value and a deadline an hour away. The
/// replacements are resident and counted as inserts, not as expirations; the old deadline
/// expires nothing, the new one expires all of them; the weights and `validate()` hold
/// throughout.
#[test]
fn expired_entries_on_the_backlog_replaced_take_the_new_deadline() {
    const HEAVY: u64 = 5_000;
    let builder = Engine::builder()
        .max_capacity(2_999)
        .shards(1)
        .workers(1)
        .weigher(|k: &u64, _: &u64| if *k == HEAVY { 1_000 } else { 1 });
    let (e, clock) = manual_engine_with::<u64, u64>(builder);
    for k in 0..2_000 {
        e.insert_with_ttl(k, 1, Duration::from_secs(1));
    }
    e.flush();
    clock.advance(Duration::from_secs(2));
    // Over capacity by one: the worker reclaims one slice of expired entries and stops.
    e.insert(HEAVY, 0);
    e.flush();
    let s = e.stats();
    assert_eq!((s.expirations, s.evictions, s.entries), (1_024, 0, 977));
    e.remove(&HEAVY);
    e.flush();
    assert_eq!(e.weighted_size(), 976, "expired, not reclaimed yet");
    let hour = InsertOptions::new().ttl(Duration::from_secs(3_600));
    for k in 0..2_000 {
        e.insert_with_options(k, 2, hour);
    }
    e.flush();
    e.validate().unwrap();
    let s = e.stats();
    assert_eq!((s.inserts, s.expirations, s.entries, s.weight), (4_001, 1_024, 2_000, 2_000));
    e.run_maintenance();
    assert_eq!(e.stats().expirations, 1_024, "the old deadlines expire nothing");
    assert!((0..2_000).all(|k| e.get(&k) == Some(2)));
    e.validate().unwrap();
    clock.advance(Duration::from_secs(3_601));
    e.run_maintenance();
    let s = e.stats();
    assert_eq!((s.expirations, s.entries, s.weight), (3_024, 0, 0), "the new deadlines hold");
    e.validate().unwrap();
}

/// A value whose drop, when it carries a gate, blocks the thread dropping it until the test
/// opens the gate: the worker that drops it holds no lock and serves its mailbox afterwards,
/// in order.
#[derive(Clone)]
struct Gated(u64, Option<Gate>);

impl Drop for Gated {
    fn drop(&mut self) {
        if let Some(gate) = self.1.take() {
            gate.enter_and_wait();
        }
    }
}

/// Replacing a stale entry, and retiring a generation between a store and the worker's
/// application of it. First a store under a live generation replaces an entry of a retired
/// generation already queued for reclamation: it is resident under the new generation, and
/// reclamation takes only the other stale entry. Then, with the worker held in a user's
/// `Drop`, two stores hide resident entries under `g2` (one keeps `g2`, one moves to `g3`)
/// and both generations are retired before the worker applies them: both stores are refused
/// and the entries they replaced removed, so right after `flush` neither generation counts an
/// entry, nothing counts as an insert or a stale reclaim, and the keys stay unreadable.
#[test]
fn a_store_replacing_a_stale_entry_or_raced_by_a_retirement() {
    no_hang("stale replacements", || {
        let (e, _clock) = manual_engine_with::<u64, Gated>(
            Engine::builder().max_capacity(100).shards(1).workers(1),
        );
        let read = |k: u64| e.get_map(&k, |v| v.0);
        let under = |g| InsertOptions::new().generations(g, None);
        let (g1, g2, g3) = (e.new_generation(), e.new_generation(), e.new_generation());
        e.insert_with_options(1, Gated(10, None), under(g1));
        e.insert_with_options(2, Gated(20, None), under(g1));
        e.insert_with_options(3, Gated(30, None), under(g2));
        let gate = Gate::new();
        e.insert(100, Gated(0, Some(gate.clone())));
        e.flush();
        e.retire(g1);
        e.flush(); // the worker has queued g1's entries for reclamation
        assert_eq!(e.len(), 4);
        e.insert_with_options(1, Gated(11, None), under(g2));
        e.flush();
        assert_eq!(read(1), Some(11));
        assert_eq!((e.generation_entries(g1), e.generation_entries(g2)), (1, 2));
        e.run_maintenance();
        let s = e.stats();
        assert_eq!((s.stale_reclaimed, s.inserts, s.entries), (1, 5, 3));
        assert_eq!((read(1), read(2)), (Some(11), None));
        assert_eq!((e.generation_entries(g1), e.generation_entries(g2)), (0, 2));
        e.validate().unwrap();

        // The worker drops key 100's gated value and waits there; what follows queues behind.
        // (With a deadline, the store goes through the worker: the caller swapping the value
        // in place would drop it itself.)
        e.insert_with_ttl(100, Gated(1, None), Duration::from_secs(3_600));
        gate.wait_entered();
        // With a deadline, so that the worker applies them (not the caller, in place).
        let ttl = Duration::from_secs(3_600);
        e.insert_with_options(1, Gated(12, None), under(g2).ttl(ttl));
        e.insert_with_options(3, Gated(31, None), under(g3).ttl(ttl));
        e.retire(g2);
        e.retire(g3);
        assert_eq!((read(1), read(3)), (None, None));
        gate.open();
        e.flush();
        assert_eq!((read(1), read(3)), (None, None));
        assert_eq!((e.generation_entries(g2), e.generation_entries(g3)), (0, 0));
        let s = e.stats();
        assert_eq!((s.stale_reclaimed, s.inserts, s.entries), (1, 6, 1), "only key 100's store");
        e.validate().unwrap();
    });
}
