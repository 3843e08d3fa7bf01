use memokit::memoize;

#[memoize]
fn ignored(_: u64, (a, b): (u64, u64), ref c: u64) -> u64 {
    a + b + c
}

#[memoize]
fn changes(v: &mut Vec<u64>) -> usize {
    v.len()
}

fn main() {}
