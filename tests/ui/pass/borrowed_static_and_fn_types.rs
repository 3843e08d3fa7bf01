//! Lifetimes that a memoized function may use: `'static` data in results and arguments, named
//! lifetimes of top-level `&` arguments, higher-ranked ones in function types, and a `Result`
//! whose error borrows (errors are returned, never stored).

use memokit::memoize;
use std::borrow::Cow;

#[memoize]
fn label(n: u32) -> &'static str {
    if n == 0 { "zero" } else { "many" }
}

#[memoize]
fn owned(name: Cow<'static, str>, names: &[&'static str]) -> Cow<'static, str> {
    Cow::Owned(format!("{name}{}", names.len()))
}

#[memoize]
fn named<'a>(text: &'a str, more: &'a [u8]) -> usize {
    text.len() + more.len()
}

#[memoize]
fn apply(f: fn(&str) -> usize) -> usize {
    f("abc")
}

#[memoize]
fn parse<'a>(text: &'a str) -> Result<u64, &'a str> {
    text.parse().map_err(|_| text)
}

fn main() {
    assert_eq!(label(0), "zero");
    assert_eq!(owned(Cow::Borrowed("a"), &["b"]), "a1");
    assert_eq!(named("ab", b"c"), 3);
    assert_eq!(apply(str::len), 3);
    assert_eq!(parse("7"), Ok(7));
    assert_eq!(parse("x"), Err("x"));
}
