use memokit::memoize;

#[memoize(timeout)]
fn f(x: u64) -> u64 {
    x
}

fn main() {
    f(1);
}
