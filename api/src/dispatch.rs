//! How generated code reaches the call path: tiered dispatch ("autoref specialization").
//!
//! A generated call is `(&&&probe::<_, R>(&view)).__memokit_call(..)`. Method lookup tries the
//! tiers in order and takes the first whose bounds hold:
//!
//! | tier | impl for | when | does |
//! |---|---|---|---|
//! | 1 | `&&Probe<V, Arc<U>>` | the key is a [`KeyView`], the result an `Arc<U>` | stores the `Arc<U>` itself as the engine value; a hit is one `Arc` clone (its type known from the function's key types, see `key.rs`), no second allocation or reference count |
//! | 2 | `&Probe<V, T>` | the key is a [`KeyView`], `T: Clone + Send + Sync + 'static` | stores `Arc<T>`; a hit clones `T` out of it |
//! | 3 | `Probe<V, T>` | otherwise | runs the function uncached |
//!
//! Tier 3 is never run: when it is selected, the checks that `#[memoize]` emits at the
//! offending type (`assert_key_arg`, `assert_value`) already failed to compile. It exists so
//! that one unsuitable type gives one error, at that type, instead of one more per generated
//! use. Deletes and `ops` dispatch the same way (their last tier is a no-op, selected only
//! where the call is a compile error too), and so does the view of a `key =` value (a
//! reference is the view, an owned value is borrowed). `ops` (the handle's `delete` and
//! `make_cache_key`, the by-name delete) builds the call's own view from the owned argument
//! tuple (each borrowed argument through `Borrow`), so it finds and makes the key a call would
//! use, and needs no `Clone` of the tuple: a by-reference argument whose `ToOwned::Owned` is
//! not `Clone` has working deletes and keys (deletes once did nothing for it, and
//! `make_cache_key` panicked).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::key::{CacheKey, Found, KeyView};
use crate::state::{FnState, KeyOp, Recv};
use crate::Memoized;

/// A type-level probe carrying the key view type `V` and the stored value type `R`.
#[derive(Debug)]
pub struct Probe<V: ?Sized, R>(PhantomData<Types<V, R>>);

type Types<V, R> = (fn() -> *const V, fn() -> R);

/// The probe for a view (inferred) and a value type (named by the generated code).
#[inline(always)]
pub fn probe<V, R>(_: &V) -> Probe<V, R> {
    Probe(PhantomData)
}

/// The probe for a type (for a receiver's identity).
#[inline(always)]
pub fn probe_args<A: ?Sized>() -> Probe<A, ()> {
    Probe(PhantomData)
}

/// How values of type `T` are stored in and read back from the engine. A trait with static
/// functions (not function pointers) so that the hit path inlines them.
pub(crate) trait Codec<T> {
    /// The concrete type of the stored value (`Arc<Stored>` behind the `dyn Any`).
    type Stored: Send + Sync + 'static;
    /// Wraps a result for the engine.
    fn erase(t: T) -> Arc<Self::Stored>;
    /// Reads a stored value in place (under the engine's read lock): one `Arc` increment for
    /// `Arc` results, a plain clone of `T` otherwise.
    fn unerase(v: Found<'_, Self::Stored>) -> T;
}

/// `Arc<U>` results are stored as they are.
pub(crate) struct ArcCodec;

impl<U: Send + Sync + 'static> Codec<Arc<U>> for ArcCodec {
    type Stored = U;
    #[inline(always)]
    fn erase(a: Arc<U>) -> Arc<U> {
        a
    }
    #[inline(always)]
    fn unerase(v: Found<'_, U>) -> Arc<U> {
        v.to_arc()
    }
}

/// Other results are stored in an `Arc` and cloned out.
pub(crate) struct CloneCodec;

impl<T: Clone + Send + Sync + 'static> Codec<T> for CloneCodec {
    type Stored = T;
    #[inline(always)]
    fn erase(t: T) -> Arc<T> {
        Arc::new(t)
    }
    #[inline(always)]
    fn unerase(v: Found<'_, T>) -> T {
        v.get().clone()
    }
}

macro_rules! call_tier {
    ($tr:ident, $doc:literal) => {
        #[doc = $doc]
        pub trait $tr<V, T> {
            /// A memoized call; only `Ok` values are stored.
            fn __memokit_call<A: 'static, E>(
                &self,
                m: Memoized<A>,
                recv: Recv<'_>,
                view: V,
                f: impl FnOnce() -> Result<T, E>,
            ) -> Result<T, E>;
        }
    };
}

call_tier!(CallArc, "Tier 1 of a call: `Arc` results.");
call_tier!(CallClone, "Tier 2 of a call: `Clone` results.");
call_tier!(CallUncached, "Tier 3 of a call: unsuitable types (already a compile error).");

impl<V: KeyView, U: Send + Sync + 'static> CallArc<V, Arc<U>> for &&Probe<V, Arc<U>> {
    #[inline(always)]
    fn __memokit_call<A: 'static, E>(
        &self,
        m: Memoized<A>,
        recv: Recv<'_>,
        view: V,
        f: impl FnOnce() -> Result<Arc<U>, E>,
    ) -> Result<Arc<U>, E> {
        m.state.call::<_, _, _, ArcCodec>(&view, recv, f)
    }
}

impl<V: KeyView, T: Clone + Send + Sync + 'static> CallClone<V, T> for &Probe<V, T> {
    #[inline(always)]
    fn __memokit_call<A: 'static, E>(
        &self,
        m: Memoized<A>,
        recv: Recv<'_>,
        view: V,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        m.state.call::<_, _, _, CloneCodec>(&view, recv, f)
    }
}

impl<V, T> CallUncached<V, T> for Probe<V, T> {
    fn __memokit_call<A: 'static, E>(
        &self,
        _: Memoized<A>,
        _: Recv<'_>,
        _: V,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        f()
    }
}

/// Tier 1 of a delete by view.
pub trait DeleteKey<V> {
    /// Removes the result for `view`.
    fn __memokit_delete<A: 'static>(&self, m: Memoized<A>, view: V);
}

/// Tier 2 of a delete by view (already a compile error).
pub trait DeleteNone<V> {
    /// Does nothing.
    fn __memokit_delete<A: 'static>(&self, m: Memoized<A>, view: V);
}

impl<V: KeyView, R> DeleteKey<V> for &Probe<V, R> {
    fn __memokit_delete<A: 'static>(&self, m: Memoized<A>, view: V) {
        m.state.key_op(&view, KeyOp::Delete);
    }
}

impl<V, R> DeleteNone<V> for Probe<V, R> {
    fn __memokit_delete<A: 'static>(&self, _: Memoized<A>, _: V) {}
}

/// Tier 1 of a key operation on a view (for `ops`, which builds the call's view from the owned
/// argument tuple).
pub trait KeyOpView<V> {
    /// Applies `op` to the key of `view`.
    fn __memokit_key_op(&self, s: &'static FnState, view: V, op: KeyOp) -> Option<CacheKey>;
}

/// Tier 2 of a key operation (already a compile error).
pub trait KeyOpNone<V> {
    /// Does nothing.
    fn __memokit_key_op(&self, s: &'static FnState, view: V, op: KeyOp) -> Option<CacheKey>;
}

impl<V: KeyView, R> KeyOpView<V> for &Probe<V, R> {
    fn __memokit_key_op(&self, s: &'static FnState, view: V, op: KeyOp) -> Option<CacheKey> {
        s.key_op(&view, op)
    }
}

impl<V, R> KeyOpNone<V> for Probe<V, R> {
    fn __memokit_key_op(&self, _: &'static FnState, _: V, _: KeyOp) -> Option<CacheKey> {
        None
    }
}

/// The probe for the value of one part of a `key =` expression.
#[inline(always)]
pub fn probe_key<K>(_: &K) -> Probe<K, ()> {
    Probe(PhantomData)
}

/// Tier 1 of settling a `key =` part as it leaves the block where the arguments are seen by
/// reference: a reference to a reference (`key = &a`, `a` being `&A` there) becomes the
/// inner reference, which borrows the argument itself rather than that block's binding.
pub trait SettleRefRef<X, Y> {
    /// The part, settled.
    fn __memokit_settle(&self, k: X) -> Y;
}

impl<'x, 'y, U: ?Sized> SettleRefRef<&'x &'y U, &'y U> for &&Probe<&'x &'y U, ()> {
    #[inline(always)]
    // `k` by auto-deref would be a reborrow through the outer reference, living only as long
    // as `'x` (the binding the part borrowed); `*k` copies out the inner one, which lives `'y`.
    #[allow(clippy::explicit_auto_deref)]
    fn __memokit_settle(&self, k: &'x &'y U) -> &'y U {
        *k
    }
}

/// Tier 2 of settling a `key =` part: anything else stays as it is.
pub trait SettleNone<X> {
    /// The part, as it is.
    fn __memokit_settle(&self, k: X) -> X;
}

impl<X> SettleNone<X> for &Probe<X, ()> {
    #[inline(always)]
    fn __memokit_settle(&self, k: X) -> X {
        k
    }
}

/// Tier 1 of viewing a settled `key =` part: a reference (the expression sees the arguments by
/// reference, so `key = a` is `&A`, and `key = region` a `&str`) is the view itself. It is
/// owned (`ToOwned`: `&str` becomes `String`) only when a result is stored, like an argument.
pub trait KeyRef<X, U: ?Sized> {
    /// The value the key is made of, borrowed.
    fn __memokit_view<'b>(&self, k: &'b X) -> &'b U;
}

impl<'x, U: ?Sized> KeyRef<&'x U, U> for &Probe<&'x U, ()> {
    #[inline(always)]
    fn __memokit_view<'b>(&self, k: &'b &'x U) -> &'b U {
        k
    }
}

/// Tier 2 of viewing a settled `key =` part: an owned value (`key = user.id`) is borrowed where it
/// lies.
pub trait KeyOwned<X> {
    /// The value the key is made of, borrowed.
    fn __memokit_view<'b>(&self, k: &'b X) -> &'b X;
}

impl<X> KeyOwned<X> for Probe<X, ()> {
    #[inline(always)]
    fn __memokit_view<'b>(&self, k: &'b X) -> &'b X {
        k
    }
}

/// Tier 1 of a receiver's identity.
pub trait IdOf<T: ?Sized> {
    /// The receiver's `MemoIdentity::Id`.
    type Id;
    /// Reads it.
    fn __memokit_id(&self, t: &T) -> Self::Id;
}

/// Tier 2 of a receiver's identity (already a compile error).
pub trait IdNone<T: ?Sized> {
    /// Nothing.
    fn __memokit_id(&self, t: &T);
}

impl<T: ?Sized + crate::MemoIdentity> IdOf<T> for &Probe<T, ()> {
    type Id = T::Id;
    #[inline(always)]
    fn __memokit_id(&self, t: &T) -> T::Id {
        t.memo_id()
    }
}

impl<T: ?Sized> IdNone<T> for Probe<T, ()> {
    fn __memokit_id(&self, _: &T) {}
}
