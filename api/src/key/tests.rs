//! Unit tests of the key types: the type tag a function's first call fixes, and the
//! unchecked reads that rely on it.

use super::*;

/// A view of an already owned argument tuple (the tests compare it with a call's view; the
/// handle's `ops` build the call's view instead, which needs no `Clone` of the tuple).
#[derive(Hash)]
struct OwnedView<'a, O>(&'a O);

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

fn engine() -> Engine<ErasedKey, ErasedValue> {
    Engine::builder().max_capacity(100).build().expect("engine")
}

/// A function's first call fixes its key and value types: a call with another value type
/// or another argument type gets no `HitKey`, so nothing of another type is ever read
/// unchecked; another function with the same arguments has its own entries.
#[test]
fn a_function_admits_only_the_types_of_its_first_call() {
    let e = engine();
    let view = (&7u64,);
    let f = FnKeys::new();
    let k_u64 = f.hit_key::<_, u64>(&view).expect("the first call fixes the types");
    assert!(f.hit_key::<_, String>(&view).is_none(), "another value type");
    assert!(f.hit_key::<_, u64>(&(&7u32,)).is_none(), "another argument type");
    assert!(f.hit_key::<_, u64>(&(&8u64,)).is_some(), "same types, other arguments");
    let v = k_u64.get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new(49)));
    assert!(v.is_ok());
    e.flush();
    assert_eq!(k_u64.get(&e, |f| *f.get()), Some(49));
    assert_eq!(k_u64.get(&e, |f| *f.to_arc()), Some(49));
    // Another function, same arguments, another value type: its own entry.
    let g = FnKeys::new();
    let k_str = g.hit_key::<_, String>(&view).expect("first call of g");
    assert_eq!(k_str.get(&e, |f| f.get().clone()), None);
    let s = k_str
        .get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new("x".into())));
    assert!(s.as_ref().is_ok_and(|s| Found::<String>::checked(s).is_some()));
    e.flush();
    assert_eq!(k_str.get(&e, |f| f.to_arc()).as_deref().map(String::as_str), Some("x"));
    assert_eq!(k_u64.get(&e, |f| *f.get()), Some(49));
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

/// Keys that hash alike (so they meet in one bucket) of two functions with different
/// argument types: each function finds only its own, in the pending table and in the core.
#[test]
fn functions_with_colliding_keys_of_other_types_stay_apart() {
    let e = engine();
    let (f, g) = (FnKeys::new(), FnKeys::new());
    for flush in [false, true] {
        for i in 0..64u64 {
            let v = AsU64(i);
            let k = f.hit_key::<_, u64>(&v).expect("f's types");
            let _ = k.get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new(i)));
        }
        if flush {
            e.flush();
        }
        assert!(f.hit_key::<_, u64>(&AsString(0)).is_none(), "f's argument type is fixed");
        for i in 0..64u64 {
            let (vs, vu) = (AsString(i), AsU64(i));
            let k = g.hit_key::<_, u64>(&vs).expect("g's types");
            assert_eq!(k.get(&e, |f| *f.get()), None);
            let k = f.hit_key::<_, u64>(&vu).expect("f's types");
            assert_eq!(k.get(&e, |f| *f.get()), Some(i));
        }
        e.clear();
    }
}

#[test]
fn an_unstored_key_is_never_read_unchecked() {
    let e = engine();
    let view = (&7u64,);
    let f = FnKeys::new();
    e.insert(
        ErasedKey::unstored(f.id(), &view),
        Arc::new(String::from("not a u64")) as ErasedValue,
    );
    let k = f.hit_key::<_, u64>(&view).expect("f's types");
    assert_eq!(k.get(&e, |f| *f.get()), None);
    e.flush();
    assert_eq!(k.get(&e, |f| *f.get()), None);
}

#[test]
fn to_arc_hands_over_one_reference_of_the_same_allocation() {
    #[repr(align(64))]
    #[derive(Debug, PartialEq)]
    struct Wide([u8; 3]);
    let e = engine();
    let view = (&1u8,);
    let orig = Arc::new(Wide([1, 2, 3]));
    let fk = FnKeys::new();
    let k = fk.hit_key::<_, Wide>(&view).expect("first call");
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
    let fk = FnKeys::new();
    let k = ErasedKey::stored(fk.space(), &view);
    assert!(fk.hit_key::<_, Wide>(&view).is_some_and(|h| h.equivalent(&k)));
    assert!(fk.hit_key::<_, u8>(&view).is_none());
    assert!(fk.hit_key::<_, Wide>(&(&*s, &4u64)).is_some_and(|h| !h.equivalent(&k)));
    assert!(!FnKeys::new().hit_key::<_, Wide>(&view).is_some_and(|h| h.equivalent(&k)));
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

/// A stored key stays 24 bytes (id and a boxed or inline key), so an entry of the memoizer's
/// engine does not grow for word keys.
#[test]
fn a_stored_key_is_three_words() {
    assert_eq!(std::mem::size_of::<ErasedKey>(), 24);
}

/// Word keys (one primitive argument, or none) and boxed keys behave alike: a hit finds its
/// own function's key only, deletes (`LookupKey`) find it by the same arguments, keys hash
/// like the views that find them, and the kind keeps equal words of other types apart.
#[test]
fn word_keys_are_found_hashed_and_compared_like_boxed_ones() {
    use memokit_engine::Equivalent;
    let s = ahash::RandomState::new();
    let f = FnKeys::new();
    let view = (&7u64,);
    let stored = ErasedKey::stored(f.space(), &view);
    assert!(matches!(stored.args, Args::Word(7)));
    let hit = f.hit_key::<_, u8>(&view).expect("first call");
    assert!(hit.equivalent(&stored));
    assert_eq!(s.hash_one(&hit), s.hash_one(&stored));
    assert!(!f.hit_key::<_, u8>(&(&8u64,)).is_some_and(|h| h.equivalent(&stored)));
    let lookup = LookupKey { space: f.space(), view: &view };
    assert!(lookup.equivalent(&stored));
    assert_eq!(s.hash_one(&lookup), s.hash_one(&stored));
    let owned = (7u64,);
    assert!(LookupKey { space: f.space(), view: &OwnedView(&owned) }.equivalent(&stored));
    // Same id and the same word, another type: apart.
    assert!(!LookupKey { space: f.space(), view: &(&7i64,) }.equivalent(&stored));
    assert!(ErasedKey::unstored(f.id(), &(&7i64,)) != ErasedKey::unstored(f.id(), &view));
    assert!(ErasedKey::unstored(f.id(), &view) == ErasedKey::unstored(f.id(), &OwnedView(&owned)));
    assert!(ErasedKey::unstored(f.id(), &view) != stored, "an unstored key is never a stored one");
    // A function without arguments has one word key; a boxed key is not a word key.
    let unit = ErasedKey::stored(f.space(), &());
    assert!(matches!(unit.args, Args::Word(0)));
    assert!(LookupKey { space: f.space(), view: &() }.equivalent(&unit));
    assert!(!LookupKey { space: f.space(), view: &() }.equivalent(&stored));
    let two = (&7u64, &1u64);
    let boxed = ErasedKey::stored(f.space(), &two);
    assert!(matches!(boxed.args, Args::Boxed(_)));
    assert!(!LookupKey { space: f.space(), view: &view }.equivalent(&boxed));
    assert!(LookupKey { space: f.space(), view: &two }.equivalent(&boxed));
    assert_eq!(s.hash_one(LookupKey { space: f.space(), view: &two }), s.hash_one(&boxed));
}

/// Through an engine: a word key is stored, hit, deleted by a `LookupKey`, and a function
/// with the same word under another type does not see it.
#[test]
fn word_keys_through_the_engine() {
    let e = engine();
    let f = FnKeys::new();
    let g = FnKeys::new();
    let k = f.hit_key::<_, u64>(&(&3i32,)).expect("first call");
    let _ = k.get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new(9)));
    e.flush();
    assert_eq!(k.get(&e, |v| *v.get()), Some(9));
    let other = g.hit_key::<_, u64>(&(&3u32,)).expect("g's first call");
    assert_eq!(other.get(&e, |v| *v.get()), None);
    e.remove(&LookupKey { space: f.space(), view: &(&3u32,) });
    e.flush();
    assert_eq!(k.get(&e, |v| *v.get()), Some(9), "another type's delete misses");
    e.remove(&LookupKey { space: f.space(), view: &(&3i32,) });
    assert_eq!(k.get(&e, |v| *v.get()), None);
}

/// A function's keys move to a fresh space with each version: a `HitKey` made after
/// `renew_space` no longer finds what was stored before, a delete (`LookupKey`) looks in
/// the current space, and a `CacheKey` (the function's id) stays the same.
#[test]
fn a_renewed_space_finds_nothing_stored_before() {
    use memokit_engine::Equivalent;
    let e = engine();
    let f = FnKeys::new();
    let view = (&5u64,);
    let before = f.hit_key::<_, u64>(&view).expect("first call");
    let _ = before.get_or_try_insert_with(&e, InsertOptions::new(), || Ok::<_, ()>(Arc::new(25)));
    e.flush();
    let unstored = ErasedKey::unstored(f.id(), &view);
    let stored = ErasedKey::stored(f.space(), &view);
    f.renew_space(Space::fresh());
    let after = f.hit_key::<_, u64>(&view).expect("same types");
    assert_eq!(after.get(&e, |v| *v.get()), None);
    assert!(!after.equivalent(&stored));
    assert_eq!(before.get(&e, |v| *v.get()), Some(25), "the old space's key still finds it");
    assert!(ErasedKey::unstored(f.id(), &view) == unstored);
    e.remove(&LookupKey { space: f.space(), view: &view });
    assert_eq!(before.get(&e, |v| *v.get()), Some(25), "a delete looks in the current space");
}
