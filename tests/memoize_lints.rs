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

    /// Never called.
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
