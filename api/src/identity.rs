//! [`MemoIdentity`]: the identity of a receiver of memoized methods.

use std::hash::Hash;

/// The identity of a value whose methods are memoized: two values with the same id share
/// results (like the seed's `__repr__` returning the database id).
///
/// Implement it by hand, or derive it with exactly one field marked `#[memo(id)]`. Keep the
/// id's `Eq` and `Clone` plain (derived): the id is part of the cache key, and the engine runs
/// a key's `Eq` and `Clone` under its locks, where a call back into the memoizer panics with a
/// message starting with `memokit:` (never hangs). Its `Hash` may call anything.
///
/// ```
/// use memokit::{memoize, MemoIdentity};
///
/// #[derive(MemoIdentity)]
/// struct Adder {
///     #[memo(id)]
///     id: u64,
///     base: u64,
/// }
///
/// impl Adder {
///     #[memoize]
///     fn add(&self, n: u64) -> u64 { self.base + n }
/// }
///
/// let a = Adder { id: 1, base: 10 };
/// assert_eq!(a.memo_id(), 1);
/// assert_eq!(a.add(5), 15);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the receiver of a memoized method: it does not implement `MemoIdentity`",
    label = "the receiver's identity is part of the cache key",
    note = "add `#[derive(memokit::MemoIdentity)]` with one field marked `#[memo(id)]`, or implement `memokit::MemoIdentity` by hand"
)]
pub trait MemoIdentity {
    /// The identity: results are shared by receivers with equal ids.
    type Id: Hash + Eq + Clone + Send + Sync + 'static;
    /// This value's identity.
    fn memo_id(&self) -> Self::Id;
}
