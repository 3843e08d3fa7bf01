//! A timeout written as a string or a negative number gets an error that says what a timeout
//! is (review s20u: these got rustc's `From<&str>` error about a bound of a hidden function,
//! and `u64: Neg`). A fraction (`1.5`): `options_of_the_wrong_type`.
use memokit::memoize;

#[memoize(timeout = "60")]
fn f1(x: u64) -> u64 {
    x
}

#[memoize(timeout = -1)]
fn f2(x: u64) -> u64 {
    x
}

#[memoize(timeout = "5m")]
fn f4(x: u64) -> u64 {
    x
}

fn main() {}
