//! Review s19b: arguments named like the expansion's own locals (`__memokit_memo`,
//! `__memokit_id`, ...) are the user's arguments, never the expansion's: each function below
//! compiles, computes once per argument value, hits after, and its deletes reach its results.
//! Before the fix six of the eight functions failed to compile (`call_path`, `unless_local`,
//! `ops_locals`, `M::by_id`, `M::keyed`, `M::assoc`: the local hid the argument or the argument
//! the local; in `M::by_id` the handle's pattern bound `__memokit_id` twice, and in the call
//! the receiver's id would have hidden the argument); `key_locals` and `key_borrowed` compiled
//! and pass before and after. `slot_named` (a user's const named like `f_memo`'s static)
//! failed to compile before its own fix.
#![deny(warnings, clippy::all)]

use std::sync::atomic::{AtomicUsize, Ordering};

use memokit::{memoize, MemoIdentity};

/// Computations of the free functions, and of the methods (one counter per test).
static FREE: AtomicUsize = AtomicUsize::new(0);
static METHODS: AtomicUsize = AtomicUsize::new(0);

fn count(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::SeqCst);
}

/// Every local of the plain call path.
#[memoize]
fn call_path(
    __memokit_memo: u64,
    __memokit_view: u64,
    __memokit_r: u64,
    __memokit_out: u64,
    __memokit_recv: u64,
) -> u64 {
    count(&FREE);
    __memokit_memo * 10_000
        + __memokit_view * 1000
        + __memokit_r * 100
        + __memokit_out * 10
        + __memokit_recv
}

/// `unless = ..`: its local, and an argument of its type.
#[memoize(unless = || false)]
fn unless_local(__memokit_unless: fn() -> bool, __memokit_memo: u64) -> u64 {
    count(&FREE);
    u64::from(__memokit_unless()) + __memokit_memo
}

/// The handle's `ops` closure (`delete`, `make_cache_key`) and its parameters.
#[memoize]
fn ops_locals(__memokit_s: u64, __memokit_a: &str, __memokit_op: u64) -> u64 {
    count(&FREE);
    __memokit_s + __memokit_a.len() as u64 + __memokit_op
}

/// `key = ..`: the parts' bindings and the hidden bindings of the arguments.
#[memoize(key = (__memokit_k1, __memokit_v0, a))]
fn key_locals(__memokit_v0: u64, __memokit_k1: u64, a: u64, __memokit_arga: u64) -> u64 {
    count(&FREE);
    __memokit_v0 * 1000 + __memokit_k1 * 100 + a * 10 + __memokit_arga
}

/// A borrowed argument under `key =`, named like the part's view.
#[memoize(key = __memokit_k0)]
fn key_borrowed(__memokit_k0: &str, __memokit_view: u64) -> usize {
    count(&FREE);
    __memokit_k0.len() + __memokit_view as usize
}

#[derive(MemoIdentity)]
struct M {
    #[memo(id)]
    id: u64,
}

impl M {
    /// The receiver's id has the argument's type: a hidden argument would key every call by
    /// the receiver.
    #[memoize]
    fn by_id(&self, __memokit_id: u64, __memokit_recv: u64) -> u64 {
        count(&METHODS);
        self.id * 100 + __memokit_id * 10 + __memokit_recv
    }

    #[memoize(key = __memokit_id)]
    fn keyed(&self, __memokit_id: u64, __memokit_memo: u64) -> u64 {
        count(&METHODS);
        self.id * 100 + __memokit_id * 10 + __memokit_memo
    }

    #[memoize(associated)]
    fn assoc(__memokit_memo: u64, __memokit_s: u64) -> u64 {
        count(&METHODS);
        __memokit_memo * 10 + __memokit_s
    }
}

/// One computation per argument value, then hits; a delete by arguments recomputes that one.
#[test]
fn arguments_named_like_locals_are_arguments() {
    let before = FREE.load(Ordering::SeqCst);
    assert_eq!(call_path(1, 2, 3, 4, 5), 12_345);
    assert_eq!(call_path(5, 4, 3, 2, 1), 54_321);
    assert_eq!(call_path(1, 2, 3, 4, 5), 12_345);
    assert_eq!(FREE.load(Ordering::SeqCst) - before, 2);
    memokit::delete_memoized!(call_path, 1, 2, 3, 4, 5);
    assert_eq!(call_path(1, 2, 3, 4, 5), 12_345);
    assert_eq!(FREE.load(Ordering::SeqCst) - before, 3);
    call_path_memo().delete(&(5, 4, 3, 2, 1));
    assert_eq!(call_path(5, 4, 3, 2, 1), 54_321);
    assert_eq!(FREE.load(Ordering::SeqCst) - before, 4);
    assert_eq!(call_path_memo().stats().hits, 1);

    let t: fn() -> bool = || true;
    let f: fn() -> bool = || false;
    assert_eq!(unless_local(t, 1), 2);
    assert_eq!(unless_local(f, 1), 1);
    assert_eq!(unless_local(t, 1), 2);
    assert_eq!(unless_local_memo().stats().misses, 2);

    assert_eq!(ops_locals(1, "ab", 3), 6);
    assert_eq!(ops_locals(1, "abc", 3), 7);
    assert_eq!(ops_locals(1, "ab", 3), 6);
    assert_eq!(
        ops_locals_memo().make_cache_key(&(1, "ab".to_owned(), 3)),
        ops_locals_memo().make_cache_key(&(1, "ab".to_owned(), 3))
    );
    assert_ne!(
        ops_locals_memo().make_cache_key(&(1, "ab".to_owned(), 3)),
        ops_locals_memo().make_cache_key(&(1, "abc".to_owned(), 3))
    );
    ops_locals_memo().delete(&(1, "ab".to_owned(), 3));
    assert_eq!(ops_locals(1, "ab", 3), 6);
    memokit::delete_memoized!(ops_locals, 1, "abc", 3);
    assert_eq!(ops_locals(1, "abc", 3), 7);
    assert_eq!((ops_locals_memo().stats().misses, ops_locals_memo().stats().hits), (4, 1));

    // Keyed by (k1, v0, a): `__memokit_arga` is not in the key.
    assert_eq!(key_locals(1, 2, 3, 4), 1234);
    assert_eq!(key_locals(2, 1, 3, 4), 2134);
    assert_eq!(key_locals(1, 2, 3, 9), 1234);
    assert_eq!(key_locals_memo().stats().misses, 2);
    memokit::delete_memoized!(key_locals, 1, 2, 3, 0);
    assert_eq!(key_locals(1, 2, 3, 5), 1235);
    key_locals_memo().delete(&(2, 1, 3, 0));
    assert_eq!(key_locals(2, 1, 3, 6), 2136);
    assert_eq!(key_locals_memo().stats().misses, 4);

    assert_eq!(key_borrowed("ab", 1), 3);
    assert_eq!(key_borrowed("ab", 5), 3);
    assert_eq!(key_borrowed("abc", 1), 4);
    assert_eq!(key_borrowed_memo().stats().misses, 2);
    memokit::delete_memoized!(key_borrowed, "ab", 0);
    assert_eq!(key_borrowed("ab", 2), 4);
}

#[test]
fn a_method_argument_named_like_the_receiver_id_is_the_argument() {
    let before = METHODS.load(Ordering::SeqCst);
    let m = M { id: 7 };
    assert_eq!(m.by_id(1, 2), 712);
    assert_eq!(m.by_id(3, 4), 734);
    assert_eq!(m.by_id(1, 2), 712);
    assert_eq!(METHODS.load(Ordering::SeqCst) - before, 2);
    memokit::delete_memoized!(m.by_id, 1, 2);
    assert_eq!(m.by_id(1, 2), 712);
    M::by_id_memo().delete(&(7, 3, 4));
    assert_eq!(m.by_id(3, 4), 734);
    assert_eq!(METHODS.load(Ordering::SeqCst) - before, 4);

    assert_eq!(m.keyed(1, 2), 712);
    assert_eq!(m.keyed(1, 5), 712);
    assert_eq!(m.keyed(3, 2), 732);
    memokit::delete_memoized!(m.keyed, 1, 0);
    assert_eq!(m.keyed(1, 5), 715);
    assert_eq!(M::keyed_memo().stats().misses, 3);

    assert_eq!(M::assoc(1, 2), 12);
    assert_eq!(M::assoc(2, 1), 21);
    assert_eq!(M::assoc(1, 2), 12);
    memokit::delete_memoized!(M::assoc, 1, 2);
    assert_eq!(M::assoc(1, 2), 12);
    assert_eq!(M::assoc_memo().stats().misses, 3);
}

/// A user's item named like the handle's static, in `timeout =` and `key =` (evaluated in the
/// body of `f_memo`, where the static is declared; items are not hygienic, so the static now
/// sits in a block of its own).
const __MEMOKIT_SLOT: u64 = 60;

#[memoize(timeout = __MEMOKIT_SLOT, key = a + __MEMOKIT_SLOT)]
fn slot_named(a: u64) -> u64 {
    a
}

#[test]
fn an_item_named_like_the_static_is_the_users() {
    assert_eq!(slot_named(1), 1);
    assert_eq!(slot_named_memo().cache_timeout(), memokit::Timeout::from(60));
    assert_eq!(slot_named_memo().make_cache_key(&(1,)), slot_named_memo().make_cache_key(&(1,)));
    slot_named_memo().delete(&(1,));
    assert_eq!(slot_named(1), 1);
    assert_eq!(slot_named_memo().stats().misses, 2);
}
