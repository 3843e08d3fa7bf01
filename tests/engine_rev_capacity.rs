//! Review of bounded size and its bookkeeping (`Shared::weight`, `settle`, `flush`).
//!
//! Every test runs on a manual clock and uses only `flush`/`run_maintenance` to make the
//! workers act. Each test's doc says which bug it would catch.

mod common;

use std::time::Duration;

use common::{manual_engine_with, no_hang};
use memokit_engine::Engine;

const SEC: Duration = Duration::from_secs(1);

/// Sum of the weights of the keys of `keys` that are resident, by looking each one up.
fn resident_weight(
    e: &Engine<u64, u64>,
    keys: impl IntoIterator<Item = u64>,
    w: fn(u64) -> u64,
) -> u64 {
    keys.into_iter().filter_map(|k| e.get(&k)).map(w).sum()
}

/// A live entry is never evicted while expired entries take its place, however many of them
/// must go: here one store needs more dead entries reclaimed than one reclamation slice
/// (`RECLAIM_BEFORE_EVICT`, 1,024) frees. Catches a worker that reclaims one slice of dead
/// entries and then lets the policy evict live ones although dead ones are left.
///
/// Capacity 3,000 (weights); 2,500 dead entries of weight 1, 500 live of weight 1, then one
/// live entry of weight 1,500: 2,000 live weight in all, well within capacity, but 1,500 over
/// it until the dead go.
#[test]
fn more_dead_entries_than_one_reclaim_slice_go_before_live_ones() {
    // Keys >= 1_000_000 weigh their value; the others weigh 1.
    let (e, clock) = manual_engine_with::<u64, u64>(
        Engine::builder().max_capacity(3_000).shards(1).workers(1).weigher(|k, v| {
            if *k >= 1_000_000 {
                *v as u32
            } else {
                1
            }
        }),
    );
    for k in 10_000..12_500 {
        e.insert_with_ttl(k, 1, SEC);
    }
    for k in 0..500 {
        e.insert(k, 1);
    }
    e.flush();
    // Make the dead-to-be entries look valuable to the policy.
    for _ in 0..3 {
        for k in 10_000..12_500 {
            assert!(e.get(&k).is_some());
        }
    }
    clock.advance(2 * SEC);
    e.insert(1_000_000, 1_500);
    e.flush();
    assert_eq!(e.get(&1_000_000), Some(1_500), "the heavy live entry was evicted");
    for k in 0..500 {
        assert_eq!(e.get(&k), Some(1), "live key {k} evicted while dead entries remained");
    }
    let s = e.stats();
    assert_eq!(s.evictions, 0, "{s:?}");
    assert!(s.weight <= 3_000, "{s:?}");
    e.validate().unwrap();
}
