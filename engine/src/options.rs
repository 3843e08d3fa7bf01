//! Per-insert options and the borrowed-key lookup trait.

use std::time::Duration;

use crate::entry::{Gens, NEVER};
use crate::generation::Generation;

/// Looks a key up by a borrowed form of it, without building the owned key.
///
/// Implemented for every `Q: Eq` that `K` borrows as (`String` by `str`, `Vec<T>` by `[T]`, ...).
/// Implement it for your own borrowed key types; `Q` must hash exactly as the `K` it is
/// equivalent to. A key made of several owned parts is looked up without allocating through a
/// struct of the borrowed parts, as below: a plain tuple such as `(&str, u64)` cannot stand for
/// `(String, u64)`, because `(String, u64)` does not implement `Borrow<(&str, u64)>` and Rust's
/// coherence rules let neither this crate nor yours add that impl (nor an `Equivalent` impl
/// between the two tuples beside the `Borrow` one). Derived `Hash` of such a struct hashes its
/// parts in order, as the tuple or struct it stands for does (a `&str` hashes as its `String`).
///
/// # Example
/// ```
/// use memokit_engine::{Engine, Equivalent};
/// #[derive(Hash, PartialEq, Eq)]
/// struct Owned(String, u64);
/// #[derive(Hash)]
/// struct Borrowed<'a>(&'a str, u64);
/// impl Equivalent<Owned> for Borrowed<'_> {
///     fn equivalent(&self, k: &Owned) -> bool { self.0 == k.0 && self.1 == k.1 }
/// }
/// let e: Engine<Owned, u32> = Engine::new(10);
/// e.insert(Owned("a".into(), 1), 7);
/// e.flush();
/// assert_eq!(e.get(&Borrowed("a", 1)), Some(7));
/// ```
pub trait Equivalent<K: ?Sized> {
    /// Whether `self` is equal to `key`.
    fn equivalent(&self, key: &K) -> bool;
}

impl<Q: ?Sized + Eq, K: ?Sized + std::borrow::Borrow<Q>> Equivalent<K> for Q {
    #[inline]
    fn equivalent(&self, key: &K) -> bool {
        *self == *key.borrow()
    }
}

/// How to store one value: its time to live and the generations it belongs to.
///
/// The default stores with no deadline and no generation.
///
/// # Example
/// ```
/// use memokit_engine::{Engine, InsertOptions};
/// use std::time::Duration;
/// let e: Engine<u32, u32> = Engine::new(10);
/// let g = e.new_generation();
/// let opts = InsertOptions::new().ttl(Duration::from_secs(60)).generations(g, None);
/// e.insert_with_options(1, 1, opts);
/// assert_eq!(e.get(&1), Some(1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "options take effect only when passed to a store; `ttl` and `generations` return the changed options"]
pub struct InsertOptions {
    ttl: Option<Duration>,
    gens: Gens,
    primary_in_key: bool,
    /// The secondary given was the primary itself: stored once (each value counts once
    /// under a generation), but still checked by lookups, as a secondary is.
    secondary_is_primary: bool,
    /// [`InsertOptions::deadlock_panics_unhooked`].
    unhooked: bool,
}

impl InsertOptions {
    /// No deadline, no generation.
    ///
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    ///
    /// let cache: Engine<u64, u64> = Engine::new(10);
    /// cache.insert_with_options(1, 1, InsertOptions::new()); // same as `insert`
    /// assert_eq!(cache.get(&1), Some(1));
    /// ```
    pub fn new() -> Self {
        InsertOptions::default()
    }

    /// Time to live from the moment of the insert. `Duration::ZERO` means "do not store" (the
    /// value is still returned to the caller and to single-flight waiters, and any older value
    /// for the key is dropped). A TTL too large to represent means no deadline.
    ///
    /// ```
    /// use memokit_engine::InsertOptions;
    /// use std::time::Duration;
    ///
    /// let opts = InsertOptions::new().ttl(Duration::from_secs(300));
    /// assert!(opts.stores());
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The generations the value is stored under: retiring either hides it (the primary: see
    /// [`primary_in_key`](Self::primary_in_key) for the exception), and a store still in
    /// flight under a retired generation is dropped.
    ///
    /// The same generation as both counts once (in
    /// [`Engine::generation_entries`](crate::Engine::generation_entries)) and is checked by
    /// lookups as a secondary is, even with [`primary_in_key`](Self::primary_in_key).
    ///
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    ///
    /// // One generation per function version, one per (method, receiver) version.
    /// let cache: Engine<u64, u64> = Engine::new(10);
    /// let (function, receiver) = (cache.new_generation(), cache.new_generation());
    /// cache.insert_with_options(1, 1, InsertOptions::new().generations(function, Some(receiver)));
    /// cache.retire(receiver); // either one hides it
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn generations(mut self, primary: Generation, secondary: Option<Generation>) -> Self {
        self.secondary_is_primary = secondary == Some(primary);
        let secondary = secondary.filter(|&s| s != primary);
        self.gens = [primary.id(), secondary.map_or(0, |g| g.id())];
        self
    }

    /// Declares that the key already changes whenever the primary generation is retired (the
    /// memoizer keys a function's results by its current version), so lookups need not check
    /// that generation: a hit on an entry stored under the primary alone reads neither its
    /// generations nor, without a deadline, anything beyond the entry itself.
    ///
    /// Everything else about the primary stands: the entry is counted under it
    /// ([`Engine::generation_entries`](crate::Engine::generation_entries)), a store still in
    /// flight when it is retired is dropped, new callers do not join a computation under a
    /// retired primary, and the workers reclaim the entry once it is retired. What changes:
    /// until they have, a lookup of that exact key may still find it. The secondary
    /// generation, if any, is checked as always (and the primary with it). Without
    /// generations this does nothing.
    ///
    /// # Example
    /// ```
    /// use memokit_engine::{Engine, InsertOptions};
    /// // Keys carry the version they were computed under.
    /// let e: Engine<(u64, u32), u32> = Engine::new(10);
    /// let v1 = e.new_generation();
    /// let opts = InsertOptions::new().generations(v1, None).primary_in_key();
    /// e.insert_with_options((v1.id(), 7), 49, opts);
    /// assert_eq!(e.get(&(v1.id(), 7)), Some(49));
    /// assert_eq!(e.generation_entries(v1), 1); // still counted under v1
    /// // A new version: callers use its keys; the workers reclaim v1's entries (until they
    /// // have, a lookup of `(v1.id(), 7)` may still find 49: no caller makes it any more).
    /// e.retire(v1);
    /// let v2 = e.new_generation();
    /// assert_eq!(e.get(&(v2.id(), 7)), None);
    /// ```
    pub fn primary_in_key(mut self) -> Self {
        self.primary_in_key = true;
        self
    }

    /// Makes the panics of a computation that would deadlock ([`SELF_WAIT_PANIC`],
    /// [`WAIT_CYCLE_PANIC`]) unwind without running the panic hook
    /// ([`std::panic::resume_unwind`], same payload), for a caller that catches them and panics
    /// with a message of its own: the hook then prints once, that message. memokit's memoizer
    /// does this to name the function that called itself. Without a caller that panics again,
    /// nothing is printed for such a panic.
    ///
    /// [`SELF_WAIT_PANIC`]: crate::SELF_WAIT_PANIC
    /// [`WAIT_CYCLE_PANIC`]: crate::WAIT_CYCLE_PANIC
    ///
    /// ```
    /// use memokit_engine::{Engine, InsertOptions, SELF_WAIT_PANIC};
    /// use std::panic::{catch_unwind, AssertUnwindSafe};
    ///
    /// let e: Engine<u64, u64> = Engine::new(10);
    /// let opts = InsertOptions::new().deadlock_panics_unhooked();
    /// let payload = catch_unwind(AssertUnwindSafe(|| {
    ///     e.get_or_insert_with_options(1, opts, || e.get_or_insert_with_options(1, opts, || 1))
    /// }))
    /// .unwrap_err();
    /// let message = payload.downcast_ref::<String>().expect("a String payload");
    /// assert_eq!(message, SELF_WAIT_PANIC); // raise your own panic naming the computation
    /// ```
    pub fn deadlock_panics_unhooked(mut self) -> Self {
        self.unhooked = true;
        self
    }

    /// Panics with `message` (a deadlock refused), through the hook unless
    /// [`deadlock_panics_unhooked`](Self::deadlock_panics_unhooked).
    pub(crate) fn deadlock_panic(&self, message: &str) -> ! {
        if self.unhooked {
            std::panic::resume_unwind(Box::new(message.to_owned()))
        }
        panic!("{message}")
    }

    /// Whether lookups check the generations of a value stored with these options: it has a
    /// secondary, or a primary not declared [in the key](Self::primary_in_key).
    pub(crate) fn checks_generations(&self) -> bool {
        self.gens[1] != 0
            || self.secondary_is_primary
            || (self.gens[0] != 0 && !self.primary_in_key)
    }

    /// Whether a value inserted with these options is kept at all.
    ///
    /// ```
    /// use memokit_engine::InsertOptions;
    /// use std::time::Duration;
    ///
    /// assert!(InsertOptions::new().stores());
    /// assert!(!InsertOptions::new().ttl(Duration::ZERO).stores());
    /// ```
    pub fn stores(&self) -> bool {
        self.ttl != Some(Duration::ZERO)
    }

    /// The absolute deadline for an insert at `now`, or `None` for "do not store".
    pub(crate) fn deadline(&self, now: u64) -> Option<u64> {
        match self.ttl {
            None => Some(NEVER),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(match u64::try_from(d.as_nanos()) {
                Ok(n) => now.checked_add(n).unwrap_or(NEVER),
                Err(_) => NEVER,
            }),
        }
    }

    pub(crate) fn raw_gens(&self) -> Gens {
        self.gens
    }
}
