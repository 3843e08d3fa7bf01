//! Items used by the code `#[memoize]` and `delete_memoized!` generate. Not public API: names
//! and signatures here change without notice.

use std::hash::Hash;
use std::time::Duration;

use memokit_engine::Generation;

pub use core::convert::Infallible;
pub use core::{concat, module_path, stringify};
pub use std::any::type_name;
pub use std::borrow::{Borrow, ToOwned};
pub use std::format;
pub use std::string::String;
pub use std::vec::Vec;

pub use crate::dispatch::{
    probe, probe_args, probe_key, CallArc, CallClone, CallUncached, DeleteKey, DeleteNone, IdNone,
    IdOf, KeyOpNone, KeyOpView, KeyOwned, KeyRef, Probe, SettleNone, SettleRefRef,
};
pub use crate::identity::MemoIdentity;
pub use crate::key::{KeyArg, KeyView};
pub use crate::state::{handle, FnSlot, FnSpec, FnState, KeyOp, Ops, Recv};
pub use crate::{Memoized, Memoizer, Timeout};

/// A type a memoized function can return (or return in `Ok`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a memoized function",
    label = "results are stored and returned by clone: must be `Clone + Send + Sync + 'static`",
    note = "wrap the value in `std::sync::Arc` (cheap to clone, and `Send + Sync` if the value is), or own the borrowed data"
)]
pub trait CacheValue: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> CacheValue for T {}

/// Checks (at the argument's type) that it can be part of a key.
#[inline(always)]
pub fn assert_key_arg<T: ?Sized + KeyArg>() {}

/// A by-value argument that a `key =` expression names: the key may borrow it during the
/// call, so the body gets a clone of it on a miss.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is named by the `key` expression, so a miss clones it for the function's body: it must be `Clone`",
    label = "named by `key`, taken by value",
    note = "take the argument by reference (`&{Self}`), or derive `Clone` on it"
)]
pub trait KeyNamedArg: Clone {}

impl<T: Clone> KeyNamedArg for T {}

/// The clone of a by-value argument the `key` names, for the body (on a miss).
#[inline(always)]
pub fn clone_key_named<T: KeyNamedArg>(t: &T) -> T {
    t.clone()
}

/// The `Ok` type of a return type named `Result` without type arguments (`std::fmt::Result`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is named `Result`, so `#[memoize]` takes it for a `Result` (it stores only `Ok`), but it is not one",
    label = "a return type whose last path segment is `Result` must be a `Result`",
    note = "import the type under another name (`use path::Result as MyResult;`)"
)]
pub trait ResultOk {
    /// The `Ok` type.
    type Ok;
}

impl<T, E> ResultOk for Result<T, E> {
    type Ok = T;
}

/// Checks (at the return type) that results can be stored.
#[inline(always)]
pub fn assert_value<T: CacheValue>() {}

/// How a method call finds its receiver's version.
#[inline(always)]
pub fn receiver<I>(id: &I) -> impl Fn(&FnState, Option<Duration>) -> (Generation, u64) + '_
where
    I: Hash + Eq + Clone + Send + Sync + 'static,
{
    move |s, ttl| s.receiver_version(id, ttl)
}

/// Checks (at a part of the `key` expression) that its value can be a key; returns it.
#[inline(always)]
pub fn key_part<T: ?Sized + KeyArg>(t: &T) -> &T {
    t
}

/// What `timeout = <expr>` takes: the types [`Timeout`] converts from, and `Timeout`.
/// A trait of its own (not `Into<Timeout>`), so that another type gets this message rather
/// than rustc's `Timeout: From<i32>` pointing into this module.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a timeout",
    label = "a timeout is whole seconds as a `u64`, a `std::time::Duration`, or a `memokit::Timeout`",
    note = "give seconds as a `u64` (`u64::from(x)`, or `x as u64` for a signed value known to be non-negative), `Duration::from_millis(..)` for less than a second, or `Timeout::Never` for no deadline"
)]
pub trait TimeoutValue {
    /// The timeout.
    fn into_timeout(self) -> Timeout;
}

impl TimeoutValue for u64 {
    fn into_timeout(self) -> Timeout {
        self.into()
    }
}

impl TimeoutValue for std::time::Duration {
    fn into_timeout(self) -> Timeout {
        self.into()
    }
}

impl TimeoutValue for Timeout {
    fn into_timeout(self) -> Timeout {
        self
    }
}

/// The `timeout = <expr>` option.
#[inline]
pub fn timeout(t: impl TimeoutValue) -> Timeout {
    t.into_timeout()
}
