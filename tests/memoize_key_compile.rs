//! `#[memoize(key = ...)]` keys that must compile (each failed to before a fix of session 8's
//! second review of `key =`), each group in a module of its own, as its own file had it.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use memokit::{delete_memoized, memoize};

/// a by-value argument is cloned for the body only when the
/// key expression *names* it (`names_ident`). These keys do not use the argument `a` (a field
/// named `a`, a method named `a`, a struct literal's field `a`, a path segment `a::`), so a non-`Clone` `a`
/// must compile, and every delete form must reach the call's key.
/// Failed before the fix: "`NoClone` is named by the `key` expression, so a miss clones it".
mod names {
    use super::*;

    #[derive(PartialEq, Eq, Hash, Debug)]
    struct NoClone(u64);

    #[derive(PartialEq, Eq, Hash, Debug, Clone)]
    struct Other {
        a: u64,
    }

    impl Other {
        fn a(&self) -> u64 {
            self.a * 10
        }
    }

    static RUNS: AtomicU64 = AtomicU64::new(0);

    #[memoize(key = o.a)]
    fn field_named_like_an_argument(a: NoClone, o: &Other) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        a.0 + o.a
    }

    #[memoize(key = o.a())]
    fn method_named_like_an_argument(a: NoClone, o: &Other) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        a.0 + o.a
    }

    #[memoize(key = Other { a: o.a }.a)]
    fn struct_literal_field(a: NoClone, o: &Other) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        a.0 + o.a
    }

    fn twice(n: u64) -> u64 {
        n * 2
    }

    mod a {
        pub(crate) fn k(n: u64) -> u64 {
            n + 100
        }
    }

    #[memoize(key = (twice(o.a), a::k(o.a)))]
    fn path_segment_named_like_an_argument(a: NoClone, o: &Other) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        a.0 + o.a
    }

    #[test]
    fn keys_that_do_not_use_a_non_clone_argument_compile_and_delete() {
        let o = Other { a: 3 };
        macro_rules! check {
            ($f:ident, $memo:ident) => {{
                assert_eq!($f(NoClone(1), &o), 4);
                let before = RUNS.load(SeqCst);
                assert_eq!($f(NoClone(2), &o), 4, "{}: the key ignores a", stringify!($f));
                assert_eq!(RUNS.load(SeqCst), before);
                delete_memoized!($f, NoClone(9), &o);
                assert_eq!($f(NoClone(1), &o), 4);
                assert_eq!(
                    RUNS.load(SeqCst),
                    before + 1,
                    "{}: delete_memoized! missed",
                    stringify!($f)
                );
                $memo().delete(&(NoClone(8), o.clone()));
                assert_eq!($f(NoClone(1), &o), 4);
                assert_eq!(
                    RUNS.load(SeqCst),
                    before + 2,
                    "{}: f_memo().delete missed",
                    stringify!($f)
                );
            }};
        }
        check!(field_named_like_an_argument, field_named_like_an_argument_memo);
        check!(method_named_like_an_argument, method_named_like_an_argument_memo);
        check!(struct_literal_field, struct_literal_field_memo);
        check!(path_segment_named_like_an_argument, path_segment_named_like_an_argument_memo);
    }

    // `r#name` and `name` are one identifier: the key borrows the argument, so the body gets a
    // clone. Failed before the fix: E0505 "cannot move out of `__memokit_argname` because it is
    // borrowed" at the attribute (the spellings were compared).
    static RAW_RUNS: AtomicU64 = AtomicU64::new(0);

    #[memoize(key = name.as_str())]
    fn greeting(r#name: String) -> String {
        RAW_RUNS.fetch_add(1, SeqCst);
        format!("hello {name}")
    }

    #[test]
    fn a_raw_identifier_names_the_argument() {
        assert_eq!(greeting("x".into()), "hello x");
        assert_eq!(greeting("x".into()), "hello x");
        assert_eq!(RAW_RUNS.load(SeqCst), 1);
        greeting_memo().delete(&("x".into(),));
        assert_eq!(greeting("x".into()), "hello x");
        assert_eq!(RAW_RUNS.load(SeqCst), 2);
    }
}

/// the call evaluates the key on the arguments as passed
/// (`role: &str`, `xs: &[u64]`), the deletes (`f_memo().delete`, `make_cache_key`, by name) on
/// references to their owned forms (`&String`, `&Vec<u64>`). Key expressions that type-check
/// only on the former (a `match` on string or slice patterns) did not compile: E0308
/// "expected `&String`, found `&str`" / E0529 "expected an array or slice, found `Vec<u64>`"
/// (a documented limit in the crate docs, removed by the fix: the deletes now see the
/// arguments with the call's types, through `Borrow`).
mod borrowed_as_called {
    use super::*;

    static RUNS: AtomicU64 = AtomicU64::new(0);

    #[memoize(key = matches!(role, "admin" | "root"))]
    fn privileged(role: &str, _trace: u64) -> bool {
        RUNS.fetch_add(1, SeqCst);
        role == "admin" || role == "root"
    }

    #[memoize(key = match xs { [first, ..] => *first, [] => 0 })]
    fn first(xs: &[u64], _trace: u64) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        xs.first().copied().unwrap_or(0)
    }

    #[test]
    fn patterns_over_borrowed_arguments_in_the_key() {
        assert!(privileged("admin", 0));
        let before = RUNS.load(SeqCst);
        assert!(privileged("root", 1), "same key (true): a hit");
        assert_eq!(RUNS.load(SeqCst), before);
        privileged_memo().delete(&("root".into(), 2));
        assert!(privileged("admin", 0));
        assert_eq!(RUNS.load(SeqCst), before + 1, "f_memo().delete missed");
        delete_memoized!(privileged, "root", 3);
        assert!(privileged("admin", 0));
        assert_eq!(RUNS.load(SeqCst), before + 2, "delete_memoized! missed");

        assert_eq!(first(&[4, 5], 0), 4);
        let before = RUNS.load(SeqCst);
        assert_eq!(first(&[4, 6], 1), 4, "same first element: a hit");
        assert_eq!(RUNS.load(SeqCst), before);
        first_memo().delete(&(vec![4], 2));
        assert_eq!(first(&[4, 5], 0), 4);
        assert_eq!(RUNS.load(SeqCst), before + 1, "f_memo().delete missed");
    }
}

/// a part that is a reference to a temporary
/// (`key = &a.len()`, `key = &a.to_lowercase()`) is a reference part like `&user.name` (the
/// crate docs: "each part is a reference ... or an owned value"); in a plain `let` it would
/// live to the end of the function. Failed before the fix: E0716 "temporary value dropped
/// while borrowed" at the key (the part was evaluated inside a block).
mod temporaries {
    use super::*;

    static RUNS: AtomicU64 = AtomicU64::new(0);

    #[memoize(key = &a.len())]
    fn ref_to_len(a: &str, _trace: u64) -> usize {
        RUNS.fetch_add(1, SeqCst);
        a.len()
    }

    #[memoize(key = (&a.to_lowercase(), b))]
    fn ref_to_lowercase(a: &str, b: u64) -> usize {
        RUNS.fetch_add(1, SeqCst);
        a.len() + b as usize
    }

    #[test]
    fn a_reference_to_a_temporary_is_a_key_part() {
        ref_to_len("abc", 0);
        let before = RUNS.load(SeqCst);
        ref_to_len("xyz", 1);
        assert_eq!(RUNS.load(SeqCst), before, "same length: a hit");
        delete_memoized!(ref_to_len, "123", 2);
        ref_to_len("abc", 0);
        assert_eq!(RUNS.load(SeqCst), before + 1, "delete_memoized! missed");
        ref_to_len_memo().delete(&("qqq".into(), 3));
        ref_to_len("abc", 0);
        assert_eq!(RUNS.load(SeqCst), before + 2, "f_memo().delete missed");

        ref_to_lowercase("AB", 1);
        let before = RUNS.load(SeqCst);
        ref_to_lowercase("ab", 1);
        assert_eq!(RUNS.load(SeqCst), before, "same lowercase: a hit");
        ref_to_lowercase_memo().delete(&("aB".into(), 1));
        ref_to_lowercase("AB", 1);
        assert_eq!(RUNS.load(SeqCst), before + 1, "f_memo().delete missed");
    }
}
