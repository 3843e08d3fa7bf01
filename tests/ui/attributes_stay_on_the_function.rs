#![deny(unused_must_use, deprecated)]

use memokit::memoize;

/// The attributes of a memoized function stay on it.
#[must_use]
#[memoize]
fn total(x: u64) -> u64 {
    x
}

#[deprecated = "use total"]
#[memoize]
fn old_total(x: u64) -> u64 {
    x
}

fn main() {
    total(1);
    let _ = old_total(1);
}
