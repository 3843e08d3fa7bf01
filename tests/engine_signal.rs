//! When a store wakes its shard's worker. Stores of new keys are gathered (up to 8 per shard, fewer
//! in small shards) before the worker is woken; everything else wakes it at once: a lookup that
//! finds a pending store, a store that hides a resident entry, a remove, the gathered count
//! reached, or with a weigher the gathered weight (1/128 of the shard's share). Each test uses a
//! manual clock (no tick ever drains the shards) and no `flush`, so only the wake-up under test can
//! get the worker to apply what is pending; `len()` counts applied entries only. A wake-up that is
//! not sent shows as a hang, which `wait_until` turns into a failure.

mod common;

use std::sync::Arc;

use common::{manual_engine_with, wait_until};
use memokit_engine::{Engine, InsertOptions};

/// One shard of 100,000 entries: it gathers 8 stores of new keys before it wakes the worker.
fn gathering() -> Engine<u64, Arc<u64>> {
    manual_engine_with(Engine::builder().max_capacity(100_000).shards(1)).0
}

#[test]
fn the_eighth_new_key_wakes_the_worker_and_all_eight_are_applied() {
    let e = gathering();
    for k in 0..8 {
        e.insert(k, Arc::new(k));
    }
    wait_until("the eight stores applied", || e.len() == 8);
}

#[test]
fn a_lookup_of_a_gathered_store_wakes_the_worker() {
    let e = gathering();
    e.insert(1, Arc::new(1));
    assert_eq!(e.get(&1).as_deref(), Some(&1));
    wait_until("the store applied after its lookup", || e.len() == 1);
}

#[test]
fn a_get_or_insert_hit_on_a_gathered_store_wakes_the_worker() {
    let e = gathering();
    e.insert(1, Arc::new(1));
    assert_eq!(*e.get_or_insert_with(1, || Arc::new(2)), 1);
    wait_until("the store applied after its lookup", || e.len() == 1);
}

/// Stores a value for key 1 and has it applied, then runs `displace` on the key without a
/// flush: the worker must be woken to drop the old value.
fn the_old_value_is_dropped_after(displace: impl FnOnce(&Engine<u64, Arc<u64>>)) {
    let e = gathering();
    let old = Arc::new(1);
    e.insert(1, Arc::clone(&old));
    e.flush();
    displace(&e);
    wait_until("the old value dropped", || Arc::strong_count(&old) == 1);
}

#[test]
fn a_store_that_hides_a_resident_value_wakes_the_worker_to_drop_it() {
    the_old_value_is_dropped_after(|e| {
        // With a TTL the new value cannot replace the old one in place: the old one is hidden
        // and waits for the worker.
        let ttl = InsertOptions::new().ttl(std::time::Duration::from_secs(3600));
        e.insert_with_options(1, Arc::new(2), ttl);
        assert_eq!(e.get(&1).as_deref(), Some(&2));
    });
}

#[test]
fn a_remove_wakes_the_worker_to_drop_the_value() {
    the_old_value_is_dropped_after(|e| {
        e.remove(&1);
        assert_eq!(e.get(&1), None);
    });
}

/// One store into a fresh one-shard engine built from `builder` gets applied without a
/// `flush`.
fn a_store_is_applied_at_once(builder: memokit_engine::EngineBuilder<u64, Arc<u64>>) {
    let (e, _clock) = manual_engine_with(builder.shards(1));
    e.insert(1, Arc::new(1));
    wait_until("the store applied", || e.len() == 1);
}

/// With a weigher, a store that brings the new keys gathered to 1/128 of the shard's share
/// (781 of 100,000 here) wakes the worker at once, however few they are.
#[test]
fn a_weighted_engine_wakes_the_worker_once_its_stores_weigh_a_percent() {
    let weigh = |_: &u64, v: &Arc<u64>| u32::try_from(**v).unwrap_or(u32::MAX);
    let (e, _clock) =
        manual_engine_with(Engine::builder().max_capacity(100_000).weigher(weigh).shards(1));
    e.insert(1, Arc::new(700));
    e.insert(2, Arc::new(81));
    wait_until("the stores applied", || e.len() == 2);
}

#[test]
fn a_small_shard_wakes_the_worker_at_each_store() {
    // 100 entries per shard: fewer than 256, so nothing is gathered.
    a_store_is_applied_at_once(Engine::builder().max_capacity(100));
}

#[test]
fn gathered_stores_are_applied_by_flush_and_count_toward_capacity_then() {
    let (e, _clock) =
        manual_engine_with(Engine::<u64, Arc<u64>>::builder().max_capacity(1_024).shards(1));
    for k in 0..2_000 {
        e.insert(k, Arc::new(k));
    }
    e.flush();
    assert_eq!(e.len(), 1_024);
    let held = (0..2_000).filter(|k| e.get(k).is_some()).count();
    assert_eq!(held, 1_024, "every gathered store was applied, then evicted down to capacity");
}
