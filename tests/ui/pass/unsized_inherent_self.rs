//! Memoized methods and associated functions in an inherent `impl` of an unsized type
//! (`impl dyn Shape`) compile and work. This is why a trait's default method is not rejected
//! with a `Self: Sized` check of ours (a trait's `Self` is not known to be sized): that check
//! would reject this too.

use memokit::{memoize, MemoIdentity};

pub trait Shape {
    fn id(&self) -> u64;
}

impl MemoIdentity for dyn Shape {
    type Id = u64;
    fn memo_id(&self) -> u64 {
        self.id()
    }
}

impl dyn Shape {
    #[memoize]
    fn scaled(&self, k: u64) -> u64 {
        self.id() * k
    }

    #[memoize(associated)]
    fn count(name: &str) -> usize {
        name.len()
    }
}

struct Square;

impl Shape for Square {
    fn id(&self) -> u64 {
        3
    }
}

fn main() {
    let s: &dyn Shape = &Square;
    assert_eq!(s.scaled(2), 6);
    assert_eq!(<dyn Shape>::count("ab"), 2);
    memokit::delete_memoized!(s.scaled, 2);
    memokit::delete_memoized!(s.scaled);
    <dyn Shape>::scaled_memo().delete(&(3, 2));
}
