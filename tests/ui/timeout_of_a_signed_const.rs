//! A timeout held in a signed constant (a common way to write a TTL) gets memokit's message
//! saying what a timeout takes, not rustc's `Timeout: From<i32>` pointing into memokit.
use memokit::memoize;

const TTL_SECS: i32 = 60;

#[memoize(timeout = TTL_SECS)]
fn f(a: u64) -> u64 {
    a
}

fn main() {
    let _ = f(1);
}
