//! Cache keys: one type-erased key type for every memoized function of a memoizer.
//!
//! A memoizer keeps the results of all its functions in one engine, so the engine's key type
//! must hold any function's arguments. The stored key is [`ErasedKey`]: the id of the
//! function's current key space (a process-unique `u64` renewed with each version of the
//! function, never its name) and the owned argument tuple (for methods preceded by the
//! receiver's `MemoIdentity::Id`): one inline word for a single primitive or none (module
//! `word`), a boxed [`OwnedKey`] otherwise.
//!
//! A call never builds that stored key to look up: it builds a [`HitKey`] on the stack, holding
//! references to the arguments as they were passed (`(&str, &u64)` for `fn f(a: &str, b: u64)`).
//! The two hash identically because every owned argument type `O` is `Borrow<B>` of its borrowed
//! form `B` (`String: Borrow<str>`, `Vec<T>: Borrow<[T]>`, `T: Borrow<T>`), and `Borrow`
//! requires equal hashing; tuples hash element by element. Equality compares the ids, then
//! the arguments element by element through `Borrow`. So a hit clones no argument;
//! [`KeyView::to_owned_key`] runs only when a result is stored. (A word key is hashed and
//! compared as its word on both sides instead: module `word`.)
//!
//! | piece | stored in the engine | hashed as |
//! |---|---|---|
//! | function | `id: u64` inline in [`ErasedKey`] (checked first): its key space, with the kind of a word key in its high bits | `u64` (folded into the word for a word key) |
//! | arguments of one primitive, or none (`(u64,)`, `(char,)`, `()`) | the value as one word, inline (module `word`) | one `u64`: the word `^` the id rotated |
//! | other arguments | `Box<dyn StoredArgs>` holding an `OwnedKey<(O1, O2, ..)>` | the tuple `(O1, O2, ..)` |
//!
//! ## One type per function, and the one `unsafe` of the crate
//! Downcasting a `dyn Any` calls its `type_id` through the vtable; a hit needed two (the key's
//! arguments and the value), about a fifth of a memoized hit (`benches/memoize.rs`: 27 → 22 ns
//! without them; see BENCHMARKS.md). Instead, a function's [`FnKeys`] records the type tag
//! (owned arguments, stored value type) of its first call, and a [`HitKey`] is made only for
//! calls with that tag: one comparison per call against the function's own state, none per
//! entry (an entry's key is 24 bytes: the id and a word or a box). Invariant (private fields,
//! one constructor each): every key stored under an id `id` was built by
//! [`HitKey::get_or_try_insert_with`] of a `HitKey` of the [`FnKeys`] whose space `id` was,
//! together with the `Arc<S>` stored under it, so its arguments are an `OwnedKey<O>` (or an
//! `O`'s word) and its value an `S` for the one `(O, S)` that `FnKeys` admits. Ids and spaces
//! are process-unique (`fresh_id`, called by `FnKeys` only, is their only source); keys made
//! for [`CacheKey`] carry the function's id with [`UNSTORED`] set, which no space has. The
//! engine holds a value only with a key `Eq` to the one it was stored with
//! (a replacement in place keeps the resident key), and equal keys have equal ids, so a value
//! found through a `HitKey<V, S>` holds an `S`. (Generated code gives each function one
//! signature, a generic `impl` being a compile error; the runtime check keeps this sound even
//! if that failed.) This module is the only one allowed `unsafe` (the crate denies
//! `unsafe_code`); debug builds check every cast with the dynamic type check it replaces. The
//! casts that rely on this are in [`HitKey::get`], [`Found`] and `HitKey`'s `Equivalent`, each
//! with its `SAFETY` proof; every other path (deletes, `make_cache_key`, comparing two stored
//! keys, the value a miss returns) uses checked downcasts.
//!
//! Versions: the function's version is in the key as its space (a fresh one with each version,
//! `FnKeys::renew_space`), so a hit needs no check of it; the engine still stores the version's
//! generation with each entry (declared in the key: `InsertOptions::primary_in_key`), to count,
//! refuse and reclaim them. A method's receiver version is not in the key: the engine checks
//! it on every hit and hides entries whose receiver version is retired. A shared backend would
//! encode `(name, version ids, args)` with a stable encoding on its own path (see the crate
//! docs, "Design").

#![allow(unsafe_code)]

use std::any::{Any, TypeId};
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use memokit_engine::{Engine, InsertOptions};

use crate::memoizer::ErasedValue;

mod word;

/// An argument type that can be part of a key: `Hash + Eq`, owned as a `Hash + Eq + Send + Sync
/// + 'static` value only when a result is stored.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument (or `key`) of a memoized function",
    label = "must be `Hash + Eq`, with an owned form (`ToOwned`) that is `Hash + Eq + Clone + Send + Sync + 'static`",
    note = "memokit compares arguments by value: derive `Hash, PartialEq, Eq, Clone` on the type, pass an id instead of the value, or select what to key by with `#[memoize(key = ...)]`",
    note = "a float (`f32`, `f64`) is never `Eq`: key by its bits, as in `#[memoize(key = (id, amount.to_bits()))]`"
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

/// The type tag of a function's keys: its owned argument type `O` and the concrete type `S` of
/// the values stored with them (what the `Arc<dyn Any>` of a value holds).
#[inline(always)]
fn tag<O: 'static, S: 'static>() -> TypeId {
    TypeId::of::<(OwnedKey<O>, S)>()
}

/// Set in the function id of keys that are never stored ([`ErasedKey::unstored`]); process-unique
/// ids are counted from 1 and never reach it.
const UNSTORED: u64 = 1 << 63;

/// The next function id, process-wide (ids stay below `1 << word::KIND_SHIFT`, so neither a
/// key's kind nor [`UNSTORED`] is ever part of one).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The key space of one memoized function: its process-unique id, the id its stored keys
/// currently carry (its *space*, renewed with each version of the function), and the one type
/// tag its keys and values have, fixed by its first call (see the module docs). Deliberately
/// neither `Clone` nor `Default`, and the only source of ids: an id or space belongs to one
/// `FnKeys`, which [`HitKey`]'s unchecked reads rely on.
pub(crate) struct FnKeys {
    id: u64,
    space: AtomicU64,
    tag: OnceLock<TypeId>,
}

/// A fresh process-unique id (for a function or one of its key spaces).
///
/// # Panics
/// After 2^56 ids (one per memoized definition and per deletion of all its results: never in
/// practice; at a million deletions a second, in 2 000 years).
fn fresh_id() -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    assert!(id < 1 << word::KIND_SHIFT, "memokit: function ids exhausted");
    id
}

/// A fresh key space for [`FnKeys::renew_space`]: taken before the version lock, so that
/// running out of ids panics before a delete changes anything. Neither `Clone` nor `Copy`: a
/// space goes to one `FnKeys`.
pub(crate) struct Space(u64);

impl Space {
    /// A fresh, process-unique space.
    ///
    /// # Panics
    /// After 2^56 ids ([`fresh_id`]).
    pub(crate) fn fresh() -> Self {
        Space(fresh_id())
    }
}

impl FnKeys {
    /// The key space of a new function, with a fresh id and a fresh space.
    ///
    /// # Panics
    /// After 2^56 ids ([`fresh_id`]).
    pub(crate) fn new() -> Self {
        let id = fresh_id();
        FnKeys { id, space: AtomicU64::new(fresh_id()), tag: OnceLock::new() }
    }

    /// The function's id (its identity for [`CacheKey`]s).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The id the function's stored keys carry now: calls look up and store only under it,
    /// so keys stored under an earlier space are not found by calls that read a later one.
    #[inline(always)]
    pub(crate) fn space(&self) -> u64 {
        self.space.load(Ordering::Acquire)
    }

    /// Moves the function's keys to `space` (with each new version of the function: under its
    /// version lock, so that a version and the space it is stored under are read together).
    pub(crate) fn renew_space(&self, space: Space) {
        self.space.store(space.0, Ordering::Release);
    }

    /// The key of a call with arguments `view` whose results are stored as `S`; `None` when
    /// this function's keys have other types (never for generated code: one signature per
    /// function). The first call fixes the types.
    #[inline(always)]
    pub(crate) fn hit_key<'v, V: KeyView, S: 'static>(
        &self,
        view: &'v V,
    ) -> Option<HitKey<'v, V, S>> {
        let t = tag::<V::Owned, S>();
        (*self.tag.get_or_init(|| t) == t).then_some(HitKey {
            id: with_kind::<V>(self.space()),
            view,
            value: PhantomData,
        })
    }
}

/// The key type of the memoizer's engine: key space id + owned arguments, type-erased.
///
/// Invariant, kept by the private fields and the two constructors: a key built by
/// [`ErasedKey::stored`] goes into the engine only from [`HitKey::get_or_try_insert_with`],
/// with the `Arc<S>` of that `HitKey`, and its function's [`FnKeys`] admits only that `(O, S)`;
/// [`ErasedKey::unstored`] keys carry the function's id with [`UNSTORED`] set. So every entry
/// of id `id` (one space of one function) has an `OwnedKey<O>` (or, for a word key, the word
/// of an `O`) and an `S`: [`HitKey`] relies on this to skip both dynamic type checks.
pub(crate) struct ErasedKey {
    /// A stored key's space, or an unstored key's function id with [`UNSTORED`] set; with the
    /// kind of a word key in its high bits ([`with_kind`]).
    id: u64,
    args: Args,
}

/// A stored key's arguments: one word when the owned tuple has a kind (module `word`; the id
/// says which), boxed otherwise. 16 bytes (the box's pointer is the niche).
enum Args {
    Word(u64),
    Boxed(Box<dyn StoredArgs>),
}

/// An id (a space, or a function's id) with the kind of `V`'s owned keys in its high bits (0
/// for boxed keys).
#[inline(always)]
fn with_kind<V: KeyView>(id: u64) -> u64 {
    id | word::kind::<V::Owned>() << word::KIND_SHIFT
}

/// The view's owned key as a word, if its type has a kind. Copies the arguments out of their
/// references first: only for the primitive types of a kind, for which that is a load.
#[inline(always)]
fn view_word<V: KeyView>(view: &V) -> Option<u64> {
    if word::kind::<V::Owned>() == 0 {
        return None;
    }
    word::encode(&view.to_owned_key())
}

/// Hashes a word key: one word, the function id (with its kind) folded in. For each id this is
/// a bijection of the words, so keys of one function never share a hash through it (keys of
/// two functions may; their ids tell them apart). One multiply fewer than hashing both.
#[inline(always)]
fn hash_word<H: Hasher>(id: u64, word: u64, state: &mut H) {
    state.write_u64(word ^ id.rotate_left(32));
}

/// Hashes the key a view looks for as [`ErasedKey`]'s `Hash` hashes the stored key (`id` with
/// the view's kind): the engine's `Equivalent` contract.
#[inline(always)]
fn hash_view<V: KeyView, H: Hasher>(id: u64, view: &V, state: &mut H) {
    match view_word(view) {
        Some(w) => hash_word(id, w, state),
        None => {
            id.hash(state);
            view.hash(state);
        }
    }
}

impl ErasedKey {
    /// The key of `view` under `id`: a space for the keys [`HitKey`] stores (only it does), a
    /// function id with [`UNSTORED`] set for [`unstored`](Self::unstored) ones.
    fn stored<V: KeyView>(id: u64, view: &V) -> Self {
        let args = match view_word(view) {
            Some(w) => Args::Word(w),
            None => Args::Boxed(Box::new(OwnedKey { args: view.to_owned_key() })),
        };
        ErasedKey { id: with_kind::<V>(id), args }
    }

    /// A key that is never stored (the one [`CacheKey`] wraps): equal to another such key
    /// exactly when a call's keys would be, found by no [`HitKey`].
    pub(crate) fn unstored<V: KeyView>(fn_id: u64, view: &V) -> Self {
        Self::stored(fn_id | UNSTORED, view)
    }
}

impl Hash for ErasedKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.args {
            Args::Word(w) => hash_word(self.id, *w, state),
            Args::Boxed(b) => {
                self.id.hash(state);
                b.hash_dyn(state);
            }
        }
    }
}

impl PartialEq for ErasedKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && match (&self.args, &other.args) {
                (Args::Word(a), Args::Word(b)) => a == b,
                (Args::Boxed(a), Args::Boxed(b)) => a.eq_dyn(&**b),
                _ => false,
            }
    }
}

impl Eq for ErasedKey {}

/// A key built on the stack from borrowed arguments; finds the stored key of the same space
/// and arguments whatever its value type (for deletes). Checked downcast.
pub(crate) struct LookupKey<'v, V> {
    /// The key space looked in (`FnKeys::space`), without the kind (added from `V`).
    pub(crate) space: u64,
    pub(crate) view: &'v V,
}

impl<V: KeyView> Hash for LookupKey<'_, V> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_view(with_kind::<V>(self.space), self.view, state);
    }
}

impl<V: KeyView> memokit_engine::Equivalent<ErasedKey> for LookupKey<'_, V> {
    fn equivalent(&self, key: &ErasedKey) -> bool {
        with_kind::<V>(self.space) == key.id
            && match &key.args {
                // Equal ids: the word is of `V::Owned`'s kind.
                Args::Word(w) => view_word(self.view) == Some(*w),
                Args::Boxed(b) => b
                    .as_any()
                    .downcast_ref::<OwnedKey<V::Owned>>()
                    .is_some_and(|o| self.view.eq_owned(&o.args)),
            }
    }
}

/// The key of a call whose stored value type is `S`, made only by [`FnKeys::hit_key`] (so
/// only for the `(V::Owned, S)` its function admits): finds that function's keys with no type
/// check and no virtual call.
///
/// This type is the only way results enter the memoizer's engine
/// ([`get_or_try_insert_with`](HitKey::get_or_try_insert_with): the key and the `Arc<S>`
/// stored together) and the only lookup that reads them unchecked ([`get`](HitKey::get)).
pub(crate) struct HitKey<'v, V, S> {
    /// The function's space when the key was made, with `V`'s kind (as [`ErasedKey`]'s id).
    id: u64,
    view: &'v V,
    value: PhantomData<fn() -> S>,
}

impl<V: KeyView, S: Send + Sync + 'static> HitKey<'_, V, S> {
    /// The hit path: `read` sees the stored `S` in place.
    #[inline(always)]
    pub(crate) fn get<R>(
        &self,
        engine: &Engine<ErasedKey, ErasedValue>,
        read: impl FnOnce(Found<'_, S>) -> R,
    ) -> Option<R> {
        engine.get_map(self, |v| {
            // SAFETY: the engine hands `read` only the value of an entry whose key `k` this
            // `HitKey` found equivalent, so `k.id == self.id` (checked in `equivalent`).
            // The engine holds a value only with a key `Eq` to the one it was stored with (a
            // replacement in place keeps the resident key; documented on `Engine::get_map`),
            // and `Eq` keys have equal ids, so `v` was stored with a key of id `self.id`.
            // `ErasedKey::stored` (private to this module) has two callers: `unstored`, whose
            // ids have `UNSTORED` set, which no space has; and `get_or_try_insert_with` below,
            // whose key goes into the engine only with that call's `compute` value, an
            // `Arc<S'>` for a `HitKey<V', S'>` of the `FnKeys` whose space that id was (ids
            // come only from `fresh_id`, each kept by one `FnKeys`, which is not `Clone`, as
            // its id or one of its spaces). `FnKeys::hit_key` (the only constructor) makes
            // `HitKey`s of one `FnKeys` for one tag `(V::Owned, S)` only, so `S' == S` and
            // the `dyn Any` behind `v` is an `S`.
            read(unsafe { Found::new_unchecked(v) })
        })
    }

    /// The miss path: the engine's single flight for this key; a computed `Arc<S>` is stored
    /// under `ErasedKey::stored` in this key's space (the invariant [`get`](HitKey::get)
    /// relies on). The value returned is checked like any other.
    pub(crate) fn get_or_try_insert_with<E>(
        &self,
        engine: &Engine<ErasedKey, ErasedValue>,
        opts: InsertOptions,
        compute: impl FnOnce() -> Result<Arc<S>, E>,
    ) -> Result<ErasedValue, E> {
        engine.get_or_try_insert_with_ref(
            self,
            opts,
            |k| ErasedKey::stored(k.id, k.view),
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
        hash_view(self.id, self.view, state);
    }
}

impl<V: KeyView, S: 'static> memokit_engine::Equivalent<ErasedKey> for HitKey<'_, V, S> {
    #[inline]
    fn equivalent(&self, key: &ErasedKey) -> bool {
        if self.id != key.id {
            return false;
        }
        let b = match &key.args {
            // Equal ids: the word is of `V::Owned`'s kind.
            Args::Word(w) => return view_word(self.view) == Some(*w),
            Args::Boxed(b) => b,
        };
        debug_assert!(b.as_any().is::<OwnedKey<V::Owned>>());
        // SAFETY: every stored key of this id (a space of this `HitKey`'s function, with the
        // kind of `V::Owned`, 0: boxed) boxes an `OwnedKey<V::Owned>` (invariant of
        // `ErasedKey`: stored only through a `HitKey` of the function that space belongs to,
        // and `FnKeys::hit_key` admits one `V::Owned` per function), so the data pointer of
        // the box points to an `OwnedKey<V::Owned>`, borrowed with `key`.
        let owned = unsafe { &*(&**b as *const dyn StoredArgs).cast::<OwnedKey<V::Owned>>() };
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
mod tests;
