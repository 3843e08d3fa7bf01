// `delete_memoized!` names the function and then its arguments, comma-separated; written as
// a call, it says so at the parentheses.
use memokit::{delete_memoized, memoize, MemoIdentity};

#[memoize]
fn f(a: u64, b: u64) -> u64 {
    a + b
}

#[derive(MemoIdentity)]
struct Obj {
    #[memo(id)]
    id: u64,
}

impl Obj {
    #[memoize]
    fn m(&self, n: u64) -> u64 {
        self.id + n
    }
}

fn main() {
    let obj = Obj { id: 1 };
    delete_memoized!(f(1, 2));
    delete_memoized!(obj.m(3));
}
