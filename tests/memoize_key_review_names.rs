//! Review 3 of `#[memoize(key = ...)]`: a by-value argument is cloned for the body only when the
//! key expression *names* it (`names_ident`). These keys do not use the argument `a` (a field
//! named `a`, a method named `a`, a struct literal's field `a`, a path segment `a::`), so a non-`Clone` `a`
//! must compile, and every delete form must reach the call's key.
//! Failed before the fix: "`NoClone` is named by the `key` expression, so a miss clones it".

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use memokit::{delete_memoized, memoize};

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
            assert_eq!(RUNS.load(SeqCst), before + 2, "{}: f_memo().delete missed", stringify!($f));
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
