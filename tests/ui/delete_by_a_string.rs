//! `delete_memoized!("f")`, a name where the macro takes the function: the error points to the
//! by-name deletes (review s20u: it said only to name the function by a path).
use memokit::memoize;

#[memoize]
fn by_str(s: &str) -> usize {
    s.len()
}

fn main() {
    by_str("a");
    memokit::delete_memoized!("by_str");
}
