//! A by-reference argument whose owned form is not `Clone`: calls are cached, so every
//! delete must reach the cached result.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use memokit::{memoize, Memoizer, Timeout};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

/// A borrowed key whose owned form (`Owned`) is not `Clone`.
#[derive(Hash, PartialEq, Eq, Debug)]
pub struct Name(u64);

#[derive(Hash, PartialEq, Eq, Debug)]
pub struct Owned(Name);

impl Borrow<Name> for Owned {
    fn borrow(&self) -> &Name {
        &self.0
    }
}

impl ToOwned for Name {
    type Owned = Owned;
    fn to_owned(&self) -> Owned {
        Owned(Name(self.0))
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn lookup(n: &Name) -> u64 {
    n.0 + 1000 * RUNS.fetch_add(1, SeqCst)
}

#[test]
fn deletes_by_owned_arguments_reach_results_of_a_non_clone_owned_key() {
    let first = lookup(&Name(1));
    assert_eq!(lookup(&Name(1)), first, "cached");
    lookup_memo().delete(&(Owned(Name(1)),));
    let second = lookup(&Name(1));
    assert_ne!(second, first, "the handle's delete by arguments removed the result");
    MEMO.delete_memoized_args(lookup_memo().name(), &(Owned(Name(1)),)).expect("known");
    let third = lookup(&Name(1));
    assert_ne!(third, second, "the by-name delete by arguments removed the result");
    memokit::delete_memoized!(lookup, &Name(1));
    assert_ne!(lookup(&Name(1)), third, "delete_memoized! removed the result");
}

/// `make_cache_key` builds the key from the borrowed form (`Name::to_owned`), as a call stores
/// it: no `Clone` of the owned tuple is needed. It panicked before ("its owned arguments are
/// not `Clone`").
#[test]
fn make_cache_key_of_a_non_clone_owned_key() {
    let k = lookup_memo().make_cache_key(&(Owned(Name(2)),));
    assert_eq!(k, lookup_memo().make_cache_key(&(Owned(Name(2)),)));
    assert_ne!(k, lookup_memo().make_cache_key(&(Owned(Name(3)),)));
}
