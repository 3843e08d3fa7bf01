use memokit::memoize;

#[memoize(key = a, b)]
fn f(a: u64, b: u64, c: u64) -> u64 {
    a + b + c
}

fn main() {
    f(1, 2, 3);
}
