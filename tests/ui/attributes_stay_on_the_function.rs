#![deny(unused_must_use, deprecated)]

use memokit::memoize;

/// The attributes of a memoized function stay on it.
#[must_use]
#[memoize]
fn total(x: u64) -> u64 {
    x
}

/// Deprecating a memoized function warns its callers, not the generated code.
#[deprecated = "use total"]
#[memoize]
fn old_total(x: u64) -> u64 {
    x
}

fn main() {
    total(1);
    let _ = old_total(1);
    // Its hidden companions are not deprecated: a delete does not warn with their names.
    memokit::delete_memoized!(old_total, 1);
}
