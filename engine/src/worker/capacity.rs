//! Keeping the engine within its capacity: what a worker does when a batch (or a request
//! from another worker) leaves the engine's total weight above `max_capacity`.
//!
//! The rule: a live entry is never evicted while an expired or stale one takes its place, nor
//! one a pending remove hides (or a pending replacement that may shrink it, with a weigher,
//! or be dead when applied, with a deadline or generations: `Cell::hides`; a worker applies
//! those of its own shards first and treats another worker with some as one that may hold
//! dead entries). So
//! a worker first reclaims the dead entries of its own shards (slice after slice), then, if
//! another worker's shards may still hold some (its published `due_at` has come, or it has a
//! `Retire` it has not handled), asks that worker to settle instead of evicting; with a
//! `Retire` of its own not handled yet it leaves the excess to that `Retire`, which settles
//! once it has scheduled the retired entries; only when no shard of any worker may hold a
//! dead entry does the policy evict live ones. When nothing can be dead anywhere (the common
//! case at capacity), a batch's own growth is evicted from its shard within the batch's hold
//! of the write lock ([`apply_and_settle`]). Any other excess (left while workers deferred to
//! each other, or to a `Retire`) is evicted from the engine's heaviest shards, cut down to one
//! level, each worker evicting its own shards' cuts, so that no shard is emptied for the
//! others ([`settle`]).
//!
//! Cost: reading the published `due_at` of every shard (atomics, no lock) per batch over
//! capacity, and the published weights of every shard when a worker then evicts; a lock
//! hold per reclaim slice only where dead entries may be; a `Settle` hop when another
//! worker's shards have a cut.

use std::sync::atomic::Ordering;

use super::{apply_then, drop_outside, write_lock, Command, RECLAIM_BEFORE_EVICT};
use crate::shard::Shard;
use crate::shared::{Cell, Shared};

/// Applies shard `i`'s batch ([`apply_then`]) for a `Work`, a flush, maintenance or the tick,
/// then brings the engine back within capacity. If nothing can be dead in any worker's
/// shards, the batch's own growth is evicted from shard `i` within the same hold of the write
/// lock (one hold per batch instead of two; what `settle` would do next anyway, as its
/// reclaiming and asking would find nothing to do). Whatever excess is left (all of it while
/// dead entries may be anywhere; an excess other workers left while they deferred) goes to
/// [`settle`], which reclaims first and spreads what is evicted over the engine's heaviest
/// shards. (Evicting that excess from the batch's shard, or from the worker's first shard,
/// emptied one shard for good: `tests::settling_for_another_worker_spreads_its_evictions`.)
pub(super) fn apply_and_settle<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    me: usize,
    mine: &[usize],
    i: usize,
) {
    let cell = &shared.cells[i];
    apply_then(shared, cell, |core, garbage, added| {
        if shared.weight.load(Ordering::Acquire) <= shared.capacity {
            return;
        }
        let now = shared.clock.precise();
        let others_clean = |c: &Cell<K, V>| {
            !c.hides.load(Ordering::SeqCst)
                && (std::ptr::eq(c, cell) || c.due_at.load(Ordering::Acquire) > now)
        };
        if core.dead_possible_from() > now
            && shared.retires_pending[me].load(Ordering::SeqCst) == 0
            && mine.iter().all(|&i| others_clean(&shared.cells[i]))
            && !(0..shared.mailboxes.len()).any(|w| w != me && may_hold_dead(shared, w, now))
        {
            evict_while_over(shared, core, garbage, added);
        }
    });
    settle(shared, me, mine, None);
}

/// Evicts from `core` while the engine as a whole is over capacity, at most `quota` of
/// weight (the victim that reaches it included). Each victim's weight is reserved with a
/// compare-and-swap that succeeds only while the engine is over capacity, so two workers
/// never both evict for the same excess.
///
/// With a weigher, victims are set aside until the excess is covered, and then each one that
/// fits back under the capacity stays, the last chosen first: a heavy victim (often the
/// newcomer that caused the excess) may cover more than the excess left by lighter ones
/// chosen before it, and those are not lost for nothing. Unweighted, every victim frees
/// exactly what was still over, so each is evicted at once. An entry weighing 0 is evicted as
/// chosen (keeping it would free nothing and it would be chosen again).
fn evict_while_over<K, V>(
    shared: &Shared<K, V>,
    core: &mut Shard<K, V>,
    garbage: &mut Vec<(K, V)>,
    mut quota: u64,
) {
    let mut aside = Vec::new();
    while quota > 0 && shared.weight.load(Ordering::Acquire) > shared.capacity {
        let Some((idx, w)) = core.victim() else { break };
        let reserved = shared.weight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
            (total > shared.capacity).then(|| total - w)
        });
        if reserved.is_err() {
            break;
        }
        if shared.weigher.is_some() && w > 0 {
            core.set_aside(idx);
            aside.push((idx, w));
        } else {
            core.evict(idx, &shared.gens, garbage);
        }
        quota = quota.saturating_sub(w.max(1));
    }
    for (idx, w) in aside.into_iter().rev() {
        let room = shared.weight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
            total.checked_add(w).filter(|&t| t <= shared.capacity)
        });
        if room.is_ok() {
            core.keep(idx);
        } else {
            core.evict(idx, &shared.gens, garbage);
        }
    }
}

/// How much weight each shard gives up so that `excess` goes from the heaviest ones, cut
/// down to one level (water-filling); `shards` are (index, weight) pairs. Heaviest first.
/// The quotas add up to at least `excess` when the shards hold that much.
fn quotas(mut shards: Vec<(usize, u64)>, excess: u64) -> Vec<(usize, u64)> {
    shards.sort_by_key(|s| std::cmp::Reverse(s.1));
    let (mut sum, mut level, mut k) = (0u64, 0u64, 0usize);
    while k < shards.len() {
        sum = sum.saturating_add(shards[k].1);
        k += 1;
        // The level the top `k` reach if they share the cut (rounded down: they give a
        // little more, never less).
        level = sum.saturating_sub(excess) / k as u64;
        if shards.get(k).is_none_or(|next| level >= next.1) {
            break;
        }
    }
    shards.truncate(k);
    shards.into_iter().map(|(i, w)| (i, w.saturating_sub(level))).filter(|q| q.1 > 0).collect()
}

/// Brings the engine back within capacity: first every shard of this worker gives up entries
/// that are expired or of retired generations (so a live entry is never evicted while dead
/// ones take its place, even with a manual clock that runs no timers). Then, if another
/// worker's shard may still hold dead entries (its published `due_at` has come), that worker
/// is asked to settle instead, and this one evicts nothing. Otherwise the excess is cut from
/// the engine's heaviest shards, down to one level ([`quotas`], from the weights each shard
/// publishes as its write lock is let go): the policy evicts this worker's shards' cuts, then
/// asks the worker of another shard with a cut (no reply asked) to settle, or, when no other
/// shard has one, evicts from any shard of this worker; a worker that was asked and whose
/// shards cannot cover the excess passes it back to the asker (the answer is not answered).
/// Each hop goes to a worker that may hold dead entries and leaves it with none at `now`, or
/// to a worker with a cut, which evicts at least one entry while the weights read hold; so
/// the hops end, and `flush` waits for them. `reply_to`: the worker that asked this one (it
/// then evicts what this worker's shards could not cover); `None` after a batch or a flush,
/// or when answering an asker.
pub(super) fn settle<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    me: usize,
    mine: &[usize],
    reply_to: Option<usize>,
) {
    if shared.weight.load(Ordering::Acquire) <= shared.capacity {
        return;
    }
    let now = shared.clock.precise();
    for &i in mine {
        if shared.weight.load(Ordering::Acquire) <= shared.capacity {
            return;
        }
        // Removes and replacements pending in the shard: the entries they hide are not live
        // but still weigh, so they go first (a store to another shard applied before them
        // evicted a live entry in their place: `tests::a_pending_remove_goes_before_a_live_entry`).
        if shared.cells[i].hides.load(Ordering::SeqCst) {
            apply_then(shared, &shared.cells[i], |_, _, _| {});
            if shared.weight.load(Ordering::Acquire) <= shared.capacity {
                return;
            }
        }
        // A shard with nothing to reclaim costs no lock at all (at capacity every batch of new
        // keys comes here, and one worker may own every shard): its published `due_at` is
        // exact for its own worker, the only one to change it, which publishes it each time it
        // lets go of the write lock. (A read lock per shard here, on lock words the readers
        // keep taking, was ~2% of all CPU samples in a sustained two-thread miss-heavy run.)
        if shared.cells[i].due_at.load(Ordering::Acquire) > now {
            continue;
        }
        // Slice after slice (the lock let go in between) until the engine is within capacity
        // or the shard has nothing dead left: one slice alone left an excess larger than it
        // (a heavy entry, a large batch) to the policy, which evicted live entries while dead
        // ones stayed (`tests/engine_rev_capacity.rs`). Bounded by the shard's dead entries:
        // a slice that is not the last removes what it examines, or reschedules entries not
        // yet due, which the next slice does not pull again.
        loop {
            let mut garbage = Vec::new();
            let finished = {
                let mut core = write_lock(&shared.cells[i]);
                let (_, freed, finished) =
                    core.reclaim_dead(now, RECLAIM_BEFORE_EVICT, &shared.gens, &mut garbage);
                shared.weight.fetch_sub(freed, Ordering::AcqRel);
                finished
            };
            drop_outside(shared, garbage);
            if finished || shared.weight.load(Ordering::Acquire) <= shared.capacity {
                break;
            }
        }
    }
    // Asked workers defer too. With three workers or more, a worker asked to reclaim used to
    // evict live entries as soon as its own reclamation left the engine over capacity, while
    // another asked worker had not reclaimed its dead entries yet (live entries lost below
    // capacity: `tests/engine_rev_capacity.rs`). A worker still reclaiming shows its `due_at`
    // until it lets go of its last write lock, so whoever looks meanwhile leaves the eviction
    // to it (or to a worker it defers to). The hops still end: only a worker whose shards may
    // hold dead entries is asked, and serving the request leaves it with none dead at `now`.
    // This worker's own `Retire` not handled yet (a batch queued before it, applied after
    // `retire` returned): its shards may hold entries of that generation that their `due_at`
    // does not show, so nothing live goes now; the `Retire`, later in this mailbox, settles
    // once it has scheduled them (`tests/engine_rev_s12.rs`). It asks nobody meanwhile: two
    // workers both waiting for their `Retire` would ask each other back and forth until
    // `retire` sent them (`engine/tests/shuttle/capacity.rs`).
    if shared.retires_pending[me].load(Ordering::SeqCst) > 0 {
        return;
    }
    if ask_others_to_reclaim(shared, me, now) {
        return;
    }
    // The cut of every shard of the engine, from the weights the workers published: this
    // worker evicts its own shards' cuts, then asks a worker whose shards have a cut left to
    // evict it (and so on: each hop evicts at least one entry while the weights it read
    // hold). Cutting only this worker's shards moved weight from them to the other workers'
    // for good, as a worker asked to settle evicted another's growth: with three workers, or
    // workers owning different numbers of shards, whole workers' shards emptied
    // (`[682, 0, 683, 0, 683]`: `tests::settling_for_another_worker_spreads_its_evictions`).
    let excess = shared.weight.load(Ordering::Acquire).saturating_sub(shared.capacity);
    let weights = shared.cells.iter().map(|c| c.weight.load(Ordering::Acquire)).enumerate();
    let cuts = quotas(weights.collect(), excess);
    let (own, others): (Vec<_>, Vec<_>) =
        cuts.into_iter().partition(|&(i, _)| shared.cells[i].worker == me);
    if evict_cuts(shared, own) {
        return;
    }
    if let Some(&(j, _)) = others.first() {
        ask(shared, shared.cells[j].worker, None);
        return;
    }
    // Should victims or weights have changed meanwhile, any shard of this worker for what is
    // left.
    if evict_cuts(shared, mine.iter().map(|&i| (i, u64::MAX))) {
        return;
    }
    if let Some(asker) = reply_to {
        if shared.weight.load(Ordering::Acquire) > shared.capacity {
            ask(shared, asker, None);
        }
    }
}

/// Evicts each `(shard, quota)` in turn ([`evict_while_over`] under that shard's write lock)
/// until the engine is within capacity; returns whether it is.
fn evict_cuts<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    cuts: impl IntoIterator<Item = (usize, u64)>,
) -> bool {
    for (i, quota) in cuts {
        if shared.weight.load(Ordering::Acquire) <= shared.capacity {
            return true;
        }
        let mut garbage = Vec::new();
        evict_while_over(shared, &mut write_lock(&shared.cells[i]), &mut garbage, quota);
        drop_outside(shared, garbage);
    }
    shared.weight.load(Ordering::Acquire) <= shared.capacity
}

/// Asks worker `w` to settle, recording whom it should pass an excess back to; sends nothing
/// when a `Settle` it has not begun yet is outstanding (that one reads the record). The record
/// is written before the flag is read, and the worker clears the flag before it takes the
/// record, so an asker either finds the flag set and its record taken later, or sends anew.
fn ask<K, V>(shared: &Shared<K, V>, w: usize, reply_to: Option<usize>) {
    if let Some(asker) = reply_to {
        shared.settle_reply[w].store(asker, Ordering::SeqCst);
    }
    if !shared.settle_asked[w].swap(true, Ordering::SeqCst) {
        shared.settles_in_flight.fetch_add(1, Ordering::SeqCst);
        if shared.mailboxes[w].send(Command::Settle).is_err() {
            shared.settles_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Sends `Settle` to every other worker that owns a shard whose published `due_at` has come
/// (one outstanding request per worker); returns whether any such worker exists. Reads only
/// atomics: no other worker's lock.
fn ask_others_to_reclaim<K, V>(shared: &Shared<K, V>, me: usize, now: u64) -> bool {
    let mut any = false;
    for w in (0..shared.mailboxes.len()).filter(|&w| w != me) {
        // A worker with a `Retire` not yet handled may hold entries of that generation that
        // its `due_at` does not show yet: a store right after `retire` used to evict live
        // entries in their place (`tests/engine_rev_capacity.rs`). Its mailbox serves the
        // `Retire` before this request.
        if may_hold_dead(shared, w, now) {
            any = true;
            ask(shared, w, Some(me));
        }
    }
    any
}

/// Whether worker `w`'s shards may hold an expired or stale entry at `now`: a `Retire` it has
/// not handled yet, a shard whose published `due_at` has come, or one with a pending remove
/// or replacement (`Cell::hides`: the entry it hides still weighs until `w` applies it).
fn may_hold_dead<K, V>(shared: &Shared<K, V>, w: usize, now: u64) -> bool {
    shared.retires_pending[w].load(Ordering::SeqCst) > 0
        || shared.cells.iter().any(|c| {
            c.worker == w
                && (c.due_at.load(Ordering::Acquire) <= now || c.hides.load(Ordering::SeqCst))
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::quotas;
    use crate::{Engine, InsertOptions, ManualClock};

    /// Stores of new keys that no `Work` applied (gathered below their shard's threshold) are
    /// applied by `flush`, `run_maintenance` and the tick; the evictions they call for must
    /// come from the shard each went to, as after a `Work`. Evicting for them from the
    /// worker's first shard emptied it while the others overflowed (the `memokit` column of
    /// `benches/hit_ratio.rs`, which flushes after every miss, fell from 31% to 5% on Zipf 0.8).
    /// `step` stores key `k` and has it applied, on an engine of 2,048 entries with `shards`
    /// shards and `workers` workers; every shard must end with at least 3/4 of its share.
    fn each_shard_keeps_its_share(
        shards: usize,
        workers: usize,
        step: impl Fn(&Engine<u64, u64>, &ManualClock, u64),
    ) {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(2_048)
            .shards(shards)
            .workers(workers)
            .clock(clock.clone())
            .build()
            .expect("engine");
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
        each_shard_keeps_its_share(2, 1, |e, _, k| {
            e.insert(k, k);
            e.flush();
        });
    }

    #[test]
    fn maintenance_evicts_from_the_shard_it_applied() {
        each_shard_keeps_its_share(2, 1, |e, _, k| {
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
        each_shard_keeps_its_share(2, 1, store_then_tick);
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
            each_shard_keeps_its_share(shards, workers, store_then_tick);
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
        assert_eq!(
            (e.len(), st.weight, st.evictions),
            (CAP, CAP, 1),
            "weighted {weighted}: {st:?}"
        );
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
}
