//! [`Memoizer`], its builder, the process-wide default ([`global`], [`configure`]) and the
//! by-name deletes.
//!
//! A memoizer owns one engine (`memokit_engine::Engine<ErasedKey, ErasedValue>`) shared by
//! all its functions, the defaults (timeout, capacity, wheel tick, key prefix, clock) and a
//! registry `name -> functions` filled when a function is first called or its `f_memo()` first
//! runs. The registry is read only by by-name operations and `stats()`, never by a call.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use memokit_engine::{Engine, ManualClock};
use parking_lot::RwLock;

use crate::key::ErasedKey;
use crate::state::{FnSlot, FnState};
use crate::{Error, Stats, Timeout};

/// The default timeout of a memoizer (Django's cache default): 300 s.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The default capacity of a memoizer, in results.
const DEFAULT_CAPACITY: u64 = 10_000;

/// The value type of the engine: any function's result, shared; a hit knows its type from its
/// function's key types (see `key.rs`).
pub(crate) type ErasedValue = Arc<dyn Any + Send + Sync>;

/// A registry entry: enough to find and type-check a function before its state exists.
#[derive(Clone, Copy)]
pub(crate) struct Registered {
    pub(crate) slot: &'static FnSlot,
    pub(crate) args_type: TypeId,
    pub(crate) args_type_name: &'static str,
    pub(crate) delete_any: fn(&'static FnState, &dyn Any),
}

pub(crate) enum Clock {
    Real(Instant),
    Manual(ManualClock),
}

impl Clock {
    pub(crate) fn now(&self) -> Duration {
        match self {
            Clock::Real(start) => start.elapsed(),
            Clock::Manual(c) => c.now(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) engine: Engine<ErasedKey, ErasedValue>,
    pub(crate) default_timeout: Timeout,
    pub(crate) capacity: u64,
    pub(crate) clock: Clock,
    key_prefix: String,
    registry: RwLock<HashMap<String, Vec<Registered>>>,
}

/// The memoizer: an in-process cache engine shared by the functions bound to it, with their
/// defaults.
///
/// A cheap-clone handle (`Arc` inside), `Send + Sync`. Functions use [`global()`] unless their
/// attribute names another with `memoizer = <expr>` (an expression of type `&'static Memoizer`).
///
/// ```
/// use std::sync::LazyLock;
/// use memokit::{memoize, Memoizer};
///
/// static MEMO: LazyLock<Memoizer> =
///     LazyLock::new(|| Memoizer::builder().default_timeout(60).capacity(1_000).build().unwrap());
///
/// #[memoize(memoizer = &MEMO)]
/// fn double(x: u64) -> u64 { 2 * x }
///
/// assert_eq!(double(21), 42);
/// assert_eq!(double(21), 42);
/// assert_eq!(MEMO.stats().hits, 1);
/// MEMO.delete_memoized(double_memo().name()).unwrap();
/// ```
#[derive(Clone)]
pub struct Memoizer {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Memoizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memoizer")
            .field("default_timeout", &self.inner.default_timeout)
            .field("capacity", &self.inner.capacity)
            .field("key_prefix", &self.inner.key_prefix)
            .field("functions", &self.inner.registry.read().len())
            .finish_non_exhaustive()
    }
}

impl Default for Memoizer {
    fn default() -> Self {
        Memoizer::new()
    }
}

/// Builds a [`Memoizer`]. Every setting has a default.
///
/// | setting | default |
/// |---|---|
/// | `default_timeout` | 300 s |
/// | `capacity` | 10 000 results |
/// | `tick` (expiry wheel) | 1 s |
/// | `key_prefix` | `""` |
/// | `clock` | the real monotonic clock |
///
/// ```
/// use memokit::{memoize, ManualClock, Memoizer};
/// use std::{sync::LazyLock, time::Duration};
///
/// static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
/// static M: LazyLock<Memoizer> = LazyLock::new(|| {
///     Memoizer::builder().default_timeout(10).clock(CLOCK.clone()).build().unwrap()
/// });
///
/// #[memoize(memoizer = &M)] // no `timeout`: the memoizer's default, 10 s
/// fn double(x: u64) -> u64 { x * 2 }
///
/// double(1);
/// double(1);
/// assert_eq!(double_memo().stats().hits, 1);
/// CLOCK.advance(Duration::from_secs(10));
/// double(1); // expired: computed again
/// assert_eq!(double_memo().stats().misses, 2);
/// ```
#[derive(Debug)]
#[must_use]
pub struct MemoizerBuilder {
    default_timeout: Timeout,
    capacity: u64,
    tick: Option<Duration>,
    key_prefix: String,
    clock: Option<ManualClock>,
}

impl Default for MemoizerBuilder {
    fn default() -> Self {
        MemoizerBuilder {
            default_timeout: Timeout::After(DEFAULT_TIMEOUT),
            capacity: DEFAULT_CAPACITY,
            tick: None,
            key_prefix: String::new(),
            clock: None,
        }
    }
}

impl MemoizerBuilder {
    /// The timeout of functions whose attribute gives none (`Timeout::Default`).
    ///
    /// ```
    /// use memokit::{Memoizer, Timeout};
    ///
    /// let m = Memoizer::builder().default_timeout(Timeout::Never).build().unwrap();
    /// assert_eq!(m.default_timeout(), Timeout::Never);
    /// // `Timeout::Default` here means the memoizer's own default, 300 s:
    /// let m = Memoizer::builder().default_timeout(Timeout::Default).build().unwrap();
    /// assert_eq!(m.default_timeout(), Timeout::from(300));
    /// ```
    pub fn default_timeout(mut self, t: impl Into<Timeout>) -> Self {
        self.default_timeout = match t.into() {
            Timeout::Default => Timeout::After(DEFAULT_TIMEOUT),
            other => other,
        };
        self
    }

    /// The most results kept (all functions together). While fewer are held, nothing is evicted.
    /// Zero keeps nothing: every call runs its function, except that calls of the same
    /// arguments at the same time still share one computation (single flight: the others
    /// count as `single_flight_waits`).
    ///
    /// ```
    /// use memokit::{memoize, Memoizer};
    /// use std::sync::LazyLock;
    ///
    /// static M: LazyLock<Memoizer> =
    ///     LazyLock::new(|| Memoizer::builder().capacity(2).build().unwrap());
    ///
    /// #[memoize(memoizer = &M)]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// for x in 0..10 {
    ///     square(x);
    /// }
    /// M.flush();
    /// assert_eq!(M.stats().entries, 2);
    /// ```
    pub fn capacity(mut self, n: u64) -> Self {
        self.capacity = n;
        self
    }

    /// The tick of the engine's expiry wheel: how often expired and deleted results are
    /// reclaimed (it paces reclamation only; an expired result is never served). Zero makes
    /// [`build`](Self::build) fail.
    ///
    /// ```
    /// use memokit::Memoizer;
    /// use std::time::Duration;
    ///
    /// assert!(Memoizer::builder().tick(Duration::from_millis(100)).build().is_ok());
    /// assert!(Memoizer::builder().tick(Duration::ZERO).build().is_err());
    /// ```
    pub fn tick(mut self, d: Duration) -> Self {
        self.tick = Some(d);
        self
    }

    /// A prefix for keys in a shared backend (kept for that backend; the in-process engine
    /// does not need it).
    ///
    /// ```
    /// let m = memokit::Memoizer::builder().key_prefix("app1:").build().unwrap();
    /// assert_eq!(m.key_prefix(), "app1:");
    /// ```
    pub fn key_prefix(mut self, p: impl Into<String>) -> Self {
        self.key_prefix = p.into();
        self
    }

    /// A manual clock (for tests): time moves only by [`ManualClock::advance`], and expired
    /// results are reclaimed only by [`Memoizer::run_maintenance`]. An expired result is never
    /// served, reclaimed or not.
    ///
    /// ```
    /// use memokit::{memoize, ManualClock, Memoizer};
    /// use std::{sync::LazyLock, time::Duration};
    ///
    /// static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
    /// static M: LazyLock<Memoizer> =
    ///     LazyLock::new(|| Memoizer::builder().clock(CLOCK.clone()).build().unwrap());
    ///
    /// #[memoize(memoizer = &M, timeout = 5)]
    /// fn f(x: u64) -> u64 { x }
    ///
    /// f(1);
    /// M.flush();
    /// CLOCK.advance(Duration::from_secs(5));
    /// assert_eq!(M.stats().entries, 1); // expired, not reclaimed yet
    /// M.run_maintenance();
    /// assert_eq!(M.stats().entries, 0);
    /// f(1); // never served expired: computed again
    /// assert_eq!(f_memo().stats().misses, 2);
    /// ```
    pub fn clock(mut self, c: ManualClock) -> Self {
        self.clock = Some(c);
        self
    }

    /// Builds the memoizer (and starts its engine's workers).
    ///
    /// # Errors
    /// [`Error::Build`] when the engine cannot be built: a zero [`tick`](Self::tick), or a
    /// worker thread that cannot be spawned.
    ///
    /// ```
    /// use memokit::{Error, Memoizer};
    ///
    /// let m = Memoizer::builder().capacity(1_000).build()?;
    /// assert_eq!(m.stats().entries, 0);
    /// let zero = Memoizer::builder().tick(std::time::Duration::ZERO).build();
    /// assert!(matches!(zero, Err(Error::Build(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn build(self) -> Result<Memoizer, Error> {
        // Hits and misses are counted per function (`stats.rs`); the engine's own count would
        // be an atomic add per call that nothing reads.
        let mut eb = Engine::builder().max_capacity(self.capacity).count_lookups(false);
        if let Some(t) = self.tick {
            eb = eb.tick(t);
        }
        let clock = match self.clock {
            Some(c) => {
                eb = eb.clock(c.clone());
                Clock::Manual(c)
            }
            None => Clock::Real(Instant::now()),
        };
        let engine = eb.build().map_err(Error::Build)?;
        Ok(Memoizer {
            inner: Arc::new(Inner {
                engine,
                default_timeout: self.default_timeout,
                capacity: self.capacity,
                clock,
                key_prefix: self.key_prefix,
                registry: RwLock::new(HashMap::new()),
            }),
        })
    }
}

impl Memoizer {
    /// A memoizer with the default settings.
    ///
    /// # Panics
    /// Only if the operating system cannot spawn the engine's worker threads.
    ///
    /// ```
    /// let m = memokit::Memoizer::new();
    /// assert_eq!(m.stats().entries, 0);
    /// ```
    pub fn new() -> Self {
        match MemoizerBuilder::default().build() {
            Ok(m) => m,
            Err(e) => panic!("memokit: {e}"),
        }
    }

    /// A builder, to change the defaults.
    ///
    /// ```
    /// let m = memokit::Memoizer::builder().default_timeout(60).build().unwrap();
    /// assert_eq!(m.default_timeout(), memokit::Timeout::from(60));
    /// ```
    pub fn builder() -> MemoizerBuilder {
        MemoizerBuilder::default()
    }

    /// The key prefix set by [`MemoizerBuilder::key_prefix`].
    ///
    /// ```
    /// assert_eq!(memokit::Memoizer::new().key_prefix(), "");
    /// ```
    pub fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// The default timeout of this memoizer.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(memokit::Memoizer::new().default_timeout(), memokit::Timeout::After(Duration::from_secs(300)));
    /// ```
    pub fn default_timeout(&self) -> Timeout {
        self.inner.default_timeout
    }

    pub(crate) fn register(&self, name: &str, r: Registered) {
        self.inner.registry.write().entry(name.to_owned()).or_default().push(r);
    }

    fn find(&self, name: &str) -> Result<Registered, Error> {
        let reg = self.inner.registry.read();
        match reg.get(name).map(Vec::as_slice) {
            None | Some([]) => Err(Error::UnknownFunction { name: name.to_owned() }),
            Some([one]) => Ok(*one),
            Some(many) => Err(Error::AmbiguousName { name: name.to_owned(), count: many.len() }),
        }
    }

    /// The names of the functions known to this memoizer (called or `f_memo()`ed at least once).
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn one() -> u8 { 1 }
    /// one();
    /// assert!(memokit::global().function_names().iter().any(|n| n.ends_with("::one")));
    /// ```
    pub fn function_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.registry.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Deletes every result of the function named `name` (O(1): a version swap).
    ///
    /// # Errors
    /// [`Error::UnknownFunction`] or [`Error::AmbiguousName`].
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn answer() -> u64 { 42 }
    /// answer();
    /// memokit::global().delete_memoized(answer_memo().name()).unwrap();
    /// answer(); // deleted: computed again
    /// assert_eq!(answer_memo().stats().misses, 2);
    /// assert!(memokit::global().delete_memoized("no::such::function").is_err());
    /// ```
    pub fn delete_memoized(&self, name: &str) -> Result<(), Error> {
        let r = self.find(name)?;
        if let Some(s) = r.slot.get() {
            s.delete_all();
        }
        Ok(())
    }

    /// Deletes the result of the function named `name` for the arguments `args`: the tuple of
    /// the owned argument types (`&str` -> `String`, `&[T]` -> `Vec<T>`, `&T` -> `T`), for a
    /// method preceded by the receiver's `MemoIdentity::Id`. Matched by `TypeId`, so literals
    /// need suffixes. Deleting a combination that was never cached is not an error.
    ///
    /// # Errors
    /// [`Error::UnknownFunction`], [`Error::AmbiguousName`], or [`Error::ArgumentTypes`]
    /// naming the expected and the given type.
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn greet(name: &str, times: u32) -> String { name.repeat(times as usize) }
    /// greet("ab", 2);
    /// let m = memokit::global();
    /// m.delete_memoized_args(greet_memo().name(), &("ab".to_string(), 2u32)).unwrap();
    /// greet("ab", 2); // deleted: computed again
    /// assert_eq!(greet_memo().stats().misses, 2);
    /// assert!(m.delete_memoized_args(greet_memo().name(), &("ab", 2)).is_err()); // `&str`, not `String`
    /// ```
    pub fn delete_memoized_args<A: Any>(&self, name: &str, args: &A) -> Result<(), Error> {
        let r = self.find(name)?;
        if r.args_type != TypeId::of::<A>() {
            return Err(Error::ArgumentTypes {
                name: name.to_owned(),
                expected: r.args_type_name,
                given: std::any::type_name::<A>(),
            });
        }
        if let Some(s) = r.slot.get() {
            (r.delete_any)(s, args);
        }
        Ok(())
    }

    /// Drops the version of the function named `name` (and, for a method, of every receiver);
    /// the next call makes a fresh one. Every earlier result is gone. For a function, O(1);
    /// for a method, one version retired per receiver it has results for (where
    /// [`delete_memoized`](Self::delete_memoized) is O(1) for both).
    ///
    /// # Errors
    /// [`Error::UnknownFunction`] or [`Error::AmbiguousName`].
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn seven() -> u64 { 7 }
    /// seven();
    /// memokit::global().delete_memoized_verhash(seven_memo().name()).unwrap();
    /// seven(); // computed again, under a fresh version
    /// assert_eq!(seven_memo().stats().misses, 2);
    /// ```
    pub fn delete_memoized_verhash(&self, name: &str) -> Result<(), Error> {
        let r = self.find(name)?;
        if let Some(s) = r.slot.get() {
            s.delete_verhash();
        }
        Ok(())
    }

    /// The counters of this memoizer: `hits` and `misses` summed over its functions; entries,
    /// evictions, expirations and reclaimed results from the engine; single-flight waits as
    /// [`Stats::single_flight_waits`] says (counted as soon as a caller joins another's
    /// computation).
    ///
    /// ```
    /// let m = memokit::Memoizer::new();
    /// assert_eq!(m.stats(), memokit::Stats::default());
    /// ```
    pub fn stats(&self) -> Stats {
        let e = self.inner.engine.stats();
        let mut s = Stats {
            entries: e.entries,
            evictions: e.evictions,
            expirations: e.expirations,
            stale_reclaimed: e.stale_reclaimed,
            ..Stats::default()
        };
        let waits = e.single_flight_waits;
        for regs in self.inner.registry.read().values() {
            for r in regs {
                if let Some(st) = r.slot.get() {
                    st.counters.add_to(&mut s);
                }
            }
        }
        // The larger of the joins (callers still waiting included) and the waits of the calls
        // that returned: a call whose second lookup found a result another call had just
        // stored joined nothing, yet returned (review s22: taking the joins alone lost it).
        s.single_flight_waits = s.single_flight_waits.max(waits);
        s
    }

    /// Returns once every earlier store and delete has been applied by the engine's workers:
    /// `stats().entries` then counts every stored result and none deleted by its arguments
    /// (the results of a function-wide delete count until reclaimed: [`Stats::entries`]).
    ///
    /// ```
    /// use memokit::{memoize, Memoizer};
    /// use std::sync::LazyLock;
    ///
    /// static M: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
    ///
    /// #[memoize(memoizer = &M)]
    /// fn f(x: u64) -> u64 { x }
    ///
    /// f(1);
    /// f(2);
    /// M.flush();
    /// assert_eq!(M.stats().entries, 2);
    /// ```
    ///
    /// # Panics
    /// When called from an argument's or receiver id's `Eq` or `Clone`, or a result's `Clone`,
    /// that the engine runs under one of its locks (see [Limits](crate#limits)): it waits for
    /// the engine's workers, which may need that lock.
    pub fn flush(&self) {
        self.inner.engine.flush();
    }

    /// Flushes, then runs one maintenance step of the engine: expires results whose timeout
    /// passed (by the memoizer's clock) and reclaims a slice of deleted results. With a
    /// [`ManualClock`] this is the only way they are reclaimed, so tests are deterministic.
    ///
    /// See [`MemoizerBuilder::clock`] for an example.
    ///
    /// # Panics
    /// When called from an argument's or receiver id's `Eq` or `Clone`, or a result's `Clone`,
    /// that the engine runs under one of its locks (see [Limits](crate#limits)): it waits for
    /// the engine's workers, which may need that lock.
    pub fn run_maintenance(&self) {
        self.inner.engine.run_maintenance();
    }

    /// Removes every stored result of every function; returns when done.
    ///
    /// ```
    /// use memokit::{memoize, Memoizer};
    /// use std::sync::LazyLock;
    ///
    /// static M: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
    ///
    /// #[memoize(memoizer = &M)]
    /// fn f(x: u64) -> u64 { x }
    ///
    /// f(1);
    /// M.clear();
    /// f(1); // cleared: computed again
    /// assert_eq!(f_memo().stats().misses, 2);
    /// ```
    ///
    /// # Panics
    /// When called from an argument's or receiver id's `Eq` or `Clone`, or a result's `Clone`,
    /// that the engine runs under one of its locks (see [Limits](crate#limits)): it waits for
    /// the engine's workers, which may need that lock.
    pub fn clear(&self) {
        self.inner.engine.clear();
    }
}

static GLOBAL: OnceLock<Memoizer> = OnceLock::new();

/// Set once any memoized function is first used (a call or its `f_memo()`), whichever
/// memoizer it is bound to: [`configure`] refuses after that (api.md §1). Written once per
/// function, at its registration, never on the call path.
static FUNCTION_USED: AtomicBool = AtomicBool::new(false);

/// Records that a memoized function has been used (see [`configure`]).
pub(crate) fn note_function_used() {
    FUNCTION_USED.store(true, Ordering::Release);
}

/// The process-wide default memoizer, built with the defaults (or by [`configure`]) on first use.
///
/// ```
/// #[memokit::memoize]
/// fn f(x: u64) -> u64 { x }
///
/// f(1);
/// let m: &'static memokit::Memoizer = memokit::global();
/// assert!(m.function_names().iter().any(|n| n == f_memo().name()));
/// ```
///
/// # Panics
/// On its first call, if the operating system cannot start the engine's threads (as
/// [`Memoizer::new`]).
pub fn global() -> &'static Memoizer {
    GLOBAL.get_or_init(Memoizer::new)
}

/// Sets up the process-wide memoizer. Call it once, before any memoized call.
///
/// # Errors
/// [`Error::AlreadyInitialized`] once `global()`, any memoized call or any `f_memo()` has run
/// (whichever memoizer the function is bound to: configuring late is a mistake even when the
/// first calls went elsewhere), or after an earlier `configure`; [`Error::Build`] if the
/// engine cannot be built.
///
/// ```
/// memokit::configure(memokit::Memoizer::builder().default_timeout(60)).unwrap();
/// assert!(memokit::configure(memokit::Memoizer::builder()).is_err());
/// ```
pub fn configure(b: MemoizerBuilder) -> Result<(), Error> {
    if GLOBAL.get().is_some() || FUNCTION_USED.load(Ordering::Acquire) {
        return Err(Error::AlreadyInitialized);
    }
    let m = b.build()?;
    GLOBAL.set(m).map_err(|_| Error::AlreadyInitialized)
}
