use memokit::memoize;

// `associated` is for associated functions inside an `impl` block.
#[memoize(associated)]
fn count(kind: u8) -> u64 {
    u64::from(kind)
}

fn main() {
    count(1);
}
