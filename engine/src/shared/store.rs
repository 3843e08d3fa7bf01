//! Stores and removes: how a caller hands a value (or a removal) to its shard's worker.
//!
//! A store hides the key's current entry under the core's read lock and records the new
//! value in the shard's pending table, where lookups find it until the worker has applied it
//! (read-your-writes; the parent module's brief has the lookup side). A new value for a
//! resident key that changes nothing the worker keeps is swapped in place instead, under the
//! core's write lock, when that lock is free. Explicit inserts and removes first take the
//! shard's flights lock, so a computation that raced them is detached rather than stored
//! after them.
//!
//! Invariants: no user `Drop` runs under an engine lock, also when a user's `Eq` or weigher
//! panics: the key and value being stored stay in a slot their caller declares before its
//! locks ([`Shared::store`] borrows them for the user's calls and moves them out only after
//! the last), so they are dropped after those locks, with what the store could not keep (or
//! the value it replaced in place); what a store displaces from the pending table comes back
//! as [`Leftovers`], dropped by [`Shared::finish`] once the caller holds no lock; no caller
//! waits for the worker while holding a lock (the backpressure wait is in `finish` too); user
//! `Hash`, `Eq` and weigher calls happen before anything changes, so their panics leave the
//! shard consistent; every store in a pending table is counted under each of its
//! generations (taken as it is recorded, after those calls), and whoever takes it out without
//! applying it (a later store or remove of the key, `clear`, shutdown; the worker when a
//! generation was retired) gives the counts back.
//!
//! Cost: a store of a new key takes the pending mutex and the core's read lock once (one
//! probe of each table), makes one atomic add per generation it is stored under, and wakes the
//! worker once the shard has gathered a few (see [`signal_threshold`]) unless a wake-up is
//! outstanding; an in-place replacement takes the write lock and probes once.

use std::hash::Hash;
use std::sync::atomic::Ordering;

use super::{Cell, Shared};
use crate::entry::{gens_live, NEVER};
use crate::options::{Equivalent, InsertOptions};
use crate::pending::{pending_bit, StuckWatch, PATIENCE_LOOK};
use crate::reentry::UserCode;
use crate::shard::{NewEntry, Shard};
use crate::sync::{spin_loop, RwLockWriteGuard};
use crate::worker::engine_id;

/// Most stores of new keys a shard gathers before its worker is woken ([`signal_threshold`]).
pub(crate) const SIGNAL_BATCH_MAX: usize = 8;
/// A shard waits for at most one new key per this many entries of its share before it wakes
/// its worker, so the entries waiting in pending tables stay under 1% of the capacity.
const SIGNAL_SHARE: u64 = 128;

/// How many operations a shard's pending table gathers before a store of a new key wakes the
/// worker: up to [`SIGNAL_BATCH_MAX`], one per [`SIGNAL_SHARE`] entries of the shard's `share` of
/// the capacity, at least one, never more than half the shard's pending `limit`
/// ([`crate::pending::pending_limit`]; so a table a caller waits to see drained below that half was
/// last filled by a store that woke the worker). With a weigher, a store also wakes it once the new
/// keys gathered weigh [`signal_weight`]. Every other store wakes the worker at once: one that
/// hides a resident entry (whose old value waits for the batch to be dropped), a remove, and a
/// lookup that finds a pending store (a key read again should not keep taking the slow path), as
/// does the tick.
///
/// Why: each batch costs the worker a write lock, the swap of the pending table, a wake-up
/// and the loads of lines the callers wrote, and takes the shard's read lock from its readers
/// for a moment; with many shards (see `default_shards`) one wake-up per new key made batches
/// of 2-3 stores, and the worker's share of two cores came out of the callers'. Gathering 8
/// (two-thread benches, paired, against quick_cache; `BENCHMARKS.md`, session 14): 50/50
/// 0.78 -> 0.96, `get_or_insert_with` 0.72 -> 0.88; more than 8 gained nothing. Cost: a new
/// key that is neither read again nor followed by others in its shard waits for the tick
/// (with a manual clock, for `flush` or `run_maintenance`) before the policy sees it.
pub(crate) fn signal_threshold(share: u64, limit: usize) -> usize {
    let by_share = usize::try_from(share / SIGNAL_SHARE).unwrap_or(usize::MAX);
    by_share.clamp(1, SIGNAL_BATCH_MAX).min(limit / 2).max(1)
}

/// With a weigher, the weight of new keys a shard gathers before a store wakes its worker:
/// one [`SIGNAL_SHARE`]th of its `share` (at least 1), so that what waits in its pending
/// table, unweighed by the engine's total, stays under 1% of its share beside the one store
/// that reaches it, whatever the entries weigh (without it, [`signal_threshold`] stores of
/// entries as heavy as the capacity could wait). No bound without a weigher, where the count
/// is that bound. Until session 26 a weighted engine woke its worker for every new key
/// instead, one of the two costs that made its writes ~20% slower in a sustained 50/50 run
/// (`BENCHMARKS.md`; the other: `Cell::hides` set by every replacement).
pub(crate) fn signal_weight(share: u64, weighted: bool) -> u64 {
    if weighted {
        (share / SIGNAL_SHARE).max(1)
    } else {
        u64::MAX
    }
}

/// The panic message for a weigher that stores, removes, computes or clears through its own
/// engine.
pub(crate) const REENTRANT_WEIGHER: &str = "memokit: the weigher called back into its own \
engine to store, remove, compute, clear, flush or run maintenance; the engine weighs under a \
lock those operations take or wait for, so this would deadlock and panics instead. A weigher \
may look values up, but should only weigh";

crate::sync::thread_local! {
    /// The engines ([`crate::worker::engine_id`]) whose weighers this thread is running,
    /// innermost last. Every one of them, not only the innermost: a weigher of engine A that
    /// stores into engine B runs B's weigher while A's flights lock is still held, so B's
    /// weigher storing into A must panic too (remembering only B, it deadlocked).
    static WEIGHING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Attempts a caller makes to take a shard's write lock for an in-place store.
const WRITE_TRIES: u32 = 16;

/// What a store or remove leaves for its caller to finish ([`Shared::finish`]) after letting
/// go of every lock it holds: the pending store it superseded (the user's key and value),
/// since a user's `Drop` may be slow, panic, or call back into the engine; and whether the
/// shard's pending table was full, so that the caller waits for the worker to drain it
/// (holding no lock that a user's `Drop` running on that worker might need).
#[must_use = "finished by the caller after its locks"]
pub(crate) struct Leftovers<K, V> {
    _replaced: Option<(NewEntry<K, V>, Option<crate::shard::Handle>)>,
    full: bool,
}

impl<K, V> Cell<K, V> {
    /// The core's write lock, if it comes within a few tries (a caller's in-place store; a
    /// busy shard sends the store through the worker instead of waiting).
    #[inline]
    fn try_write_core(&self) -> Option<RwLockWriteGuard<'_, Shard<K, V>>> {
        for _ in 0..WRITE_TRIES {
            // Test before test-and-set: a plain load while the lock is held keeps its cache
            // line shared with the readers instead of taking it from them.
            if !self.core.is_locked() {
                if let Some(core) = self.core.try_write() {
                    return Some(core);
                }
            }
            spin_loop();
        }
        None
    }
}

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Hands the value in `kv` to the worker as the new value of its key (or, when it cannot
    /// be stored, drops whatever was stored for the key). With `in_place`, first tries
    /// [`Shared::replace_resident`] (callers pass it when the key is likely resident: an
    /// explicit insert, not the store after a miss).
    ///
    /// `kv` is the caller's, declared before its locks: the user's weigher and `Eq` run on it
    /// borrowed, and it is moved out only after the last of them, so that when one panics
    /// the key and value are dropped by the unwinding after the caller's locks, not under
    /// them. What is left in it afterwards (a key and value that could not be kept, or the
    /// new key and the old value of an in-place replacement), and the [`Leftovers`] returned,
    /// the caller drops after its own locks.
    pub(crate) fn store(
        &self,
        kv: &mut Option<(K, V)>,
        hash: u64,
        opts: &InsertOptions,
        in_place: bool,
    ) -> Leftovers<K, V> {
        let Some(pair) = kv.as_mut() else { return Leftovers { _replaced: None, full: false } };
        let weight = self.weigh(&pair.0, &pair.1);
        let deadline = opts.deadline(self.clock.coarse());
        let gens = opts.raw_gens();
        // Capacity 0 stores nothing, even an entry the weigher weighs 0.
        let fits = deadline.is_some() && self.capacity > 0 && u64::from(weight) <= self.capacity;
        let index = self.cell_index(hash);
        let cell = &self.cells[index];
        if in_place
            && fits
            && deadline == Some(NEVER)
            && gens_live(&gens, &self.gens)
            && self.replace_resident(cell, pair, hash, opts, weight)
        {
            return Leftovers { _replaced: None, full: false };
        }
        let (mut p, core) = self.pending_and_core(cell);
        // Checked under the pending lock: shutdown sets the flag before it empties each
        // shard under this lock, so a store either lands before that emptying (and is
        // dropped by it) or sees the flag.
        let storable = fits && !self.is_shut_down();
        // Probe both tables (user `Eq`) before changing anything.
        let user = UserCode::enter(engine_id(self), 0);
        let old = p.inserts.find_entry(hash, |(n, _)| n.key == pair.0).ok();
        let found = core.find(hash, |k| *k == pair.0).map(|(h, e)| {
            e.hide();
            h
        });
        // Only a weigher gives entries different weights.
        let shrinks = self.weigher.is_some()
            && found.is_some_and(|h| core.current_weight(h) > Some(u64::from(weight)));
        drop(user);
        drop(core);
        let replaced = old.map(|o| o.remove().0);
        // Counted under its generations as it is recorded (refused if one is retired), so that
        // `generation_entries` includes it while it waits for the worker. Counted before the
        // pending store it supersedes gives its counts back: a generation holding both never
        // reads 0 in between (found by `engine/tests/shuttle/counts.rs`).
        let counted = storable && self.gens.acquire_all(&gens);
        if let Some((n, _)) = &replaced {
            self.gens.release_all(&n.gens);
        }
        // The user's calls are over: the key and value move out of the caller's slot only
        // now, and stay there (dropped by the caller) when they cannot be kept.
        if let Some((key, value)) = if counted { kv.take() } else { None } {
            let deadline = deadline.unwrap_or(NEVER);
            let checked = opts.checks_generations();
            let n = NewEntry { key, value, hash, deadline, gens, checked, weight };
            p.inserts.insert_unique(hash, (n, found), |(n, _)| n.hash);
            p.gathered = p.gathered.saturating_add(u64::from(weight));
            let (word, bit) = pending_bit(hash);
            cell.pending_keys[word].fetch_or(bit, Ordering::Release);
        } else if let Some(h) = found {
            p.removes.push(h);
        }
        // The hidden entry weighs until the worker applies this: a remove frees its weight, a
        // replacement may shrink it (only with a weigher, to a lighter value), or be dead by
        // the time it is applied (its deadline passed, its generation retired meanwhile), its
        // entry then reclaimed. A replacement with neither, as heavy as the entry or heavier,
        // frees nothing (without this, a store of a new key applied first evicted a live
        // entry in the place of one replaced by an expired value: `tests/engine_rev_s17b.rs`;
        // with a weigher, every replacement set this until session 26, and every batch over
        // capacity then took `settle`'s slow path).
        let may_free =
            !counted || shrinks || deadline != Some(NEVER) || gens.iter().any(|&g| g != 0);
        if found.is_some() && may_free {
            cell.hides.store(true, Ordering::SeqCst);
        }
        cell.pending_len.store(p.len(), Ordering::Release);
        let full = p.len() >= self.pending_limit;
        // A hidden resident entry (its value waiting to be dropped) wakes the worker at once;
        // a new key only once the shard has gathered `signal_at` operations.
        if found.is_some() || full || p.len() >= self.signal_at || p.gathered >= self.signal_weight
        {
            self.signal(cell, index);
        }
        drop(p);
        Leftovers { _replaced: replaced, full }
    }

    /// The weight of an entry: the user's weigher (1 without one), run with this engine
    /// marked as weighing on this thread, so that the weigher calling back into it with an
    /// operation that takes a lock its caller holds panics instead ([`Self::not_weighing`]),
    /// and counted as user code run under a lock ([`crate::reentry::UnderRead`]), of any
    /// engine: it runs under this engine's flights lock, so waiting for any engine's workers
    /// or for another thread's computation panics from it (a worker's `Drop`, or that
    /// computation, may store into this engine and wait for that lock:
    /// `tests/engine_rev_s18h.rs`), and a full pending table does not hold it back. Its
    /// lookups work, taking read locks recursively. Nothing for an engine without a weigher.
    fn weigh(&self, key: &K, value: &V) -> u32 {
        let Some(w) = &self.weigher else { return 1 };
        let _under_lock = crate::reentry::UnderRead::enter();
        // Pops this engine again, also when the weigher panics.
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                WEIGHING.with(|c| c.borrow_mut().truncate(self.0));
            }
        }
        let _restore = Restore(WEIGHING.with(|c| {
            let mut c = c.borrow_mut();
            c.push(crate::worker::engine_id(self));
            c.len() - 1
        }));
        w(key, value)
    }

    /// Panics with [`REENTRANT_WEIGHER`] when called from this engine's weigher: every store
    /// weighs under its shard's flights lock, which stores, removes, computations and `clear`
    /// take, so such a call would wait for its own caller. One thread-local scan (of the engines
    /// being weighed on this thread, usually none or one), only for an
    /// engine with a weigher.
    #[inline]
    pub(crate) fn not_weighing(&self) {
        if self.weigher.is_some()
            && WEIGHING.with(|c| c.borrow().contains(&crate::worker::engine_id(self)))
        {
            panic!("{REENTRANT_WEIGHER}");
        }
    }

    /// Panics unless this caller may wait for the workers (`flush`, `run_maintenance`,
    /// `clear`, `shutdown`): not from this engine's weigher ([`Self::not_weighing`]), nor from
    /// user code run under any engine's lock ([`crate::reentry::may_wait_for_workers`]).
    #[inline]
    pub(crate) fn may_wait_for_workers(&self) {
        self.not_weighing();
        crate::reentry::may_wait_for_workers();
    }

    /// Whether no `Settle` request is outstanding and the engine is within capacity: what a
    /// `flush` waits for (see `Engine::flush`).
    pub(crate) fn settled(&self) -> bool {
        self.settles_in_flight.load(Ordering::SeqCst) == 0
            && self.weight.load(Ordering::Acquire) <= self.capacity
    }

    /// Finishes a store or remove of a key with this `hash` once its caller holds no lock:
    /// drops what it displaced, then, if the shard's pending table was full, waits until its
    /// worker has drained it below half the limit, or the engine is shut down or its worker
    /// died, or the worker has been in one session of user `Drop`s for [`STUCK_PATIENCE`]
    /// ([`UserDrops`](crate::pending::UserDrops)) (backpressure). Never on a worker thread:
    /// a user's `Drop` running there may store, and would wait for its own worker (such
    /// stores are not held back; see [`crate::shard::Handle`]).
    pub(super) fn finish(&self, hash: u64, stored: Leftovers<K, V>) {
        let full = stored.full;
        drop(stored);
        // Nor from user code run under a lock ([`crate::reentry`]): the worker may need it.
        if !full || crate::worker::on_worker_thread() || crate::reentry::under_lock() {
            return;
        }
        let index = self.cell_index(hash);
        let cell = &self.cells[index];
        let drops = &self.user_drops[cell.worker];
        // The session of user `Drop`s the worker was in when this caller began to wait in it.
        let mut watch = StuckWatch::default();
        let mut p = cell.lock_pending();
        while p.len() >= self.pending_limit / 2
            && !self.is_shut_down()
            && !self.worker_died.load(Ordering::Acquire)
        {
            // A worker in a `Drop` that may be waiting for this caller (`UserDrops`).
            if watch.out_of_patience(drops) {
                break;
            }
            // Stores of new keys that refill the table after the worker drained it wake it
            // only once they are `signal_at` (`signal_threshold`, at most half the limit, so
            // the store that refilled it this far did). Waking it here too costs nothing on
            // this path and does not rest on that bound (a threshold above half the limit
            // deadlocked here: `engine/tests/shuttle/handoff.rs`).
            self.signal(cell, index);
            cell.drained.wait_for(&mut p.guard, PATIENCE_LOOK);
        }
    }

    /// The one store a caller applies itself: a new value for a resident, visible key whose
    /// deadline (none), generations and weight stay the same changes no structure the worker
    /// keeps (slot, queue, wheel, generation lists, weight), so the caller swaps the value
    /// under the core's write lock, without the pending table, a wake-up or a batch. Refused
    /// (`kv` left as it is) when the write lock is busy, the engine is shut down, or an
    /// operation on the key may be pending: its filter bit is set, or the entry is hidden
    /// (a pending store or remove hides it under the read lock, before this write lock).
    /// Returns whether it did; `kv` then holds the new key and the old value
    /// ([`Shard::replace_value`]).
    fn replace_resident(
        &self,
        cell: &Cell<K, V>,
        kv: &mut (K, V),
        hash: u64,
        opts: &InsertOptions,
        weight: u32,
    ) -> bool {
        let Some(mut core) = cell.try_write_core() else { return false };
        if self.is_shut_down() || cell.may_be_pending(hash) {
            return false;
        }
        let gens = opts.raw_gens();
        // The user's `Eq` runs under the write lock.
        let _user = UserCode::enter(engine_id(self), cell.address());
        core.replace_value(hash, kv, &gens, opts.checks_generations(), weight)
    }

    /// An explicit store by the user: supersedes a running computation of the key (which then
    /// hands its value to its own waiters only), then stores. Always under the flights lock:
    /// a computation whose lookup missed before this value landed registers its flight under
    /// that lock and stores under it too, so it is either detached here or stored before this
    /// store. (Skipping the lock while no flight was registered let a computation that
    /// registered just after the check store over this value once the insert had returned:
    /// found by `engine/tests/shuttle/`.)
    pub(crate) fn insert(&self, key: K, value: V, opts: &InsertOptions) {
        self.not_weighing();
        let hash = self.hash(&key);
        let cell = self.cell(hash);
        // Declared before the lock, so that they are dropped after it even when the store
        // unwinds (a user's `Eq` or weigher panicking): user `Drop`s run outside the locks.
        // (Until `kv` is set, `key` and `value`, arguments, are dropped after it too.)
        let (detached, mut kv);
        let mut fl = self.lock_flights(cell);
        let user = UserCode::enter(engine_id(self), 0);
        detached = fl.find_entry(hash, |s| s.key == key).ok().map(|o| o.remove().0);
        drop(user);
        kv = Some((key, value));
        let leftovers = self.store(&mut kv, hash, opts, true);
        drop(fl);
        drop((detached, kv));
        self.finish(hash, leftovers);
    }

    /// Hides and drops the value of `q`, and detaches its running computation.
    pub(crate) fn remove<Q: ?Sized + Hash + Equivalent<K>>(&self, q: &Q) {
        self.not_weighing();
        let hash = self.hash(q);
        let index = self.cell_index(hash);
        let cell = &self.cells[index];
        let detached; // dropped after the locks, even on unwinding (see `insert`)
        let mut fl = self.lock_flights(cell);
        let user = UserCode::enter(engine_id(self), 0);
        detached = fl.find_entry(hash, |s| q.equivalent(&s.key)).ok().map(|o| o.remove().0);
        drop(user);
        let (mut p, core) = self.pending_and_core(cell);
        let user = UserCode::enter(engine_id(self), 0);
        let old = p.inserts.find_entry(hash, |(n, _)| q.equivalent(&n.key)).ok();
        let found = core.find(hash, |k| q.equivalent(k)).map(|(h, e)| {
            e.hide();
            h
        });
        drop(user);
        drop(core);
        let replaced = old.map(|o| o.remove().0);
        if let Some((n, _)) = &replaced {
            self.gens.release_all(&n.gens);
        }
        if let Some(h) = found {
            p.removes.push(h);
            cell.hides.store(true, Ordering::SeqCst);
            self.signal(cell, index);
        }
        cell.pending_len.store(p.len(), Ordering::Release);
        // Finished like a store, so removes are held back too: removing the same key again
        // and again while the worker is behind pushes a handle each time.
        let leftovers = Leftovers { _replaced: replaced, full: p.len() >= self.pending_limit };
        drop(p);
        drop(fl);
        drop(detached);
        self.finish(hash, leftovers);
    }
}

#[cfg(test)]
mod tests;
