//! Cache keys: one type-erased key type for every memoized function of a memoizer.
//!
//! A memoizer keeps the results of all its functions in one engine, so the engine's key type
//! must hold any function's arguments. The stored key is [`ErasedKey`]: the function's
//! definition id (a process-unique `u64`, never its name) and a boxed [`OwnedKey`] holding the
//! owned argument tuple (for methods preceded by the receiver's `MemoIdentity::Id`).
//!
//! A call never builds that boxed key to look up: it builds a [`LookupKey`] on the stack, holding
//! references to the arguments as they were passed (`(&str, &u64)` for `fn f(a: &str, b: u64)`).
//! The two hash identically because every owned argument type `O` is `Borrow<B>` of its borrowed
//! form `B` (`String: Borrow<str>`, `Vec<T>: Borrow<[T]>`, `T: Borrow<T>`), and `Borrow`
//! requires equal hashing; tuples hash element by element. Equality downcasts the stored key to
//! the expected owned tuple (one `TypeId` comparison) and compares element by element through
//! `Borrow`. So a hit clones no argument; [`KeyView::to_owned_key`] runs only when a result is
//! stored.
//!
//! | piece | stored in the engine | hashed as |
//! |---|---|---|
//! | function | `fn_id: u64` inline in [`ErasedKey`] (checked first, no virtual call) | `u64` |
//! | arguments | `Box<OwnedKey<(O1, O2, ..)>>` | the tuple `(O1, O2, ..)` |
//!
//! Versions (the function's generation and the receiver's) are not part of the in-process key:
//! the engine stores them with each entry and hides entries whose generation is retired. A
//! shared backend would encode `(name, version ids, args)` with a stable encoding on its own path
//! (see the crate docs, "Design").

use std::any::Any;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// An argument type that can be part of a key: `Hash + Eq`, owned as a `Hash + Eq + Send + Sync
/// + 'static` value only when a result is stored.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument (or `key`) of a memoized function",
    label = "must be `Hash + Eq`, with an owned form (`ToOwned`) that is `Hash + Eq + Clone + Send + Sync + 'static`",
    note = "memokit compares arguments by value: derive `Hash, PartialEq, Eq, Clone` on the type, pass an id instead of the value, or select what to key by with `#[memoize(key = ...)]`"
)]
pub trait KeyArg: Hash + Eq + ToOwned<Owned: Hash + Eq + Send + Sync + 'static> {}

impl<T> KeyArg for T
where
    T: ?Sized + Hash + Eq + ToOwned,
    T::Owned: Hash + Eq + Send + Sync + 'static,
{
}

/// A borrowed view of a key's arguments: how a call looks itself up without cloning.
pub trait KeyView: Hash {
    /// The owned form stored in the engine.
    type Owned: Hash + Eq + Send + Sync + 'static;
    /// Whether this view equals a stored owned key.
    fn eq_owned(&self, owned: &Self::Owned) -> bool;
    /// Builds the owned form (only when a result is stored).
    fn to_owned_key(&self) -> Self::Owned;
}

macro_rules! tuple_view {
    ($($b:ident $i:tt),*) => {
        impl<'a, $($b: ?Sized + KeyArg),*> KeyView for ($(&'a $b,)*) {
            type Owned = ($($b::Owned,)*);
            #[inline]
            #[allow(unused_variables)]
            fn eq_owned(&self, owned: &Self::Owned) -> bool {
                true $(&& *self.$i == *Borrow::<$b>::borrow(&owned.$i))*
            }
            #[allow(clippy::unused_unit)]
            fn to_owned_key(&self) -> Self::Owned {
                ($(self.$i.to_owned(),)*)
            }
        }
    };
}

tuple_view!();
tuple_view!(B0 0);
tuple_view!(B0 0, B1 1);
tuple_view!(B0 0, B1 1, B2 2);
tuple_view!(B0 0, B1 1, B2 2, B3 3);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4, B5 5);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4, B5 5, B6 6);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4, B5 5, B6 6, B7 7);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4, B5 5, B6 6, B7 7, B8 8);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4, B5 5, B6 6, B7 7, B8 8, B9 9);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4, B5 5, B6 6, B7 7, B8 8, B9 9, B10 10);
tuple_view!(B0 0, B1 1, B2 2, B3 3, B4 4, B5 5, B6 6, B7 7, B8 8, B9 9, B10 10, B11 11);

/// A view of an already owned argument tuple (used by `Memoized::delete(&args)`).
#[derive(Hash)]
pub(crate) struct OwnedView<'a, O>(pub(crate) &'a O);

impl<O: Hash + Eq + Clone + Send + Sync + 'static> KeyView for OwnedView<'_, O> {
    type Owned = O;
    #[inline]
    fn eq_owned(&self, owned: &O) -> bool {
        self.0 == owned
    }
    fn to_owned_key(&self) -> O {
        self.0.clone()
    }
}

/// The owned arguments of one stored key.
struct OwnedKey<O> {
    args: O,
}

/// How to hash and compare the owned arguments behind a `dyn Any` (one table per type).
struct KeyVTable {
    hash: fn(&(dyn Any + Send + Sync), &mut dyn Hasher),
    eq: fn(&(dyn Any + Send + Sync), &(dyn Any + Send + Sync)) -> bool,
}

trait HasVTable {
    const VTABLE: KeyVTable;
}

impl<O: Hash + Eq + Send + Sync + 'static> HasVTable for OwnedKey<O> {
    const VTABLE: KeyVTable = KeyVTable {
        hash: |a, mut state| {
            if let Some(k) = a.downcast_ref::<Self>() {
                k.args.hash(&mut state);
            }
        },
        eq: |a, b| match (a.downcast_ref::<Self>(), b.downcast_ref::<Self>()) {
            (Some(a), Some(b)) => a.args == b.args,
            _ => false,
        },
    };
}

/// The key type of the memoizer's engine: function id + owned arguments, type-erased.
///
/// A lookup compares `fn_id` inline, then downcasts `args` (one `TypeId` check) and compares
/// by value; hashing and equality of two stored keys go through `vtable`.
pub(crate) struct ErasedKey {
    fn_id: u64,
    args: Box<dyn Any + Send + Sync>,
    vtable: &'static KeyVTable,
}

impl ErasedKey {
    pub(crate) fn from_view<V: KeyView>(fn_id: u64, view: &V) -> Self {
        ErasedKey {
            fn_id,
            args: Box::new(OwnedKey { args: view.to_owned_key() }),
            vtable: &<OwnedKey<V::Owned> as HasVTable>::VTABLE,
        }
    }
}

impl Hash for ErasedKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fn_id.hash(state);
        (self.vtable.hash)(&*self.args, state);
    }
}

impl PartialEq for ErasedKey {
    fn eq(&self, other: &Self) -> bool {
        self.fn_id == other.fn_id && (self.vtable.eq)(&*self.args, &*other.args)
    }
}

impl Eq for ErasedKey {}

/// A key built on the stack from borrowed arguments; looks up an [`ErasedKey`].
pub(crate) struct LookupKey<'v, V> {
    pub(crate) fn_id: u64,
    pub(crate) view: &'v V,
}

impl<V: KeyView> Hash for LookupKey<'_, V> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fn_id.hash(state);
        self.view.hash(state);
    }
}

impl<V: KeyView> memokit_engine::Equivalent<ErasedKey> for LookupKey<'_, V> {
    #[inline]
    fn equivalent(&self, key: &ErasedKey) -> bool {
        self.fn_id == key.fn_id
            && key
                .args
                .downcast_ref::<OwnedKey<V::Owned>>()
                .is_some_and(|o| self.view.eq_owned(&o.args))
    }
}

/// The key a call would use, as returned by [`Memoized::make_cache_key`](crate::Memoized::make_cache_key).
///
/// Opaque: two `CacheKey`s are equal exactly when the calls that made them would share a
/// result (same function, same receiver id, equal arguments). Its `Debug` output shows the
/// function's name and a hash, never the arguments (they need not be `Debug`).
///
/// ```
/// use memokit::memoize;
///
/// #[memoize]
/// fn add(a: u64, b: u64) -> u64 { a + b }
///
/// let k1 = add_memo().make_cache_key(&(1, 2));
/// let k2 = add_memo().make_cache_key(&(1, 2));
/// assert_eq!(k1, k2);
/// assert_ne!(k1, add_memo().make_cache_key(&(2, 1)));
/// ```
pub struct CacheKey {
    pub(crate) name: &'static str,
    pub(crate) key: ErasedKey,
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.key.hash(&mut h);
        f.debug_struct("CacheKey")
            .field("function", &self.name)
            .field("hash", &format_args!("{:016x}", h.finish()))
            .finish()
    }
}
