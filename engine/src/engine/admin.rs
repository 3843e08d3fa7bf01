//! The engine's generations, maintenance, lifecycle and counters: the second half of
//! [`Engine`]'s methods (lookups and stores are in the parent module).

use std::hash::Hash;
use std::sync::atomic::Ordering;

use super::lifecycle::shutdown;
use super::{Engine, EngineStats};
use crate::generation::Generation;
use crate::pending::{StuckWatch, PATIENCE_LOOK};
use crate::sync::RecvTimeoutError;
use crate::worker::{self, Command};

impl<K, V> Engine<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A fresh generation (version) to store values under.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// let (a, b) = (cache.new_generation(), cache.new_generation());
    /// assert_ne!(a, b);
    /// assert!(cache.is_live(a));
    /// ```
    pub fn new_generation(&self) -> Generation {
        self.shared().gens.allocate()
    }

    /// Retires `generation`: from now on no value stored under it is returned (for values that
    /// declared it [in their key](crate::InsertOptions::primary_in_key): once the workers have
    /// reclaimed them), stores still in flight under it are dropped, and new callers do not
    /// join computations started under it. O(1); the workers reclaim the entries in the
    /// background. Retiring twice does nothing.
    ///
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// let version = cache.new_generation();
    /// for k in 0..10 {
    ///     cache.insert_with_options(k, k, InsertOptions::new().generations(version, None));
    /// }
    /// cache.retire(version); // O(1), whatever the number of values
    /// assert!((0..10).all(|k| cache.get(&k).is_none()));
    /// cache.run_maintenance(); // the workers reclaim them (in the background with the real clock)
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn retire(&self, generation: Generation) {
        let s = self.shared();
        if !s.gens.is_live(generation) {
            return; // retired already, or not one of this engine's
        }
        // Counted before the generation is retired, so that no worker over capacity takes
        // any shard for free of dead entries from the moment its entries are dead (counted
        // after, a worker in between evicted live entries while the retired ones stayed:
        // `engine/tests/shuttle/capacity.rs`). Under `retiring` until the counts are matched
        // by commands or taken back: a `flush` waits for that before its next round.
        let retiring = s.retiring.read_recursive();
        for pending in s.retires_pending.iter() {
            pending.fetch_add(1, Ordering::SeqCst);
        }
        if !s.gens.retire(generation) {
            // Retired meanwhile by another caller, which sends the commands. A worker that
            // deferred to this count meanwhile evicts at its next batch, flush or tick (a
            // `flush` under way: at its next round, which waits for this to be taken back).
            for pending in s.retires_pending.iter() {
                pending.fetch_sub(1, Ordering::SeqCst);
            }
            return;
        }
        for (w, tx) in s.mailboxes.iter().enumerate() {
            if tx.send(Command::Retire(generation.id())).is_err() {
                s.retires_pending[w].fetch_sub(1, Ordering::SeqCst);
            }
        }
        // After letting go of `retiring`: a subscriber's code that flushed would wait for it.
        drop(retiring);
        event!(debug, generation = generation.id(), "generation retired");
    }

    /// Whether `generation` is live (issued by this engine and not retired).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// let g = cache.new_generation();
    /// assert!(cache.is_live(g));
    /// cache.retire(g);
    /// assert!(!cache.is_live(g));
    /// ```
    pub fn is_live(&self, generation: Generation) -> bool {
        self.shared().gens.is_live(generation)
    }

    /// Values stored under `generation` and not yet reclaimed (all shards), counted from the
    /// moment each store is handed over: once an insert under `generation` has returned, the
    /// count includes its value whether or not a worker has applied it yet, so it is never
    /// below the number of values of `generation` that lookups can find. A value leaves the
    /// count when it is discarded: at once when a later store or remove of its key finds it
    /// still pending; when a worker applies its removal, eviction, expiry, reclamation or
    /// clearing once it is resident, or refuses it because the generation was retired before
    /// it was applied (so the count is exact after [`flush`](Engine::flush)). Each value
    /// counts once; a store that cannot be kept (zero TTL, heavier than the capacity, after
    /// shutdown, a retired generation) is never counted.
    ///
    /// # Example
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    /// let e: Engine<u32, u32> = Engine::new(100);
    /// let g = e.new_generation();
    /// e.insert_with_options(1, 10, InsertOptions::new().generations(g, None));
    /// assert_eq!(e.generation_entries(g), 1); // applied by the worker or not
    /// e.remove(&1);
    /// e.flush();
    /// assert_eq!(e.generation_entries(g), 0);
    /// ```
    pub fn generation_entries(&self, generation: Generation) -> u64 {
        self.shared().gens.live_entries(generation)
    }

    /// Sends a request to every worker and waits for their replies; returns whether it
    /// waited. On a worker thread (a user's `Drop` there) it does not wait: this engine's
    /// worker, if it is one, does its own share at once (it cannot answer while it runs
    /// this), and the others are only asked. Waiting there for another worker deadlocked
    /// when that one, in a `Drop` of its own, was waiting for this one (two workers of one
    /// engine, or of two engines, flushing at once: `tests/engine_rev_reentry.rs`).
    ///
    /// Nor does it wait for ever for a worker that stays in one user `Drop` for
    /// [`STUCK_PATIENCE`](crate::pending::STUCK_PATIENCE) meanwhile
    /// ([`StuckWatch`](crate::pending::StuckWatch)): such a `Drop` may be waiting for a lock
    /// of the user's that this caller holds (`tests/engine_rev_s21.rs`). It answers once the
    /// `Drop` returns.
    ///
    /// `make` builds worker `w`'s request; `give_up(w)` runs as this stops waiting for `w` (a
    /// `clear` empties what it can of `w`'s shards there).
    fn broadcast(
        &self,
        make: impl Fn(usize, crate::sync::Sender<usize>) -> Command,
        give_up: impl Fn(usize),
    ) -> bool {
        let s = self.shared();
        let (tx, rx) = crate::sync::unbounded();
        // Per worker: whether its answer is still awaited.
        let mut awaited = vec![false; s.mailboxes.len()];
        let here = worker::worker_of(s);
        let wait = !worker::on_worker_thread();
        for (w, mb) in s.mailboxes.iter().enumerate() {
            if here == Some(w) {
                worker::serve_inline(s, w, make(w, tx.clone()));
                awaited[w] = true;
            } else if mb.send(make(w, tx.clone())).is_ok() {
                awaited[w] = true;
            }
        }
        drop(tx);
        if !wait {
            return false;
        }
        let mut watches: Vec<StuckWatch> = awaited.iter().map(|_| StuckWatch::default()).collect();
        while awaited.contains(&true) {
            let deadline = std::time::Instant::now() + PATIENCE_LOOK;
            match rx.recv_deadline(deadline) {
                // (Also the late answer of a worker given up on below: ignored.)
                Ok(w) => awaited[w] = false,
                // A worker is gone (shut down): nothing more will come.
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    // Shut down meanwhile, or before (the command reached a worker that had
                    // not stopped yet): the promise is void, and the first worker to stop may
                    // be joining, without patience, another one whose `Drop` waits for a lock
                    // this caller holds (review of session 21).
                    if s.is_shut_down() {
                        break;
                    }
                    for (w, watch) in watches.iter_mut().enumerate() {
                        if awaited[w] && watch.out_of_patience(&s.user_drops[w]) {
                            give_up(w);
                            awaited[w] = false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Returns once every operation issued before it has been applied by the workers (after
    /// it, [`len`](Engine::len) is exact, and within the capacity). Returns at once after
    /// shutdown.
    ///
    /// From a key's or value's `Drop` running on a worker thread (workers drop what they
    /// remove, evict, expire or reclaim), this, [`clear`](Engine::clear) and
    /// [`run_maintenance`](Engine::run_maintenance) do not wait for other workers, which may
    /// be waiting for this one: if the thread is one of this engine's workers, it does its
    /// own share on the spot (so the promise holds for the keys of its shards; an eviction
    /// another worker asked of it waits until the `Drop` returns), and the other workers are
    /// asked and do theirs shortly after.
    ///
    /// Nor does this (or [`clear`](Engine::clear), or
    /// [`run_maintenance`](Engine::run_maintenance)) wait for ever for a worker that is running
    /// a key's or value's `Drop`: one that stays in the same `Drop` for a second while this
    /// waits is not waited for (that `Drop` may be waiting for a lock of yours that this
    /// thread holds). Then the promise holds for the other workers' shards only: that
    /// worker's operations are applied once its `Drop` returns, so until then
    /// [`len`](Engine::len) may not be exact and the engine may hold more than its capacity.
    /// Lookups find every value stored all the same (and, after `clear`, none).
    /// After [`shutdown`](Engine::shutdown), or once one has begun, it returns without
    /// waiting.
    ///
    /// # Panics
    /// From code that any engine runs under one of its locks (a key's `Eq` or `Equivalent`, a
    /// value's `Clone` on a hit, [`get_map`](Engine::get_map)'s `read`, `to_owned`, any
    /// engine's weigher, this one's included): it waits for workers, which may need that lock (see [the crate docs](crate#user-code-calling-back-into-the-engine) and
    /// [`EngineBuilder::weigher`](crate::EngineBuilder::weigher)).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(2);
    /// for k in 0..10 {
    ///     cache.insert(k, k);
    /// }
    /// cache.flush();
    /// assert_eq!(cache.len(), 2);
    /// ```
    pub fn flush(&self) {
        let s = self.shared();
        // A worker over capacity may have asked another worker to reclaim dead entries (and
        // evict) instead of evicting itself, and that one may pass an excess back: `Settle`
        // requests, counted from before they are sent until they are served. Mailboxes are
        // FIFO, so another round is answered only after every request sent before it. Each
        // request reclaims the requested worker's dead entries first and passes back at most
        // once, so requests stop after a few rounds; the bound only rules out a loop while the
        // real clock keeps making new entries due.
        s.may_wait_for_workers();
        for _ in 0..64 {
            if !self.broadcast(|_, ack| Command::Flush(ack), |_| {}) {
                break; // on a worker thread: see above
            }
            // Within capacity too: a worker whose shards could not cover an excess passed back
            // to it (the asker it answers may have been replaced by another asker's record)
            // leaves it; in the next round every worker over capacity with no dead entries
            // left anywhere evicts from its own shards.
            if s.settled() {
                break;
            }
            // A `retire` under way (its commands counted as pending but not sent, or counted
            // by a caller that lost the race to retire and has not taken them back): workers
            // leave the excess to those commands, so the next round must come after them in
            // the mailboxes. Without this wait a caller held there kept the workers deferring
            // through all the rounds and `flush` returned over capacity
            // (`engine/tests/shuttle/capacity.rs`). `retire` holds the lock only for a few
            // atomics and sends, never waiting for a worker.
            drop(s.retiring.write());
        }
    }

    /// [`flush`](Engine::flush), then one maintenance step on every worker: expire what the
    /// clock says is due (every entry whose deadline has passed, whatever the tick) and
    /// reclaim entries of retired generations (up to a budget of 256k entries per shard).
    /// With a [`ManualClock`](crate::ManualClock) this is the only way expiry and reclamation
    /// run, which makes them deterministic in tests.
    ///
    /// From a `Drop` on a worker thread: as for [`flush`](Engine::flush).
    ///
    /// ```
    /// use memokit_engine::{Engine, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Engine<u64, u64> = Engine::builder().clock(clock.clone()).build()?;
    /// cache.insert_with_ttl(1, 1, Duration::from_secs(1));
    /// clock.advance(Duration::from_secs(2));
    /// cache.run_maintenance();
    /// assert_eq!(cache.len(), 0);
    /// assert_eq!(cache.stats().expirations, 1);
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    ///
    /// # Panics
    /// From code that any engine runs under one of its locks (a key's `Eq` or `Equivalent`, a
    /// value's `Clone` on a hit, [`get_map`](Engine::get_map)'s `read`, `to_owned`, any
    /// engine's weigher, this one's included): it waits for workers, which may need that lock (see [the crate docs](crate#user-code-calling-back-into-the-engine) and
    /// [`EngineBuilder::weigher`](crate::EngineBuilder::weigher)).
    pub fn run_maintenance(&self) {
        let s = self.shared();
        s.may_wait_for_workers();
        // A worker left over capacity settles like a batch: it may have asked another worker
        // to reclaim first (see `flush`), which then ends within capacity.
        if self.broadcast(|_, ack| Command::Maintain(ack), |_| {}) && !s.settled() {
            self.flush();
        }
    }

    /// Removes every value and detaches every running computation; returns when done
    /// (from a `Drop` on a worker thread: as for [`flush`](Engine::flush), the other
    /// workers' shards are cleared shortly after; and, as for `flush`, without waiting for a
    /// worker that stays in one key's or value's `Drop` for a second: then this empties that
    /// worker's shards itself, and the worker drops what they held once that `Drop` returns;
    /// a value stored after `clear` returned is kept. Only a shard held meanwhile by a lookup
    /// running a key's `Eq` or a value's `Clone` that blocks for 50 ms is left to the worker,
    /// its values found until that `Drop` returns). After a [`shutdown`](Engine::shutdown)
    /// that is stuck in a key's or value's `Drop`, it takes out what that shutdown has not
    /// emptied yet and leaves it to that shutdown to drop. A key's or
    /// value's `Drop` that panics meanwhile is caught, as on the workers, and the clearing goes
    /// on.
    ///
    /// # Panics
    /// From code that any engine runs under one of its locks (a key's `Eq` or `Equivalent`, a
    /// value's `Clone` on a hit, [`get_map`](Engine::get_map)'s `read`, `to_owned`, any
    /// engine's weigher, this one's included): it waits for workers, which may need that lock (see [the crate docs](crate#user-code-calling-back-into-the-engine) and
    /// [`EngineBuilder::weigher`](crate::EngineBuilder::weigher)).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(10);
    /// cache.insert(1, 1);
    /// cache.clear();
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn clear(&self) {
        self.shared().may_wait_for_workers();
        for cell in self.shared().cells.iter() {
            let mut fl = crate::flight::FlightsGuard::lock(&cell.flights);
            let flights = std::mem::take(&mut *fl);
            drop(fl);
            crate::flight::drop_detached(flights, || {});
        }
        // A worker given up on has its shards emptied here (`worker::clear_for_stuck`).
        let s = self.shared();
        let claim = worker::ClearClaim::new(s.cells.len());
        self.broadcast(
            |_, ack| Command::Clear(Box::new((ack, claim.clone()))),
            |w| worker::clear_for_stuck(s, w, &claim),
        );
        if s.is_shut_down() {
            // Its workers gone, a shutdown stuck in a `Drop` may not have emptied every shard
            // yet (`tests/engine_rev_s23f.rs`): take what is left, for it to drop.
            super::take_what_is_left(&self.inner);
        }
    }

    /// Stops and joins the engine's threads now (dropping the last handle does the same; where
    /// that drop may not wait, it leaves the joining to a worker: see [`Engine`]). A worker
    /// that stays in one key's or value's `Drop` for a second meanwhile is not waited for (that
    /// `Drop` may wait for a lock of yours that this thread holds): see [`Engine`]. On a worker
    /// thread (in a key's or value's `Drop`) it empties the engine before it returns but leaves
    /// the joining to the engine's first worker to stop, as such a drop does: joining there
    /// could wait for a worker that is shutting this thread's engine down in turn.
    /// Afterwards lookups miss, inserts are dropped and `get_or_insert_with` computes without
    /// storing. A call while another is under way returns once that one has finished, or once
    /// that one has stayed in one key's or value's `Drop` for a second as it empties the
    /// engine (that `Drop` may wait for a lock of yours that this thread holds): this call then
    /// takes what is left out of the engine, so lookups miss after it all the same, and leaves
    /// it to the first call to drop (none of it is dropped on this thread; should the first
    /// have finished in between, to the drop of the engine's last handle). It returns at once
    /// on a worker thread (in a key's or value's `Drop`), as the first may be joining it, and
    /// in a key's or value's `Drop` that a shutdown of any engine runs as it empties its
    /// shards, as the first may be waiting for that one. (From a weigher it panics: see
    /// below.)
    /// A key's or value's `Drop` that panics as it empties the shards (or as
    /// [`clear`](Engine::clear) does) is caught, as on the workers, and the emptying goes on.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// cache.insert(1, 1);
    /// cache.shutdown();
    /// cache.insert(2, 2);
    /// assert_eq!(cache.get(&2), None); // dropped after shutdown
    /// assert_eq!(cache.get_or_insert_with(3, || 3), 3); // computed, not stored
    /// ```
    ///
    /// # Panics
    /// From code that any engine runs under one of its locks (a key's `Eq` or `Equivalent`, a
    /// value's `Clone` on a hit, [`get_map`](Engine::get_map)'s `read`, `to_owned`, any
    /// engine's weigher, this one's included): it waits for workers, which may need that lock (see [the crate docs](crate#user-code-calling-back-into-the-engine) and
    /// [`EngineBuilder::weigher`](crate::EngineBuilder::weigher)).
    pub fn shutdown(&self) {
        self.shared().may_wait_for_workers();
        shutdown(&self.inner);
    }

    /// The engine's counters.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// cache.insert(1, 1);
    /// cache.get(&1);
    /// cache.get(&2);
    /// cache.flush();
    /// let s = cache.stats();
    /// assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
    /// ```
    ///
    /// # Panics
    /// From code the engine runs under a shard's write lock (a key's `Eq` while a value is
    /// replaced in place): it reads every shard (see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine)).
    pub fn stats(&self) -> EngineStats {
        let s = self.shared();
        let [hits, misses] = s.lookups.sum();
        let mut out = EngineStats {
            hits,
            misses,
            single_flight_waits: s.waits.load(Ordering::Relaxed),
            weight: s.weight.load(Ordering::Relaxed),
            ..EngineStats::default()
        };
        for cell in s.cells.iter() {
            let core = cell.read_core();
            out.inserts += core.counts.inserts;
            out.evictions += core.counts.evictions;
            out.expirations += core.counts.expirations;
            out.stale_reclaimed += core.counts.stale_reclaimed;
            out.entries += core.len() as u64;
        }
        out
    }

    /// Values resident: in the workers' tables, as [`EngineStats::entries`] counts them
    /// (pending stores not yet; expired, removed and retired values until reclaimed; exact for
    /// stores and removes after [`flush`](Engine::flush)).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// cache.insert(1, 1);
    /// cache.flush();
    /// assert_eq!(cache.len(), 1);
    /// ```
    ///
    /// # Panics
    /// From code the engine runs under a shard's write lock (a key's `Eq` while a value is
    /// replaced in place): it reads every shard (see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine)).
    pub fn len(&self) -> u64 {
        self.shared().cells.iter().map(|c| c.read_core().len() as u64).sum()
    }

    /// Whether no value is resident.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// assert!(cache.is_empty());
    /// ```
    ///
    /// # Panics
    /// From code the engine runs under a shard's write lock (a key's `Eq` while a value is
    /// replaced in place): it reads every shard (see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight resident.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, String> =
    ///     Engine::builder().max_capacity(100).weigher(|_k, v: &String| v.len() as u32).build()?;
    /// cache.insert(1, "four".to_string());
    /// cache.flush();
    /// assert_eq!(cache.weighted_size(), 4);
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    pub fn weighted_size(&self) -> u64 {
        self.shared().weight.load(Ordering::Relaxed)
    }

    /// The configured capacity.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// assert_eq!(cache.max_capacity(), 100);
    /// ```
    pub fn max_capacity(&self) -> u64 {
        self.shared().capacity
    }

    /// Checks every shard's structural invariants (for tests and fuzzing).
    ///
    /// # Errors
    /// A description of the first broken invariant.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// cache.insert(1, 1);
    /// cache.flush();
    /// assert_eq!(cache.validate(), Ok(()));
    /// ```
    ///
    /// # Panics
    /// From code the engine runs under a shard's write lock (a key's `Eq` while a value is
    /// replaced in place): it reads every shard (see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine)).
    pub fn validate(&self) -> Result<(), String> {
        let s = self.shared();
        for (i, cell) in s.cells.iter().enumerate() {
            cell.read_core().validate().map_err(|e| format!("shard {i}: {e}"))?;
        }
        Ok(())
    }
}
