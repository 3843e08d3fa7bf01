//! Counters are exact in single-threaded sequences; `len()` is exact after `flush()`;
//! nothing is evicted while the engine holds fewer entries than its capacity.
mod common;

use std::time::Duration;

use common::manual_engine;
use memokit_engine::{Engine, InsertOptions, ManualClock};

fn one_shard(capacity: u64) -> (Engine<u64, u64>, ManualClock) {
    let clock = ManualClock::new();
    let e = Engine::builder()
        .max_capacity(capacity)
        .shards(1)
        .workers(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    (e, clock)
}

#[test]
fn hits_misses_inserts_are_exact() {
    let (e, clock) = manual_engine::<u64, u64>(1000);
    let g = e.new_generation();
    for i in 0..10u64 {
        e.insert(i, i);
    }
    e.insert_with_ttl(10, 10, Duration::from_secs(1));
    e.insert_with_options(11, 11, InsertOptions::new().generations(g, None));
    e.flush();
    let s = e.stats();
    assert_eq!((s.hits, s.misses, s.inserts), (0, 0, 12));
    assert_eq!((s.entries, s.weight, e.len(), e.weighted_size()), (12, 12, 12, 12));

    for i in 0..5u64 {
        assert_eq!(e.get(&i), Some(i));
    }
    for i in 100..103u64 {
        assert_eq!(e.get(&i), None);
    }
    let s = e.stats();
    assert_eq!((s.hits, s.misses), (5, 3));

    // Expired and retired entries are misses.
    clock.advance(Duration::from_secs(2));
    e.retire(g);
    assert_eq!(e.get(&10), None);
    assert_eq!(e.get(&11), None);
    let s = e.stats();
    assert_eq!((s.hits, s.misses, s.evictions), (5, 5, 0));
}

#[test]
fn evictions_are_exact() {
    let (e, _clock) = one_shard(10);
    for i in 0..10u64 {
        e.insert(i, i);
    }
    e.flush();
    assert_eq!((e.len(), e.stats().evictions), (10, 0), "at capacity, nothing evicted");
    for i in 10..25u64 {
        e.insert(i, i);
    }
    e.flush();
    let s = e.stats();
    assert_eq!(e.len(), 10);
    assert_eq!((s.inserts, s.evictions, s.entries), (25, 15, 10));
    let resident = (0..25u64).filter(|k| e.get(k).is_some()).count();
    assert_eq!(resident, 10, "exactly `len()` keys answer");
}

/// "While the engine holds fewer entries than its capacity, nothing is evicted and nothing is
/// refused" — whatever the number of shards (capacity is not a per-shard quota).
#[test]
fn nothing_evicted_below_capacity_with_many_shards() {
    for shards in [1, 8, 64] {
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(100)
            .shards(shards)
            .workers(2)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        for i in 0..100u64 {
            e.insert(i * 7919, i);
        }
        e.flush();
        assert_eq!(e.stats().evictions, 0, "{shards} shards, 100 entries, capacity 100");
        assert_eq!(e.len(), 100, "{shards} shards");
        for i in 0..100u64 {
            assert_eq!(e.get(&(i * 7919)), Some(i), "{shards} shards: key {i} refused/evicted");
        }
    }
}

#[test]
fn weight_is_bounded_by_capacity() {
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(100)
        .weigher(|_, v| *v as u32)
        .shards(1)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    for i in 0..10u64 {
        e.insert(i, 10);
    }
    e.flush();
    assert_eq!((e.len(), e.weighted_size(), e.stats().evictions), (10, 100, 0));
    e.insert(10, 30);
    e.flush();
    assert!(e.weighted_size() <= 100, "weight {} above capacity", e.weighted_size());
    assert_eq!(e.stats().weight, e.weighted_size());
    assert!(e.stats().evictions >= 1, "30 units of weight had to be freed");
    // Heavier than the whole capacity: not stored, nothing breaks.
    e.insert(11, 101);
    e.flush();
    assert_eq!(e.get(&11), None);
    assert!(e.weighted_size() <= 100);
}

/// Replacing a value updates the weight; removing releases it.
#[test]
fn len_and_weight_follow_replacements_and_removals() {
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(1000)
        .weigher(|_, v| *v as u32)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    e.insert(1, 5);
    e.insert(2, 7);
    e.insert(1, 9);
    e.flush();
    assert_eq!((e.len(), e.weighted_size()), (2, 16));
    e.remove(&2);
    e.flush();
    assert_eq!((e.len(), e.weighted_size()), (1, 9));
    e.remove(&1);
    e.remove(&1);
    e.flush();
    assert_eq!((e.len(), e.weighted_size()), (0, 0));
    assert!(e.is_empty());
}

/// Counts of threads that have exited are kept.
#[test]
fn counts_from_exited_threads_are_kept() {
    let (e, _clock) = manual_engine::<u64, u64>(1000);
    for i in 0..10u64 {
        e.insert(i, i);
    }
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..250u64 {
                    assert_eq!(e.get(&(i % 10)), Some(i % 10));
                }
                for i in 0..100u64 {
                    assert_eq!(e.get(&(100 + i)), None);
                }
            });
        }
    });
    let s = e.stats();
    assert_eq!((s.hits, s.misses), (1000, 400));
}

/// Many more stores than the pending table holds, without flushing: callers are paced by the
/// worker (backpressure) and nothing is lost or stuck.
#[test]
fn backpressure_loses_nothing() {
    let (e, _clock) = one_shard(100_000);
    let e2 = e.clone();
    common::no_hang("30k stores into one shard", move || {
        for i in 0..30_000u64 {
            e2.insert(i, i);
        }
    });
    for i in (0..30_000u64).step_by(997) {
        assert_eq!(e.get(&i), Some(i));
    }
    e.flush();
    assert_eq!(e.len(), 30_000);
    assert_eq!(e.stats().evictions, 0);
}
