//! A `key` array of copied argument values is an owned key.
use memokit::memoize;

#[memoize(key = [*a, *b])]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    assert_eq!(add(1, 2), 3);
    assert_eq!(add(1, 2), 3);
}
