//! The memoized function is `#[inline]` by default; with a user's own `inline` attribute it
//! compiles and works, the attribute replacing the default (rustc's warning about two `inline`
//! attributes is not reported inside macro output, so this file cannot see which one won).
#![deny(warnings)]

use memokit::memoize;

#[memoize]
#[inline(never)]
fn never(x: u64) -> u64 {
    x + 1
}

#[memoize]
#[inline(always)]
fn always(x: u64) -> u64 {
    x + 2
}

#[memoize]
fn default(x: u64) -> u64 {
    x + 3
}

fn main() {
    assert_eq!(never(1) + always(1) + default(1), 9);
    assert_eq!(never(1) + always(1) + default(1), 9);
    assert_eq!(never_memo().stats().hits + always_memo().stats().hits + default_memo().stats().hits, 3);
}
