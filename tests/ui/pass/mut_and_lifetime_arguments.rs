//! `mut` arguments (the key holds the value as passed), lifetime parameters and `where`
//! clauses, nested functions and functions in modules.

use memokit::memoize;

#[memoize]
fn grow(mut v: Vec<u64>, mut s: String) -> usize {
    v.push(1);
    s.push('x');
    v.len() + s.len()
}

#[memoize]
fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> usize
where
    'a: 'a,
{
    a.len().max(b.len())
}

mod inner {
    #[memokit::memoize]
    pub(crate) fn double(x: u64) -> u64 {
        x * 2
    }
}

fn outer() -> u64 {
    #[memoize]
    fn nested(x: u64) -> u64 {
        x + 1
    }
    nested(1)
}

fn main() {
    assert_eq!(grow(vec![], String::new()), 2);
    assert_eq!(grow(vec![], String::new()), 2);
    assert_eq!(longest("ab", "c"), 2);
    assert_eq!(inner::double(2), 4);
    memokit::delete_memoized!(inner::double, 2);
    memokit::delete_memoized!(inner::double);
    assert_eq!(outer(), 2);
}
