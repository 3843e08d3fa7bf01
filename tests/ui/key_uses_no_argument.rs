//! A `key` that uses none of the arguments would give every call the first call's result.
use memokit::memoize;

const VERSION: u32 = 3;

#[memoize(key = "constant")]
fn by_literal(user: u64) -> u64 {
    user
}

#[memoize(key = (VERSION, "v"))]
fn by_const(user: u64, region: &str) -> u64 {
    user + region.len() as u64
}

#[memoize(key = other.len())]
fn by_a_field_of_the_same_name(user: u64) -> u64 {
    let other = "x";
    user + other.len() as u64
}

fn main() {}
