//! Single flight: `get_or_insert_with` and its relatives, for a caller whose lookup missed.
//!
//! Under the shard's flights lock, a caller either finds a computation of its key running under
//! the same live generations and waits for its value, or registers its own and leads it:
//! computes (without any lock), stores the value and removes the flight within one hold of the
//! flights lock (so a caller that finds no flight finds the value), then hands the value to the
//! waiters, if any. A computation that fails or panics (or whose store or waiters' copy
//! panics in the user's `Eq`, weigher or `Clone`) is abandoned: its waiters wake and retry, and
//! nothing stays registered. A retrying waiter waits for no other computation: the first to
//! find no flight leads one (and stores its value), the others compute for themselves and store
//! nothing, so a caller waits for at most one computation it did not start (they queued behind
//! each other's retries before: the k-th waited for k failures). A caller under a retired
//! generation computes for itself and registers nothing; a flight detached by a remove, a
//! retirement or `clear` is not stored, and later callers do not join it. So does a caller on a
//! worker thread (a user's `Drop` there) that finds its key being computed: it never waits for
//! another thread's computation, whose leader may be waiting for that worker.
//!
//! Cost, on a miss: the flights lock twice, one flight allocation, one clone of the value for
//! the store of [`super::store`] (a second clone, and the flight's state lock, only when some
//! caller waits for the value); a waiter records the flight it waits for (to refuse a wait
//! that closes a cycle of threads, `crate::flight::Waits`) and blocks on the flight's
//! condition variable.

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Cell, Shared};
use crate::entry::gens_live;
use crate::flight::{Flight, FlightsGuard, Slot, SELF_WAIT_PANIC};
use crate::options::{Equivalent, InsertOptions};
use crate::reentry::UserCode;
use crate::worker::engine_id;

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Single flight; see `Engine::get_or_try_insert_with_ref`.
    pub(crate) fn get_or_try_insert<Q, E>(
        &self,
        q: &Q,
        opts: &InsertOptions,
        to_owned: impl FnOnce(&Q) -> K,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let hash = self.hash(q);
        // The batches applied to the core the fast path searched: while none is applied and
        // nothing is pending, that search still holds and the slow path can be skipped.
        let mut searched = match self.get_fast(hash, q, V::clone) {
            Ok(v) => return Ok(v),
            Err((_, searched)) => Some(searched),
        };
        self.not_weighing();
        let cell = self.cell(hash);
        let gens = opts.raw_gens();
        // Declared before the flights lock: dropped after it, even if `to_owned` panics.
        let stale;
        // Whether this caller waited for a computation that failed: it then waits for no other.
        let mut waited = false;
        let (mut fl, running) = loop {
            let fl = self.lock_flights(cell);
            // Read under the flights lock: a leader removes its flight and stores its value
            // within one hold of this lock, so a value whose flight is gone is seen here.
            if !searched.take().is_some_and(|searched| cell.miss_stands(hash, searched)) {
                if let Some(v) = self.get_slow(hash, q, V::clone) {
                    drop(fl);
                    self.count(true);
                    return Ok(v);
                }
            }
            let user = UserCode::enter(engine_id(self), 0);
            let running = fl.find(hash, |s| q.equivalent(&s.key)).map(|s| s.flight.clone());
            drop(user);
            match running {
                Some(f) if f.gens == gens && gens_live(&gens, &self.gens) => {
                    drop(fl);
                    if f.leader == crate::sync::current_thread_id() {
                        opts.deadlock_panic(SELF_WAIT_PANIC);
                    }
                    crate::reentry::may_wait_for_flight();
                    if waited || crate::worker::on_worker_thread() {
                        // A caller whose flight failed finds another running (one of the
                        // flight's other waiters leads it, or a newcomer does): waiting again
                        // would queue the failed flight's waiters behind each other's retries,
                        // the k-th waiting for k failed computations under an outage
                        // (`tests/memoize_rev_s20u.rs`). Or a user's `Drop` on a worker (of
                        // any engine) asks for a key being computed: the leader may wait for
                        // that worker (a `flush`, `clear`, `run_maintenance`, a full pending
                        // table), and would never get an answer while it waits here
                        // (`tests/engine_rev_s17a.rs`). Either computes for itself, like a
                        // caller under a retired generation, and stores nothing: the live
                        // flight stays for later callers.
                        self.count(false);
                        return compute();
                    }
                    let waiting = self.waiting.enter(&f, opts);
                    self.waits.fetch_add(1, Ordering::Relaxed);
                    let v = f.wait();
                    // Left before the user's `Clone` runs: it may wait for a flight in turn.
                    drop(waiting);
                    if let Some(v) = v {
                        return Ok(v.clone());
                    }
                    // The leader gave up (panic or error): try again, leading a flight of
                    // its own or computing for itself, without waiting again.
                    waited = true;
                }
                running => break (fl, running.is_some()),
            }
        };
        // A caller under a retired generation (it read an old version) computes for itself:
        // its value could not be stored, and a flight of its own would displace one under
        // live generations that later callers must still join (the live computation's value
        // would then be lost, and the key computed again).
        if !gens_live(&gens, &self.gens) {
            drop(fl);
            self.count(false);
            return compute();
        }
        // Lead a new flight, replacing one that may not be joined. `q` is not used after
        // `to_owned`, which may consume it.
        let user = UserCode::enter(engine_id(self), 0);
        stale = if running {
            fl.find_entry(hash, |s| q.equivalent(&s.key)).ok().map(|o| o.remove().0)
        } else {
            None
        };
        let key = to_owned(q);
        drop(user);
        let flight = Flight::new(gens);
        fl.insert_unique(hash, Slot { key, hash, flight: flight.clone() }, |s| s.hash);
        drop(fl);
        self.count(false);
        self.lead(cell, hash, flight, opts, stale, compute)
    }

    /// Leads `flight`, registered in `cell`'s table. `stale`, the flight it replaced (if
    /// any), is dropped once this flight is guarded: a user's `Drop` of its key that panics
    /// then abandons this flight instead of leaving it registered with nobody to finish it.
    fn lead<E>(
        &self,
        cell: &Cell<K, V>,
        hash: u64,
        flight: Arc<Flight<V>>,
        opts: &InsertOptions,
        stale: Option<Slot<K, V>>,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        struct Abandon<'a, K, V: Clone> {
            cell: &'a Cell<K, V>,
            hash: u64,
            flight: &'a Arc<Flight<V>>,
        }
        impl<K, V: Clone> Drop for Abandon<'_, K, V> {
            fn drop(&mut self) {
                let mut fl = FlightsGuard::lock(&self.cell.flights);
                let mine = fl.find_entry(self.hash, |s| Arc::ptr_eq(&s.flight, self.flight)).ok();
                let slot = mine.map(|o| o.remove().0);
                drop(fl);
                self.flight.abandon();
                drop(slot);
            }
        }
        let guard = Abandon { cell, hash, flight: &flight };
        drop(stale);
        // On `Err` or a panic, of the computation, of the store below (the user's `Eq` or
        // weigher) or of the user's `Clone`s, the guard abandons the flight: its waiters
        // retry.
        let v = compute()?;
        // Nothing is stored at capacity 0 (a way to switch caching off): no clone for it.
        let mut to_store = (opts.stores() && self.capacity > 0).then(|| v.clone());
        // The user's keys and values left over are dropped after the lock (declared first, so
        // even when unwinding: `kv`, the key and value being stored, when the user's `Eq` or
        // weigher panics in the store; see `Shared::store`).
        let (mut leftovers, mut unstored, mut kv) = (None, None, None);
        let mut fl = FlightsGuard::lock(&cell.flights);
        let mine = fl.find_entry(hash, |s| Arc::ptr_eq(&s.flight, &flight)).ok();
        if let Some(slot) = mine.map(|o| o.remove().0) {
            match to_store.take() {
                // The rest of `slot`, dropped here, is a handle of `flight`: not its last.
                Some(value) => {
                    kv = Some((slot.key, value));
                    leftovers = Some(self.store(&mut kv, hash, opts, false));
                }
                // Only the key is kept (dropped after the lock): the slot's handle of the
                // flight goes here, so that it is not counted as a waiter's below.
                None => unstored = Some(slot.key),
            }
        }
        drop(fl);
        // Stored first, then handed to the waiters, so a waiter that reads the key back finds
        // the value. A waiter holds a handle of the flight from before it was taken out of the
        // table (under the flights lock, held above) until it has its value: with no handle
        // but this one left, nobody waits and nobody can join, so the value is neither cloned
        // for them nor published (most computations; a cost of every miss before). The
        // waiters' clone is caught if it panics: what the store displaced is then still
        // dropped by `finish`, after the guard has woken the waiters, not while unwinding.
        let for_waiters = (Arc::strong_count(&flight) > 1)
            .then(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.clone())));
        let panicked = match for_waiters.transpose() {
            Ok(copy) => {
                std::mem::forget(guard);
                if let Some(w) = copy {
                    flight.complete(w);
                }
                None
            }
            Err(payload) => {
                drop(guard);
                Some(payload)
            }
        };
        drop((unstored, to_store, kv));
        if let Some(stored) = leftovers {
            self.finish(hash, stored);
        }
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        Ok(v)
    }
}
