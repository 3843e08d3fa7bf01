use memokit::memoize;

#[memoize]
#[memoize(timeout = 5)]
fn f(x: u64) -> u64 {
    x
}

fn main() {
    f(1);
}
