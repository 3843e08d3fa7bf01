//! [`Memoized`]: the handle of one memoized function, returned by its `f_memo()`.

use std::fmt;
use std::hash::Hash;

use crate::key::CacheKey;
use crate::state::{FnState, KeyOp, Ops};
use crate::{Memoizer, Stats, Timeout};

/// The handle of a memoized function `f`, returned by the generated `f_memo()`.
///
/// A small `Copy` value. `A` is the tuple of the function's owned argument types (`&str` ->
/// `String`, `&[T]` -> `Vec<T>`, `&T` -> `T`), for a method preceded by the receiver's
/// `MemoIdentity::Id`; `delete` and `make_cache_key` take it. With `key = <expr>`, they take
/// the same tuple and apply the expression to it.
///
/// ```
/// use memokit::{memoize, Timeout};
///
/// #[memoize(timeout = 60)]
/// fn param_func(a: u64, b: u64) -> u64 { a + b }
///
/// let h = param_func_memo();
/// assert!(h.name().ends_with("::param_func"));
/// assert_eq!(h.cache_timeout(), Timeout::from(60));
/// assert_eq!(param_func(1, 2), 3);
/// h.delete(&(1, 2));      // that one result
/// h.delete_all();         // every result (O(1))
/// ```
pub struct Memoized<A: 'static> {
    pub(crate) state: &'static FnState,
    pub(crate) ops: Ops<A>,
}

impl<A: 'static> Clone for Memoized<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: 'static> Copy for Memoized<A> {}

impl<A: 'static> fmt::Debug for Memoized<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memoized")
            .field("name", &self.state.name())
            .field("timeout", &self.state.timeout())
            .finish_non_exhaustive()
    }
}

impl<A: 'static> Memoized<A> {
    /// The function's name: its full path (`crate::module::f`, `crate::module::Type::m`) after
    /// `make_name`. By-name deletes on the memoizer use it.
    ///
    /// ```
    /// #[memokit::memoize(make_name = |n: &str| format!("{n}_v2"))]
    /// fn f() -> u8 { 1 }
    /// assert!(f_memo().name().ends_with("::f_v2"));
    /// ```
    pub fn name(&self) -> &'static str {
        self.state.name()
    }

    /// The timeout as set (by the attribute or [`set_cache_timeout`](Self::set_cache_timeout));
    /// `Timeout::Default` stays unresolved.
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f() -> u8 { 1 }
    /// assert_eq!(f_memo().cache_timeout(), memokit::Timeout::Default);
    /// ```
    pub fn cache_timeout(&self) -> Timeout {
        self.state.timeout()
    }

    /// Changes the timeout; read at every call, so the next call that stores uses it.
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f() -> u8 { 1 }
    /// f_memo().set_cache_timeout(5);
    /// assert_eq!(f_memo().cache_timeout(), memokit::Timeout::from(5));
    /// ```
    pub fn set_cache_timeout(&self, t: impl Into<Timeout>) {
        self.state.set_timeout(t.into());
    }

    /// The key a call with these arguments would use. Equal exactly when two calls would
    /// share a result.
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f(s: &str) -> usize { s.len() }
    /// assert_eq!(f_memo().make_cache_key(&("a".to_string(),)), f_memo().make_cache_key(&("a".to_string(),)));
    /// ```
    pub fn make_cache_key(&self, args: &A) -> CacheKey {
        match (self.ops)(self.state, args, KeyOp::Make) {
            Some(k) => k,
            // `ops` gives no key only where its arguments are no key at all, in code that
            // `#[memoize]` already made a compile error (see `dispatch`).
            None => unreachable!("memokit: `{}` has no cache key", self.name()),
        }
    }

    /// Deletes the result for these arguments (and detaches its computation in flight: its
    /// value is not stored, and later calls do not join it). Never waits. Deleting arguments
    /// that were never cached is a no-op.
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f(a: u64, b: u64) -> u64 { a + b }
    /// f(1, 2);
    /// f(3, 4);
    /// f_memo().delete(&(1, 2));
    /// f(1, 2); // deleted: computed again
    /// f(3, 4); // still cached
    /// assert_eq!((f_memo().stats().hits, f_memo().stats().misses), (1, 3));
    /// ```
    ///
    /// # Panics
    /// When called from an argument's `Eq`, `Hash` or `Clone` that the engine runs under one
    /// of its locks (see [Limits](crate#limits)).
    pub fn delete(&self, args: &A) {
        (self.ops)(self.state, args, KeyOp::Delete);
    }

    /// Deletes every result of the function, for every receiver: O(1) (a version swap), and
    /// no earlier result or computation is ever served again.
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f(a: u64) -> u64 { a }
    /// f(1);
    /// f_memo().delete_all();
    /// f(1); // computed again
    /// assert_eq!(f_memo().stats().misses, 2);
    /// ```
    pub fn delete_all(&self) {
        self.state.delete_all();
    }

    /// Drops the function's version (and its receivers'); the next call makes a fresh one.
    /// Like [`delete_all`](Self::delete_all), every earlier result is gone. O(1) for a
    /// function; for a method, one version retired per receiver it has results for (where
    /// `delete_all` is O(1)).
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f(a: u64) -> u64 { a }
    /// f(1);
    /// f_memo().delete_verhash();
    /// f(1); // computed again, under a fresh version
    /// assert_eq!(f_memo().stats().misses, 2);
    /// ```
    pub fn delete_verhash(&self) {
        self.state.delete_verhash();
    }

    /// This function's counters (`hits`, `misses`, `single_flight_waits`; the entry counters
    /// are the memoizer's).
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f() -> u8 { 1 }
    /// f();
    /// assert_eq!(f_memo().stats().misses, 1);
    /// ```
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// The memoizer this function is bound to.
    ///
    /// ```
    /// #[memokit::memoize]
    /// fn f() -> u8 { 1 }
    /// assert!(std::ptr::eq(f_memo().memoizer(), memokit::global()));
    /// ```
    pub fn memoizer(&self) -> &'static Memoizer {
        self.state.memoizer()
    }

    #[doc(hidden)]
    #[inline(always)]
    pub fn __state(self) -> &'static FnState {
        self.state
    }

    #[doc(hidden)]
    pub fn __receiver_records(self) -> usize {
        self.state.receiver_records()
    }

    #[doc(hidden)]
    pub fn __delete_receiver<I: Hash + Eq + 'static>(self, id: &I) {
        self.state.delete_receiver(id);
    }
}
