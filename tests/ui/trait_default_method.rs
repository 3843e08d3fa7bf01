use memokit::{memoize, MemoIdentity};

// One cache would serve every implementor: rejected (memoize a free function, or an inherent
// method of each type, and call it from the trait's method).
trait Area: MemoIdentity {
    #[memoize]
    fn area(&self, scale: u64) -> u64 {
        scale
    }
}

fn main() {}
