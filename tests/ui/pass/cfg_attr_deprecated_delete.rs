//! A function deprecated through `cfg_attr` is like one marked `#[deprecated]`: its callers are
//! warned, a delete with arguments is not (the doc-hidden deleter is not deprecated).
#![deny(deprecated)]

use memokit::{memoize, MemoIdentity};

#[cfg_attr(all(), deprecated = "use new_total")]
#[memoize]
fn old_total(x: u64) -> u64 {
    x
}

#[derive(MemoIdentity)]
struct S {
    #[memo(id)]
    id: u64,
}

impl S {
    #[cfg_attr(all(), deprecated = "gone")]
    #[memoize]
    fn old(&self, x: u64) -> u64 {
        self.id + x
    }
}

#[allow(deprecated)]
fn call() {
    old_total(1);
    S { id: 1 }.old(1);
}

fn main() {
    call();
    memokit::delete_memoized!(old_total, 1);
    let s = S { id: 1 };
    memokit::delete_memoized!(s.old, 1);
    memokit::delete_memoized!(s.old);
}
