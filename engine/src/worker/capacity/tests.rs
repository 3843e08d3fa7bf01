//! Unit tests of keeping the engine within its capacity.

use std::time::Duration;

use super::quotas;
use crate::{Engine, InsertOptions, ManualClock};

/// Stores of new keys that no `Work` applied (gathered below their shard's threshold) are
/// applied by `flush`, `run_maintenance` and the tick; the evictions they call for must
/// come from the shard each went to, as after a `Work`. Evicting for them from the
/// worker's first shard emptied it while the others overflowed (the `memokit` column of
/// `benches/hit_ratio.rs`, which flushes after every miss, fell from 31% to 5% on Zipf 0.8).
/// `step` stores key `k` and has it applied, on an engine of 2,048 entries with `shards`
/// shards and `workers` workers (`weighted`: with a weigher giving each entry 1); every
/// shard must end with at least 3/4 of its share.
fn each_shard_keeps_its_share(
    shards: usize,
    workers: usize,
    weighted: bool,
    step: impl Fn(&Engine<u64, u64>, &ManualClock, u64),
) {
    let clock = ManualClock::new();
    let b = Engine::builder().max_capacity(2_048).shards(shards).workers(workers);
    let b = if weighted { b.weigher(|_, _| 1) } else { b };
    let e: Engine<u64, u64> = b.clock(clock.clone()).build().expect("engine");
    for k in 0..8_192 {
        step(&e, &clock, k);
    }
    e.flush();
    let lens: Vec<usize> = e.shared().cells.iter().map(|c| c.core.read().len()).collect();
    assert_eq!(lens.iter().sum::<usize>(), 2_048);
    let fair = 2_048 / shards;
    assert!(
        lens.iter().all(|&n| n >= fair * 3 / 4),
        "{shards} shards, {workers} workers: {lens:?}"
    );
}

#[test]
fn flush_evicts_from_the_shard_it_applied() {
    each_shard_keeps_its_share(2, 1, false, |e, _, k| {
        e.insert(k, k);
        e.flush();
    });
}

#[test]
fn maintenance_evicts_from_the_shard_it_applied() {
    each_shard_keeps_its_share(2, 1, false, |e, _, k| {
        e.insert(k, k);
        e.run_maintenance();
    });
}

/// A store with a deadline, then a tick boundary, then `flush`.
fn store_then_tick(e: &Engine<u64, u64>, clock: &ManualClock, k: u64) {
    e.insert_with_options(k, k, InsertOptions::new().ttl(Duration::from_secs(1 << 20)));
    clock.advance(Duration::from_secs(1));
    e.flush();
}

/// The same while the shards may hold expired entries when the batches are applied (a
/// tick boundary has passed since the wheels last advanced, as at every tick of the real
/// clock, whose drain comes before its maintenance): the evictions wait for `settle`,
/// which reclaims first and must then spread them over the shards (the heaviest first).
/// Settling once after all of them, from the worker's first shard, emptied that shard.
#[test]
fn flush_evicts_from_the_shard_it_applied_while_entries_may_have_expired() {
    each_shard_keeps_its_share(2, 1, false, store_then_tick);
}

/// With two workers, a batch over capacity while the other worker's shards may hold
/// expired entries (a tick boundary has passed) asks that worker to settle, which then
/// evicts what reclaiming did not cover. Evicting from its first shard every time (and,
/// after a batch, the whole excess from the batch's shard) emptied shards for good
/// (`[1, 3, 1033, 1011]`): inserts evict from their own shard, so a shard that lost
/// entries there never got them back. Cutting only the asked worker's own shards still
/// moved weight from one worker's shards to another's for good: with three workers
/// (`[0, 1, 1023, 0, 1, 1023]`), or two owning three shards and two
/// (`[682, 0, 683, 0, 683]`).
#[test]
fn settling_for_another_worker_spreads_its_evictions() {
    for (shards, workers) in [(4, 2), (5, 2), (6, 3), (3, 3), (8, 3)] {
        each_shard_keeps_its_share(shards, workers, false, store_then_tick);
    }
}

/// The same with a weigher, where one worker names every victim of an excess.
#[test]
fn settling_for_another_worker_spreads_its_weighted_evictions() {
    for (shards, workers) in [(4, 2), (5, 2), (6, 3), (3, 3), (8, 3)] {
        each_shard_keeps_its_share(shards, workers, true, store_then_tick);
    }
}

/// The keys below `n` that fall in shards 0 and 1, which workers 0 and 1 own.
fn keys_per_worker<V>(s: &crate::shared::Shared<u64, V>, n: u64) -> [Vec<u64>; 2]
where
    V: Clone + Send + Sync + 'static,
{
    assert_eq!((s.cells[0].worker, s.cells[1].worker), (0, 1));
    let mut keys = [Vec::new(), Vec::new()];
    for k in 0..n {
        keys[s.cell_index(s.hash(&k))].push(k);
    }
    keys
}

/// Two keys in each of shards 0 and 1 ([`keys_per_worker`]).
fn two_keys_per_worker<V>(s: &crate::shared::Shared<u64, V>) -> ([u64; 2], [u64; 2])
where
    V: Clone + Send + Sync + 'static,
{
    let keys = keys_per_worker(s, 100);
    ([keys[0][0], keys[0][1]], [keys[1][0], keys[1][1]])
}

/// A value whose `Drop` holds its thread (a worker) at a gate until released.
struct Gated(
    Option<std::sync::Arc<(std::sync::atomic::AtomicBool, std::sync::atomic::AtomicBool)>>,
);

impl Drop for Gated {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.0.store(true, std::sync::atomic::Ordering::SeqCst);
            while !g.1.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
    }
}

/// A remove, then a store of a new key into another worker's shard, the remove's worker
/// busy (held in a user's `Drop`): the live entries never exceed the capacity, so none
/// may be evicted. Before `Cell::hides`, the store's worker found the engine over capacity
/// by the removed entry (still weighing while its remove waited), nothing dead anywhere
/// (no deadline had come), and evicted a live entry from its own shard:
/// `left: [false, true, true]`, `evictions: 1, entries: 2`.
#[test]
fn a_pending_remove_goes_before_a_live_entry() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let e: Engine<u64, Arc<Gated>> = Engine::builder()
        .max_capacity(3)
        .shards(2)
        .workers(2)
        .clock(ManualClock::new())
        .build()
        .expect("engine");
    let s = e.shared();
    let ([a, g], [c, d]) = two_keys_per_worker(s);
    let gate = Arc::new((AtomicBool::new(false), AtomicBool::new(false)));
    e.insert(a, Arc::new(Gated(None)));
    e.insert(g, Arc::new(Gated(Some(gate.clone()))));
    e.insert(c, Arc::new(Gated(None)));
    e.flush();
    assert_eq!(e.len(), 3);
    // Worker 0 replaces g's value and drops the old one: held at the gate.
    e.insert_with_ttl(g, Arc::new(Gated(None)), Duration::from_secs(1000));
    while !gate.0.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let applied = s.cells[1].applied.load(Ordering::SeqCst);
    e.remove(&a);
    e.insert(d, Arc::new(Gated(None)));
    // Worker 1 applies d's store while worker 0 is still held (and, once its write lock
    // is let go, has evicted whatever it evicts within the batch).
    let s1 = &s.cells[1];
    while s1.applied.load(Ordering::SeqCst) == applied {
        std::thread::yield_now();
    }
    drop(s1.core.read());
    gate.1.store(true, Ordering::SeqCst);
    e.flush();
    let st = e.stats();
    let live = [c, d, g].map(|k| e.get(&k).is_some());
    assert_eq!(live, [true; 3], "live entries evicted, the live weight (3) fitting: {st:?}");
    assert_eq!((st.evictions, st.entries, e.get(&a).is_some()), (0, 3, false));
}

/// With a weigher, a pending replacement that shrinks an entry goes first too (as a
/// remove does above): a weighs 2, then is replaced with weight 1 while worker 0 is held;
/// a store of d into worker 1's shard finds the engine over capacity by a's old weight
/// only, the live weight (4) fitting. Fails if a weighted replacement does not set
/// `Cell::hides` (checked with the condition cut to `!counted`: one live entry evicted).
#[test]
fn a_pending_shrinking_replacement_goes_before_a_live_entry() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    type V = (u32, Arc<Gated>);
    let e: Engine<u64, V> = Engine::builder()
        .max_capacity(4)
        .shards(2)
        .workers(2)
        .weigher(|_, v: &V| v.0)
        .clock(ManualClock::new())
        .build()
        .expect("engine");
    let s = e.shared();
    let ([a, g], [c, d]) = two_keys_per_worker(s);
    let v = |w: u32| (w, Arc::new(Gated(None)));
    let gate = Arc::new((AtomicBool::new(false), AtomicBool::new(false)));
    e.insert(a, v(2));
    e.insert(g, (1, Arc::new(Gated(Some(gate.clone())))));
    e.insert(c, v(1));
    e.flush();
    assert_eq!((e.len(), e.stats().weight), (3, 4));
    // Worker 0 replaces g's value and drops the old one: held at the gate.
    e.insert_with_ttl(g, v(1), Duration::from_secs(1000));
    while !gate.0.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let applied = s.cells[1].applied.load(Ordering::SeqCst);
    e.insert_with_ttl(a, v(1), Duration::from_secs(1000));
    e.insert(d, v(1));
    let s1 = &s.cells[1];
    while s1.applied.load(Ordering::SeqCst) == applied {
        std::thread::yield_now();
    }
    drop(s1.core.read());
    gate.1.store(true, Ordering::SeqCst);
    e.flush();
    let st = e.stats();
    let live = [a, c, d, g].map(|k| e.get(&k).is_some());
    assert_eq!(live, [true; 4], "live entries evicted, the live weight (4) fitting: {st:?}");
    assert_eq!((st.evictions, st.entries, st.weight), (0, 4, 4));
}

/// A store that hides a resident entry, taken out of the pending table by a remove of
/// its key after the worker reclaimed that entry (the remove then finds nothing to hide),
/// leaves the table empty. `Cell::hides` must not outlive it: while it stayed set, every
/// other worker took the shard's worker for one that may hold dead entries and asked it
/// to settle instead of evicting, while that worker, finding nothing dead, asked back for
/// the cut of their heavier shards; `flush` gave up over capacity (`len 18`, `weight 18`,
/// `evictions 0`; `tests/engine_rev_s17b.rs`, `batched_unweighted_model`, about 1 run in
/// 50).
///
/// Two workers, each owning one shard. Sixteen entries of generation `g` in shard 0, each
/// applied alone (so its list holds them in that order); `g` retired; a maintenance step
/// reclaims them in slices of 8. Held after the first slice (in the first entry's value's
/// `Drop`), `x` (the ninth, stale but resident) is stored again with a deadline: the store
/// hides it and waits in the table. Held after the second slice, which reclaimed `x`, `x`
/// is removed. Then shard 1 takes one key more than the capacity, all live: one must be
/// evicted. With a weigher too (a replacement then hides its entry whatever its deadline).
fn a_hiding_store_taken_out_after_its_entry_left(weighted: bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    type V = (u32, Arc<Gated>);
    const CAP: u64 = 17;
    let b = Engine::builder().max_capacity(CAP).shards(2).workers(2).clock(ManualClock::new());
    let b = if weighted { b.weigher(|_, v: &V| v.0) } else { b };
    let e: Engine<u64, V> = b.build().expect("engine");
    let keys = keys_per_worker(e.shared(), 1_000);
    let v = || (1, Arc::new(Gated(None)));
    let gates = [(); 2].map(|_| Arc::new((AtomicBool::new(false), AtomicBool::new(false))));
    let g = e.new_generation();
    for (n, &k) in keys[0][..16].iter().enumerate() {
        let gate = match n {
            0 => Some(gates[0].clone()),
            9 => Some(gates[1].clone()),
            _ => None,
        };
        let opts = InsertOptions::new().generations(g, None);
        e.insert_with_options(k, (1, Arc::new(Gated(gate))), opts);
        e.flush();
    }
    assert_eq!(e.len(), 16);
    e.retire(g);
    let e2 = e.clone();
    let maintenance = std::thread::spawn(move || e2.run_maintenance());
    let held = |i: usize| {
        while !gates[i].0.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    };
    let x = keys[0][8];
    held(0);
    assert!(e.get(&x).is_none());
    e.insert_with_ttl(x, v(), Duration::from_secs(1000));
    gates[0].1.store(true, Ordering::SeqCst);
    held(1);
    e.remove(&x);
    gates[1].1.store(true, Ordering::SeqCst);
    maintenance.join().expect("maintenance");
    e.flush();
    assert_eq!((e.len(), e.stats().weight, e.stats().stale_reclaimed), (0, 0, 16));
    for &k in &keys[1][..=CAP as usize] {
        e.insert(k, v());
    }
    e.flush();
    let st = e.stats();
    assert_eq!((e.len(), st.weight, st.evictions), (CAP, CAP, 1), "weighted {weighted}: {st:?}");
}

#[test]
fn a_hiding_store_taken_out_after_its_entry_left_does_not_hold_off_eviction() {
    a_hiding_store_taken_out_after_its_entry_left(false);
}

#[test]
fn a_hiding_weighted_store_taken_out_after_its_entry_left_does_not_hold_off_eviction() {
    a_hiding_store_taken_out_after_its_entry_left(true);
}

/// The excess comes from the heaviest shards, cut to one level.
#[test]
fn quotas_cut_the_heaviest_to_one_level() {
    assert_eq!(quotas(vec![(0, 10), (1, 10), (2, 10)], 3), vec![(0, 1), (1, 1), (2, 1)]);
    assert_eq!(quotas(vec![(0, 5), (1, 20), (2, 12)], 10), vec![(1, 9), (2, 1)]);
    assert_eq!(quotas(vec![(0, 4), (1, 4)], 0), vec![]);
    assert_eq!(quotas(vec![(0, 3), (1, 1)], 10), vec![(0, 3), (1, 1)], "everything, no more");
    assert_eq!(quotas(vec![], 5), vec![]);
}
