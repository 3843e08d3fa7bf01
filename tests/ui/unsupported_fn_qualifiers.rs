use memokit::memoize;

#[memoize]
const fn c(x: u64) -> u64 {
    x
}

#[memoize]
unsafe fn u(x: u64) -> u64 {
    x
}

#[memoize]
extern "C" fn e(x: u64) -> u64 {
    x
}

#[memoize]
fn n<const N: usize>(x: u64) -> u64 {
    x + N as u64
}

fn main() {}
