//! Review s25c: the engine as a byte-budgeted cache (`max_capacity` + `weigher`), used the
//! way a server would after the weighted-settling changes of session 25 (victims named until
//! the excess is covered, those that still fit kept, within one worker). Tries values of
//! very different sizes (0 bytes to the whole capacity and beyond), entries heavier than the
//! capacity replacing resident ones, TTLs on a `ManualClock` crossing deadlines between
//! stores, generations retired around heavy stores, concurrent `get_or_insert_with` of heavy
//! values with `flush` in between, remove / re-store with another weight, `clear` racing
//! stores, shards 1–8 and workers 1–4, capacity 0 and 1. After `flush` (or
//! `run_maintenance`): the values served are the last stored, the engine's total equals their
//! weights and is within capacity, `len`, `stats` and `validate` agree, every eviction,
//! expiration and reclamation is counted once, and no entry is evicted that would still fit
//! beside what stays. Its finding is fixed: see the last test's doc comment.
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{manual_engine_with, no_hang, Rng};
use memokit_engine::{Engine, InsertOptions, ManualClock};

/// `(key, version, weight)`: a value names its key and carries its weight.
type V = (u64, u64, u32);
type E = Engine<u64, V>;

fn weighted(cap: u64, shards: usize, workers: usize) -> (E, ManualClock) {
    let b = Engine::builder().max_capacity(cap).shards(shards).workers(workers);
    manual_engine_with(b.weigher(|_, v: &V| v.2))
}

/// The shard and worker layouts tried: shards 1–8, workers 1–4.
fn layouts() -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for shards in [1, 2, 3, 5, 8] {
        for workers in 1..=4 {
            out.push((shards, workers));
        }
    }
    out
}

/// After `flush`: what the engine serves for `keys` (each value naming its own key), its
/// total against their weights, `len`, `stats`, `validate`, capacity. Returns the values or
/// what is wrong.
fn accounts(e: &E, keys: impl Iterator<Item = u64>) -> Result<HashMap<u64, V>, String> {
    let mut held = HashMap::new();
    for k in keys {
        if let Some(v) = e.get(&k) {
            if v.0 != k {
                return Err(format!("key {k} served the value of key {}: {v:?}", v.0));
            }
            held.insert(k, v);
        }
    }
    let sum: u64 = held.values().map(|v| u64::from(v.2)).sum();
    let st = e.stats();
    e.validate()?;
    if (e.weighted_size(), st.weight) != (sum, sum) {
        return Err(format!(
            "total {} (stats {}) vs values held {sum}: {st:?}",
            e.weighted_size(),
            st.weight
        ));
    }
    if (e.len(), st.entries) != (held.len() as u64, held.len() as u64) {
        return Err(format!("len {} vs {} values held: {st:?}", e.len(), held.len()));
    }
    if sum > e.max_capacity() {
        return Err(format!("over capacity after flush: {st:?}"));
    }
    Ok(held)
}

/// The weigher's docs, checked as a user reads them: an entry weighing 0 takes no room (a
/// hundred of them beside an entry as heavy as the capacity); one heavier than the capacity
/// is not stored, and stored over a resident key it drops that key's value (as
/// `insert_with_options` says) without counting an eviction.
#[test]
fn weight_zero_and_heavier_than_capacity_as_documented() {
    for (shards, workers) in layouts() {
        let (e, _c) = weighted(10, shards, workers);
        (0..100).for_each(|k| e.insert(k, (k, 0, 0)));
        e.insert(100, (100, 0, 10));
        e.flush();
        let held = accounts(&e, 0..=101).unwrap();
        assert_eq!((held.len(), e.weighted_size()), (101, 10), "{shards}/{workers}");
        e.insert(101, (101, 0, 11));
        assert_eq!(e.get(&101), None, "heavier than the capacity: not stored");
        e.insert(100, (100, 1, 11));
        assert_eq!(e.get(&100), None, "the previous value is dropped all the same");
        e.flush();
        let held = accounts(&e, 0..=101).unwrap();
        assert_eq!((held.len(), e.weighted_size()), (100, 0), "{shards}/{workers}");
        assert_eq!(e.stats().evictions, 0, "{shards}/{workers}: nothing was evicted");
        // Room for exactly one full-capacity entry again.
        e.insert(102, (102, 0, 10));
        e.flush();
        assert_eq!(accounts(&e, 0..=102).unwrap().len(), 101);
    }
}

/// An entry weighing exactly the capacity, stored over a cache of small entries: either it
/// stays and every other entry with weight goes, or it is itself the victim and nothing else
/// goes (everything else still fits beside what stays).
#[test]
fn an_entry_exactly_at_the_capacity_replaces_the_rest_or_goes_alone() {
    for (shards, workers) in layouts() {
        let (e, _c) = weighted(1000, shards, workers);
        let mut rng = Rng(0x9e37_79b9 ^ (shards * 10 + workers) as u64);
        let mut sum = 0;
        for k in 0..60 {
            let w = 1 + rng.below(30) as u32;
            if sum + u64::from(w) > 1000 {
                break;
            }
            sum += u64::from(w);
            e.insert(k, (k, 0, w));
        }
        e.flush();
        let before = accounts(&e, 0..60).unwrap();
        e.insert(500, (500, 0, 1000));
        e.flush();
        let held = accounts(&e, (0..60).chain([500])).unwrap();
        let st = e.stats();
        if held.contains_key(&500) {
            assert_eq!((held.len(), e.weighted_size()), (1, 1000), "{shards}/{workers}");
            assert_eq!(st.evictions, before.len() as u64, "{shards}/{workers}");
        } else {
            assert_eq!(held, before, "{shards}/{workers}: the newcomer went, and others too");
            assert_eq!(st.evictions, 1, "{shards}/{workers}");
        }
    }
}

/// One operation at a time against a model, `run_maintenance` after each (so no dead entry
/// is ever left when a store needs room): inserts of weights from 0 to the whole capacity
/// and beyond, TTLs crossing deadlines, generations retired, removes, `get_or_insert_with`.
/// After each step the values served are the model's (or evicted), every eviction,
/// expiration and reclamation is counted exactly once, and (on one worker: see the finding
/// `a_live_ttl_entry_does_not_cost_entries_that_fit_on_several_workers`) no entry of nonzero
/// weight is evicted that would still fit beside what stayed.
#[test]
fn sequential_model_of_a_byte_budgeted_cache() {
    const CAP: u64 = 200;
    for (seed, (shards, workers)) in layouts().into_iter().enumerate() {
        let (e, clock) = weighted(CAP, shards, workers);
        let mut rng = Rng(0xdead_beef_u64.wrapping_add(seed as u64 * 7919));
        // key -> (value, deadline in ms or None, generation index or None)
        let mut model: HashMap<u64, (V, Option<u64>, Option<usize>)> = HashMap::new();
        let mut gens = vec![e.new_generation()];
        let (mut now, mut ver) = (0u64, 0u64);
        let (mut evicted, mut expired, mut stale) = (0u64, 0u64, 0u64);
        for step in 0..300 {
            let k = rng.below(24);
            let w = match rng.below(10) {
                0 => 0,
                1 => 1,
                2 => CAP as u32 / 2,
                3 => CAP as u32,
                4 => CAP as u32 + 1,
                _ => 1 + rng.below(CAP / 4) as u32,
            };
            ver += 1;
            let v = (k, ver, w);
            let fits = u64::from(w) <= CAP;
            let what;
            match rng.below(8) {
                0 | 1 => {
                    what = format!("insert {v:?}");
                    e.insert(k, v);
                    model.remove(&k);
                    if fits {
                        model.insert(k, (v, None, None));
                    }
                }
                2 => {
                    let ttl = 1 + rng.below(5);
                    what = format!("insert {v:?} ttl {ttl}");
                    e.insert_with_ttl(k, v, Duration::from_millis(ttl));
                    model.remove(&k);
                    if fits {
                        model.insert(k, (v, Some(now + ttl), None));
                    }
                }
                3 => {
                    let g = gens.len() - 1;
                    what = format!("insert {v:?} gen {g}");
                    e.insert_with_options(k, v, InsertOptions::new().generations(gens[g], None));
                    model.remove(&k);
                    if fits {
                        model.insert(k, (v, None, Some(g)));
                    }
                }
                4 => {
                    what = format!("remove {k}");
                    e.remove(&k);
                    model.remove(&k);
                }
                5 => {
                    let d = rng.below(4);
                    what = format!("advance {d}");
                    clock.advance(Duration::from_millis(d));
                    now += d;
                }
                6 => {
                    let g = gens.len() - 1;
                    what = format!("retire gen {g}");
                    e.retire(gens[g]);
                    gens.push(e.new_generation());
                }
                _ => {
                    what = format!("get_or_insert_with {v:?}");
                    let got = e.get_or_insert_with(k, || v);
                    match model.get(&k) {
                        Some((m, ..)) => assert_eq!(got, *m, "step {step}: {what}"),
                        None => {
                            assert_eq!(got, v, "step {step}: {what}");
                            if fits {
                                model.insert(k, (v, None, None));
                            }
                        }
                    }
                }
            }
            e.run_maintenance();
            // Dead in the model: expired or of a retired generation (reclaimed by now).
            model.retain(|_, (_, dl, g)| {
                if dl.is_some_and(|d| d <= now) {
                    expired += 1;
                    false
                } else if g.is_some_and(|g| g < gens.len() - 1) {
                    stale += 1;
                    false
                } else {
                    true
                }
            });
            let ctx = format!("{shards} shards, {workers} workers, step {step}: {what}");
            let held = accounts(&e, 0..24).unwrap_or_else(|err| panic!("{ctx}: {err}"));
            let total = e.weighted_size();
            let mut lost = Vec::new();
            for (k, (m, ..)) in model.clone() {
                match held.get(&k) {
                    Some(v) => assert_eq!(*v, m, "{ctx}: wrong value for {k}"),
                    None => {
                        evicted += 1;
                        model.remove(&k);
                        if m.2 > 0 && u64::from(m.2) + total <= CAP {
                            lost.push(m);
                        }
                    }
                }
            }
            for k in held.keys() {
                assert!(model.contains_key(k), "{ctx}: {k} served but never stored / dead");
            }
            // On several workers an entry with a deadline sends eviction through per-worker
            // cuts, which can lose entries that fit: the finding below.
            let ok = lost.is_empty() || workers > 1;
            assert!(ok, "{ctx}: evicted although they fit beside {total}: {lost:?}");
            let st = e.stats();
            let counted = (st.evictions, st.expirations, st.stale_reclaimed);
            assert_eq!(
                counted,
                (evicted, expired, stale),
                "{ctx}: (evictions, expirations, stale)"
            );
        }
    }
}

/// TTLs crossing their deadlines between stores, no maintenance in between: a heavy store
/// needing all the room the expired entries hold reclaims them (counted as expirations) and
/// evicts no live entry; an entry is gone from the very moment of its deadline.
#[test]
fn expired_entries_make_room_for_heavy_stores_before_any_live_one_goes() {
    for (shards, workers) in layouts() {
        let (e, clock) = weighted(100, shards, workers);
        for k in 0..5 {
            e.insert_with_ttl(k, (k, 0, 10), Duration::from_millis(10 + k));
        }
        (5..10).for_each(|k| e.insert(k, (k, 0, 10)));
        e.flush();
        clock.advance(Duration::from_millis(12));
        assert_eq!((0..3).filter(|k| e.get(k).is_some()).count(), 0, "deadline reached: gone");
        assert_eq!((3..5).filter(|k| e.get(k).is_some()).count(), 2);
        e.insert(50, (50, 0, 30));
        e.flush();
        let held = accounts(&e, (0..10).chain([50])).unwrap();
        let ctx = format!("{shards}/{workers}: {:?}", e.stats());
        assert!((3..10).chain([50]).all(|k| held.contains_key(&k)), "{ctx}: live lost");
        assert_eq!((e.stats().expirations, e.stats().evictions), (3, 0), "{ctx}");
        clock.advance(Duration::from_millis(2));
        e.insert(51, (51, 0, 20));
        e.flush();
        let held = accounts(&e, (0..10).chain([50, 51])).unwrap();
        assert_eq!(held.len(), 7, "{shards}/{workers}");
        assert_eq!((e.stats().expirations, e.stats().evictions), (5, 0), "{shards}/{workers}");
    }
}

/// Removing a key and storing it again with another weight, and replacing it with a heavier
/// or lighter value, without a flush in between: the total counts the last value only, and
/// nothing is evicted (no moment, whatever the batches, holds more than the capacity).
#[test]
fn remove_and_restore_with_another_weight_counts_the_last_one() {
    for (shards, workers) in layouts() {
        let (e, _c) = weighted(100, shards, workers);
        (0..4).for_each(|k| e.insert(k, (k, 0, 5)));
        e.insert(9, (9, 1, 10));
        e.remove(&9);
        e.insert(9, (9, 2, 50));
        e.insert(8, (8, 1, 3));
        e.insert(8, (8, 2, 25));
        e.insert(8, (8, 3, 7));
        e.flush();
        let held = accounts(&e, 0..10).unwrap();
        assert_eq!(held.get(&9), Some(&(9, 2, 50)), "{shards}/{workers}");
        assert_eq!(held.get(&8), Some(&(8, 3, 7)), "{shards}/{workers}");
        assert_eq!(e.weighted_size(), 77, "{shards}/{workers}");
        e.insert(9, (9, 3, 0));
        e.flush();
        e.remove(&8);
        e.insert(8, (8, 4, 80));
        e.flush();
        let held = accounts(&e, 0..10).unwrap();
        assert_eq!(held.get(&9), Some(&(9, 3, 0)), "{shards}/{workers}");
        assert_eq!(held.get(&8), Some(&(8, 4, 80)), "{shards}/{workers}");
        assert_eq!(e.weighted_size(), 100, "{shards}/{workers}");
        assert_eq!(e.stats().evictions, 0, "{shards}/{workers}: everything fits exactly");
    }
}

/// Capacity 0 stores nothing, weight 0 included; capacity 1 holds one entry of weight 1
/// beside any number of weight 0, and a store of weight 2 over it drops it.
#[test]
fn capacity_zero_and_one() {
    for (shards, workers) in [(1, 1), (2, 2), (8, 4)] {
        let (e, _c) = weighted(0, shards, workers);
        e.insert(1, (1, 0, 0));
        e.insert(2, (2, 0, 1));
        assert_eq!(e.get_or_insert_with(3, || (3, 0, 0)), (3, 0, 0));
        e.flush();
        assert!(accounts(&e, 0..4).unwrap().is_empty(), "capacity 0 stores nothing");

        let (e, _c) = weighted(1, shards, workers);
        (10..20).for_each(|k| e.insert(k, (k, 0, 0)));
        e.insert(1, (1, 0, 1));
        e.flush();
        assert_eq!(accounts(&e, 0..20).unwrap().len(), 11);
        assert_eq!(e.weighted_size(), 1);
        e.insert(1, (1, 1, 2));
        e.flush();
        let held = accounts(&e, 0..20).unwrap();
        assert_eq!((held.len(), e.weighted_size()), (10, 0), "{shards}/{workers}");
        e.insert(2, (2, 0, 1));
        e.flush();
        let held = accounts(&e, 0..20).unwrap();
        assert_eq!(held.get(&2), Some(&(2, 0, 1)), "{shards}/{workers}: 0 of 1 held");
        e.insert(3, (3, 0, 1));
        e.flush();
        let held = accounts(&e, 0..20).unwrap();
        assert_eq!(e.weighted_size(), 1, "{shards}/{workers}");
        assert!(held.contains_key(&2) != held.contains_key(&3), "{shards}/{workers}");
    }
}

/// A server's mix from four threads at once on 1–4 workers: heavy and light stores with TTLs and
/// generations, `get_or_insert_with` of values up to the capacity and beyond, removes, retirements,
/// `flush`, `clear` and the clock moving; every computed or found value is of its own key. Once
/// they are done, `flush` leaves the engine within capacity, and after `run_maintenance` the
/// accounts are exact and nothing dead or foreign is served.
#[test]
fn a_mixed_server_load_settles_exactly() {
    for (shards, workers) in [(1, 1), (2, 2), (3, 3), (8, 4), (5, 2)] {
        let (e, clock) = weighted(2000, shards, workers);
        let gens = Arc::new(parking_lot::Mutex::new(e.new_generation()));
        let e2 = e.clone();
        no_hang("mixed server load", move || {
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let (e, clock, gens) = (e2.clone(), clock.clone(), gens.clone());
                    std::thread::spawn(move || {
                        let mut rng = Rng(0xfeed + t * 31);
                        for i in 0..500 {
                            let k = rng.below(48);
                            let w = [0, 1, 3, 64, 500, 1000, 2000, 2001][rng.below(8) as usize];
                            let v = (k, t * 10_000 + i, w);
                            let g = *gens.lock();
                            match rng.below(9) {
                                0 => e.insert_with_options(
                                    k,
                                    v,
                                    InsertOptions::new().generations(g, None),
                                ),
                                1 => {
                                    e.insert_with_ttl(k, v, Duration::from_millis(1 + rng.below(4)))
                                }
                                2 => assert_eq!(e.get_or_insert_with(k, || v).0, k),
                                3 => e.remove(&k),
                                4 if t == 0 => clock.advance(Duration::from_millis(1)),
                                5 if t == 1 => {
                                    let mut cur = gens.lock();
                                    e.retire(*cur);
                                    *cur = e.new_generation();
                                }
                                6 if i % 50 == 0 => e.flush(),
                                7 if t == 2 && i % 100 == 0 => e.clear(),
                                _ => e.insert(k, v),
                            }
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
        });
        e.flush();
        let st = e.stats();
        assert!(st.weight <= 2000 && st.weight == e.weighted_size(), "{shards}/{workers}: {st:?}");
        e.run_maintenance();
        accounts(&e, 0..48).unwrap_or_else(|err| panic!("{shards}/{workers}: {err}"));
    }
}

/// Over 200 rounds of 2–4 shards: 1 and 2 hot (30 each), 3 (19) and 4 (10) cold, and one
/// entry of weight 1 with a TTL of an hour (`variant` 1; 2: and the clock then passes a tick
/// boundary, maintenance advancing the wheel) or none (0); the clock moves 5 ms; then 5 (60)
/// comes. Returns each entry evicted that would still fit beside what stayed.
fn live_ttl_losses(variant: u8, workers: usize) -> Vec<String> {
    let mut lost = Vec::new();
    for round in 0..200u64 {
        let shards = 2 + round as usize % 3;
        let (e, clock) = weighted(100, shards, workers);
        let ws = [(1u64, 30u32), (2, 30), (3, 19), (4, 10), (5, 60)];
        for &(k, w) in &ws[..4] {
            e.insert(k, (k, 0, w));
        }
        if variant >= 1 {
            e.insert_with_ttl(9, (9, 0, 1), Duration::from_secs(3600));
        }
        e.flush();
        for _ in 0..3 {
            assert!(e.get(&1).is_some() && e.get(&2).is_some());
        }
        if variant == 2 {
            // Past a tick boundary, the wheel advanced by maintenance, as every second.
            clock.advance(Duration::from_secs(1));
            e.run_maintenance();
        }
        clock.advance(Duration::from_millis(5));
        e.insert(5, (5, 0, 60));
        e.flush();
        let held = accounts(&e, 1..=9).unwrap();
        let total = e.weighted_size();
        let ttl = (variant >= 1).then_some((9, 1));
        for &(k, w) in ws.iter().chain(ttl.iter()) {
            if !held.contains_key(&k) && total + u64::from(w) <= 100 {
                lost.push(format!("round {round} ({shards}/{workers}): {k} ({w}) at {total}"));
            }
        }
    }
    lost
}

/// Control for the finding below: without any entry that has a deadline, nothing that fits
/// is lost with 1–3 workers; with one, on one worker, neither.
#[test]
fn a_heavy_store_loses_nothing_that_fits_without_deadlines_or_on_one_worker() {
    for w in 1..=3 {
        assert_eq!(live_ttl_losses(0, w), Vec::<String>::new(), "{w} workers, no TTL");
    }
    assert_eq!(live_ttl_losses(1, 1), Vec::<String>::new(), "1 worker, a live TTL");
}

/// A single *live* entry with a deadline (a TTL of an hour, nothing expired, nothing
/// retired, nothing removed) does not cost entries that fit, on two or three workers.
/// Scenario: 1 and 2 hot (30 each), 3 (19) and 4 (10) cold, 9 (1) with a TTL of 1 h; the
/// `ManualClock` moves 5 ms; 5 (60) is stored and the engine is 50 over. Finding of this
/// review: the shard holding 9 published a `due_at` that had come (the wheel bounded the
/// next tick's deadlines by the tick's start whatever it held), so the batch was not evicted
/// for inline but through `settle`'s cuts, which each worker names and evicts apart: ~10–20%
/// of rounds on 2 workers lost entries that fit, up to twice the excess evicted (e.g.
/// `round 50 (4 shards/2 workers): 2 (30) and 3 (19) evicted at 41 of 100`). Fixed in session
/// 25: the bound is the tick's start only while a bucket that may hold an entry of the next
/// tick is not empty (`Wheel::bound_next`). With an entry actually expired, the cuts of
/// different workers are still decided apart (`engine_rev_s25.rs`'s ignored finding), which
/// is why the sequential model above checks "nothing lost that fits" on one worker only.
#[test]
fn a_live_ttl_entry_does_not_cost_entries_that_fit_on_several_workers() {
    for w in [2, 3] {
        assert_eq!(live_ttl_losses(1, w), Vec::<String>::new(), "{w} workers, a live TTL");
        let after_a_tick = live_ttl_losses(2, w);
        assert_eq!(after_a_tick, Vec::<String>::new(), "{w} workers, a live TTL, a tick later");
    }
}
