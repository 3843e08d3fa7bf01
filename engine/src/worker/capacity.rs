//! Keeping the engine within its capacity: what a worker does when a batch (or a request
//! from another worker) leaves the engine's total weight above `max_capacity`.
//!
//! The rule: a live entry is never evicted while an expired or stale one takes its place, nor
//! one a pending remove hides (or a pending replacement that may shrink it, with a weigher,
//! or be dead when applied, with a deadline or generations: `Cell::hides`; a worker applies
//! those of its own shards first and treats another worker with some as one that may hold
//! dead entries). So a worker first reclaims the dead entries of its own shards (slice after
//! slice), then, if another worker's shards may still hold some (its published `due_at` has
//! come, or it has a `Retire` it has not handled), asks that worker to settle instead of
//! evicting; with a `Retire` of its own not handled yet it leaves the excess to that
//! `Retire`, which settles once it has scheduled the retired entries; only when no shard of
//! any worker may hold a dead entry does the policy evict live ones. When nothing can be dead
//! anywhere (the common case at capacity), a batch's own growth is evicted from its shard
//! within the batch's hold of the write lock, before the growth shows in the engine's total
//! weight, so that no other worker evicts for it too ([`apply_and_settle`]). Any other excess
//! (left while workers deferred to each other, or to a `Retire`) is evicted from the engine's
//! heaviest shards, cut down to one level, each worker evicting its own shards' cuts, so that
//! no shard is emptied for the others ([`settle`]). With a weigher, victims are named until
//! the excess is covered before any is evicted, and those that still fit beside what is left
//! stay, within one pass ([`evict_while_over`]) and across the cuts of one worker's shards
//! ([`evict_cuts_weighted`]); so one worker settles the whole excess, cutting its own shards:
//! the owner of the heaviest shard among the workers whose shards hold it all. When none
//! does, the worker holding the most evicts last, after one other has evicted what it cannot
//! cover ([`weighted_turn`]). Only then, and when two workers settle at the same moment (each
//! reading an excess before the other's evictions show), do two workers decide apart.
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
    let cell: &Cell<K, V> = &shared.cells[i];
    apply_then(shared, cell, |core, garbage, growth| {
        if shared.weight.load(Ordering::Acquire).saturating_add(growth) <= shared.capacity {
            return growth;
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
            return evict_while_over(shared, core, garbage, growth, growth);
        }
        growth
    });
    settle(shared, me, mine, None);
}

/// Evicts from `core` while the engine as a whole is over capacity, at most `quota` of
/// weight (the victim that reaches it included). `growth`: weight that `core` holds and the
/// engine's total does not show yet (a batch just applied, [`apply_then`]); a victim's weight
/// comes off it first. Returns what is left of it. Whatever a victim takes off the total is
/// reserved with a compare-and-swap that succeeds only while the engine is over capacity, so
/// two workers never both evict for the same excess.
///
/// With a weigher, victims are set aside until the excess is covered, and then each one that
/// fits back under the capacity stays, the last chosen first: a heavy victim (often the
/// newcomer that caused the excess) may cover more than the excess left by lighter ones
/// chosen before it, and those are not lost for nothing. Unweighted, every victim frees
/// exactly what was still over, so each is evicted at once. An entry weighing 0 is evicted as
/// chosen, as the weigher's docs say (kept, it would be chosen first again by every later
/// pass, and entries of weight 0 would grow without bound), and uses none of the quota: the
/// pass still ends, as each victim leaves the queues.
fn evict_while_over<K, V>(
    shared: &Shared<K, V>,
    core: &mut Shard<K, V>,
    garbage: &mut Vec<(K, V)>,
    mut quota: u64,
    mut growth: u64,
) -> u64 {
    let capacity = shared.capacity;
    let mut aside = Vec::new();
    while quota > 0 && shared.weight.load(Ordering::Acquire).saturating_add(growth) > capacity {
        let Some((idx, w)) = core.victim() else { break };
        let rest = w.saturating_sub(growth);
        if rest > 0 {
            let reserved = shared.weight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t.saturating_add(growth) > capacity).then(|| t - rest)
            });
            if reserved.is_err() {
                break;
            }
        }
        growth -= w - rest;
        if shared.weigher.is_some() && w > 0 {
            core.set_aside(idx);
            aside.push((idx, w));
        } else {
            core.evict(idx, &shared.gens, garbage);
        }
        quota = quota.saturating_sub(w);
    }
    for (idx, w) in aside.into_iter().rev() {
        let room = shared.weight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
            t.checked_add(growth.saturating_add(w)).filter(|&all| all <= capacity).map(|_| t + w)
        });
        if room.is_ok() {
            core.keep(idx);
        } else {
            core.evict(idx, &shared.gens, garbage);
        }
    }
    growth
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
/// publishes as its write lock is let go; with a weigher, one worker's shards for the whole
/// excess where one can, [`weighted_turn`]): the policy evicts this worker's shards' cuts, then
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
            apply_then(shared, &shared.cells[i], |_, _, growth| growth);
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
    let weights: Vec<(usize, u64)> =
        shared.cells.iter().map(|c| c.weight.load(Ordering::Acquire)).enumerate().collect();
    let cuts = quotas(weights.clone(), excess);
    let (mut own, others): (Vec<_>, Vec<_>) =
        cuts.iter().partition(|&&(i, _)| shared.cells[i].worker == me);
    // With a weigher, the victims of an excess are named by one worker where one can, so
    // that those that fit beside what is left stay ([`weighted_turn`]). When each worker
    // evicted its own shards' cuts, a light entry went on one worker although the heavy one
    // the other's cut named covered the whole excess (`tests/engine_rev_s25.rs`).
    let (mut target, mut then) = (u64::MAX, None);
    if shared.weigher.is_some() {
        match weighted_turn(shared, me, &weights, excess) {
            Turn::Ask(w) => {
                ask(shared, w, None);
                return;
            }
            Turn::Evict { target: t, then: last } => {
                let mine = |&(i, _): &(usize, u64)| shared.cells[i].worker == me;
                own = quotas(weights.into_iter().filter(mine).collect(), t);
                (target, then) = (t, last);
            }
        }
    }
    if evict_cuts(shared, own, target) {
        return;
    }
    if let Some(w) = then.or_else(|| others.first().map(|&(j, _)| shared.cells[j].worker)) {
        ask(shared, w, None);
        return;
    }
    // Should victims or weights have changed meanwhile, any shard of this worker for what is
    // left.
    if evict_cuts(shared, mine.iter().map(|&i| (i, u64::MAX)), u64::MAX) {
        return;
    }
    if let Some(asker) = reply_to {
        if shared.weight.load(Ordering::Acquire) > shared.capacity {
            ask(shared, asker, None);
        }
    }
}

/// Who evicts for an excess of a weighted engine ([`weighted_turn`]).
enum Turn {
    /// Nothing here: worker `.0` settles (asked without a reply).
    Ask(usize),
    /// This worker evicts `target` (at most) from its own shards, then, if the engine is still
    /// over capacity, asks `then`.
    Evict { target: u64, then: Option<usize> },
}

/// With a weigher, the turn of worker `me` in an `excess`, from the published shard
/// `weights`. One worker names the victims of the whole excess when one can: of the workers
/// whose shards hold at least the excess, the owner of the heaviest shard (so that the next
/// excess finds another shard the heaviest: evictions spread as the cuts do). When no
/// worker's shards hold it all, the worker holding the most (`last`) evicts last, so that it
/// can keep what fits: the worker holding the most after it (`first`) evicts what `last`
/// cannot cover, then asks it; every other worker asks `first`. (A worker that cut its own
/// shards for the whole excess, fell short, and evicted every victim it had named, left the
/// next worker to evict a heavy entry that alone covered the excess:
/// `tests/engine_rev_s26.rs`.) Left open: `last` may then evict all it holds, emptying its
/// shards for the others (`tests/engine_rev_s26c.rs`).
fn weighted_turn<K, V>(
    shared: &Shared<K, V>,
    me: usize,
    weights: &[(usize, u64)],
    excess: u64,
) -> Turn {
    let worker = |i: usize| shared.cells[i].worker;
    let mut totals = vec![0u64; shared.mailboxes.len()];
    for &(i, w) in weights {
        totals[worker(i)] = totals[worker(i)].saturating_add(w);
    }
    let mut heaviest: Vec<(usize, u64)> = weights.to_vec();
    heaviest.sort_by_key(|s| std::cmp::Reverse(s.1));
    if let Some(w) = heaviest.iter().map(|&(i, _)| worker(i)).find(|&w| totals[w] >= excess) {
        return if w == me { Turn::Evict { target: excess, then: None } } else { Turn::Ask(w) };
    }
    // The most, the lowest index among equals: `last`; then the most of the others, `first`,
    // the only one to evict before `last` (several evicting what `last` cannot cover, at
    // once, evicted it several times over: `tests/engine_rev_s26c.rs`).
    let most = |skip: Option<usize>| {
        (0..totals.len())
            .filter(|&w| Some(w) != skip && totals[w] > 0)
            .max_by_key(|&w| (totals[w], std::cmp::Reverse(w)))
    };
    let Some(last) = most(None) else { return Turn::Evict { target: excess, then: None } };
    match most(Some(last)) {
        Some(first) if first == me => {
            Turn::Evict { target: excess - totals[last], then: Some(last) }
        }
        Some(first) => Turn::Ask(first),
        None => Turn::Evict { target: excess, then: None },
    }
}

/// Evicts each `(shard, quota)` in turn until the engine is within capacity, or `target`
/// weight is freed; returns whether the engine is within capacity. Unweighted,
/// [`evict_while_over`] under each shard's write lock. With a weigher,
/// [`evict_cuts_weighted`] first. What is evicted is dropped after the last cut.
fn evict_cuts<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    cuts: impl IntoIterator<Item = (usize, u64)>,
    target: u64,
) -> bool {
    let cuts: Vec<(usize, u64)> = cuts.into_iter().collect();
    // Dropped once every cut is done: a user's `Drop` run between two cuts could retire a
    // generation on this worker, and the next cut would evict live entries while that
    // generation's took their place (`tests/engine_rev_s25b.rs`).
    let mut garbage = Vec::new();
    let mut left = target;
    if shared.weigher.is_some() {
        left -= evict_cuts_weighted(shared, &cuts, target, &mut garbage).min(left);
    }
    for &(i, quota) in &cuts {
        if left == 0 || shared.weight.load(Ordering::Acquire) <= shared.capacity {
            break;
        }
        let mut core = write_lock(&shared.cells[i]);
        let before = core.weight();
        evict_while_over(shared, &mut core, &mut garbage, quota.min(left), 0);
        left -= before.saturating_sub(core.weight()).min(left);
    }
    drop_outside(shared, garbage);
    shared.weight.load(Ordering::Acquire) <= shared.capacity
}

/// The cuts of a weighted engine, as one pass of [`evict_while_over`] over all their shards: first
/// the victims of every cut are named, up to its quota and no more than the excess (or `target`, if
/// less) in all ([`Shard::name_victims`], one hold of each write lock, nothing evicted); then each
/// one that fits beside what is left stays, the last named first; then the others are evicted,
/// shard by shard, each victim's weight (as the shard holds it then) reserved while the engine is
/// over capacity. Evicted cut by cut, a light entry went in one shard although the heavy one that
/// the next shard's cut named covered the whole excess (`tests/engine_rev_s25.rs`). What is evicted
/// goes to `garbage`, dropped by the caller once every shard is done: a user's `Drop` run in
/// between could flush, store or retire on this worker while victims named elsewhere wait, which
/// left the total counting a victim reweighed meanwhile at its named weight
/// (`tests/engine_rev_s25b.rs`). Between naming and evicting no user code runs on this worker, so
/// only callers' reads (an access mark the eviction then ignores) and a caller's `clear` of a stuck
/// worker's shard (its victims skipped: [`Shard::current_weight`]) touch the shards meanwhile.
/// Returns the weight evicted; whatever excess remains goes to the caller's usual passes.
fn evict_cuts_weighted<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    cuts: &[(usize, u64)],
    target: u64,
    garbage: &mut Vec<(K, V)>,
) -> u64 {
    let over = shared.weight.load(Ordering::Acquire).saturating_sub(shared.capacity);
    let excess = over.min(target);
    let mut freed = 0;
    let (mut named, mut total) = (Vec::new(), 0u64);
    for &(i, quota) in cuts {
        if total >= excess {
            break;
        }
        let mut core = write_lock(&shared.cells[i]);
        total += core.name_victims(quota.min(excess - total), |h, w| named.push((i, h, w, true)));
    }
    for (_, _, w, evict) in named.iter_mut().rev() {
        if *w > 0 && total - *w >= excess {
            total -= *w;
            *evict = false;
        }
    }
    for shard in named.chunk_by(|a, b| a.0 == b.0) {
        let mut core = write_lock(&shared.cells[shard[0].0]);
        for &(_, h, _, evict) in shard {
            let reserved = evict
                && core.current_weight(h).is_some_and(|w| {
                    let over = |t: u64| (t > shared.capacity).then(|| t - w);
                    shared.weight.fetch_update(Ordering::AcqRel, Ordering::Acquire, over).is_ok()
                });
            if reserved {
                freed += core.evict(h.idx(), &shared.gens, garbage);
            } else {
                core.keep_named(h);
            }
        }
    }
    freed
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
mod tests;
