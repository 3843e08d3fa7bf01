//! The items `#[memoize]` generates add no warning to user code under strict lints.
#![deny(
    missing_docs,
    warnings,
    unused,
    non_snake_case,
    unreachable_pub,
    missing_debug_implementations
)]
#![warn(clippy::pedantic)]

/// Memoized public items, documented as `missing_docs` asks.
pub mod api {
    use memokit::memoize;

    /// A documented public memoized function.
    #[must_use]
    #[memoize]
    pub fn exported(a: u64, s: &str) -> u64 {
        a + s.len() as u64
    }

    /// Never called. rustc does not report it as dead: it reports an item at its ident with
    /// the context of the item's whole span, which runs from the macro's `fn` to its `}`.
    /// Generating `f` with the user's `fn` and braces makes rustc report it (tried in session
    /// 22), but clippy then lints `f` as the user's code too: `needless_pass_by_value` on every
    /// argument `f` only borrows, `must_use_candidate` twice. Not done.
    #[memoize]
    fn never_called(a: &str) -> usize {
        a.len()
    }

    /// A name that is not snake case.
    #[allow(non_snake_case)]
    #[must_use]
    #[memoize]
    pub fn Shouty(a: u64) -> u64 {
        a
    }

    /// Many arguments, the lint expected: the `expect` must not be left unfulfilled on a
    /// companion that does not raise the lint (`f_memo` takes no arguments; `f` allowed it after
    /// the user's attributes). (Not `expect(dead_code)`: rustc reports no memoized function as
    /// dead; nor a clippy lint of the body: clippy does not lint the generated functions.)
    #[expect(clippy::too_many_arguments)]
    #[must_use]
    #[memoize]
    pub fn many(a1: u8, a2: u8, a3: u8, a4: u8, a5: u8, a6: u8, a7: u8, a8: u8) -> u64 {
        u64::from(a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8)
    }

    /// A receiver.
    #[derive(Debug, memokit::MemoIdentity)]
    pub struct Svc {
        #[memo(id)]
        id: u64,
    }

    impl Svc {
        /// A memoized method.
        #[must_use]
        #[memoize]
        pub fn m(&self, n: u64) -> u64 {
            self.id + n
        }

        /// A memoized associated function.
        #[must_use]
        #[memoize(associated)]
        pub fn assoc(n: u64) -> u64 {
            n
        }

        /// Never called.
        #[memoize]
        fn unused_method(&self) -> u64 {
            self.id
        }
    }
}

#[test]
fn strict_lints_compile() {
    assert_eq!(api::exported(1, "ab"), 3);
    assert_eq!(api::Shouty(2), 2);
    assert_eq!(api::many(1, 1, 1, 1, 1, 1, 1, 1), 8);
    assert_eq!(api::Svc::assoc(4), 4);
}

/// Names the companions could collide on: a raw identifier, a free function and a method of
/// one name, `x` beside `all_x` (the old `__memokit_delete_all_x` was both the per-receiver
/// deleter of `x` and the deleter of `all_x`), two functions from one `macro_rules!`.
mod names {
    use memokit::{delete_memoized, memoize, MemoIdentity};

    #[memoize]
    pub(crate) fn r#type(n: u64) -> u64 {
        n
    }

    #[memoize]
    pub(crate) fn x(n: u64) -> u64 {
        n + 1
    }

    #[memoize]
    pub(crate) fn all_x(n: u64) -> u64 {
        n + 2
    }

    #[derive(Debug, MemoIdentity)]
    pub(crate) struct S {
        #[memo(id)]
        pub(crate) id: u64,
    }

    impl S {
        #[memoize]
        pub(crate) fn x(&self, n: u64) -> u64 {
            self.id + n + 3
        }

        #[memoize]
        pub(crate) fn all_x(&self, n: u64) -> u64 {
            self.id + n + 4
        }

        #[memoize(associated)]
        pub(crate) fn type_memo_x(n: u64) -> u64 {
            n + 5
        }
    }

    macro_rules! two {
        ($a:ident, $b:ident) => {
            #[memoize]
            pub(crate) fn $a(n: u64) -> u64 {
                n + 6
            }
            #[memoize]
            pub(crate) fn $b(n: u64) -> u64 {
                n + 7
            }
        };
    }

    two!(from_macro_a, from_macro_b);

    pub(crate) fn use_all() {
        let s = S { id: 10 };
        assert_eq!((r#type(1), x(1), all_x(1)), (1, 2, 3));
        assert_eq!((s.x(1), s.all_x(1), S::type_memo_x(1)), (14, 15, 6));
        assert_eq!((from_macro_a(1), from_macro_b(1)), (7, 8));
        delete_memoized!(r#type, 1);
        delete_memoized!(x, 1);
        delete_memoized!(all_x, 1);
        delete_memoized!(s.x, 1);
        delete_memoized!(s.x);
        delete_memoized!(s.all_x);
        delete_memoized!(S::type_memo_x, 1);
        delete_memoized!(from_macro_a, 1);
        delete_memoized!(from_macro_b);
        assert_eq!((r#type(1), x(1), all_x(1)), (1, 2, 3));
        assert_eq!((s.x(1), s.all_x(1), S::type_memo_x(1)), (14, 15, 6));
    }
}

#[test]
fn companions_of_like_names_do_not_collide() {
    names::use_all();
}
