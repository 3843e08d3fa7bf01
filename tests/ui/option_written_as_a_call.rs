//! `timeout(60)`, as other caching crates spell options: one error saying to write `=` (review
//! s20u: it was syn's "expected `,`" at the parenthesis).
use memokit::memoize;

#[memoize(timeout(60))]
fn f(x: u64) -> u64 {
    x
}

fn main() {
    f(1);
    S::g(1);
}

struct S;

impl S {
    #[memoize(associated())]
    fn g(x: u64) -> u64 {
        x
    }
}
