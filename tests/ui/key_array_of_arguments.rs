use memokit::memoize;

// In `key`, the arguments are references: an array of them would borrow the call's arguments.
#[memoize(key = [a, b])]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    add(1, 2);
}
