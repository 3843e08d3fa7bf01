//! `configure` after a `delete_memoized!` of a function bound to another memoizer, before any
//! call: the delete runs its `f_memo()`, so configuring is too late (api.md §1).

use std::sync::LazyLock;

use memokit::{delete_memoized, memoize, Error, Memoizer};

static OWN: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

#[memoize(memoizer = &OWN)]
fn on_own(x: u64) -> u64 {
    x + 2
}

#[test]
fn configure_after_a_delete_alone_is_already_initialized() {
    delete_memoized!(on_own, 1);
    let late = memokit::configure(Memoizer::builder());
    assert!(matches!(late, Err(Error::AlreadyInitialized)), "{late:?}");
}
