//! Review s26: a weighted excess settled by one worker, the owner of the heaviest shard, which
//! cuts its own shards for the whole of it (`capacity::settle`, 9f45819). Probes: hops that
//! end (different numbers of shards per worker, 2–4 workers, zero-weight entries, entries of
//! the whole capacity or beyond it, expired and retired entries, concurrent stores), entries
//! lost that would still fit, each worker's shards keeping their share with varied weights,
//! and exact accounts after `flush`. A key's shard is learnt from the worker thread that drops
//! its value (with as many workers as shards, worker `i` owns shard `i` alone). Two findings,
//! both fixed in session 26 (see their doc comments): an excess beyond what the heaviest
//! shard's worker holds was settled by two workers in turn, losing entries that fit; and a
//! race in which workers settling from a `flush` read an excess before its shard's weight was
//! published.
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::weighted::{check_accounts, weighted, Log, Val, V};
use common::{env_u64, manual_engine_with, no_hang, stall, wait_until, HookedKey, Rng};
use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};

type Tracked = Engine<HookedKey, Val>;

fn tracked(cap: u64, shards: usize, workers: usize) -> (Tracked, ManualClock, Log) {
    let b = Engine::builder().max_capacity(cap).shards(shards).workers(workers);
    let (e, clock) = manual_engine_with(b.weigher(|_, v: &Val| v.w));
    (e, clock, Log::default())
}

fn val(log: &Log, id: u64, w: u32) -> Val {
    Val { id, w, log: log.clone() }
}

/// The worker of each key of `ids` (each stored at weight 0, removed, its value's drop seen);
/// the log is emptied afterwards.
fn workers_of(e: &Tracked, log: &Log, ids: std::ops::Range<u64>) -> BTreeMap<u64, usize> {
    ids.clone().for_each(|k| e.insert(HookedKey::new(k), val(log, k, 0)));
    e.flush();
    ids.clone().for_each(|k| e.remove(&HookedKey::new(k)));
    e.flush();
    let mut log = log.lock().unwrap();
    let map = ids.map(|k| (k, log[&k])).collect();
    log.clear();
    map
}

/// The keys of `map` on worker `w`.
fn on(map: &BTreeMap<u64, usize>, w: usize) -> Vec<u64> {
    map.iter().filter(|&(_, &x)| x == w).map(|(&k, _)| k).collect()
}

/// Capacity 60, three shards and three workers (worker `i` owns shard `i`): shard 0 holds
/// eight light entries (5 each, 40 in all) and an expired one (1); a heavy entry (40) is
/// stored into each of shards 1 and 2, one store after the other, then `flush`. With both
/// batches applied before worker 0 settles, the excess (60 once the expired entry is
/// reclaimed) is more than the heaviest shard (shard 0, 40: ties go to the lowest index)
/// holds. `hold`: worker 0 is held in a key's `Drop` (as a slow `Drop` or a large batch would
/// hold it) until both batches are applied; otherwise the stores race it. Checks the accounts
/// after `flush` (within capacity, the total is what is served, `len`, `stats`, `validate`)
/// and returns the entries lost that would still fit, with the worker that evicted each.
fn excess_beyond_the_heaviest(hold: bool) -> Vec<String> {
    let (e, clock, log) = tracked(60, 3, 3);
    let map = workers_of(&e, &log, 0..400);
    let (s0, s1, s2) = (on(&map, 0), on(&map, 1), on(&map, 2));
    assert!(s0.len() >= 10 && !s1.is_empty() && !s2.is_empty(), "{map:?}");
    let (dead, held_by) = (s0[8], s0[9]);
    let mut weights: Vec<(u64, u32)> = s0[..8].iter().map(|&k| (k, 5)).collect();
    weights.extend([(s1[0], 40), (s2[0], 40)]);
    for &(k, w) in &weights[..8] {
        e.insert(HookedKey::new(k), val(&log, k, w));
    }
    e.insert_with_ttl(HookedKey::new(dead), val(&log, dead, 1), Duration::from_secs(1));
    e.flush();
    clock.advance(Duration::from_secs(2));
    let key = |hook: Option<common::Hook>| match hook {
        Some(h) => HookedKey::with_drop(held_by, h),
        None => HookedKey::new(held_by),
    };
    let held = hold.then(|| stall(&e, key, val(&log, held_by, 0)));
    for &(k, w) in &weights[8..] {
        e.insert(HookedKey::new(k), val(&log, k, w));
    }
    if let Some(s) = held {
        wait_until("both heavy batches applied", || e.weighted_size() == 121);
        s.release();
    }
    let e2 = e.clone();
    no_hang("flush", move || e2.flush());
    let (total, st) = (e.weighted_size(), e.stats());
    assert!(total <= 60, "over capacity after flush: {st:?}");
    assert_eq!(e.validate(), Ok(()));
    let kept: Vec<&(u64, u32)> =
        weights.iter().filter(|(k, _)| e.contains_key(&HookedKey::new(*k))).collect();
    let sum: u64 = kept.iter().map(|p| u64::from(p.1)).sum();
    assert_eq!((sum, st.weight, e.len(), st.entries), (total, total, kept.len() as u64, e.len()));
    let log = log.lock().unwrap();
    weights
        .iter()
        .filter(|&&(k, w)| !e.contains_key(&HookedKey::new(k)) && total + u64::from(w) <= 60)
        .map(|&(k, w)| format!("{k} ({w}, evicted by worker {:?}) at {total} of 60", log.get(&k)))
        .collect()
}

/// Finding (fixed: `capacity::weighted_turn`, the worker holding the most evicts last, after
/// another has evicted what it cannot cover): an excess that the heaviest shard's worker
/// cannot cover. Worker 0 (shard 0: 40
/// in eight entries of 5) names all eight, keeps none (none can stay while its cut falls short
/// of the excess), evicts them, and passes the rest (20) to worker 1, which evicts the heavy
/// entry of shard 1 (40): 80 evicted for an excess of 60, and four of the light entries
/// would still fit beside the 40 left. Fails every run (10 of 10), all eight listed, e.g.
/// `["2 (5, evicted by worker Some(0)) at 40 of 60", "3 (5, ...) at 40 of 60", ...]`. The
/// builder's `weigher` docs say the victims of an excess are chosen by one worker and that
/// only two workers settling *at the same moment* decide apart; here they decide one after
/// the other, through `settle`'s hop (`evict_cuts(own)` falls short, then `ask`).
#[test]
fn an_excess_beyond_the_heaviest_workers_shards_loses_nothing_that_fits() {
    assert_eq!(excess_beyond_the_heaviest(true), Vec::<String>::new());
}

/// Finding (fixed as above), the same with nothing held: two stores in a row and a `flush`. Both
/// batches are usually applied before worker 0 settles, and then the round loses as above (all
/// eight light entries evicted, four of which fit back at once): 32, 26, 60, 56 and 29 of 60 rounds
/// in 5 runs (55–59 in the runs before, on 2 shared cores), e.g. `32 of 60 rounds lost entries,
/// e.g. ["1 (5, evicted by worker Some(0)) at 40 of 60", ...]`.
#[test]
fn two_heavy_stores_in_a_row_lose_nothing_that_fits_with_an_expired_entry() {
    let rounds = 60;
    let lost: Vec<Vec<String>> =
        (0..rounds).map(|_| excess_beyond_the_heaviest(false)).filter(|l| !l.is_empty()).collect();
    assert!(lost.is_empty(), "{} of {rounds} rounds lost entries, e.g. {:?}", lost.len(), lost[0]);
}

/// Guard: the hops of that excess end, within capacity, with exact accounts (the checks of
/// `excess_beyond_the_heaviest`), held or racing.
#[test]
fn an_excess_beyond_the_heaviest_workers_shards_ends_within_capacity() {
    excess_beyond_the_heaviest(true);
    for _ in 0..10 {
        excess_beyond_the_heaviest(false);
    }
}

/// A weight drawn for the guards: mostly 1 to a third of `cap`, sometimes 0, `cap` or beyond.
fn draw_weight(rng: &mut Rng, cap: u64) -> u32 {
    match rng.below(20) {
        0 => 0,
        1 => cap as u32,
        2 => cap as u32 + 1,
        _ => 1 + rng.below(cap / 3) as u32,
    }
}

/// Sequential stores, each flushed, on 2–8 shards and 2–4 workers (so workers own different
/// numbers of shards), with entries that expire (TTLs of 1.5 s and 2.5 s, the clock moved by
/// whole seconds) and generations retired, weights 0 to beyond the capacity. After each
/// flush: within capacity, nothing stale served, the total at least what is served, and
/// (with `fit`) a live entry gone only if it would not fit beside what is served now (weight
/// 0 aside: such a victim goes, as documented); after `run_maintenance`, exact accounts.
fn sequential_rounds(rounds: u64, fit: bool) {
    const CAP: u64 = 100;
    let mut rng = Rng(env_u64("S26_SEED", 0x5eed_0026));
    for round in 0..env_u64("S26_ROUNDS", rounds) {
        let (shards, workers) = (2 + rng.below(7) as usize, 2 + rng.below(3) as usize);
        let (e, clock) = weighted(CAP, shards, workers);
        let mut gen = e.new_generation();
        // What each key should hold: its value, deadline (ms) and generation.
        let mut model: HashMap<u64, (V, u64, Option<Generation>)> = HashMap::new();
        let mut now = 0u64;
        for step in 0..120u64 {
            let event = rng.below(8);
            match event {
                0 => {
                    clock.advance(Duration::from_secs(1));
                    now += 1000;
                }
                1 => {
                    e.retire(gen);
                    gen = e.new_generation();
                }
                _ => {}
            }
            let (k, w) = (rng.below(24), draw_weight(&mut rng, CAP));
            let (mut opts, mut entry) = (InsertOptions::new(), ((step, w), u64::MAX, None));
            if rng.below(3) == 0 {
                let ttl = 1500 + 1000 * rng.below(2);
                opts = opts.ttl(Duration::from_millis(ttl));
                entry.1 = now + ttl;
            }
            if rng.below(4) == 0 {
                opts = opts.generations(gen, None);
                entry.2 = Some(gen);
            }
            e.insert_with_options(k, (step, w), opts);
            e.flush();
            let prev: Vec<(u64, u32)> = model.iter().map(|(&k, x)| (k, x.0 .1)).collect();
            let mut before = std::mem::take(&mut model);
            before.remove(&k);
            if u64::from(w) <= CAP {
                before.insert(k, entry);
            }
            let live = |&(_, d, g): &(V, u64, Option<Generation>)| {
                d > now && g.is_none_or(|g| e.is_live(g))
            };
            before.retain(|_, x| live(x));
            let served: HashMap<u64, V> =
                (0..24).filter_map(|k| e.get(&k).map(|v| (k, v))).collect();
            let sum: u64 = served.values().map(|v| u64::from(v.1)).sum();
            let ctx = format!(
                "round {round} ({shards} shards, {workers} workers) step {step} (event {event}, \
                 stored {k}: {entry:?}; held before {prev:?})"
            );
            let size = e.weighted_size();
            assert!(sum <= size && size <= CAP, "{ctx}: {sum} served, {:?}", e.stats());
            for (kk, v) in &served {
                assert_eq!(Some(v), before.get(kk).map(|x| &x.0), "{ctx}: key {kk} stale");
            }
            for (kk, x) in before {
                if served.contains_key(&kk) {
                    model.insert(kk, x);
                } else {
                    // Weight 0 may go as a victim, as the weigher's docs say.
                    let w = x.0 .1;
                    assert!(
                        !fit || w == 0 || sum + u64::from(w) > CAP,
                        "{ctx}: {kk} ({w}) lost, fits beside {sum}"
                    );
                }
            }
        }
        e.run_maintenance();
        check_accounts(&e, 0..24);
    }
}

/// Guard: the accounts of `sequential_rounds` (24 rounds of 120 steps).
#[test]
fn sequential_stores_with_dead_entries_keep_exact_accounts() {
    sequential_rounds(24, false);
}

/// Finding (fixed: `apply_then` publishes the shard's weight before the growth), a race,
/// rare: the same, nothing lost that fits. A single store and `flush`: the
/// batch's worker adds its growth to the engine's total (`apply_then`, after `then`) before
/// its write lock is let go, which is when the shard's weight is published (`WorkerLock`'s
/// drop); the other workers, settling from the flush's drain meanwhile, read the new excess
/// with the old weight of that shard, so another shard looks the heaviest and its worker
/// evicts for the excess from its own shards, while the batch's worker then evicts the
/// newcomer too. Traced on an instrumented copy: `7 shards, 4 workers`, a store of 100 into
/// shard 1 (total 199): workers 3, 0 and 2 read `[(0, 19), (1, 0), (2, 0), (3, 28), (4, 0),
/// (5, 14), (6, 38)]`, worker 2 evicted 25 and 13 from shard 6, then worker 1 evicted the
/// 100: 25 and 13 lost at 61 of 100. Rate (400 rounds, 48,000 steps, a run): 1 of 16 runs,
/// twice (seeds 1–8, two passes each), 2 of 8 and 2 of 5 under heavier load, e.g. `round 60
/// (8 shards, 4 workers) step 93 (... stored 3: ((93, 100), ..)): 12 (31) lost, fits beside
/// 64`; every failure seen stored an entry of the whole capacity. On 9f45819^ it fails in
/// round 0 of every run. The copy publishing the shard's weight before the growth: 0 of 16.
#[test]
fn sequential_stores_with_dead_entries_lose_nothing_that_fits() {
    sequential_rounds(400, true);
}

/// Guard: three threads store at once (weights 0 to beyond the capacity, some with TTLs,
/// some under a generation retired meanwhile), remove and flush now and then, while the main
/// thread moves the clock and flushes until they are done; 2–8 shards, 2–4 workers. Never a
/// hang; after the threads are joined, a `flush` ends within capacity with `validate`
/// holding, and after `run_maintenance` the accounts are exact. 30 rounds.
#[test]
fn concurrent_stores_with_dead_entries_end_within_capacity() {
    const CAP: u64 = 100;
    no_hang("concurrent rounds", || {
        let mut rng = Rng(env_u64("S26_SEED", 0x5eed_2626));
        for round in 0..env_u64("S26_CROUNDS", 30) {
            let (shards, workers) = (2 + rng.below(7) as usize, 2 + rng.below(3) as usize);
            let (e, clock) = weighted(CAP, shards, workers);
            let gen = e.new_generation();
            let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let threads: Vec<_> = (0..3u64)
                .map(|t| {
                    let (e, done) = (e.clone(), done.clone());
                    std::thread::spawn(move || {
                        let mut rng = Rng(round * 7 + t + 1);
                        for i in 0..300u64 {
                            let (k, w) = (rng.below(40), draw_weight(&mut rng, CAP));
                            let opts = match rng.below(4) {
                                0 => InsertOptions::new().ttl(Duration::from_millis(1500)),
                                1 => InsertOptions::new().generations(gen, None),
                                _ => InsertOptions::new(),
                            };
                            e.insert_with_options(k, (i, w), opts);
                            match rng.below(10) {
                                0 => e.remove(&rng.below(40)),
                                1 if t == 0 && i == 150 => e.retire(gen),
                                2 => e.flush(),
                                _ => {}
                            }
                        }
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    })
                })
                .collect();
            while done.load(std::sync::atomic::Ordering::SeqCst) < 3 {
                clock.advance(Duration::from_millis(500));
                e.flush();
            }
            threads.into_iter().for_each(|t| t.join().unwrap());
            e.flush();
            let ctx = format!("round {round} ({shards} shards, {workers} workers)");
            assert!(e.weighted_size() <= CAP, "{ctx}: over capacity: {:?}", e.stats());
            assert_eq!(e.validate(), Ok(()), "{ctx}");
            clock.advance(Duration::from_secs(2));
            e.run_maintenance();
            check_accounts(&e, 0..40);
        }
    });
}

/// Each worker's share of what the engine holds, stores of varied weights (1 to `max_w`)
/// each followed by a tick boundary and `flush` (so that every excess goes through `settle`):
/// what each worker's shards hold at the end (learnt from the worker that drops each value on
/// `clear`), against an even share of the capacity by the number of shards it owns.
fn worker_shares(shards: usize, workers: usize, max_w: u64, steps: u64) -> (Vec<u64>, Vec<u64>) {
    const CAP: u64 = 2_048;
    let (e, clock, log) = tracked(CAP, shards, workers);
    let mut rng = Rng(shards as u64 * 31 + workers as u64);
    let mut weights = HashMap::new();
    for k in 0..steps {
        let w = 1 + rng.below(max_w) as u32;
        weights.insert(k, w);
        let opts = InsertOptions::new().ttl(Duration::from_secs(1 << 20));
        e.insert_with_options(HookedKey::new(k), val(&log, k, w), opts);
        clock.advance(Duration::from_secs(1));
        e.flush();
    }
    assert!(e.weighted_size() <= CAP && e.validate().is_ok(), "{:?}", e.stats());
    log.lock().unwrap().clear();
    e.clear();
    let mut held = vec![0u64; workers];
    for (k, w) in log.lock().unwrap().iter() {
        held[*w] += u64::from(weights[k]);
    }
    // Worker `w` owns shards `w`, `w + workers`, ...
    let owned = |w: usize| (shards - w).div_ceil(workers) as u64;
    let fair = (0..workers).map(|w| CAP * owned(w) / shards as u64).collect();
    (held, fair)
}

/// Guard: with varied weights no worker's shards are emptied for the others: each worker
/// ends with at least 3/4 of its even share (2–3 workers owning 1–3 shards each; weights up
/// to 1/128 and 1/16 of the capacity).
#[test]
fn each_workers_shards_keep_their_share_with_varied_weights() {
    for (shards, workers) in [(2, 2), (3, 3), (5, 2), (4, 3), (3, 2), (8, 3)] {
        for max_w in [16, 128] {
            let (held, fair) = worker_shares(shards, workers, max_w, 4_000);
            let ok = held.iter().zip(&fair).all(|(h, f)| h * 4 >= f * 3);
            assert!(ok, "{shards} shards, {workers} workers, weights to {max_w}: held {held:?}, fair {fair:?}");
        }
    }
}
