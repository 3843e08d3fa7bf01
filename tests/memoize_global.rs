//! The process-wide memoizer: `configure` once, before any use; `AlreadyInitialized` after.
//! (One test in its own binary: the global memoizer is per process.)

use std::time::Duration;

use memokit::{memoize, Error, Memoizer, Timeout};

#[memoize]
fn uses_global(x: u64) -> u64 {
    x + 1
}

#[test]
fn configure_once_then_already_initialized() {
    memokit::configure(Memoizer::builder().default_timeout(42).key_prefix("app:")).expect("first");
    let again = memokit::configure(Memoizer::builder());
    assert!(matches!(again, Err(Error::AlreadyInitialized)), "{again:?}");
    let g = memokit::global();
    assert_eq!(g.default_timeout(), Timeout::After(Duration::from_secs(42)));
    assert_eq!(g.key_prefix(), "app:");
    assert_eq!(uses_global(1), 2);
    assert!(std::ptr::eq(uses_global_memo().memoizer(), g));
    assert!(matches!(memokit::configure(Memoizer::builder()), Err(Error::AlreadyInitialized)));
}
