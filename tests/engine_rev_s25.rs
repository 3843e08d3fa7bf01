//! Review s25: weighted eviction that sets victims aside until the excess is covered and
//! keeps those that still fit (3476b11), and a batch's growth published only after the
//! worker has evicted for it (cfdb99e). Accounting after `flush` (the engine's total, the
//! values it holds, `len`, `stats`, `validate`), capacity with 1–4 workers and several
//! shards, zero-weight and heavy entries, replacements that change weight, dead entries
//! before live ones, `remove`, `clear`, concurrent stores, evictions counted once, and the
//! unweighted path. Findings are `#[ignore]`d while open: see their doc comments.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::weighted::{check_accounts, weighted, V};
use common::{manual_engine_with, no_hang, Rng};
use memokit_engine::{Engine, InsertOptions};

/// The session-24 scenario with accounting: 1 and 2 hot (40 each), 3 cold (19), 4 (60)
/// comes and is itself the one to go. Exactly one eviction, counted once, and the shard
/// consistent (no victim left aside out of the queues: `validate` counts queued entries).
#[test]
fn a_heavy_store_evicted_alone_leaves_consistent_accounts() {
    let (e, _c) = weighted(100, 1, 1);
    e.insert(1, (1, 40));
    e.insert(2, (2, 40));
    e.flush();
    for _ in 0..3 {
        assert!(e.get(&1).is_some() && e.get(&2).is_some());
    }
    e.insert(3, (3, 19));
    e.flush();
    e.insert(4, (4, 60));
    e.flush();
    let held = check_accounts(&e, 1..=4);
    assert_eq!(held.len(), 3);
    assert_eq!(e.stats().evictions, 1);
    // The kept victim (3) is back in the queues: the next store that needs room (1 over)
    // evicts one entry more, counted once.
    e.insert(5, (5, 2));
    e.flush();
    let held = check_accounts(&e, 1..=5);
    assert!(held.contains_key(&1) && held.contains_key(&2), "{held:?}");
    assert_eq!((held.len(), e.stats().evictions), (3, 2), "{held:?}");
}

/// With a weigher, an entry weighing 0 that the policy names before a heavy newcomer is
/// evicted (the weigher's docs: the policy may choose it like any other entry). The reviewer
/// asked for it to stay, as it frees nothing and always fits; not done: kept at the front of
/// its queue it would be chosen first again by every later pass, and entries of weight 0
/// would grow without bound. Scenario: 1 and 2 hot (40 each), z (weight 0) and 3 (19) cold,
/// 4 (60) comes; the order is z, 3, 4: z and 4 go, 3 stays (on 58918d4, 3 went too).
#[test]
fn an_entry_weighing_nothing_is_evicted_for_a_heavy_store_as_documented() {
    let (e, _c) = weighted(100, 1, 1);
    e.insert(1, (1, 40));
    e.insert(2, (2, 40));
    e.flush();
    for _ in 0..3 {
        assert!(e.get(&1).is_some() && e.get(&2).is_some());
    }
    e.insert(9, (9, 0));
    e.insert(3, (3, 19));
    e.flush();
    e.insert(4, (4, 60));
    e.flush();
    let held = check_accounts(&e, [1, 2, 3, 4, 9].into_iter());
    let mut kept: Vec<u64> = held.keys().copied().collect();
    kept.sort_unstable();
    assert_eq!(kept, [1, 2, 3], "evictions {}", e.stats().evictions);
}

/// Entries weighing 0 use none of the inline pass's quota. They used `w.max(1)` each
/// without freeing anything (review s25's finding), so the pass stopped over capacity with a
/// light victim set aside, which then could not be kept (still over) and was evicted;
/// `settle` evicted the heavy newcomer next, after which the light one would have fit. 1 and
/// 2 hot (40 each), 50 entries of weight 0 and then 3 (19) cold, 4 (60) comes: only 4 goes
/// (with the empty ones before it), 99 of 100. Also failed on 58918d4.
#[test]
fn zero_weight_victims_do_not_cost_a_light_entry_that_fits() {
    let (e, _c) = weighted(100, 1, 1);
    e.insert(1, (1, 40));
    e.insert(2, (2, 40));
    e.flush();
    for _ in 0..3 {
        assert!(e.get(&1).is_some() && e.get(&2).is_some());
    }
    for z in 100..150 {
        e.insert(z, (z, 0));
    }
    e.insert(3, (3, 19));
    e.flush();
    e.insert(4, (4, 60));
    e.flush();
    let held = check_accounts(&e, (1..=4).chain(100..150));
    let total = e.weighted_size();
    for (k, w) in [(1, 40), (2, 40), (3, 19), (4, 60)] {
        if !held.contains_key(&k) {
            assert!(total + w > 100, "{k} (weight {w}) evicted at {total}: {:?}", e.stats());
        }
    }
}

/// A replacement of a resident key that grows it evicts only what the growth needs, the
/// replaced entry itself included when the policy names it; accounts exact.
#[test]
fn a_growing_replacement_evicts_only_what_it_needs() {
    for (shards, workers) in [(1, 1), (2, 2), (4, 3), (8, 4)] {
        let (e, _c) = weighted(100, shards, workers);
        for k in 0..5 {
            e.insert(k, (k, 15)); // 75
        }
        e.flush();
        e.insert(2, (102, 60)); // +45: 120
        e.flush();
        let held = check_accounts(&e, 0..5);
        let total = e.weighted_size();
        assert_ne!(held.get(&2), Some(&(2, 15)), "the old value served");
        let lost: Vec<u64> = (0..5).filter(|k| !held.contains_key(k)).collect();
        assert_eq!(e.stats().evictions, lost.len() as u64, "{shards}/{workers}");
        for k in lost {
            let w = if k == 2 { 60 } else { 15 };
            assert!(total + w > 100, "{shards}/{workers}: {k} evicted at {total}");
        }
    }
}

/// Expired entries go before live ones when a heavy store needs room, on any worker.
#[test]
fn expired_entries_go_before_live_ones_for_a_heavy_store() {
    for (shards, workers) in [(1, 1), (2, 2), (4, 2), (6, 3), (8, 4)] {
        let (e, clock) = weighted(100, shards, workers);
        for k in 0..4 {
            e.insert_with_ttl(k, (k, 10), Duration::from_secs(1)); // 40, dying
        }
        for k in 10..13 {
            e.insert(k, (k, 15)); // 45, live
        }
        e.flush();
        clock.advance(Duration::from_secs(5));
        e.insert(20, (20, 50)); // live 95
        e.flush();
        let held = check_accounts(&e, (0..4).chain(10..13).chain([20]));
        let st = e.stats();
        assert_eq!((st.evictions, st.expirations), (0, 4), "{shards}/{workers}: {held:?}");
        assert_eq!(held.len(), 4);
    }
}

/// Entries of a retired generation go before live ones when a heavy store needs room.
#[test]
fn retired_entries_go_before_live_ones_for_a_heavy_store() {
    for (shards, workers) in [(1, 1), (2, 2), (5, 2), (8, 4)] {
        let (e, _c) = weighted(100, shards, workers);
        let g = e.new_generation();
        for k in 0..4 {
            e.insert_with_options(k, (k, 10), InsertOptions::new().generations(g, None));
        }
        for k in 10..13 {
            e.insert(k, (k, 15));
        }
        e.flush();
        e.retire(g);
        e.insert(20, (20, 50));
        e.flush();
        let held = check_accounts(&e, (0..4).chain(10..13).chain([20]));
        let st = e.stats();
        assert_eq!((st.evictions, st.stale_reclaimed), (0, 4), "{shards}/{workers}: {held:?}");
        assert_eq!(held.len(), 4);
    }
}

/// One store at a time against a model, with replacements, removes and 1–4 workers: after
/// each flush the accounts are exact, every eviction is counted once (a key gone that was
/// not removed), and no key is gone that would still fit beside what stayed.
#[test]
fn sequential_model_with_replacements_and_removes() {
    no_hang("sequential model", || {
        for seed in 1..=12u64 {
            let (shards, workers) = (1 + (seed as usize % 5), 1 + (seed as usize % 4));
            let (e, _c) = weighted(100, shards, workers);
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut model: HashMap<u64, V> = HashMap::new();
            let mut evicted = 0;
            for n in 0..60u64 {
                let key = rng.below(30);
                if rng.below(5) == 0 {
                    e.remove(&key);
                    model.remove(&key);
                } else {
                    let v = (n, 1 + rng.below(70) as u32);
                    e.insert(key, v);
                    model.insert(key, v);
                }
                if rng.below(3) == 0 {
                    let _ = e.get(&rng.below(30));
                }
                e.flush();
                let held = check_accounts(&e, 0..30);
                let total = e.weighted_size();
                for (k, v) in &model {
                    match held.get(k) {
                        Some(got) => assert_eq!(got, v, "seed {seed} step {n}: key {k}"),
                        None => {
                            evicted += 1;
                            assert!(
                                total + u64::from(v.1) > 100,
                                "seed {seed} step {n} ({shards}/{workers}): {k} ({}) at {total}",
                                v.1
                            );
                        }
                    }
                }
                model.retain(|k, _| held.contains_key(k));
                assert_eq!(e.stats().evictions, evicted, "seed {seed} step {n}");
            }
        }
    });
}

/// Stores from several threads at once (weights 0–60, replacements, removes), 1–4 workers,
/// several shards: after `flush` the accounts are exact and within capacity; `remove` and
/// `clear` bring them to zero.
#[test]
fn concurrent_weighted_stores_keep_exact_accounts() {
    no_hang("concurrent stores", || {
        for (shards, workers) in [(1, 1), (3, 2), (4, 4), (8, 3)] {
            let (e, _c) = weighted(300, shards, workers);
            let threads: Vec<_> = (0..3u64)
                .map(|t| {
                    let e = e.clone();
                    std::thread::spawn(move || {
                        let mut rng = Rng((t + 1) * 0x1234_5678_9ABC_DEF1);
                        for n in 0..400u64 {
                            let key = rng.below(120);
                            match rng.below(8) {
                                0 => e.remove(&key),
                                1 => e.flush(),
                                _ => e.insert(key, (n, rng.below(61) as u32)),
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("store thread");
            }
            e.flush();
            let held = check_accounts(&e, 0..120);
            for k in held.keys().copied().collect::<Vec<_>>().into_iter().step_by(2) {
                e.remove(&k);
            }
            e.flush();
            check_accounts(&e, 0..120);
            e.clear();
            assert!(check_accounts(&e, 0..120).is_empty());
            assert_eq!(e.weighted_size(), 0, "{shards}/{workers}");
        }
    });
}

/// Several workers applying heavy stores at the same moment (each store alone would fit,
/// together they do not): the engine ends within capacity with exact accounts and at least
/// one of the heavy stores kept.
#[test]
fn simultaneous_heavy_batches_on_several_workers_settle_within_capacity() {
    no_hang("simultaneous heavy batches", || {
        for round in 0..20u64 {
            let workers = 2 + (round as usize % 3);
            let (e, _c) = weighted(100, workers * 2, workers);
            for k in 0..8 {
                e.insert(k, (k, 5)); // 40
            }
            e.flush();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(workers));
            let threads: Vec<_> = (0..workers as u64)
                .map(|t| {
                    let (e, b) = (e.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        e.insert(100 + t, (100 + t, 55));
                        e.flush();
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("store thread");
            }
            e.flush();
            let held = check_accounts(&e, (0..8).chain(100..105));
            assert!(held.keys().any(|&k| k >= 100), "round {round}: {held:?}");
            let gone = (0..8).chain(100..100 + workers as u64).count() - held.len();
            assert_eq!(e.stats().evictions, gone as u64, "round {round}");
        }
    });
}

/// Unweighted, each victim goes as it is named: one store over capacity evicts exactly one
/// entry, from 1 to 4 workers, and the accounts stay exact.
#[test]
fn unweighted_stores_evict_exactly_one_each() {
    for (shards, workers) in [(1, 1), (2, 2), (4, 3), (8, 4)] {
        let (e, _c) = manual_engine_with::<u64, u64>(
            Engine::builder().max_capacity(16).shards(shards).workers(workers),
        );
        for k in 0..16 {
            e.insert(k, k);
        }
        e.flush();
        for k in 16..48 {
            e.insert(k, k);
            e.flush();
            let st = e.stats();
            assert_eq!((st.entries, st.weight), (16, 16), "{shards}/{workers} key {k}");
            assert_eq!(st.evictions, k - 15, "{shards}/{workers} key {k}");
        }
        assert_eq!(e.validate(), Ok(()));
    }
}

/// Zero-weight entries alone, over and over, never hang `flush` nor break the accounts, and
/// an entry as heavy as the whole capacity replaces everything else.
#[test]
fn zero_weight_and_capacity_weight_entries_keep_flush_finite() {
    no_hang("zero and full weights", || {
        for (shards, workers) in [(1, 1), (4, 2), (8, 4)] {
            let (e, _c) = weighted(50, shards, workers);
            for k in 0..200 {
                e.insert(k, (k, 0));
            }
            for k in 200..210 {
                e.insert(k, (k, 5));
            }
            e.flush();
            check_accounts(&e, 0..211);
            assert_eq!(e.weighted_size(), 50);
            e.insert(210, (210, 50));
            e.flush();
            let held = check_accounts(&e, 0..211);
            assert!(held.values().all(|v| v.1 < 50) || e.weighted_size() == 50, "{held:?}");
        }
    });
}

/// Over 200 rounds of 2–4 shards and 1–2 workers: 1 and 2 hot (30 each), 3 (19) and 4 (10)
/// cold, with `dead` an entry of weight 1 whose deadline has passed; then 5 (60) comes.
/// Returns each entry evicted that would still fit beside what stayed.
fn heavy_store_losses(dead: bool, workers: &[usize]) -> Vec<String> {
    let mut lost = Vec::new();
    for round in 0..200u64 {
        let (shards, workers) = (2 + round as usize % 3, workers[round as usize % workers.len()]);
        let (e, clock) = weighted(100, shards, workers);
        let ws = [(1u64, 30u32), (2, 30), (3, 19), (4, 10), (5, 60)];
        for &(k, w) in &ws[..4] {
            e.insert(k, (k, w));
        }
        if dead {
            e.insert_with_ttl(9, (9, 1), Duration::from_secs(1));
        }
        e.flush();
        for _ in 0..3 {
            assert!(e.get(&1).is_some() && e.get(&2).is_some());
        }
        clock.advance(Duration::from_secs(5));
        e.insert(5, (5, 60));
        e.flush();
        let held = check_accounts(&e, 1..=9);
        let total = e.weighted_size();
        for &(k, w) in &ws {
            if !held.contains_key(&k) && total + u64::from(w) <= 100 {
                lost.push(format!("round {round} ({shards}/{workers}): {k} ({w}) at {total}"));
            }
        }
    }
    lost
}

/// The fix holds across shards and workers when nothing is dead: the heavy store's batch is
/// evicted for within its hold of the write lock, in one pass.
#[test]
fn a_heavy_store_loses_nothing_that_fits_in_any_shard_layout() {
    assert_eq!(heavy_store_losses(false, &[1, 2]), Vec::<String>::new());
}

/// The same with one expired entry anywhere (as after every tick boundary of the real clock
/// with deadlines in use), one worker: the batch is not evicted for inline; `settle`
/// reclaims the dead entry and then evicts the excess as per-shard cuts. Review s25's
/// finding: each cut was a pass of its own, and a cut that ran out while the engine was still
/// over evicted every victim it had set aside; the next shard's victim (often the heavy
/// newcomer) then covered far more than was left (~7% of rounds, e.g. `4 shards, 1 worker: 1
/// (30) and 4 (10) evicted at 49 of 100`). Fixed in session 25: a worker names the victims
/// of all its cuts first and keeps those that fit (`capacity::evict_cuts_weighted`).
#[test]
fn a_heavy_store_loses_nothing_that_fits_with_an_expired_entry() {
    assert_eq!(heavy_store_losses(true, &[1]), Vec::<String>::new());
}

/// The same with two workers. Review s25's finding, open until session 26: each worker
/// named and evicted the cuts of its own shards (no worker changes another's shards), so a
/// light entry one worker evicted could still be made unnecessary by the heavy one the other
/// worker's cut evicted: ~10% of rounds (e.g. `3 shards, 2 workers: 4 (10) evicted at 90`).
/// Fixed: with a weigher, the worker of the heaviest shard settles the whole excess from its
/// own shards (`capacity::settle`).
#[test]
fn a_heavy_store_loses_nothing_that_fits_with_an_expired_entry_and_two_workers() {
    assert_eq!(heavy_store_losses(true, &[2]), Vec::<String>::new());
}
