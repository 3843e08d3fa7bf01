//! Review s25b: weighted capacity settling through per-shard cuts (1a63789): a worker names
//! the victims of all its shards' cuts first (each shard's write lock held once, nothing
//! evicted), keeps those that fit, then re-takes each lock and evicts the rest by handle
//! (`capacity::evict_cuts_weighted`). Between naming and evicting the locks are let go, and
//! the worker drops what each shard gave up (user `Drop`s, which may call back into the
//! engine). Accounting after `flush` (the engine's total against the values it serves,
//! `len`, `stats`, `validate`), capacity with 1–4 workers and several shards, dead entries
//! before live ones, zero-weight and heavy entries, and the unweighted path. Its two
//! findings failed on 1a63789 and pass since the fix that followed it (what one worker
//! evicts through its cuts is dropped only after the last cut): see their doc comments.
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{manual_engine_with, no_hang, HookedKey, Rng};
use memokit_engine::{Engine, InsertOptions, ManualClock};

/// Values carry their weight: `(id, weight)`.
type V = (u64, u32);
type E = Engine<HookedKey, V>;

fn weighted(cap: u64, shards: usize, workers: usize) -> (E, ManualClock) {
    let b = Engine::builder().max_capacity(cap).shards(shards).workers(workers);
    manual_engine_with(b.weigher(|_, v: &V| v.1))
}

fn k(id: u64) -> HookedKey {
    HookedKey::new(id)
}

/// After `flush`: the engine's total, `stats` and `len` against the values it serves for
/// `ids`, within capacity, every shard consistent. Returns the values served, or what is
/// wrong.
fn accounts(e: &E, ids: impl Iterator<Item = u64>) -> Result<HashMap<u64, V>, String> {
    let held: HashMap<u64, V> = ids.filter_map(|i| e.get(&k(i)).map(|v| (i, v))).collect();
    let sum: u64 = held.values().map(|v| u64::from(v.1)).sum();
    let st = e.stats();
    e.validate()?;
    if (e.weighted_size(), st.weight) != (sum, sum) {
        return Err(format!(
            "total {} / stats {} vs values held {sum}",
            e.weighted_size(),
            st.weight
        ));
    }
    if (e.len(), st.entries) != (held.len() as u64, held.len() as u64) {
        return Err(format!("len {} / entries {} vs {} held", e.len(), st.entries, held.len()));
    }
    if sum > e.max_capacity() {
        return Err(format!("over capacity after flush: {sum} of {}", e.max_capacity()));
    }
    Ok(held)
}

/// Where a key's `Drop` finds its engine (emptied at the end of a round, so that the keys
/// the engine holds do not keep it alive).
type Slot = Arc<Mutex<Option<E>>>;

/// A key whose `Drop`, the first time any such key of the round drops (`fired`), runs `f`
/// with the engine, on the worker that dropped it.
fn armed_key(id: u64, slot: &Slot, fired: &Arc<AtomicBool>, f: fn(&E, u64)) -> HookedKey {
    let (slot, fired) = (slot.clone(), fired.clone());
    HookedKey::with_drop(id, move || {
        let e = slot.lock().unwrap().clone();
        if let Some(e) = e {
            if !fired.swap(true, Ordering::SeqCst) {
                f(&e, id);
            }
        }
    })
}

/// One round of the settling scenario: `n` entries of weight 10 (ids 1..=n, each key armed
/// with `hook`), one of weight 1 (id 100) that has expired, then id 200 of weight `heavy`:
/// the expired entry sends the excess through `settle`'s per-shard cuts. Returns the
/// accounts after `flush`, and whether `hook` ran.
fn settle_round(
    cap: u64,
    shards: usize,
    n: u64,
    heavy: u32,
    hook: fn(&E, u64),
) -> (Result<HashMap<u64, V>, String>, bool) {
    let (e, clock) = weighted(cap, shards, 1);
    let (slot, fired): (Slot, _) = (Arc::new(Mutex::new(Some(e.clone()))), Arc::default());
    for id in 1..=n {
        e.insert(armed_key(id, &slot, &fired, hook), (id, 10));
    }
    e.insert_with_ttl(k(100), (100, 1), Duration::from_secs(1));
    e.flush();
    clock.advance(Duration::from_secs(5));
    e.insert(k(200), (200, heavy));
    e.flush();
    e.flush();
    let r = accounts(&e, (1..=n).chain([100, 200]));
    *slot.lock().unwrap() = None;
    (r, fired.load(Ordering::SeqCst))
}

/// Growing every other resident entry by 5 from a `Drop`, with a `Retire` pending (so that
/// the flush inline evicts nothing for it), then flushing on the worker.
fn retire_grow_flush(e: &E, me: u64) {
    e.retire(e.new_generation());
    for id in (1..=19).filter(|&id| id != me) {
        if e.contains_key(&k(id)) {
            e.insert(k(id), (id, 15));
        }
    }
    e.flush();
}

/// Control: the same rounds with key `Drop`s that do nothing. The engine's total equals
/// what it serves, within capacity, after every round (2–4 shards, one worker).
#[test]
fn settling_through_cuts_keeps_exact_accounts() {
    for round in 0..30u64 {
        let shards = 2 + round as usize % 3;
        let (r, _) = settle_round(200, shards, 19, 60, |_, _| {});
        let held = r.unwrap_or_else(|m| panic!("round {round} ({shards} shards): {m}"));
        assert!(held.contains_key(&1) || held.len() >= 13, "round {round}: {held:?}");
    }
}

/// A victim reweighed between naming and evicting leaves the engine's total exact.
/// Scenario (one worker, 2–4 shards, capacity 200): 19 entries of 10 and an expired one,
/// then a store of 60, so the excess (50) goes through `settle`'s cuts, named in two shards
/// or more. The first victim evicted drops its key on the worker; that `Drop` retires a fresh
/// generation, stores each other resident key again with weight 15 and calls `flush`, which
/// the worker serves inline (the replacements applied in place: same slot, same reuse count).
/// Finding of this review: on 1a63789 that `Drop` ran between two shards' evictions, and the
/// next shard's victims, still current, were reserved at the 10 named while 15 left: the
/// total stayed 5 per such victim above what the engine held, for good (9 of 40 rounds, e.g.
/// `3 shards: total 190 / stats 190 vs values held 180`). Fixed: what the cuts evict is
/// dropped after the last cut, and a victim is reserved at the weight the shard holds then.
/// (Did not fail before 1a63789: each cut was named and evicted in one hold.)
#[test]
fn a_victim_reweighed_between_naming_and_evicting_keeps_the_total_exact() {
    let mut bad = Vec::new();
    for round in 0..40u64 {
        let shards = 2 + round as usize % 3;
        if let (Err(m), _) = settle_round(200, shards, 19, 60, retire_grow_flush) {
            bad.push(format!("round {round} ({shards} shards): {m}"));
        }
    }
    assert_eq!(bad, Vec::<String>::new());
}

/// Removing every other resident key from a `Drop` and storing as many new keys of the same
/// weight, then flushing inline with a `Retire` pending: the new keys take the freed slots,
/// whose reuse counts have moved on, so the victims named before are no longer current and
/// are skipped. Exact accounts after every round.
#[test]
fn victims_whose_slots_were_reused_meanwhile_are_skipped() {
    fn churn(e: &E, me: u64) {
        e.retire(e.new_generation());
        for id in (1..=19).filter(|&id| id != me && e.contains_key(&k(id))) {
            e.remove(&k(id));
            e.insert(k(id + 1000), (id + 1000, 10));
        }
        e.flush();
    }
    for round in 0..30u64 {
        let shards = 2 + round as usize % 3;
        let (e, clock) = weighted(200, shards, 1);
        let (slot, fired): (Slot, _) = (Arc::new(Mutex::new(Some(e.clone()))), Arc::default());
        for id in 1..=19 {
            e.insert(armed_key(id, &slot, &fired, churn), (id, 10));
        }
        e.insert_with_ttl(k(100), (100, 1), Duration::from_secs(1));
        e.flush();
        clock.advance(Duration::from_secs(5));
        e.insert(k(200), (200, 60));
        e.flush();
        e.flush();
        let ids = (1..=19).chain(1001..=1019).chain([100, 200]);
        let r = accounts(&e, ids);
        *slot.lock().unwrap() = None;
        r.unwrap_or_else(|m| panic!("round {round} ({shards} shards): {m}"));
    }
}

/// A `Drop` of the first victim that clears the engine (served inline on the worker): every
/// victim named in the other shards is gone when the worker comes back to them. The engine
/// ends empty, with a total of 0 (rounds where only the heavy store was evicted fire no
/// `Drop` and keep the rest).
#[test]
fn a_clear_between_naming_and_evicting_leaves_the_engine_empty_and_exact() {
    let mut fired_rounds = 0;
    for round in 0..20u64 {
        let shards = 2 + round as usize % 3;
        let (r, fired) = settle_round(200, shards, 19, 60, |e, _| e.clear());
        let held = r.unwrap_or_else(|m| panic!("round {round} ({shards} shards): {m}"));
        if fired {
            fired_rounds += 1;
            assert_eq!(held, HashMap::new(), "round {round}");
        }
    }
    assert!(fired_rounds > 0, "no round evicted a key of weight 10");
}

/// A generation retired from a user's `Drop` while a worker settles through its cuts does
/// not cost live entries named before it. Scenario (one worker, 2–4 shards, capacity 260):
/// 19 live entries of 10, 6 of 10 under generation `g`, an expired one; a store of 60
/// leaves an excess of 50 for `settle`'s cuts. The first victim's `Drop` notes which live
/// keys are still there and retires `g` (60 of dead entries, enough for all the excess).
/// Finding of this review: on 1a63789 (and, less often, before it: 1–6 of 30 rounds) that
/// `Drop` ran between two shards' evictions and the worker went on evicting the live victims
/// it had named in the next shards while `g`'s entries were dead, against the module docs of
/// `capacity.rs` (~14 of 30 rounds, e.g. `2 shards: [4, 17] evicted after the retire`).
/// Fixed: the evicted entries are dropped only after the last cut, so the `Retire` comes
/// after this settling, and the victims named were the right ones when evicted.
#[test]
fn a_retire_between_naming_and_evicting_spares_the_live_victims() {
    static LIVE_AT_RETIRE: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    static GEN: Mutex<Option<memokit_engine::Generation>> = Mutex::new(None);
    fn note_and_retire(e: &E, _: u64) {
        let live = (1..=19).chain([200]).filter(|&id| e.contains_key(&k(id))).collect();
        *LIVE_AT_RETIRE.lock().unwrap() = live;
        e.retire(GEN.lock().unwrap().expect("a generation"));
    }
    let mut bad = Vec::new();
    for round in 0..30u64 {
        let shards = 2 + round as usize % 3;
        let (e, clock) = weighted(260, shards, 1);
        let (slot, fired): (Slot, _) = (Arc::new(Mutex::new(Some(e.clone()))), Arc::default());
        LIVE_AT_RETIRE.lock().unwrap().clear();
        let g = e.new_generation();
        *GEN.lock().unwrap() = Some(g);
        for id in 1..=19 {
            e.insert(armed_key(id, &slot, &fired, note_and_retire), (id, 10));
        }
        for id in 300..306 {
            let opts = InsertOptions::new().generations(g, None);
            e.insert_with_options(k(id), (id, 10), opts);
        }
        e.insert_with_ttl(k(100), (100, 1), Duration::from_secs(1));
        e.flush();
        clock.advance(Duration::from_secs(5));
        e.insert(k(200), (200, 60));
        e.flush();
        e.run_maintenance();
        let r = accounts(&e, (1..=19).chain([100, 200]).chain(300..306));
        *slot.lock().unwrap() = None;
        let held = r.unwrap_or_else(|m| panic!("round {round}: {m}"));
        let lost: Vec<u64> = LIVE_AT_RETIRE
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|id| !held.contains_key(id))
            .collect();
        if !lost.is_empty() {
            bad.push(format!("round {round} ({shards} shards): {lost:?} evicted after the retire"));
        }
    }
    assert_eq!(bad, Vec::<String>::new());
}

/// Over 60 rounds of 1–4 workers and 2–7 shards: entries of random weight (0, light, or up
/// to a third of the capacity), some with a deadline that the clock then passes, stored
/// from two threads at once, in batches with flushes in between. After each `flush`: within
/// capacity and consistent; once maintenance has reclaimed what expired, exact accounts and
/// every value that is gone counted once, as an eviction or an expiration.
#[test]
fn random_weights_workers_and_shards_keep_exact_accounts() {
    no_hang("random weighted rounds", || {
        for round in 0..60u64 {
            let mut rng = Rng(round * 7919 + 17);
            let (workers, shards) = (1 + round as usize % 4, 2 + rng.below(6) as usize);
            let cap = 300;
            let (e, clock) = weighted(cap, shards, workers.min(shards));
            let mut next = 0u64;
            for _step in 0..4 {
                let batch: Vec<(u64, u32, bool)> = (0..24)
                    .map(|_| {
                        next += 1;
                        let w = match rng.below(6) {
                            0 => 0,
                            1 => 1 + rng.below(cap / 3) as u32,
                            _ => 1 + rng.below(20) as u32,
                        };
                        (next, w, rng.below(4) == 0)
                    })
                    .collect();
                let (left, right) = batch.split_at(12);
                std::thread::scope(|s| {
                    for part in [left, right] {
                        let e = &e;
                        s.spawn(move || {
                            for &(id, w, ttl) in part {
                                if ttl {
                                    e.insert_with_ttl(k(id), (id, w), Duration::from_secs(1));
                                } else {
                                    e.insert(k(id), (id, w));
                                }
                            }
                        });
                    }
                });
                e.flush();
                let (size, what) =
                    (e.weighted_size(), format!("round {round} ({workers}/{shards})"));
                assert!(size <= cap, "{what}: {size} over capacity after flush");
                assert_eq!(e.validate(), Ok(()), "{what}");
                // Entries expired since the last step weigh until reclaimed.
                e.run_maintenance();
                let held = accounts(&e, 1..=next)
                    .unwrap_or_else(|m| panic!("round {round} ({workers}/{shards}): {m}"));
                let st = e.stats();
                assert_eq!(
                    st.evictions + st.expirations + held.len() as u64,
                    next,
                    "round {round} ({workers}/{shards}): {st:?}"
                );
                clock.advance(Duration::from_secs(2));
            }
        }
    });
}

/// Without a weigher nothing changed: with an expired entry in one of 5 shards and one
/// worker, 70 stores into a capacity of 50 leave exactly 50, the expired one reclaimed and
/// 20 evictions counted.
#[test]
fn the_unweighted_path_evicts_exactly_the_excess() {
    for round in 0..10u64 {
        let b = Engine::builder().max_capacity(50).shards(5).workers(1 + round as usize % 2);
        let (e, clock): (Engine<u64, u64>, _) = manual_engine_with(b);
        e.insert_with_ttl(1000, 0, Duration::from_secs(1));
        for i in 0..40 {
            e.insert(i, i);
        }
        e.flush();
        clock.advance(Duration::from_secs(5));
        for i in 40..70 {
            e.insert(i, i);
        }
        e.flush();
        let held = (0..70).filter(|i| e.get(i).is_some()).count() as u64;
        let st = e.stats();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!((held, e.len(), st.weight), (50, 50, 50), "round {round}: {st:?}");
        assert_eq!((st.evictions, st.expirations), (20, 1), "round {round}: {st:?}");
    }
}

/// Victims of weight 0 named in one shard while a heavy entry of another covers the excess,
/// in an engine of 8 nearly empty shards and one worker (the victims named fall short of
/// the excess in most shards): the engine ends within capacity with exact accounts, the
/// heavy newcomer is the one that goes when it alone covers the excess, and `flush` returns.
/// (Fails on the parent commit, ~1 round in 30: a 45 lost beside the newcomer, the s25
/// finding this commit fixed for one worker.)
#[test]
fn zero_weight_victims_and_nearly_empty_shards_settle_exactly() {
    no_hang("zero-weight settling", || {
        for round in 0..30u64 {
            let (e, clock) = weighted(100, 8, 1);
            for id in 1..=12 {
                e.insert(k(id), (id, 0));
            }
            e.insert(k(20), (20, 45));
            e.insert(k(21), (21, 45));
            e.insert_with_ttl(k(100), (100, 1), Duration::from_secs(1));
            e.flush();
            for _ in 0..3 {
                assert!(e.get(&k(20)).is_some() && e.get(&k(21)).is_some());
            }
            clock.advance(Duration::from_secs(5));
            e.insert(k(30), (30, 70));
            e.flush();
            let held = accounts(&e, (1..=12).chain([20, 21, 30, 100]))
                .unwrap_or_else(|m| panic!("round {round}: {m}"));
            let heavy = (held.contains_key(&20), held.contains_key(&21), held.contains_key(&30));
            assert_eq!(heavy, (true, true, false), "round {round}: {held:?}");
            let st = e.stats();
            let gone = 16 - held.len() as u64;
            assert_eq!(st.evictions + st.expirations, gone, "round {round}: {st:?}");
        }
    });
}

/// The unweighted counterpart of the test above (session 25): a generation retired from a
/// user's `Drop` between two shards' cuts. Capacity 26: 19 live armed entries, 6 under `g`
/// and one that has expired; then 6 new keys in one batch leave an excess of 5 for
/// `settle`'s cuts once the expired one is reclaimed. The first victim's `Drop` retires `g`
/// (6 dead entries, more than the excess). No live entry may be evicted after that `Retire`
/// while `g`'s entries stay to be reclaimed: the worker drops what its cuts evicted only
/// after the last cut. Before that (each cut's evictions dropped before the next cut), 1–3
/// of the 300 rounds lost a live entry in five runs out of six.
#[test]
fn unweighted_cuts_spare_live_entries_after_a_retire_from_a_drop() {
    static LIVE_AT_RETIRE: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    static GEN: Mutex<Option<memokit_engine::Generation>> = Mutex::new(None);
    fn note_and_retire(e: &E, _: u64) {
        let live = (1..=19).chain(200..206).filter(|&id| e.contains_key(&k(id))).collect();
        *LIVE_AT_RETIRE.lock().unwrap() = live;
        e.retire(GEN.lock().unwrap().expect("a generation"));
    }
    let mut bad = Vec::new();
    for round in 0..300u64 {
        let shards = 2 + round as usize % 3;
        let b = Engine::builder().max_capacity(26).shards(shards).workers(1);
        let (e, clock): (E, _) = manual_engine_with(b);
        let (slot, fired): (Slot, _) = (Arc::new(Mutex::new(Some(e.clone()))), Arc::default());
        LIVE_AT_RETIRE.lock().unwrap().clear();
        let g = e.new_generation();
        *GEN.lock().unwrap() = Some(g);
        for id in 1..=19 {
            e.insert(armed_key(id, &slot, &fired, note_and_retire), (id, 1));
        }
        for id in 300..306 {
            e.insert_with_options(k(id), (id, 1), InsertOptions::new().generations(g, None));
        }
        e.insert_with_ttl(k(100), (100, 1), Duration::from_secs(1));
        e.flush();
        clock.advance(Duration::from_secs(5));
        for id in 200..206 {
            e.insert(k(id), (id, 1));
        }
        e.flush();
        e.run_maintenance();
        let r = accounts(&e, (1..=19).chain([100]).chain(200..206).chain(300..306));
        *slot.lock().unwrap() = None;
        let held = r.unwrap_or_else(|m| panic!("round {round}: {m}"));
        let lost: Vec<u64> = LIVE_AT_RETIRE
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|id| !held.contains_key(id))
            .collect();
        if !lost.is_empty() {
            bad.push(format!("round {round} ({shards} shards): {lost:?} evicted after the retire"));
        }
    }
    assert_eq!(bad, Vec::<String>::new());
}
