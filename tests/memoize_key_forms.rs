//! `#[memoize(key = ...)]` in more shapes (session 8's second review of it): the call and every
//! delete form reach the same key, a hit clones no argument, and key expressions that should compile
//! do (mixed by-value/borrowed arguments, `mut` parameters, parameters named like the macro's
//! locals, closures and blocks, method calls returning references, `unless`/`make_name`/
//! `timeout`, `Result`, methods, associated functions, `macro_rules!`), including expressions
//! that name an argument only as a field or method name, shadow it, or use it inside a macro.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use common::memo::{check, clones, Counted};
use memokit::{delete_memoized, memoize, MemoIdentity, Memoizer};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

fn by_name<A: std::any::Any>(name: &str, args: &A) {
    MEMO.delete_memoized_args(name, args).expect("by-name delete");
}

// --- (b) a hit clones no argument -----------------------------------------------------------

#[derive(PartialEq, Eq, Hash, Debug, Clone)]
struct Holder {
    inner: Counted,
    tag: u64,
}

#[memoize(memoizer = &MEMO, key = c)]
fn cl_by_value(c: Counted, _trace: u64) -> u64 {
    c.0
}

#[memoize(memoizer = &MEMO, key = (c, d))]
fn cl_two_by_value(c: Counted, d: Counted, _trace: u64) -> u64 {
    c.0 + d.0
}

#[memoize(memoizer = &MEMO, key = n)]
fn cl_not_named(c: Counted, n: u64) -> u64 {
    c.0 + n
}

#[memoize(memoizer = &MEMO, key = &h.inner)]
fn cl_field_ref(h: &Holder, _trace: u64) -> u64 {
    h.inner.0
}

#[memoize(memoizer = &MEMO, key = &h.inner)]
fn cl_field_ref_by_value(h: Holder, _trace: u64) -> u64 {
    h.inner.0
}

#[memoize(memoizer = &MEMO, key = cs)]
fn cl_slice(cs: &[Counted], _trace: u64) -> u64 {
    cs.iter().map(|c| c.0).sum()
}

#[memoize(memoizer = &MEMO, key = (c, s))]
fn cl_result(c: Counted, s: &str) -> Result<u64, String> {
    if s.is_empty() {
        Err("empty".into())
    } else {
        Ok(c.0)
    }
}

#[derive(MemoIdentity)]
struct Svc {
    #[memo(id)]
    id: u64,
}

impl Svc {
    #[memoize(memoizer = &MEMO, key = (c, h.tag))]
    fn cl_method(&self, c: Counted, h: &Holder, _trace: u64) -> u64 {
        self.id + c.0 + h.tag
    }
}

/// Clones made by `f`.
fn clones_in(f: impl FnOnce()) -> u64 {
    let before = clones();
    f();
    clones() - before
}

#[test]
fn a_hit_clones_no_argument_for_any_key_shape() {
    let h = || Holder { inner: Counted(2), tag: 7 };
    // Argument construction is outside the measured closure (it clones nothing anyway).
    cl_by_value(Counted(1), 0);
    let c = Counted(1);
    assert_eq!(clones_in(|| assert_eq!(cl_by_value(c, 1), 1)), 0, "key = c, c: Counted");

    cl_two_by_value(Counted(1), Counted(2), 0);
    let (c, d) = (Counted(1), Counted(2));
    assert_eq!(clones_in(|| assert_eq!(cl_two_by_value(c, d, 1), 3)), 0, "key = (c, d)");

    cl_not_named(Counted(1), 5);
    let c = Counted(1);
    assert_eq!(clones_in(|| assert_eq!(cl_not_named(c, 5), 6)), 0, "key = n (c not named)");

    let hh = h();
    cl_field_ref(&hh, 0);
    assert_eq!(clones_in(|| assert_eq!(cl_field_ref(&hh, 1), 2)), 0, "key = &h.inner");

    cl_field_ref_by_value(h(), 0);
    let hv = h();
    assert_eq!(
        clones_in(|| assert_eq!(cl_field_ref_by_value(hv, 1), 2)),
        0,
        "key = &h.inner, h: Holder"
    );

    let cs = [Counted(1), Counted(2)];
    cl_slice(&cs, 0);
    assert_eq!(clones_in(|| assert_eq!(cl_slice(&cs, 1), 3)), 0, "key = cs, cs: &[Counted]");

    assert_eq!(cl_result(Counted(3), "x"), Ok(3));
    let c = Counted(3);
    assert_eq!(clones_in(|| assert_eq!(cl_result(c, "x"), Ok(3))), 0, "Result, key = (c, s)");

    let svc = Svc { id: 10 };
    svc.cl_method(Counted(1), &hh, 0);
    let c = Counted(1);
    assert_eq!(clones_in(|| assert_eq!(svc.cl_method(c, &hh, 1), 18)), 0, "method key");

    // The hits above are hits (no body ran a second time).
    assert_eq!(cl_by_value_memo().stats().hits, 1);
    assert_eq!(cl_two_by_value_memo().stats().hits, 1);
    assert_eq!(cl_not_named_memo().stats().hits, 1);
    assert_eq!(cl_field_ref_memo().stats().hits, 1);
    assert_eq!(cl_field_ref_by_value_memo().stats().hits, 1);
    assert_eq!(cl_slice_memo().stats().hits, 1);
    assert_eq!(cl_result_memo().stats().hits, 1);
    assert_eq!(Svc::cl_method_memo().stats().hits, 1);
}

// --- (c) key expressions that should compile, each checked against every delete form ----

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct User {
    id: u64,
    name: String,
}

fn ann() -> User {
    User { id: 1, name: "ann".into() }
}

static MIX_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = (a, b, c.len()))]
fn mixed(a: String, b: &str, c: Vec<u8>, d: &[u8]) -> usize {
    MIX_RUNS.fetch_add(1, SeqCst);
    a.len() + b.len() + c.len() + d.len()
}

#[test]
fn mixing_by_value_and_borrowed_arguments() {
    check(
        "key = (a, b, c.len())",
        &MIX_RUNS,
        &|| {
            assert_eq!(mixed("ab".into(), "c", vec![1, 2], b"x"), 6);
        },
        &[
            ("f_memo().delete", &|| {
                mixed_memo().delete(&("ab".into(), "c".into(), vec![0, 0], vec![]))
            }),
            ("make_cache_key", &|| {
                assert_eq!(
                    mixed_memo().make_cache_key(&("ab".into(), "c".into(), vec![9, 9], vec![])),
                    mixed_memo().make_cache_key(&(
                        "ab".into(),
                        "c".into(),
                        vec![1, 2],
                        b"x".to_vec()
                    ))
                );
                mixed_memo().delete(&("ab".into(), "c".into(), vec![9, 9], vec![]));
            }),
            ("delete_memoized!", &|| delete_memoized!(mixed, "ab".into(), "c", vec![3, 4], b"")),
            ("by name", &|| {
                by_name(
                    mixed_memo().name(),
                    &("ab".to_string(), "c".to_string(), vec![5u8, 6], vec![7u8]),
                )
            }),
        ],
    );
}

static MUT_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a)]
fn mut_param(mut a: u64, mut s: String) -> String {
    MUT_RUNS.fetch_add(1, SeqCst);
    a += 1;
    s.push('!');
    format!("{s}{a}")
}

static MUTK_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = s.len())]
fn mut_param_in_key(mut s: String) -> String {
    MUTK_RUNS.fetch_add(1, SeqCst);
    s.push('!');
    s
}

#[test]
fn mut_parameters() {
    check(
        "fn f(mut a: u64, mut s: String), key = a",
        &MUT_RUNS,
        &|| {
            assert_eq!(mut_param(1, "x".into()), "x!2");
        },
        &[
            ("f_memo().delete", &|| mut_param_memo().delete(&(1, "y".into()))),
            ("delete_memoized!", &|| delete_memoized!(mut_param, 1, "z".into())),
            ("by name", &|| by_name(mut_param_memo().name(), &(1u64, String::new()))),
        ],
    );
    check(
        "fn f(mut s: String), key = s.len()",
        &MUTK_RUNS,
        &|| {
            assert_eq!(mut_param_in_key("ab".into()), "ab!");
        },
        &[
            ("f_memo().delete", &|| mut_param_in_key_memo().delete(&("xy".into(),))),
            ("delete_memoized!", &|| delete_memoized!(mut_param_in_key, "zz".into())),
            ("by name", &|| by_name(mut_param_in_key_memo().name(), &("qq".to_string(),))),
        ],
    );
}

// Parameters named like the locals of the expansion (`v` and `e` of its `match`, and the
// short names a reader might expect: `m`, `k`, `r`, `view`, `memo`, `id`, `recv`).
static LOCALS_RUNS: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::too_many_arguments)]
#[memoize(memoizer = &MEMO, key = (v, e, m, k, r, view, memo, id))]
fn locals(
    v: u64,
    e: &str,
    m: u64,
    k: u64,
    r: u64,
    view: u64,
    memo: u64,
    id: u64,
    recv: u64,
) -> u64 {
    LOCALS_RUNS.fetch_add(1, SeqCst);
    v + e.len() as u64 + m + k + r + view + memo + id + recv
}

#[test]
fn parameters_named_like_the_expansions_locals() {
    check(
        "parameters v, e, m, k, r, view, memo, id, recv",
        &LOCALS_RUNS,
        &|| {
            assert_eq!(locals(1, "e", 1, 1, 1, 1, 1, 1, 0), 8);
        },
        &[
            ("f_memo().delete", &|| locals_memo().delete(&(1, "e".into(), 1, 1, 1, 1, 1, 1, 5))),
            ("delete_memoized!", &|| delete_memoized!(locals, 1, "e", 1, 1, 1, 1, 1, 1, 6)),
            ("by name", &|| {
                by_name(
                    locals_memo().name(),
                    &(1u64, "e".to_string(), 1u64, 1u64, 1u64, 1u64, 1u64, 1u64, 7u64),
                )
            }),
        ],
    );
}

static CLOSURE_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = (|x: &u64, s: &str| x * 100 + s.len() as u64)(a, b))]
#[allow(clippy::redundant_closure_call)] // a closure called in the key, on purpose
fn closure_key(a: u64, b: &str, _trace: u64) -> u64 {
    CLOSURE_RUNS.fetch_add(1, SeqCst);
    a + b.len() as u64
}

static BLOCK_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = { let t = a.trim(); t.to_lowercase() })]
fn block_key(a: &str, _trace: u64) -> usize {
    BLOCK_RUNS.fetch_add(1, SeqCst);
    a.len()
}

#[test]
fn closures_and_blocks_in_the_key() {
    check(
        "key = (closure)(a, b)",
        &CLOSURE_RUNS,
        &|| {
            closure_key(1, "ab", 0);
        },
        &[
            ("f_memo().delete", &|| closure_key_memo().delete(&(1, "xy".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(closure_key, 1, "zz", 6)),
            ("by name", &|| by_name(closure_key_memo().name(), &(1u64, "qq".to_string(), 7u64))),
        ],
    );
    check(
        "key = { let t = a.trim(); t.to_lowercase() }",
        &BLOCK_RUNS,
        &|| {
            block_key(" AB ", 0);
        },
        &[
            ("f_memo().delete", &|| block_key_memo().delete(&("ab".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(block_key, "Ab", 6)),
            ("by name", &|| by_name(block_key_memo().name(), &("aB  ".to_string(), 7u64))),
        ],
    );
}

static ASSTR_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = user.name.as_str())]
fn as_str_key(user: &User, _trace: u64) -> u64 {
    ASSTR_RUNS.fetch_add(1, SeqCst);
    user.id
}

static ASSTRV_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = user.name.as_str())]
fn as_str_key_by_value(user: User, _trace: u64) -> u64 {
    ASSTRV_RUNS.fetch_add(1, SeqCst);
    user.id
}

static TRIM_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = (a.trim(), b.as_slice()))]
fn trim_key(a: &str, b: Vec<u8>, _trace: u64) -> u64 {
    TRIM_RUNS.fetch_add(1, SeqCst);
    a.len() as u64 + b.len() as u64
}

#[test]
fn method_calls_returning_references() {
    let other = |id| User { id, name: "ann".into() };
    check(
        "key = user.name.as_str(), user: &User",
        &ASSTR_RUNS,
        &|| {
            as_str_key(&ann(), 0);
        },
        &[
            ("f_memo().delete", &|| as_str_key_memo().delete(&(other(5), 5))),
            ("delete_memoized!", &|| delete_memoized!(as_str_key, &other(6), 6)),
            ("by name", &|| by_name(as_str_key_memo().name(), &(other(7), 7u64))),
        ],
    );
    check(
        "key = user.name.as_str(), user: User",
        &ASSTRV_RUNS,
        &|| {
            as_str_key_by_value(ann(), 0);
        },
        &[
            ("f_memo().delete", &|| as_str_key_by_value_memo().delete(&(other(5), 5))),
            ("delete_memoized!", &|| delete_memoized!(as_str_key_by_value, other(6), 6)),
            ("by name", &|| by_name(as_str_key_by_value_memo().name(), &(other(7), 7u64))),
        ],
    );
    check(
        "key = (a.trim(), b.as_slice())",
        &TRIM_RUNS,
        &|| {
            trim_key(" x ", vec![1], 0);
        },
        &[
            ("f_memo().delete", &|| trim_key_memo().delete(&("x".into(), vec![1], 5))),
            ("delete_memoized!", &|| delete_memoized!(trim_key, "x  ", vec![1], 6)),
            ("by name", &|| by_name(trim_key_memo().name(), &("  x".to_string(), vec![1u8], 7u64))),
        ],
    );
}

// `unless`, `make_name`, `timeout` with `key`; `Result`; methods; associated functions.
static OPTS_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(
    memoizer = &MEMO,
    key = a,
    unless = || false,
    make_name = |n: &str| format!("{n}_v2"),
    timeout = 60
)]
fn with_options(a: String, _trace: u64) -> Result<usize, String> {
    OPTS_RUNS.fetch_add(1, SeqCst);
    if a.is_empty() {
        Err("empty".into())
    } else {
        Ok(a.len())
    }
}

#[test]
fn key_with_unless_make_name_timeout_and_result() {
    assert!(with_options_memo().name().ends_with("::with_options_v2"));
    check(
        "key = a with unless, make_name, timeout, Result",
        &OPTS_RUNS,
        &|| {
            assert_eq!(with_options("ab".into(), 0), Ok(2));
        },
        &[
            ("f_memo().delete", &|| with_options_memo().delete(&("ab".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(with_options, "ab".into(), 6)),
            ("by name", &|| by_name(with_options_memo().name(), &("ab".to_string(), 7u64))),
        ],
    );
    // An `Err` is not stored.
    let before = OPTS_RUNS.load(SeqCst);
    assert!(with_options(String::new(), 0).is_err());
    assert!(with_options(String::new(), 0).is_err());
    assert_eq!(OPTS_RUNS.load(SeqCst), before + 2);
}

static M_RUNS: AtomicU64 = AtomicU64::new(0);
static ASSOC_RUNS: AtomicU64 = AtomicU64::new(0);

impl Svc {
    #[memoize(memoizer = &MEMO, key = (user.name.as_str(), n))]
    fn by_user(&self, user: User, n: u64, _trace: u64) -> u64 {
        M_RUNS.fetch_add(1, SeqCst);
        self.id + user.id + n
    }

    #[memoize(associated, memoizer = &MEMO, key = a.len())]
    fn assoc(a: &str, _trace: u64) -> usize {
        ASSOC_RUNS.fetch_add(1, SeqCst);
        a.len()
    }
}

#[test]
fn key_on_methods_and_associated_functions() {
    let s = Svc { id: 4 };
    let other = |id| User { id, name: "ann".into() };
    check(
        "method key = (user.name.as_str(), n)",
        &M_RUNS,
        &|| {
            s.by_user(ann(), 2, 0);
        },
        &[
            ("f_memo().delete", &|| Svc::by_user_memo().delete(&(4, other(5), 2, 5))),
            ("make_cache_key", &|| {
                assert_eq!(
                    Svc::by_user_memo().make_cache_key(&(4, other(5), 2, 5)),
                    Svc::by_user_memo().make_cache_key(&(4, ann(), 2, 0))
                );
                Svc::by_user_memo().delete(&(4, ann(), 2, 0));
            }),
            ("delete_memoized!(obj.m, ..)", &|| delete_memoized!(s.by_user, other(6), 2, 6)),
            ("delete_memoized!(Type::m, &obj, ..)", &|| {
                delete_memoized!(Svc::by_user, &s, other(6), 2, 6)
            }),
            ("by name", &|| by_name(Svc::by_user_memo().name(), &(4u64, other(7), 2u64, 7u64))),
        ],
    );
    check(
        "associated key = a.len()",
        &ASSOC_RUNS,
        &|| {
            Svc::assoc("abc", 0);
        },
        &[
            ("f_memo().delete", &|| Svc::assoc_memo().delete(&("xyz".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(Svc::assoc, "qqq", 6)),
            ("by name", &|| by_name(Svc::assoc_memo().name(), &("www".to_string(), 7u64))),
        ],
    );
}

// `#[memoize]` inside a `macro_rules!`, the key written in the macro and given to it.
static MR_RUNS: AtomicU64 = AtomicU64::new(0);

macro_rules! memoized_pair {
    ($name:ident, $key:expr) => {
        #[memoize(memoizer = &MEMO, key = $key, make_name = |n: &str| format!("{n}_mr"))]
        fn $name(a: u64, b: &str, _trace: u64) -> u64 {
            MR_RUNS.fetch_add(1, SeqCst);
            a + b.len() as u64
        }
    };
}

macro_rules! memoized_fixed_key {
    ($name:ident) => {
        #[memoize(memoizer = &MEMO, key = (a, b.len()))]
        fn $name(a: u64, b: &str, _trace: u64) -> u64 {
            MR_RUNS.fetch_add(1, SeqCst);
            a + b.len() as u64
        }
    };
}

memoized_pair!(mr_given, ());
memoized_fixed_key!(mr_fixed);

#[test]
fn key_inside_macro_rules() {
    check(
        "macro_rules!, key = () given",
        &MR_RUNS,
        &|| {
            mr_given(1, "a", 0);
        },
        &[
            ("f_memo().delete", &|| mr_given_memo().delete(&(9, "zz".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(mr_given, 8, "yy", 6)),
            ("by name", &|| by_name(mr_given_memo().name(), &(7u64, "x".to_string(), 7u64))),
        ],
    );
    check(
        "macro_rules!, key = (a, b.len()) in the macro",
        &MR_RUNS,
        &|| {
            mr_fixed(1, "a", 0);
        },
        &[
            ("f_memo().delete", &|| mr_fixed_memo().delete(&(1, "z".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(mr_fixed, 1, "y", 6)),
            ("by name", &|| by_name(mr_fixed_memo().name(), &(1u64, "x".to_string(), 7u64))),
        ],
    );
}

// --- (e) what the key "names": fields, methods and shadowing names; macros ---------------

#[derive(PartialEq, Eq, Hash, Debug, Clone)]
struct Other {
    a: u64,
}

static FMT_RUNS: AtomicU64 = AtomicU64::new(0);
// `a` appears only inside the format string (no `a` token): the key is an owned `String`,
// so moving `a` to the body is right.
#[memoize(memoizer = &MEMO, key = format!("{a}/{}", b.a))]
fn fmt_key(a: String, b: &Other, _trace: u64) -> String {
    FMT_RUNS.fetch_add(1, SeqCst);
    format!("{a}{}", b.a)
}

#[test]
fn key_using_an_argument_inside_a_format_string() {
    check(
        "key = format!(\"{a}/..\")",
        &FMT_RUNS,
        &|| {
            assert_eq!(fmt_key("x".into(), &Other { a: 1 }, 0), "x1");
        },
        &[
            ("f_memo().delete", &|| fmt_key_memo().delete(&("x".into(), Other { a: 1 }, 5))),
            ("delete_memoized!", &|| delete_memoized!(fmt_key, "x".into(), &Other { a: 1 }, 6)),
            ("by name", &|| {
                by_name(fmt_key_memo().name(), &("x".to_string(), Other { a: 1 }, 7u64))
            }),
        ],
    );
}

// --- (a) the call sees a borrowed argument as `&str`, the deletes (`ops`) as `&String` ------
// An expression whose value depends on that type gives the two paths different keys: the
// delete silently misses. (Contrived, but it shows the two paths do not see the same types;
// the realistic consequence is the compile failures in memoize_key_review_owned_view.rs.)

static SOV_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = std::mem::size_of_val(a))]
fn size_of_val_key(a: &str, _trace: u64) -> usize {
    SOV_RUNS.fetch_add(1, SeqCst);
    a.len()
}

#[test]
fn deletes_see_borrowed_arguments_with_the_calls_types() {
    check(
        "key = size_of_val(a), a: &str",
        &SOV_RUNS,
        &|| {
            size_of_val_key("abc", 0);
        },
        &[
            ("f_memo().delete", &|| size_of_val_key_memo().delete(&("xyz".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(size_of_val_key, "qqq", 6)),
            ("by name", &|| by_name(size_of_val_key_memo().name(), &("www".to_string(), 7u64))),
        ],
    );
}
