//! Each option's value has a type (api.md §2); a wrong one is an error at that value.
use memokit::memoize;

fn flag() -> u8 {
    1
}

#[memoize(timeout = 60u32)]
fn f1(a: u64) -> u64 {
    a
}

#[memoize(unless = flag)]
fn f2(a: u64) -> u64 {
    a
}

#[memoize(make_name = "fixed")]
fn f3(a: u64) -> u64 {
    a
}

#[memoize(memoizer = memokit::Memoizer::new())]
fn f4(a: u64) -> u64 {
    a
}

fn main() {
    let _ = (f1(1), f2(1), f3(1), f4(1));
}
