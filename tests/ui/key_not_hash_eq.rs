use memokit::memoize;

// A `key` must be `Hash + Eq` like an argument: a float is neither.
#[memoize(key = x.clone() as f64)]
fn scaled(x: u64) -> u64 {
    x * 2
}

fn main() {
    scaled(1);
}
