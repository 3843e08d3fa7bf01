//! A timeout written as a string, a negative number or a fraction gets an error that says
//! what a timeout is (review s20u: these got rustc's `From<&str>` / `From<{float}>` errors
//! about a bound of a hidden function, and `u64: Neg`). Other expressions of a wrong type:
//! `options_of_the_wrong_type`.
use memokit::memoize;

#[memoize(timeout = "60")]
fn f1(x: u64) -> u64 {
    x
}

#[memoize(timeout = -1)]
fn f2(x: u64) -> u64 {
    x
}

#[memoize(timeout = 1.5)]
fn f3(x: u64) -> u64 {
    x
}

#[memoize(timeout = "5m")]
fn f4(x: u64) -> u64 {
    x
}

fn main() {}
