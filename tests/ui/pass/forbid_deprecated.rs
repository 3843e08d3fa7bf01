//! `#![forbid(deprecated)]` compiles with memoized functions: the expansion allows
//! `deprecated` only for a deprecated function (an `allow` under `forbid` is E0453). And a
//! function deprecated in a `cfg_attr`, or a deprecated method, gives no warning but at its
//! callers.
#![deny(warnings)]

mod strict {
    #![forbid(deprecated)]
    use memokit::{memoize, MemoIdentity};

    #[memoize(key = a)]
    pub(crate) fn f(a: u64, b: u64) -> u64 {
        a + b
    }

    #[derive(MemoIdentity)]
    pub(crate) struct S {
        #[memo(id)]
        pub(crate) id: u64,
    }

    impl S {
        #[memoize]
        pub(crate) fn m(&self, x: &str) -> u64 {
            self.id + x.len() as u64
        }

        #[memoize(associated, unless = || false)]
        pub(crate) fn a(x: u64) -> u64 {
            x
        }
    }

    pub(crate) fn run() {
        let s = S { id: 1 };
        assert_eq!((f(1, 2), s.m("a"), S::a(3)), (3, 2, 3));
        memokit::delete_memoized!(f, 1, 2);
        memokit::delete_memoized!(s.m, "a");
        memokit::delete_memoized!(S::a, 3);
    }
}

mod old {
    use memokit::{memoize, MemoIdentity};

    #[cfg_attr(all(), deprecated = "gone")]
    #[memoize(unless = || false)]
    pub(crate) fn f(a: u64) -> u64 {
        a
    }

    #[derive(MemoIdentity)]
    pub(crate) struct S {
        #[memo(id)]
        pub(crate) id: u64,
    }

    impl S {
        #[deprecated = "gone"]
        #[memoize]
        pub(crate) fn m(&self, x: u64) -> u64 {
            self.id + x
        }
    }
}

#[allow(deprecated)]
fn main() {
    strict::run();
    let s = old::S { id: 1 };
    assert_eq!((old::f(1), s.m(1)), (1, 2));
    memokit::delete_memoized!(s.m, 1);
    memokit::delete_memoized!(s.m);
}
