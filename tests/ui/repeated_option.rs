use memokit::memoize;

#[memoize(timeout = 60, timeout = 30)]
fn f(x: u64) -> u64 {
    x
}

fn main() {
    f(1);
}
