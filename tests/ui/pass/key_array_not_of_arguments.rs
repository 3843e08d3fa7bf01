//! Arrays in `key` that are not arrays of bare arguments still compile (no false positive of
//! the `key = [a, b]` error): elements computed from arguments, copies of borrowed and of
//! by-value arguments, an array inside a block that shadows an argument's name, owned clones.
use memokit::memoize;
#[memoize(key = [a.len(), b.len()])]
fn f(a: &str, b: &str) -> usize {
    a.len() + b.len()
}
#[memoize(key = [*a, b.0])]
fn g(a: &u64, b: (u64, u8)) -> u64 {
    *a + b.0
}
#[memoize(key = ({ let a = 3u64; [a, *b] }, c.clone()))]
fn h(b: u64, c: String) -> u64 {
    b + c.len() as u64
}
#[memoize(key = [a.to_string(), b.to_string()])]
fn i(a: String, b: &str) -> usize {
    a.len() + b.len()
}
fn main() {
    assert_eq!(f("ab", "c"), 3);
    assert_eq!(g(&1, (2, 0)), 3);
    assert_eq!(h(1, "x".into()), 2);
    assert_eq!(i("a".into(), "b"), 2);
}
