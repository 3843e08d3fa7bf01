//! Cache keys: one type-erased key type for every memoized function of a memoizer.
//!
//! A memoizer keeps the results of all its functions in one engine, so the engine's key type
//! must hold any function's arguments. The stored key is [`ErasedKey`]: the function's
//! definition id (a process-unique `u64`, never its name) and a boxed [`OwnedKey`] holding the
//! owned argument tuple (for methods preceded by the receiver's `MemoIdentity::Id`).
//!
//! A call never builds that boxed key to look up: it builds a [`HitKey`] on the stack, holding
//! references to the arguments as they were passed (`(&str, &u64)` for `fn f(a: &str, b: u64)`).
//! The two hash identically because every owned argument type `O` is `Borrow<B>` of its borrowed
//! form `B` (`String: Borrow<str>`, `Vec<T>: Borrow<[T]>`, `T: Borrow<T>`), and `Borrow`
//! requires equal hashing; tuples hash element by element. Equality compares the function id,
//! then the key's type tag, then the arguments element by element through `Borrow`. So a hit
//! clones no argument; [`KeyView::to_owned_key`] runs only when a result is stored.
//!
//! | piece | stored in the engine | hashed as |
//! |---|---|---|
//! | function | `fn_id: u64` inline in [`ErasedKey`] (checked first) | `u64` |
//! | types | `tag: TypeId` of (owned arguments, stored value type), inline | not hashed |
//! | arguments | `Box<dyn StoredArgs>` holding an `OwnedKey<(O1, O2, ..)>` | the tuple `(O1, O2, ..)` |
//!
//! ## Why a type tag, and the one `unsafe` of the crate
//! Downcasting a `dyn Any` calls its `type_id` through the vtable; a hit needed two (the key's
//! arguments and the value), about a fifth of a memoized hit (`benches/memoize.rs`: 27 → 22 ns
//! without them; see BENCHMARKS.md). The tag makes both checks one inline comparison with a
//! constant. Invariant (private fields, two constructors): a key's tag is `tag::<O, S>()` only if
//! its arguments are an `OwnedKey<O>`, and a key with a real value type `S` is built only by
//! [`HitKey::get_or_try_insert_with`], together with the `Arc<S>` stored under it (keys made
//! for [`CacheKey`] name a private value type that nothing stores). The engine keeps a key and
//! its value as one entry and never pairs a key with another value, so a value found through a
//! `HitKey<V, S>` holds an `S`. This module is the only one allowed `unsafe` (the crate denies
//! `unsafe_code`); debug builds check every cast with the dynamic type check it replaces. The casts that rely on
//! this are in [`HitKey::get`], [`Found`] and `HitKey`'s `Equivalent`, each with its `SAFETY`
//! proof; every other path (deletes, `make_cache_key`, comparing two stored keys, the value a
//! miss returns) uses checked downcasts.
//!
//! Versions (the function's generation and the receiver's) are not part of the in-process key:
//! the engine stores them with each entry and hides entries whose generation is retired. A
//! shared backend would encode `(name, version ids, args)` with a stable encoding on its own path
//! (see the crate docs, "Design").

#![allow(unsafe_code)]

use std::any::{Any, TypeId};
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use memokit_engine::{Engine, InsertOptions};

use crate::memoizer::ErasedValue;

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

/// What a stored key needs from its arguments, behind one vtable: hashing, equality with
/// another stored key, and a checked downcast (for the paths that do not know the type tag).
trait StoredArgs: Send + Sync + 'static {
    fn hash_dyn(&self, state: &mut dyn Hasher);
    fn eq_dyn(&self, other: &dyn StoredArgs) -> bool;
    fn as_any(&self) -> &(dyn Any + Send + Sync);
}

impl<O: Hash + Eq + Send + Sync + 'static> StoredArgs for OwnedKey<O> {
    fn hash_dyn(&self, mut state: &mut dyn Hasher) {
        self.args.hash(&mut state);
    }
    fn eq_dyn(&self, other: &dyn StoredArgs) -> bool {
        other.as_any().downcast_ref::<Self>().is_some_and(|o| o.args == self.args)
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// The type tag of a stored key: its owned argument type `O` and the concrete type `S` of the
/// value stored with it (what the `Arc<dyn Any>` of the value holds).
#[inline(always)]
fn tag<O: 'static, S: 'static>() -> TypeId {
    TypeId::of::<(OwnedKey<O>, S)>()
}

/// The value type named by the tag of a key that is never stored (private: no value has it).
struct Unstored;

/// The key type of the memoizer's engine: function id + owned arguments, type-erased.
///
/// `tag` names the types behind `args` and behind the value stored with this key (see
/// [`tag`]). Invariant, kept by the private fields and the two constructors: `tag ==
/// tag::<O, S>()` only if `args` is an `OwnedKey<O>`, and keys built by
/// [`ErasedKey::stored`] go into the engine only with a value whose concrete type is `S`
/// (from [`HitKey::get_or_try_insert_with`]; `unstored` keys name the private `Unstored`).
/// Two stored keys are equal only if their tags are, so an entry's value always has the type
/// its key's tag names. [`HitKey`] relies on this to skip both dynamic type checks.
pub(crate) struct ErasedKey {
    fn_id: u64,
    tag: TypeId,
    args: Box<dyn StoredArgs>,
}

impl ErasedKey {
    /// The key stored with a value of concrete type `S` (only [`HitKey`] stores).
    fn stored<V: KeyView, S: 'static>(fn_id: u64, view: &V) -> Self {
        ErasedKey {
            fn_id,
            tag: tag::<V::Owned, S>(),
            args: Box::new(OwnedKey { args: view.to_owned_key() }),
        }
    }

    /// A key that is never stored (the one [`CacheKey`] wraps); its tag names no value type.
    pub(crate) fn unstored<V: KeyView>(fn_id: u64, view: &V) -> Self {
        Self::stored::<V, Unstored>(fn_id, view)
    }
}

impl Hash for ErasedKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fn_id.hash(state);
        self.args.hash_dyn(state);
    }
}

impl PartialEq for ErasedKey {
    fn eq(&self, other: &Self) -> bool {
        self.fn_id == other.fn_id && self.tag == other.tag && self.args.eq_dyn(&*other.args)
    }
}

impl Eq for ErasedKey {}

/// A key built on the stack from borrowed arguments; finds the stored key of the same
/// function and arguments whatever its value type (for deletes). Checked downcast.
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
    fn equivalent(&self, key: &ErasedKey) -> bool {
        self.fn_id == key.fn_id
            && key
                .args
                .as_any()
                .downcast_ref::<OwnedKey<V::Owned>>()
                .is_some_and(|o| self.view.eq_owned(&o.args))
    }
}

/// The key of a call whose stored value type is `S`: finds only keys stored through a
/// `HitKey<V, S>`, with one comparison of the type tag and no virtual call.
///
/// This type is the only way results enter the memoizer's engine
/// ([`get_or_try_insert_with`](HitKey::get_or_try_insert_with): the key and the `Arc<S>`
/// stored together) and the only lookup that reads them unchecked ([`get`](HitKey::get)).
pub(crate) struct HitKey<'v, V, S> {
    fn_id: u64,
    view: &'v V,
    value: PhantomData<fn() -> S>,
}

impl<'v, V: KeyView, S: Send + Sync + 'static> HitKey<'v, V, S> {
    #[inline(always)]
    pub(crate) fn new(fn_id: u64, view: &'v V) -> Self {
        HitKey { fn_id, view, value: PhantomData }
    }

    /// The hit path: `read` sees the stored `S` in place.
    #[inline(always)]
    pub(crate) fn get<R>(
        &self,
        engine: &Engine<ErasedKey, ErasedValue>,
        read: impl FnOnce(Found<'_, S>) -> R,
    ) -> Option<R> {
        engine.get_map(self, |v| {
            // SAFETY: the engine hands `read` only the value of an entry whose key `k` this
            // `HitKey` found equivalent, so `k.tag == tag::<V::Owned, S>()` (checked in
            // `equivalent`). `ErasedKey::stored` (private to this module) has two callers:
            // `unstored`, whose tag names the private `Unstored`, which no codec stores and so no
            // `HitKey` carries; and `get_or_try_insert_with` below, whose key goes into the
            // engine only with that call's `compute` value, an `Arc<S>`. The engine stores a key
            // and its value as one entry and never pairs a key with another value (documented
            // on `Engine::get_map` and `Engine::get_or_try_insert_with_ref`). So the `dyn Any`
            // behind `v` is an `S`.
            read(unsafe { Found::new_unchecked(v) })
        })
    }

    /// The miss path: the engine's single flight for this key; a computed `Arc<S>` is stored
    /// under `ErasedKey::stored::<V, S>` (the invariant [`get`](HitKey::get) relies on). The
    /// value returned is checked like any other.
    pub(crate) fn get_or_try_insert_with<E>(
        &self,
        engine: &Engine<ErasedKey, ErasedValue>,
        opts: InsertOptions,
        compute: impl FnOnce() -> Result<Arc<S>, E>,
    ) -> Result<ErasedValue, E> {
        engine.get_or_try_insert_with_ref(
            self,
            opts,
            |k| ErasedKey::stored::<V, S>(k.fn_id, k.view),
            || compute().map(|a| a as ErasedValue),
        )
    }
}

/// A value of the memoizer's engine known to be an `Arc<S>`.
pub(crate) struct Found<'a, S> {
    v: &'a ErasedValue,
    s: PhantomData<fn() -> S>,
}

impl<'a, S: Send + Sync + 'static> Found<'a, S> {
    /// # Safety
    /// The `dyn Any` behind `v` must be an `S`.
    #[inline(always)]
    unsafe fn new_unchecked(v: &'a ErasedValue) -> Self {
        debug_assert!((**v).type_id() == TypeId::of::<S>());
        Found { v, s: PhantomData }
    }

    /// `v` if it holds an `S` (one dynamic type check).
    pub(crate) fn checked(v: &'a ErasedValue) -> Option<Self> {
        (**v).is::<S>().then_some(Found { v, s: PhantomData })
    }

    /// The stored value.
    #[inline(always)]
    pub(crate) fn get(&self) -> &'a S {
        // SAFETY: `self.v` holds an `S` (the constructors' contract); the data pointer of an
        // `Arc` points to its value, alive as long as `self.v` is borrowed.
        unsafe { &*Arc::as_ptr(self.v).cast::<S>() }
    }

    /// A new reference to the stored `Arc<S>` (one reference count increment).
    #[inline(always)]
    pub(crate) fn to_arc(&self) -> Arc<S> {
        let raw = Arc::into_raw(Arc::clone(self.v)).cast::<S>();
        // SAFETY: `raw` is the data pointer from `Arc::into_raw` of an `Arc<dyn Any>` whose
        // value is an `S` (the constructors' contract), so it has the size and alignment of an
        // `S`, which is what `Arc::from_raw` requires of a pointer from an unsized `Arc`; the
        // clone's reference is handed over to the result.
        unsafe { Arc::from_raw(raw) }
    }
}

impl<V: KeyView, S> Hash for HitKey<'_, V, S> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fn_id.hash(state);
        self.view.hash(state);
    }
}

impl<V: KeyView, S: 'static> memokit_engine::Equivalent<ErasedKey> for HitKey<'_, V, S> {
    #[inline]
    fn equivalent(&self, key: &ErasedKey) -> bool {
        if self.fn_id != key.fn_id || key.tag != tag::<V::Owned, S>() {
            return false;
        }
        debug_assert!(key.args.as_any().is::<OwnedKey<V::Owned>>());
        // SAFETY: the tag names `OwnedKey<V::Owned>` as the type behind `key.args` (invariant
        // of `ErasedKey`: the tag is set only by `ErasedKey::stored` from the type it boxes),
        // so the data pointer of the box points to an `OwnedKey<V::Owned>`, borrowed with `key`.
        let owned = unsafe { &*(&*key.args as *const dyn StoredArgs).cast::<OwnedKey<V::Owned>>() };
        self.view.eq_owned(&owned.args)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine<ErasedKey, ErasedValue> {
        Engine::builder().max_capacity(100).build().expect("engine")
    }

    /// The unchecked hit path finds only keys stored with its own value type: same function id
    /// and arguments under another value type is another entry, never a reinterpreted value.
    #[test]
    fn a_hit_key_finds_only_values_of_its_type() {
        let e = engine();
        let view = (&7u64,);
        let k_u64 = HitKey::<_, u64>::new(1, &view);
        let k_str = HitKey::<_, String>::new(1, &view);
        let v =
            k_u64.get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new(49)));
        assert!(v.is_ok());
        e.flush();
        assert_eq!(k_u64.get(&e, |f| *f.get()), Some(49));
        assert_eq!(k_str.get(&e, |f| f.get().clone()), None);
        let s = k_str
            .get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new("x".into())));
        assert!(s.as_ref().is_ok_and(|s| Found::<String>::checked(s).is_some()));
        e.flush();
        assert_eq!(k_str.get(&e, |f| f.to_arc()).as_deref().map(String::as_str), Some("x"));
        assert_eq!(k_u64.get(&e, |f| *f.to_arc()), Some(49));
        // Another function id, same arguments and type: not found.
        assert_eq!(HitKey::<_, u64>::new(2, &view).get(&e, |f| *f.get()), None);
    }

    #[test]
    fn checked_found_refuses_another_type() {
        let v: ErasedValue = Arc::new(5u32);
        assert!(Found::<u64>::checked(&v).is_none());
        assert_eq!(Found::<u32>::checked(&v).map(|f| *f.get()), Some(5));
    }

    /// Two views that hash alike (so their keys meet in one bucket) with different owned types.
    struct AsU64(u64);
    struct AsString(u64);
    impl Hash for AsU64 {
        fn hash<H: Hasher>(&self, h: &mut H) {
            self.0.hash(h)
        }
    }
    impl Hash for AsString {
        fn hash<H: Hasher>(&self, h: &mut H) {
            self.0.hash(h)
        }
    }
    impl KeyView for AsU64 {
        type Owned = u64;
        fn eq_owned(&self, o: &u64) -> bool {
            self.0 == *o
        }
        fn to_owned_key(&self) -> u64 {
            self.0
        }
    }
    impl KeyView for AsString {
        type Owned = String;
        fn eq_owned(&self, o: &String) -> bool {
            o.len() as u64 == self.0
        }
        fn to_owned_key(&self) -> String {
            "x".repeat(self.0 as usize)
        }
    }

    #[test]
    fn a_hit_key_checks_the_argument_type_too() {
        let e = engine();
        for flush in [false, true] {
            for i in 0..64u64 {
                let v = AsU64(i);
                let k = HitKey::<_, u64>::new(1, &v);
                let _ =
                    k.get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new(i)));
            }
            if flush {
                e.flush();
            }
            for i in 0..64u64 {
                // Same fn id, same value type, same hash, another owned argument type.
                assert_eq!(HitKey::<_, u64>::new(1, &AsString(i)).get(&e, |f| *f.get()), None);
                assert_eq!(HitKey::<_, u64>::new(1, &AsU64(i)).get(&e, |f| *f.get()), Some(i));
            }
            e.clear();
        }
    }

    #[test]
    fn an_unstored_key_is_never_read_unchecked() {
        let e = engine();
        let view = (&7u64,);
        e.insert(ErasedKey::unstored(1, &view), Arc::new(String::from("not a u64")) as ErasedValue);
        assert_eq!(HitKey::<_, u64>::new(1, &view).get(&e, |f| *f.get()), None);
        e.flush();
        assert_eq!(HitKey::<_, u64>::new(1, &view).get(&e, |f| *f.get()), None);
    }

    #[test]
    fn to_arc_hands_over_one_reference_of_the_same_allocation() {
        #[repr(align(64))]
        #[derive(Debug, PartialEq)]
        struct Wide([u8; 3]);
        let e = engine();
        let view = (&1u8,);
        let orig = Arc::new(Wide([1, 2, 3]));
        let k = HitKey::<_, Wide>::new(3, &view);
        let o2 = Arc::clone(&orig);
        let _ = k.get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(o2));
        e.flush();
        let got = k.get(&e, |f| f.to_arc()).expect("hit");
        assert!(Arc::ptr_eq(&got, &orig));
        assert_eq!(Arc::strong_count(&orig), 3); // orig, the engine's, got
        drop(got);
        assert_eq!(Arc::strong_count(&orig), 2);
        assert_eq!(k.get(&e, |f| f.get() as *const Wide), Some(Arc::as_ptr(&orig)));
    }

    /// The three casts without an engine (no worker threads): quick under Miri.
    #[test]
    fn casts_without_an_engine() {
        use memokit_engine::Equivalent;
        #[repr(align(64))]
        struct Wide(u8);
        let s = String::from("ab");
        let view = (&*s, &3u64);
        let k = ErasedKey::stored::<_, Wide>(9, &view);
        assert!(HitKey::<_, Wide>::new(9, &view).equivalent(&k));
        assert!(!HitKey::<_, u8>::new(9, &view).equivalent(&k));
        assert!(!HitKey::<_, Wide>::new(9, &(&*s, &4u64)).equivalent(&k));
        let v: ErasedValue = Arc::new(Wide(5));
        // SAFETY: `v` was made from an `Arc<Wide>` just above.
        let f = unsafe { Found::<Wide>::new_unchecked(&v) };
        assert_eq!(f.get().0, 5);
        let a = f.to_arc();
        assert_eq!(Arc::strong_count(&a), 2);
        assert!(std::ptr::eq(Arc::as_ptr(&a), f.get()));
        drop(a);
        assert_eq!(Arc::strong_count(&v), 1);
    }
}
