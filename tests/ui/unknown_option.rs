use memokit::memoize;

#[memoize(ttl = 60)]
fn f(x: u64) -> u64 {
    x
}

fn main() {
    f(1);
}
