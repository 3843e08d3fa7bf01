//! `#![forbid(unused)]` (and the lints of the group one by one) compiles with memoized
//! functions, methods and associated functions of every shape: the expansion emits no
//! `allow` for a lint of the `unused` group (an `allow` under `forbid` is E0453), it is
//! warning-free by construction. Private functions whose doc-hidden deleters no
//! `delete_memoized!` calls are included. Review s19b: failed before with E0453 at the
//! expansion's `allow(unused_imports)`, `allow(unused_variables)` and `allow(dead_code)`.
#![deny(warnings)]

mod strict {
    #![forbid(unused)]
    use memokit::{memoize, MemoIdentity};

    #[memoize]
    fn plain(a: u64, b: &str) -> u64 {
        a + b.len() as u64
    }

    #[memoize(key = a)]
    fn keyed(a: u64, b: u64) -> u64 {
        a + b
    }

    #[memoize(key = (b.len(), &c[..1]))]
    fn keyed_borrowed(a: u64, b: &str, c: &[u8]) -> u64 {
        a + b.len() as u64 + c.len() as u64
    }

    #[memoize(timeout = 60, unless = || false, make_name = |n| n.into(), memoizer = memokit::global())]
    fn options(a: u64) -> Result<u64, String> {
        Ok(a)
    }

    #[memoize]
    fn no_args() -> u64 {
        1
    }

    #[derive(MemoIdentity)]
    struct S {
        #[memo(id)]
        id: u64,
    }

    impl S {
        #[memoize]
        fn m(&self, x: &str) -> u64 {
            self.id + x.len() as u64
        }

        #[memoize(key = x)]
        fn mk(&self, x: u64, y: u64) -> u64 {
            self.id + x + y
        }

        #[memoize]
        fn none(&self) -> u64 {
            self.id
        }

        #[memoize(associated, unless = || false)]
        fn a(x: u64) -> u64 {
            x
        }
    }

    pub(crate) fn run() {
        let s = S { id: 1 };
        assert_eq!(plain(1, "ab"), 3);
        assert_eq!(keyed(1, 2), 3);
        assert_eq!(keyed_borrowed(1, "ab", b"c"), 4);
        assert_eq!(options(1), Ok(1));
        assert_eq!(no_args(), 1);
        assert_eq!((s.m("a"), s.mk(1, 2), s.none(), S::a(3)), (2, 4, 1, 3));
    }

    // Written by a `macro_rules!` of this crate, rustc reports unused items that it does not
    // report in the attribute's own expansion (the deleters, before `f` mentioned them).
    macro_rules! memoized {
        ($f:ident, $g:ident, $t:ident) => {
            #[memoize]
            pub(crate) fn $f(n: u64) -> u64 {
                n
            }
            #[memoize(key = n)]
            pub(crate) fn $g(n: u64, m: u64) -> u64 {
                n + m
            }
            impl S {
                #[memoize]
                fn $t(&self, n: u64) -> u64 {
                    self.id + n
                }
            }
        };
    }
    memoized!(from_macro, from_macro_keyed, from_macro_method);

    pub(crate) fn run_macro() {
        let s = S { id: 1 };
        assert_eq!((from_macro(1), from_macro_keyed(1, 2), s.from_macro_method(1)), (1, 3, 2));
    }

    pub(crate) mod public {
        use memokit::memoize;

        #[memoize(key = a)]
        pub fn f(a: u64, b: u64) -> u64 {
            a + b
        }
    }
}

mod each {
    #![forbid(
        unused_imports,
        unused_variables,
        unused_mut,
        unused_assignments,
        dead_code,
        unused_braces,
        unused_parens,
        unused_qualifications,
        unused_results,
        unused_must_use
    )]
    use memokit::{memoize, MemoIdentity};

    #[memoize(key = a)]
    fn keyed(a: u64, b: &str) -> u64 {
        a + b.len() as u64
    }

    #[derive(MemoIdentity)]
    struct S {
        #[memo(id)]
        id: u64,
    }

    impl S {
        #[memoize(key = x)]
        fn mk(&self, x: u64, y: u64) -> u64 {
            self.id + x + y
        }
    }

    pub(crate) fn run() {
        assert_eq!(keyed(1, "a"), 2);
        assert_eq!(S { id: 1 }.mk(1, 2), 4);
    }
}

fn main() {
    strict::run();
    strict::run_macro();
    each::run();
    assert_eq!(strict::public::f(1, 2), 3);
}
