//! A `#![no_std]` crate (with `alloc`) compiles with memoized functions: the expansion names
//! no `::std` path (memokit itself links std).
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use memokit::memoize;

#[memoize]
fn total(xs: &[u64], name: &str) -> u64 {
    xs.iter().sum::<u64>() + name.len() as u64
}

#[memoize(key = xs)]
fn owned(xs: Vec<u64>, n: u64) -> u64 {
    xs.len() as u64 + n
}

fn main() {
    assert_eq!(total(&[1, 2], "a"), 4);
    memokit::delete_memoized!(total, &[1, 2], "a");
    assert_eq!(owned(Vec::new(), 1), 1);
}
