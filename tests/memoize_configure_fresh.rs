//! `configure` in a fresh process: not refused by what is not a memoized call (a memoizer of
//! one's own, by-name lookups on it, `f_uncached`), refused after it. One test: the global
//! memoizer is per process (a call bound to another memoizer: `memoize_configure_late.rs`).

use std::sync::LazyLock;

use memokit::{memoize, Error, Memoizer};

static OWN: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

#[memoize]
fn on_global(x: u64) -> u64 {
    x + 1
}

#[memoize(memoizer = &OWN)]
fn on_own(x: u64) -> u64 {
    x + 2
}

#[test]
fn configure_is_refused_only_after_a_memoized_function_is_used() {
    // A memoizer of one's own, used by name, and the uncached bodies: no memoized call.
    assert!(matches!(OWN.delete_memoized("nothing"), Err(Error::UnknownFunction { .. })));
    let _ = OWN.stats();
    assert_eq!(on_global_uncached(1), 2);
    assert_eq!(on_own_uncached(1), 3);
    memokit::configure(Memoizer::builder().default_timeout(7)).expect("first configure");
    assert!(matches!(memokit::configure(Memoizer::builder()), Err(Error::AlreadyInitialized)));
    assert_eq!(on_global(1), 2);
    assert_eq!(on_global(1), 2);
    assert_eq!(memokit::global().stats().hits, 1, "bound to the configured memoizer");
}
