//! Export and linkage attributes (`no_mangle`, `export_name`, `link_section`), plain or in a
//! `cfg_attr`, go on the memoized function alone, never on its companions: the exported
//! symbol is the memoized function (it caches), and no symbol is defined twice. Review s19b:
//! this passed before the review too (rustc expands an item's `cfg_attr` before `#[memoize]`
//! sees it, and plain export attributes were never copied); it guards the behaviour, and the
//! unit test `export_attributes_in_cfg_attr_stay_on_the_function` the copy of a `cfg_attr`.
#![deny(warnings)]

use std::sync::atomic::{AtomicUsize, Ordering};

use memokit::memoize;

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
#[cfg_attr(all(), export_name = "memokit_s19b_exported")]
pub fn exported(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[memoize]
#[cfg_attr(all(), no_mangle)]
pub fn memokit_s19b_unmangled(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    x + 2
}

#[memoize]
#[cfg_attr(all(), allow(clippy::needless_pass_by_value), export_name = "memokit_s19b_both")]
pub fn both(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    x + 3
}

#[memoize]
#[export_name = "memokit_s19b_plain"]
pub fn plain(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    x + 4
}

#[memoize]
#[cfg_attr(all(), cfg_attr(all(), no_mangle))]
pub fn memokit_s19b_nested(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    x + 5
}

#[memoize]
#[cfg_attr(target_os = "linux", link_section = ".text.memokit_s19b")]
pub fn sectioned(x: u64) -> u64 {
    x + 6
}

mod by_symbol {
    extern "Rust" {
        pub(crate) fn memokit_s19b_exported(x: u64) -> u64;
        pub(crate) fn memokit_s19b_unmangled(x: u64) -> u64;
        pub(crate) fn memokit_s19b_both(x: u64) -> u64;
        pub(crate) fn memokit_s19b_plain(x: u64) -> u64;
        pub(crate) fn memokit_s19b_nested(x: u64) -> u64;
    }
}

fn main() {
    // SAFETY: each symbol is defined above, by a `pub fn(u64) -> u64` of this crate.
    let by_symbol = unsafe {
        [
            by_symbol::memokit_s19b_exported(1),
            by_symbol::memokit_s19b_unmangled(1),
            by_symbol::memokit_s19b_both(1),
            by_symbol::memokit_s19b_plain(1),
            by_symbol::memokit_s19b_nested(1),
        ]
    };
    assert_eq!(by_symbol, [2, 3, 4, 5, 6]);
    // The calls through the symbols were memoized calls: these are hits.
    let direct = [exported(1), memokit_s19b_unmangled(1), both(1), plain(1), memokit_s19b_nested(1)];
    assert_eq!(direct, [2, 3, 4, 5, 6]);
    assert_eq!(CALLS.load(Ordering::SeqCst), 5);
    assert_eq!(exported_memo().stats().hits, 1);
    assert_eq!(sectioned(1), 7);
}
