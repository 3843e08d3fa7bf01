//! A crate that forbids clippy's lint groups can memoize functions of ordinary size: the
//! expansion writes an `allow` for a clippy lint only where clippy would raise that lint on a
//! generated item (past 7 arguments; a method's handle type near clippy's complexity
//! threshold), since each `allow` is a `forbidden_lint_groups` warning here (an error under
//! `deny(warnings)`). Checked when CI runs clippy on this file (`.ci/run`); before session 22
//! every memoized function gave 4–5 such warnings. The test below checks the functions work.
#![forbid(clippy::all, clippy::pedantic)]
#![deny(warnings)]

use memokit::{memoize, MemoIdentity};

#[memoize]
fn free(a: u64, s: &str, v: Vec<(u8, String)>) -> u64 {
    a + s.len() as u64 + v.len() as u64
}

#[derive(MemoIdentity)]
struct Svc {
    #[memo(id)]
    id: u64,
}

impl Svc {
    #[memoize]
    fn method(&self, a: u64, s: &str, t: Option<String>) -> u64 {
        self.id + a + s.len() as u64 + u64::from(t.is_some())
    }

    #[memoize(associated)]
    fn associated(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64) -> u64 {
        a + b + c + d + e + f + g
    }
}

#[test]
fn memoized_functions_work_under_forbidden_clippy_groups() {
    let svc = Svc { id: 1 };
    for _ in 0..2 {
        assert_eq!(free(1, "ab", vec![(1, String::new())]), 4);
        assert_eq!(svc.method(1, "ab", None), 4);
        assert_eq!(Svc::associated(1, 1, 1, 1, 1, 1, 1), 7);
    }
    assert_eq!(free_memo().stats().hits, 1);
    assert_eq!(Svc::method_memo().stats().hits, 1);
    assert_eq!(Svc::associated_memo().stats().hits, 1);
}
