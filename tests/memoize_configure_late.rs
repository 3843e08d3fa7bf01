//! `configure` after a memoized call bound to *another* memoizer: api.md §1 says
//! `AlreadyInitialized` once "any memoized call" has run, so a program that configures the
//! global memoizer too late hears of it even when its first calls went elsewhere.
//! (Its own binary: the global memoizer is per process.)

use std::sync::LazyLock;

use memokit::{memoize, Error, Memoizer};

static OWN: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

#[memoize(memoizer = &OWN)]
fn bound_elsewhere(x: u64) -> u64 {
    x * 2
}

#[test]
fn configure_after_a_call_bound_to_another_memoizer_is_already_initialized() {
    assert_eq!(bound_elsewhere(21), 42);
    let late = memokit::configure(Memoizer::builder().default_timeout(7));
    assert!(matches!(late, Err(Error::AlreadyInitialized)), "{late:?}");
}
