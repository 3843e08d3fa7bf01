//! The state of one memoized function and its call path.
//!
//! Each `#[memoize]` definition owns one `static` [`FnSlot`] (inside its generated `f_memo()`),
//! initialised on the first call or the first `f_memo()`: the function's process-unique id
//! (its definition identity) and current key space, its name after `make_name`, its memoizer
//! (bound for good), its current timeout, its version and, for methods, the versions of its
//! receivers.
//!
//! ## Versions
//! The function's version is an engine `Generation`, paired with a key space (`FnKeys`): the
//! id its results' keys carry. `delete_all` swaps in a fresh version and a fresh space and
//! retires the old version, under one lock (O(1)): calls from then on look only in the new
//! space, so a hit never checks the function's version (the engine stores it with each entry
//! as declared in the key, `InsertOptions::primary_in_key`), while the engine still refuses
//! the stores of computations in flight under the old version and its workers reclaim that
//! version's entries. A miss reads the version and the space together, under that lock.
//! `delete_verhash` retires the version, renews the space and leaves no version: the next miss
//! creates one. A method's results also carry the generation of (method, receiver id), which
//! the engine checks on every hit: a per-instance delete retires that one and forgets the
//! record.
//!
//! Receiver records are created by misses only (a hit reads no version: the engine checks the
//! entry's receiver generation). So that they do not pile up, a record remembers the latest
//! deadline of the results stored under it (renewed when a computation under it returns, so
//! that a slow computation's result keeps its whole timeout); when the table has doubled since
//! it was last pruned, records whose deadline passed are dropped (nothing under them can be
//! live), and, if more records remain than the memoizer's capacity (the most results that can
//! be live), so are those under which the engine holds no entry. Records under which a call is
//! running (counted from its miss to its end, however it ends) are kept either way. The engine
//! counts a result under its generations from the moment it is handed over, which is before
//! its call ends, so a result still on its way to the engine's worker keeps its record too. A
//! dropped record's generation is always retired first, so pruning can only cost
//! cached results, never serve a stale one; with the rules above it costs none that is live or
//! being computed. (Dropping the excess in arbitrary order, as an earlier version did, lost
//! live results far below capacity; deadlines counted from the start of the call lost a slow
//! computation's result early; while the engine counted a result only once its worker had
//! applied it, a result that waited for the worker through a pruning interval was lost; and a
//! computation running through two prunings lost its result: `tests/memoize_methods.rs`.)
//!
//! A receiver's id is the user's type: its `Hash`, `Eq` and `Clone` may call memoized
//! methods or delete, this method's records included. So none of them runs under the records'
//! lock (not reentrant: they once did, and such an id hung its call): the id is hashed and
//! cloned before the lock, and compared with the records' ids (`Arc`s, taken under the lock)
//! after it, in passes until every record of its bucket has been (`FnState::find_receiver`;
//! records made meanwhile are told apart by their later versions, so a pass costs O(1) per
//! record even when many ids hash alike).
//!
//! ## The call path and the waiting seam
//! A call is `lookup` (a borrowed-key `get`: never waits, never allocates, clones no argument)
//! and, on a miss, `compute` (`#[cold]`): it resolves the timeout and versions and hands the
//! computation to the engine's single flight (`get_or_try_insert_with_ref`). Waiting happens
//! only inside the engine, so an async adapter needs only an async form of that one engine
//! call; everything else here is shared.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use memokit_engine::{Engine, Generation, InsertOptions};
use parking_lot::{Mutex, RwLock};

use crate::dispatch::Codec;
use crate::key::{CacheKey, ErasedKey, FnKeys, Found, HitKey, KeyView, LookupKey, Space};
use crate::memoizer::ErasedValue;
use crate::stats::Counters;
use crate::{Memoizer, Stats, Timeout};

/// How a method's miss begins with its receiver's record (`None` for functions): the
/// record's version (created if there is none; its deadline extended by the timeout), marked
/// in use by one more running call. It returns the version and where the record is (the hash
/// of the receiver's id), so that the call finds the record again without the id's `Hash` or
/// `Eq` (see `FnState::receiver_version`).
pub type Recv<'a> = Option<&'a dyn Fn(&FnState, Option<Duration>) -> (Generation, u64)>;

/// A method call's use of its receiver's record, from its miss: renews the record when the
/// computation returns a result, and ends the use when dropped (when the call returns, fails
/// or unwinds). Finds the record by the hash and version taken at the miss, so it calls no
/// user code (no `Hash` or `Eq` of the id: it cannot panic while a panic unwinds), and leaves
/// a record deleted or replaced meanwhile alone.
struct Running<'a> {
    s: &'a FnState,
    gen: Generation,
    h: u64,
}

impl Running<'_> {
    /// Applies `f` to the record, if it is still there.
    fn with_record(&self, f: impl FnOnce(&mut RecvRecord)) {
        let mut r = self.s.receivers.lock();
        let gen = self.gen;
        if let Some(rec) = r.map.get_mut(&self.h).and_then(|b| b.iter_mut().find(|r| r.gen == gen))
        {
            f(rec);
        }
    }

    /// The computation returned a result to store: its deadline runs from now, and the record
    /// counts as used now (so that pruning keeps it until the result is stored).
    fn renew(&self, ttl: Option<Duration>) {
        let until = ttl.map(|t| self.s.memoizer.inner.clock.now().saturating_add(t));
        self.with_record(|rec| rec.until = later(rec.until, until));
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.with_record(|rec| rec.running = rec.running.saturating_sub(1));
    }
}

/// The later of two deadlines (`None`: no deadline).
fn later(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

/// What a generated `ops` function is asked to do with a key.
#[derive(Clone, Copy, Debug)]
pub enum KeyOp {
    /// Remove the result for this key (and detach its computation).
    Delete,
    /// Return the key.
    Make,
}

/// Applies a [`KeyOp`] to the key for an owned argument tuple `A` (generated per function).
pub type Ops<A> = fn(&'static FnState, &A, KeyOp) -> Option<CacheKey>;

/// The static description of a memoized function, given by the generated code.
#[derive(Debug)]
pub struct FnSpec {
    /// Full path of the function (`module::f`, `module::Type::m`).
    pub name: String,
    /// The `make_name` option.
    pub make_name: Option<fn(&str) -> String>,
    /// The `memoizer` option (else `global()`).
    pub memoizer: Option<fn() -> &'static Memoizer>,
    /// The `timeout` option.
    pub timeout: Timeout,
}

/// The per-definition static holding a function's state.
#[derive(Debug)]
pub struct FnSlot(OnceLock<FnState>);

impl FnSlot {
    /// An empty slot (for a `static`).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        FnSlot(OnceLock::new())
    }

    #[inline]
    pub(crate) fn get(&'static self) -> Option<&'static FnState> {
        self.0.get()
    }
}

struct RecvRecord {
    /// The receiver's id (an `Arc`: taken out of the lock to be compared, see
    /// `FnState::find_receiver`).
    id: Arc<dyn Any + Send + Sync>,
    gen: Generation,
    /// Latest deadline of a result stored under `gen`; `None` = no deadline.
    until: Option<Duration>,
    /// Calls begun under `gen` and not over yet: pruning keeps the record while any runs.
    running: u32,
}

/// The comparisons of a receiver's id with the records' ids made so far, by record version.
///
/// A record is made, and its version drawn from the engine's process-wide monotonic counter,
/// under the records' lock ([`FnState::receiver_version`], the only place that makes one), so
/// a record made after a pass took its ids has a later version than every record that pass
/// saw: the records compared are exactly those whose version is at most `upto`, and a pass
/// tells the others apart in O(1) each. (A list of the versions compared, searched for every
/// record at every pass, made a miss among n records whose ids hash alike quadratic in n.)
#[derive(Default)]
struct Seen {
    /// The record whose id is equal (there is at most one).
    equal: Option<Generation>,
    /// The latest version compared: every record of the bucket at or below it has been.
    upto: Option<Generation>,
}

#[derive(Default)]
struct Receivers {
    map: std::collections::HashMap<u64, Vec<RecvRecord>>,
    len: usize,
    prune_at: usize,
}

/// The state of one memoized function.
pub struct FnState {
    /// The function's id, its current key space and the types of its keys.
    keys: FnKeys,
    name: String,
    memoizer: &'static Memoizer,
    engine: Engine<ErasedKey, ErasedValue>,
    timeout: RwLock<Timeout>,
    /// The function's version; its lock also orders the renewals of `keys`' space with it.
    version: Mutex<Option<Generation>>,
    receivers: Mutex<Receivers>,
    /// Hashes receiver ids (outside the `receivers` lock: the id's `Hash` is the user's).
    recv_hasher: ahash::RandomState,
    pub(crate) counters: Counters,
    ops: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for FnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnState").field("id", &self.keys.id()).field("name", &self.name).finish()
    }
}

fn delete_any<A: 'static>(s: &'static FnState, args: &dyn Any) {
    if let (Some(a), Some(ops)) = (args.downcast_ref::<A>(), s.ops.downcast_ref::<Ops<A>>()) {
        ops(s, a, KeyOp::Delete);
    }
}

impl FnState {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn memoizer(&self) -> &'static Memoizer {
        self.memoizer
    }

    pub(crate) fn timeout(&self) -> Timeout {
        *self.timeout.read()
    }

    pub(crate) fn set_timeout(&self, t: Timeout) {
        *self.timeout.write() = t;
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.counters.add_to(&mut s);
        s
    }

    /// A call: the hit path inline, the miss path cold.
    #[inline(always)]
    pub(crate) fn call<V, T, E, C>(
        &self,
        view: &V,
        receiver: Recv<'_>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        V: KeyView,
        C: Codec<T>,
    {
        let Some(key) = self.keys.hit_key::<V, C::Stored>(view) else {
            return self.mismatched(f);
        };
        if let Some(t) = key.get(&self.engine, C::unerase) {
            self.counters.hit();
            return Ok(t);
        }
        self.compute::<V, T, E, C>(view, receiver, f)
    }

    /// A call whose key or value types are not the ones this function's first call had: never
    /// made by generated code (one signature per function). Runs the function uncached.
    #[cold]
    #[inline(never)]
    fn mismatched<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.counters.miss();
        f()
    }

    /// The miss path: versions, timeout, then the engine's single flight.
    #[cold]
    #[inline(never)]
    fn compute<V, T, E, C>(
        &self,
        view: &V,
        receiver: Recv<'_>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        V: KeyView,
        C: Codec<T>,
    {
        event!(trace, function = %self.name, "miss");
        let ttl = self.timeout().resolve(self.memoizer.inner.default_timeout);
        let (primary, key) = self.version_and_key::<V, C::Stored>(view);
        let Some(key) = key else { return self.mismatched(f) };
        let begun = receiver.map(|r| r(self, ttl));
        let secondary = begun.map(|(gen, _)| gen);
        // Ends the record's use however the call ends, a panic included.
        let running = begun.map(|(gen, h)| Running { s: self, gen, h });
        // The engine's panics for a wait that would deadlock are raised again by `repanic`,
        // naming this function: unhooked, so that the panic hook runs once, for that one.
        let mut opts = InsertOptions::new()
            .generations(primary, secondary)
            .primary_in_key()
            .deadlock_panics_unhooked();
        if let Some(t) = ttl {
            opts = opts.ttl(t);
        }
        let mut ran = false;
        let call = AssertUnwindSafe(|| {
            key.get_or_try_insert_with(&self.engine, opts, || {
                ran = true;
                let v = f();
                if let (Ok(_), Some(running)) = (&v, &running) {
                    // The result is stored from now on, so its deadline runs from now.
                    running.renew(ttl);
                }
                v.map(C::erase)
            })
        });
        let r = match std::panic::catch_unwind(call) {
            Ok(r) => r,
            // The engine's own panics about waiting come before the computation runs: one
            // from the computation (`ran`) is the user's, or a nested call's, whatever it says.
            Err(payload) if ran => std::panic::resume_unwind(payload),
            Err(payload) => self.repanic(payload),
        };
        if ran {
            self.counters.miss();
        } else {
            self.counters.wait();
        }
        r.map(|v| match Found::checked(&v) {
            Some(found) => C::unerase(found),
            None => {
                unreachable!("memokit: a result of another type under the key of `{}`", self.name)
            }
        })
    }

    /// Goes on with a panic of the call that came before its computation ran: the engine's
    /// panics for a wait that would deadlock (a computation asking for its own key:
    /// memoized recursion with the same arguments; a cycle of computations on several
    /// threads) are raised again with this function's name, which the engine cannot know
    /// (`tests/memoize_rev_s21.rs`; the engine raised them without the hook, so it runs once,
    /// for the named one: `tests/memoize_rev_s23.rs`); any other panic unchanged (the same
    /// payload, the hook not run again).
    #[cold]
    fn repanic(&self, payload: Box<dyn Any + Send>) -> ! {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&'static str>().copied());
        match message {
            Some(m) if m == memokit_engine::SELF_WAIT_PANIC => panic!(
                "memokit: `{}` called itself with the same arguments while computing them \
                 (its result for them is not stored yet, so the inner call would wait for the \
                 outer one for ever): {m}",
                self.name
            ),
            Some(m) if m == memokit_engine::WAIT_CYCLE_PANIC => panic!(
                "memokit: a call of `{}` would wait for a result being computed on another \
                 thread, which waits (directly or through others) for a result this thread is \
                 computing: {m}",
                self.name
            ),
            _ => std::panic::resume_unwind(payload),
        }
    }

    /// The function's current version, created if there is none, and the key of `view` in the
    /// key space that version's results are stored under (read together, under the version
    /// lock, where both are renewed). So a call whose lookup used a space that a delete has
    /// renewed since stores its result, computed after the delete, where later calls look.
    /// `None` as [`FnKeys::hit_key`].
    fn version_and_key<'v, V: KeyView, S: 'static>(
        &self,
        view: &'v V,
    ) -> (Generation, Option<HitKey<'v, V, S>>) {
        let mut v = self.version.lock();
        let gen = *v.get_or_insert_with(|| self.engine.new_generation());
        (gen, self.keys.hit_key(view))
    }

    /// The version of (this method, receiver `id`), created if there is none, for a miss
    /// with timeout `ttl` (see [`Recv`]), and the hash under which its record is kept.
    ///
    /// The id's `Hash`, `Eq` and `Clone` are the user's code, and may call memoized methods or
    /// delete (this method's records included): they run outside the records' lock (see
    /// [`find_receiver`](Self::find_receiver)), which is not reentrant.
    pub(crate) fn receiver_version<I>(&self, id: &I, ttl: Option<Duration>) -> (Generation, u64)
    where
        I: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    {
        let now = self.memoizer.inner.clock.now();
        let until = ttl.map(|t| now.saturating_add(t));
        let h = self.recv_hasher.hash_one(id);
        let mut seen = Seen::default();
        // The id's clone for a new record, made outside the lock, and the records pruned:
        // both dropped after the lock (declared before it: also when unwinding), as a user's
        // id whose `Drop` calls this method again would wait for the lock.
        let mut fresh: Option<Arc<dyn Any + Send + Sync>> = None;
        let mut pruned = Vec::new();
        loop {
            let done = self.find_receiver(id, h, &mut seen, |r, found| {
                if let Some(i) = found {
                    let rec = r.map.get_mut(&h).map(|b| &mut b[i])?;
                    rec.until = later(rec.until, until);
                    rec.running = rec.running.saturating_add(1);
                    return Some(rec.gen);
                }
                // The id is cloned (in the loop, outside the lock) before the version is
                // made: a `Clone` that panics must not leave a version that no record owns
                // and nothing will ever retire.
                let id = fresh.take()?;
                if r.len >= r.prune_at {
                    pruned = self.prune(r, now);
                }
                // Drawn under the lock: later records have later versions (see `Seen`).
                let gen = self.engine.new_generation();
                let bucket = r.map.entry(h).or_default();
                debug_assert!(bucket.iter().all(|rec| rec.gen < gen), "versions in order");
                bucket.push(RecvRecord { id, gen, until, running: 1 });
                r.len += 1;
                Some(gen)
            });
            if let Some(gen) = done {
                drop(pruned);
                return (gen, h);
            }
            fresh = Some(Arc::new(id.clone()));
        }
    }

    /// Finds the record of receiver `id` (whose hash is `h`) and applies `f`, under the
    /// records' lock, to the table and the record's index in bucket `h` (`None`: there is no
    /// record for `id`).
    ///
    /// The id's `Eq` runs outside the lock: under it, the ids of the bucket's records not
    /// compared yet are taken (each an `Arc` clone, no user code), compared after the lock,
    /// and the lock taken again, until every record of the bucket has been compared. Ids
    /// never change and a record's version is never reused, so when `f` runs, its answer is
    /// the one a comparison under the lock would give. `seen` keeps the comparisons made so
    /// far, across calls.
    fn find_receiver<I: Eq + 'static, R>(
        &self,
        id: &I,
        h: u64,
        seen: &mut Seen,
        f: impl FnOnce(&mut Receivers, Option<usize>) -> R,
    ) -> R {
        loop {
            // Declared before the lock: the ids taken are dropped after it.
            let mut unseen: Vec<(Generation, Arc<dyn Any + Send + Sync>)> = Vec::new();
            let mut r = self.receivers.lock();
            let mut found = None;
            for (i, rec) in r.map.get(&h).into_iter().flatten().enumerate() {
                if seen.equal == Some(rec.gen) {
                    found = Some(i);
                } else if seen.upto.is_none_or(|u| rec.gen > u) {
                    unseen.push((rec.gen, Arc::clone(&rec.id)));
                }
            }
            // One record per id: once it is found, the others are not it.
            if found.is_some() || unseen.is_empty() {
                return f(&mut r, found);
            }
            drop(r);
            for (gen, other) in &unseen {
                if other.downcast_ref::<I>() == Some(id) {
                    seen.equal = Some(*gen);
                }
                seen.upto = seen.upto.max(Some(*gen));
            }
        }
    }

    /// Takes out (retiring their versions first) and returns, for the caller to drop after
    /// the lock, records under which no result can be live any more: those whose latest deadline has passed; and, while more records remain than the
    /// memoizer's capacity, those under which the engine holds no entry (an error, a zero
    /// timeout, a per-key delete, an eviction). A record under which a call is running is kept
    /// by both rules. (A result on its way to the engine's worker needs no such care:
    /// `generation_entries` counts it from the moment it is handed over, before its call
    /// ends.)
    fn prune(&self, r: &mut Receivers, now: Duration) -> Vec<RecvRecord> {
        let bound = usize::try_from(self.memoizer.inner.capacity).unwrap_or(usize::MAX).max(64);
        let engine = &self.engine;
        let mut gone = Vec::new();
        let mut pass = |r: &mut Receivers, goes: &dyn Fn(&RecvRecord) -> bool| {
            let mut kept = 0usize;
            r.map.retain(|_, bucket| {
                let mut i = 0;
                while i < bucket.len() {
                    let rec = &bucket[i];
                    if rec.running > 0 || !goes(rec) {
                        kept += 1;
                        i += 1;
                    } else {
                        engine.retire(rec.gen);
                        gone.push(bucket.swap_remove(i));
                    }
                }
                !bucket.is_empty()
            });
            kept
        };
        let mut kept = pass(r, &|rec| rec.until.is_some_and(|u| u <= now));
        if kept > bound {
            kept = pass(r, &|rec| engine.generation_entries(rec.gen) == 0);
        }
        r.len = kept;
        r.prune_at = (2 * kept).max(64);
        gone
    }

    /// Deletes every result of this function (O(1)): calls from now on look in a fresh key
    /// space, and the old version is retired (its computations still running are not stored;
    /// the engine's workers reclaim its results).
    ///
    /// Both happen before the lock is released: a delete that returns after another one has
    /// swapped the version out must not return while the version swapped out is still live
    /// (a computation under it would still be stored).
    pub(crate) fn delete_all(&self) {
        event!(debug, function = %self.name, "delete all results");
        let space = Space::fresh();
        let fresh = self.engine.new_generation();
        let mut v = self.version.lock();
        self.keys.renew_space(space);
        if let Some(old) = v.replace(fresh) {
            self.engine.retire(old);
        }
    }

    /// Drops the function's version and every receiver record, retiring them, and renews the
    /// key space (under the locks, as in [`delete_all`](Self::delete_all)). A record dropped
    /// without retiring its version would leave results that a later per-receiver delete
    /// could no longer reach.
    pub(crate) fn delete_verhash(&self) {
        event!(debug, function = %self.name, "delete the version and every receiver version");
        let space = Space::fresh();
        let mut v = self.version.lock();
        self.keys.renew_space(space);
        if let Some(old) = v.take() {
            self.engine.retire(old);
        }
        drop(v);
        let mut r = self.receivers.lock();
        r.len = 0;
        let recs = std::mem::take(&mut r.map);
        for rec in recs.values().flatten() {
            self.engine.retire(rec.gen);
        }
        drop(r);
        drop(recs);
    }

    /// The number of receiver records (for tests of pruning).
    pub(crate) fn receiver_records(&self) -> usize {
        self.receivers.lock().len
    }

    /// Deletes every result of this method for the receiver `id`. The id's `Hash` and `Eq`
    /// run outside the records' lock (see [`find_receiver`](Self::find_receiver)).
    pub(crate) fn delete_receiver<I: std::hash::Hash + Eq + 'static>(&self, id: &I) {
        let h = self.recv_hasher.hash_one(id);
        let rec = self.find_receiver(id, h, &mut Seen::default(), |r, found| {
            let i = found?;
            let bucket = r.map.get_mut(&h)?;
            let rec = bucket.swap_remove(i);
            if bucket.is_empty() {
                r.map.remove(&h);
            }
            r.len -= 1;
            // Retired before the lock is released: a concurrent delete of the same receiver
            // that finds no record must not return while this version is still live.
            self.engine.retire(rec.gen);
            Some(rec)
        });
        if rec.is_some() {
            event!(debug, function = %self.name, "deleted the results of one receiver");
        }
        // The record (the user's id) is dropped here, after the lock.
        drop(rec);
    }

    /// Applies `op` to the key of `view`.
    pub(crate) fn key_op<V: KeyView>(&'static self, view: &V, op: KeyOp) -> Option<CacheKey> {
        match op {
            KeyOp::Delete => {
                event!(debug, function = %self.name, "delete one result");
                self.engine.remove(&LookupKey { space: self.keys.space(), view });
                None
            }
            KeyOp::Make => {
                Some(CacheKey { name: self.name(), key: ErasedKey::unstored(self.keys.id(), view) })
            }
        }
    }
}

mod setup;
#[cfg(test)]
mod tests;

pub use setup::handle;
