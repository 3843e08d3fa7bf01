//! A misspelled option names the one meant (review s20u: `timout` and `Timeout` listed the
//! options without a suggestion, which only a few spellings had); a per-function capacity,
//! which other caching crates have, says where the capacity is set.
use memokit::memoize;

#[memoize(timout = 60)]
fn f1(x: u64) -> u64 {
    x
}

#[memoize(Timeout = 60)]
fn f2(x: u64) -> u64 {
    x
}

#[memoize(memoiser = memokit::global())]
fn f3(x: u64) -> u64 {
    x
}

#[memoize(capacity = 100)]
fn f4(x: u64) -> u64 {
    x
}

#[memoize(time = 60)]
fn f5(x: u64) -> u64 {
    x
}

fn main() {
    let _ = (f1(1), f2(1), f3(1), f4(1), f5(1));
}
