//! A crate with `#![deny(missing_docs)]` compiles with public memoized items: every generated
//! public item carries docs (or is `#[doc(hidden)]`).
#![deny(missing_docs)]

use memokit::{memoize, MemoIdentity};

/// A documented memoized function.
#[memoize(timeout = 60)]
pub fn documented(x: u64) -> u64 {
    x + 1
}

/// A documented receiver.
#[derive(MemoIdentity)]
pub struct Account {
    #[memo(id)]
    id: u64,
}

impl Account {
    /// A documented memoized method.
    #[memoize]
    pub fn balance(&self, currency: &str) -> u64 {
        self.id + currency.len() as u64
    }

    /// A documented memoized associated function.
    #[memoize(associated)]
    pub fn count(kind: u8) -> u64 {
        u64::from(kind)
    }
}

fn main() {
    documented(1);
    Account { id: 1 }.balance("EUR");
    Account::count(1);
    memokit::delete_memoized!(documented, 1);
    memokit::delete_memoized!(Account::balance);
}
