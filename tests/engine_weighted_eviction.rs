//! Weighted eviction against a model of what a store may cost the entries already resident.
//!
//! The model: a map of the keys the engine should hold and their weights. Each step stores
//! one key (weight 1–70, capacity 100, no deadlines, no generations) and flushes, after an
//! optional read of another key (a hint to the policy). After the flush:
//! - the engine's weight is at most the capacity and equals the model's sum over what it
//!   still holds, and every value read is the last stored for its key;
//! - a resident key that is gone was evicted for room: with it back, the engine would be
//!   over capacity (`total + w > capacity`). So a heavy store that is itself evicted never
//!   takes lighter entries with it (session 24's finding).
//!
//! The policy's choices are not modelled (which entries go is its business); only that
//! nothing is lost that still fits, and nothing wrong is served.
mod common;

use common::manual_engine_with;
use memokit_engine::Engine;
use proptest::prelude::*;
use std::collections::HashMap;

const CAPACITY: u64 = 100;

fn run(shards: usize, workers: usize, steps: &[(u8, u8, Option<u8>)]) -> Result<(), TestCaseError> {
    let b = Engine::builder().max_capacity(CAPACITY).shards(shards).workers(workers);
    let (e, _clock) = manual_engine_with(b.weigher(|_, v: &(u64, u32)| v.1));
    let mut model: HashMap<u64, (u64, u32)> = HashMap::new();
    for (n, &(key, weight, read)) in steps.iter().enumerate() {
        if let Some(r) = read {
            let hit = e.get(&u64::from(r));
            prop_assert_eq!(hit, model.get(&u64::from(r)).copied());
        }
        let (key, value) = (u64::from(key), (n as u64, u32::from(weight)));
        e.insert(key, value);
        e.flush();
        let mut total = 0;
        let before = std::mem::take(&mut model);
        for (&k, &v) in before.iter().chain([(&key, &value)]) {
            if k == key && v != value {
                continue; // the replaced value
            }
            if let Some(got) = e.get(&k) {
                prop_assert_eq!(got, v, "key {} served a value not the last stored", k);
                total += u64::from(v.1);
                model.insert(k, v);
            }
        }
        prop_assert_eq!(e.weighted_size(), total, "engine weight vs what it holds");
        prop_assert!(total <= CAPACITY, "weight {} over capacity", total);
        for (&k, &v) in before.iter().chain([(&key, &value)]) {
            if !model.contains_key(&k) && (k != key || v == value) {
                prop_assert!(
                    total + u64::from(v.1) > CAPACITY,
                    "step {}: key {} (weight {}) evicted though it fits beside {}",
                    n,
                    k,
                    v.1,
                    total
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random weighted stores agree with the model (module docs).
    #[test]
    fn weighted_stores_lose_nothing_that_fits(
        shards in 1usize..5,
        workers in 1usize..3,
        steps in proptest::collection::vec((0u8..40, 1u8..=70, proptest::option::of(0u8..40)), 1..40),
    ) {
        run(shards, workers, &steps)?;
    }
}
