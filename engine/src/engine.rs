//! The handle callers hold, and its builder.
//!
//! Its methods are split in three: lookups, stores and computations here; generations,
//! maintenance and counters in `admin`; stopping the engine in `lifecycle` (an explicit
//! `shutdown`, and the drop of the last handle: joined at once, or, where that drop may not
//! wait, in user code the engine runs under a lock or on a worker thread, stopped at once
//! and joined and emptied by the engine's first worker to stop; see that module's table).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use crate::pending::UserDrops;
use crate::sync::thread::JoinHandle;
use crate::sync::{AtomicBool, Mutex};

use crate::builder::EngineBuilder;
use crate::options::{Equivalent, InsertOptions};
use crate::shared::Shared;

mod admin;
mod lifecycle;

pub(crate) use lifecycle::{finish_left, take_what_is_left, Left};

/// A bounded, concurrent, in-process cache with single flight, expiry and generations.
///
/// `Engine` is a cheap-clone handle (`Arc` inside), `Send + Sync`. Dropping the last handle
/// stops and joins every thread the engine started, and drops every key and value it holds,
/// before the drop returns. A handle stored inside the engine (in a key or value) counts like
/// any other: such a cycle keeps the engine and its threads alive until
/// [`shutdown`](Engine::shutdown) or [`clear`](Engine::clear) lets the stored handle go.
///
/// Except where that drop may not wait: on a worker thread of any engine (a key's or value's
/// `Drop` that the engine runs there), and in user code that any engine runs under one of its
/// locks (a key's `Eq`, a value's `Clone` on a hit, `to_owned`, a weigher). Joining there could
/// wait for the very thread doing it, or for a worker that waits for the lock held (it hung).
/// There the drop stops the engine without waiting: the engine is shut down at once, its
/// clock thread told to stop and its workers sent a last command; the first worker to read
/// it joins the other threads, drops every key and value (each `Drop` under its own
/// `catch_unwind`, as on the workers) and then ends, unjoined. So every thread ends, and
/// every key and value is dropped, shortly after the drop returns rather than before (as soon
/// as the workers have finished what they were doing, a `Drop` of theirs included); nothing
/// panics. [`shutdown`](Engine::shutdown) called from those places is different: it panics
/// from user code under a lock; on a worker thread it empties the engine before it returns,
/// and leaves the joining of its threads to its first worker to stop, as this drop does.
///
/// Nor does the drop (or [`shutdown`](Engine::shutdown)) wait for ever for a worker that is
/// running a key's or value's `Drop`: one that stays in the same `Drop` for a second while
/// the drop waits is left unjoined (that `Drop` may be waiting for a lock of yours that the
/// dropping thread holds). It holds no lock of the engine's there; once that `Drop`
/// returns, it drops the rest of what it was dropping (so those `Drop`s run after the
/// drop of the last handle has returned), reads its last command and ends. The engine is
/// shut down and emptied all the same. (A worker waiting for a shard's write lock behind a
/// lookup whose key's `Eq` or value's `Clone` waits for such a lock of yours is not in a
/// `Drop`, and is waited for: see [the crate docs](crate#user-code-calling-back-into-the-engine)
/// on what that code may do.)
///
/// Guarantees:
/// - **Read-your-writes:** once `insert` returns, every later lookup of the key, on any thread,
///   finds the value, until it expires, is evicted, removed or superseded, or one of its
///   generations is retired; and never finds the value it replaced.
/// - **Never stale:** an entry is not returned once its deadline has passed (judged against a
///   coarse clock at most `clock_resolution` behind), once removed, or once one of its
///   generations is retired; except for a primary generation the caller declared part of the
///   key ([`InsertOptions::primary_in_key`]): a lookup of that exact key may find such an
///   entry until the workers reclaim it (the caller no longer looks it up).
/// - **Single flight:** concurrent [`get_or_insert_with`](Engine::get_or_insert_with) calls for
///   one key run one computation; computations of different keys never wait for each other.
/// - **Bounded:** while it holds less than `max_capacity`, nothing is evicted.
/// - **Never a hang:** user code the engine runs under its locks (a key's `Eq`, a value's
///   `Clone`, `to_owned`) that calls back into it either works or panics with a message
///   (see [the crate docs](crate#user-code-calling-back-into-the-engine)); the keys and
///   values it drops, it drops after its locks, also when such code panics.
///
/// # Example
/// ```
/// use memokit_engine::Engine;
/// use std::sync::Arc;
/// let cache: Engine<u64, Arc<String>> = Engine::builder().max_capacity(1_000).build()?;
/// cache.insert(1, Arc::new("one".to_string()));
/// assert_eq!(cache.get(&1).as_deref().map(String::as_str), Some("one"));
/// let v = cache.get_or_insert_with(2, || Arc::new("two".to_string()));
/// assert_eq!(*v, "two");
/// cache.remove(&1);
/// assert!(cache.get(&1).is_none());
/// # Ok::<(), memokit_engine::BuildError>(())
/// ```
pub struct Engine<K, V> {
    pub(crate) inner: Arc<Inner<K, V>>,
    /// `inner.shared`, held here too so that a lookup reaches the shards through one pointer,
    /// not two (a dependent load fewer on every hit).
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Engine<K, V> {
    fn clone(&self) -> Self {
        Engine { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<K, V> Engine<K, V> {
    /// The handle for a freshly built engine.
    pub(crate) fn from_inner(inner: Inner<K, V>) -> Self {
        Engine { shared: inner.shared.clone(), inner: Arc::new(inner) }
    }
}

impl<K, V> fmt::Debug for Engine<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.shared.cells.len())
            .field("workers", &self.shared.mailboxes.len())
            .field("max_capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<K, V> {
    pub(crate) shared: Arc<Shared<K, V>>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) stop_clock: Arc<AtomicBool>,
    /// The first shutdown: whether it has finished (threads joined, shards emptied: `end`),
    /// and its session of user `Drop`s as it empties the shards. A later caller waits for its
    /// end with the patience it has with a worker in a `Drop` (`lifecycle::shutdown`).
    pub(crate) first_shutdown: UserDrops,
    /// What a later `shutdown`, or a `clear`, took out of the shards while the first shutdown
    /// was stuck in a user `Drop`, for that first to drop (`lifecycle::take_what_is_left`).
    pub(crate) handed_over: Mutex<Vec<(K, V)>>,
}

/// Counters of an engine: hits and misses striped per thread, the others kept per shard by
/// its worker (no shared counter on the hit path). Hits and
/// misses are exact for every call that returned before `stats()`; the others count what the
/// workers have applied (exact after [`Engine::flush`]).
///
/// # Example
/// ```
/// use memokit_engine::Engine;
/// let e: Engine<u32, u32> = Engine::new(10);
/// e.insert(1, 1);
/// e.get(&1);
/// e.get(&2);
/// e.flush();
/// let s = e.stats();
/// assert_eq!((s.hits, s.misses, s.inserts, s.entries), (1, 1, 1, 1));
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found none (a `get_or_insert_with` leader counts one).
    pub misses: u64,
    /// Values stored: by the workers, or replaced in place by the caller (see
    /// [`Engine::insert`]). A store superseded by a later store of the same key before a worker
    /// applied it is not counted.
    pub inserts: u64,
    /// Values evicted by the policy to stay within capacity.
    pub evictions: u64,
    /// Values removed after their deadline: by the wheel, or reclaimed to make room before
    /// the policy evicts a live one.
    pub expirations: u64,
    /// Values of retired generations reclaimed by the workers (also to make room). A store
    /// whose generation was retired before a worker applied it is dropped then, and counted
    /// neither here nor in `inserts`.
    pub stale_reclaimed: u64,
    /// Waits for another caller's computation: one per caller that joined one (a caller
    /// whose computation gave up, by a panic or an error, waits for no other). A caller that
    /// waits for a value counts here only, neither as a hit nor as a miss; one whose
    /// computation gave up also counts what its retry does (a hit if it then finds the value
    /// stored, a miss if it computes).
    pub single_flight_waits: u64,
    /// Values in the workers' tables now. One that expired, was removed or belongs to a
    /// retired generation counts until its worker reclaims it (it is never returned
    /// meanwhile): a remove when the worker applies it, the others within a few ticks. A
    /// store still waiting for its worker does not count yet. After [`Engine::flush`], stores
    /// and removes are counted exactly.
    pub entries: u64,
    /// Their total weight (their number, without a weigher).
    pub weight: u64,
}

impl<K, V> Engine<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder with the defaults (see [`EngineBuilder`]).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::builder().max_capacity(1_000).shards(4).build()?;
    /// cache.insert(1, 1);
    /// assert_eq!(cache.get(&1), Some(1));
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    pub fn builder() -> EngineBuilder<K, V> {
        EngineBuilder::default()
    }

    /// An engine holding at most `max_capacity` entries, other settings at their defaults.
    ///
    /// # Panics
    /// If the operating system cannot start a thread (use [`Engine::builder`] to get that as
    /// an error instead).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<String, u64> = Engine::new(10_000);
    /// assert_eq!(cache.max_capacity(), 10_000);
    /// ```
    pub fn new(max_capacity: u64) -> Self {
        match Self::builder().max_capacity(max_capacity).build() {
            Ok(e) => e,
            Err(e) => panic!("memokit: {e}"),
        }
    }

    #[inline(always)]
    pub(crate) fn shared(&self) -> &Shared<K, V> {
        &self.shared
    }

    /// Stores `value` for `key` with no deadline, replacing any previous value. Visible at once
    /// to every later lookup, on any thread, unless it cannot be kept (capacity 0, heavier than
    /// the capacity, after [`shutdown`](Engine::shutdown): see
    /// [`insert_with_options`](Engine::insert_with_options)).
    ///
    /// Cost: a new key is handed to the shard's worker (a pending table, then a batch; the
    /// worker is woken once a few stores of new keys have gathered in the shard, or by the
    /// next lookup of the key, the tick, [`flush`](Engine::flush) or
    /// [`run_maintenance`](Engine::run_maintenance)).
    /// A new value for a key already resident without a deadline, under the same generations
    /// and of the same weight, is swapped in place under the shard's write lock instead, which
    /// costs about a lookup.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, &str> = Engine::new(100);
    /// cache.insert(1, "one");
    /// cache.insert(1, "uno");
    /// assert_eq!(cache.get(&1), Some("uno"));
    /// ```
    ///
    /// # Panics
    /// As [`insert_with_options`](Engine::insert_with_options).
    pub fn insert(&self, key: K, value: V) {
        self.insert_with_options(key, value, InsertOptions::new());
    }

    /// Stores `value` for `key` until `ttl` has passed. A zero `ttl` stores nothing (and drops
    /// the previous value); one too large to represent means no deadline.
    ///
    /// ```
    /// use memokit_engine::{Engine, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Engine<u64, u64> = Engine::builder().clock(clock.clone()).build()?;
    /// cache.insert_with_ttl(1, 10, Duration::from_secs(5));
    /// assert_eq!(cache.get(&1), Some(10));
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(cache.get(&1), None); // expired
    /// cache.insert_with_ttl(2, 20, Duration::ZERO);
    /// assert_eq!(cache.get(&2), None); // a zero TTL stores nothing
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    ///
    /// # Panics
    /// As [`insert_with_options`](Engine::insert_with_options).
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.insert_with_options(key, value, InsertOptions::new().ttl(ttl));
    }

    /// Stores `value` for `key` with the given deadline and generations. If it cannot be kept
    /// (zero TTL, a retired generation, heavier than the capacity, engine shut down), the
    /// previous value of the key is dropped all the same. A computation of `key` running in
    /// [`get_or_insert_with`](Engine::get_or_insert_with) is superseded: its value goes to its
    /// own waiters only and is not stored over this one.
    ///
    /// The keys and values this displaces (the previous value, a superseded computation's key)
    /// are dropped after the engine has let go of its locks, here or on a worker (which also
    /// drops what it evicts, expires and removes), so their `Drop` may look up and store
    /// values of this engine. It must not wait for the engine ([`flush`](Engine::flush),
    /// [`clear`](Engine::clear), [`run_maintenance`](Engine::run_maintenance),
    /// [`shutdown`](Engine::shutdown)): on a worker, that could wait for itself. (A
    /// [`get_or_insert_with`](Engine::get_or_insert_with) of a key another thread is computing
    /// does not wait on a worker: it computes the value itself and does not store it.)
    ///
    /// # Panics
    /// Propagates a panic of the key's `Eq` or of the weigher; the engine stays usable. The
    /// key and value being stored are then dropped during that unwinding, after the engine
    /// has let go of its locks, so their `Drop` may call into the engine as above. Panics
    /// when called from this engine's weigher, and from code the engine runs under a shard's
    /// pending table, flights lock or write lock (see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine)).
    ///
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    /// use std::time::Duration;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// let v1 = cache.new_generation();
    /// cache.insert_with_options(1, 10, InsertOptions::new().ttl(Duration::from_secs(60)).generations(v1, None));
    /// assert_eq!(cache.get(&1), Some(10));
    /// cache.retire(v1);
    /// assert_eq!(cache.get(&1), None); // stored under a retired generation
    /// ```
    pub fn insert_with_options(&self, key: K, value: V, opts: InsertOptions) {
        self.shared().insert(key, value, &opts);
    }

    /// The value stored for `key`, if any is visible.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<String, u64> = Engine::new(100);
    /// cache.insert("a".to_string(), 1);
    /// assert_eq!(cache.get("a"), Some(1)); // by a borrowed form of the key: no allocation
    /// assert_eq!(cache.get("b"), None);
    /// ```
    ///
    /// # Panics
    /// Propagates a panic of the key's `Hash` or `Equivalent`, or of the value's `Clone`; the
    /// engine stays usable. From code the engine runs under one of its locks, a lookup that
    /// needs a lock its caller holds panics (see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine)).
    #[inline]
    pub fn get<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> Option<V> {
        self.shared().get(key, V::clone)
    }

    /// Reads the value stored for `key` in place: `read` runs on it under the shard's read lock
    /// and its result is returned, which saves cloning `V` (e.g. the atomic increment and
    /// decrement of an `Arc` when only something inside it is wanted). Keep `read` short: while
    /// it runs, the shard's worker waits for the lock, and lookups of the shard that arrive
    /// after the worker wait too. `read` is user code run under a lock, like the value's
    /// `Clone` (see [the crate docs](crate#user-code-calling-back-into-the-engine)).
    ///
    /// Guarantee (the memoizer's `unsafe` relies on it): `read` sees only a value held with a
    /// key that `key` was found [`Equivalent`] to, and the engine holds a value only with a key
    /// `Eq` to the one it was stored with (a store that replaces a resident value in place
    /// keeps the resident key, equal to the new one).
    ///
    /// # Example
    /// ```
    /// use memokit_engine::Engine;
    /// use std::sync::Arc;
    /// let e: Engine<u32, Arc<String>> = Engine::new(10);
    /// e.insert(1, Arc::new("hello".into()));
    /// assert_eq!(e.get_map(&1, |s| s.len()), Some(5));
    /// ```
    ///
    /// # Panics
    /// As [`get`](Engine::get), with `read` in the place of the value's `Clone`.
    #[inline]
    pub fn get_map<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.shared().get(key, read)
    }

    /// Whether a value is visible for `key` (counts as a lookup; the value is not cloned).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// cache.insert(1, 1);
    /// assert!(cache.contains_key(&1));
    /// assert!(!cache.contains_key(&2));
    /// ```
    ///
    /// # Panics
    /// As [`get`](Engine::get), without the value's `Clone`.
    pub fn contains_key<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> bool {
        self.shared().get(key, |_| ()).is_some()
    }

    /// Hides the value of `key` at once and drops it; detaches a computation of `key` that is
    /// running (its value goes only to the callers already waiting for it and is not stored).
    /// Never waits for a computation. Removing an absent key does nothing.
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// cache.insert(1, 1);
    /// cache.remove(&1);
    /// assert_eq!(cache.get(&1), None); // hidden at once, before the worker applies the removal
    /// cache.remove(&2); // absent: nothing happens
    /// ```
    ///
    /// # Panics
    /// Propagates a panic of the key's `Hash` or `Equivalent`; the engine stays usable. Panics
    /// when called from this engine's weigher, and from code the engine runs under a shard's
    /// pending table, flights lock or write lock (see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine)).
    pub fn remove<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) {
        self.shared().remove(key);
    }

    /// The value of `key`, computing and storing it on a miss; concurrent callers for the same
    /// key wait for one computation.
    ///
    /// A hit clones the stored value once. A miss clones the computed value once for the
    /// store (not when nothing is stored: capacity 0, a zero TTL), and once more only if other
    /// callers wait for it (each waiter then clones its own copy); the caller that computed
    /// gets the value itself.
    ///
    /// # Panics
    /// Propagates a panic of `compute` (waiting callers then retry, each waiting for no other
    /// computation: one leads a new one, the others compute for themselves; nothing is
    /// poisoned), and
    /// panics if `compute` asks for the same key on the same thread, or for a key whose
    /// computation on another thread waits, directly or through others, for this one (either
    /// would deadlock; the waiters of a computation that panics retry; the messages are
    /// [`SELF_WAIT_PANIC`](crate::SELF_WAIT_PANIC) and
    /// [`WAIT_CYCLE_PANIC`](crate::WAIT_CYCLE_PANIC)). Called from user code
    /// the engine runs under one of its locks (a hit's `Clone`, any engine's weigher), it
    /// panics where it would wait for another thread's computation, and as the
    /// [crate docs][reentry] say (from this engine's weigher, always). From a `Drop`
    /// running on a worker thread (of any engine), it does not wait for another thread's
    /// computation of `key` (whose leader may be waiting for that worker): it runs `compute`
    /// and returns its value without storing it.
    ///
    /// [reentry]: crate#user-code-calling-back-into-the-engine
    ///
    /// ```
    /// use memokit_engine::Engine;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// let runs = AtomicU32::new(0);
    /// let square = |k: u64| cache.get_or_insert_with(k, || { runs.fetch_add(1, Ordering::Relaxed); k * k });
    /// assert_eq!(square(7), 49);
    /// assert_eq!(square(7), 49);
    /// assert_eq!(runs.load(Ordering::Relaxed), 1); // computed once
    /// ```
    pub fn get_or_insert_with(&self, key: K, compute: impl FnOnce() -> V) -> V {
        self.get_or_insert_with_options(key, InsertOptions::new(), compute)
    }

    /// [`get_or_insert_with`](Engine::get_or_insert_with) with a deadline and generations for
    /// the stored value. A computation started under generations is joined only by callers
    /// passing the same generations while they are live.
    ///
    /// # Panics
    /// As [`get_or_insert_with`](Engine::get_or_insert_with).
    ///
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    /// use std::time::Duration;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(100);
    /// let opts = InsertOptions::new().ttl(Duration::from_secs(30));
    /// assert_eq!(cache.get_or_insert_with_options(3, opts, || 9), 9);
    /// assert_eq!(cache.get(&3), Some(9));
    /// ```
    pub fn get_or_insert_with_options(
        &self,
        key: K,
        opts: InsertOptions,
        compute: impl FnOnce() -> V,
    ) -> V {
        let owned = OwnedKey(std::cell::RefCell::new(Some(key)));
        let r: Result<V, std::convert::Infallible> = self.shared().get_or_try_insert(
            &owned,
            &opts,
            |k| match k.0.borrow_mut().take() {
                Some(k) => k,
                // `to_owned` is called at most once, after the last lookup by this form.
                None => unreachable!("memokit: owned key taken twice"),
            },
            || Ok(compute()),
        );
        match r {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// The general single-flight lookup: finds `key` by a borrowed form, and on a miss runs
    /// `compute`; an `Ok` value is stored under `to_owned(key)` (called only when a
    /// computation starts) and returned, an `Err` is returned to this caller only (callers
    /// waiting for this computation retry as after a panic: see
    /// [`get_or_insert_with`](Engine::get_or_insert_with)). The key made by `to_owned` is
    /// stored only with the value of this call's `compute`, and a waiter receives only the
    /// value of a computation whose key its own was found [`Equivalent`] to.
    ///
    /// # Errors
    /// The error of `compute`, unchanged.
    ///
    /// # Panics
    /// As [`get_or_insert_with`](Engine::get_or_insert_with).
    ///
    /// # Example
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    /// let e: Engine<String, usize> = Engine::new(100);
    /// let n: Result<usize, ()> =
    ///     e.get_or_try_insert_with_ref("abc", InsertOptions::new(), |k: &str| k.to_owned(), || Ok(3));
    /// assert_eq!(n, Ok(3));
    /// let n: Result<usize, ()> =
    ///     e.get_or_try_insert_with_ref("abc", InsertOptions::new(), |k: &str| k.to_owned(), || Err(()));
    /// assert_eq!(n, Ok(3)); // cached
    /// ```
    pub fn get_or_try_insert_with_ref<Q, E>(
        &self,
        key: &Q,
        opts: InsertOptions,
        to_owned: impl FnOnce(&Q) -> K,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.shared().get_or_try_insert(key, &opts, to_owned, compute)
    }
}

/// An owned key lent to the single-flight path as its "borrowed" form; `to_owned` takes it.
struct OwnedKey<K>(std::cell::RefCell<Option<K>>);

impl<K: Hash> Hash for OwnedKey<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if let Some(k) = self.0.borrow().as_ref() {
            k.hash(state);
        }
    }
}

impl<K: Eq> Equivalent<K> for OwnedKey<K> {
    fn equivalent(&self, key: &K) -> bool {
        self.0.borrow().as_ref().is_some_and(|k| k == key)
    }
}
