//! `#[memoize(key = ...)]`: the call and every delete form (`f_memo().delete`,
//! `delete_memoized!`, by name, `make_cache_key`) reach the same key, for expressions over
//! by-value, borrowed and struct arguments, tuples, references to arguments, `unless`, methods,
//! and a key given through a `macro_rules!`; and a hit clones no argument.
mod common;

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use common::memo::{check, clones, Counted};
use memokit::{delete_memoized, memoize, MemoIdentity, Memoizer};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

fn by_name<A: std::any::Any>(name: &str, args: &A) {
    MEMO.delete_memoized_args(name, args).expect("by-name delete");
}

// --- by-value arguments ------------------------------------------------------------------

static V_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a)]
fn v_key_a(a: u64, b: u64) -> u64 {
    V_RUNS.fetch_add(1, SeqCst);
    a + b
}

#[test]
fn key_naming_a_by_value_copy_argument() {
    check(
        "key = a (u64)",
        &V_RUNS,
        &|| {
            v_key_a(1, 2);
        },
        &[
            ("f_memo().delete", &|| v_key_a_memo().delete(&(1, 99))),
            ("delete_memoized!", &|| delete_memoized!(v_key_a, 1, 98)),
            ("by name", &|| by_name(v_key_a_memo().name(), &(1u64, 97u64))),
        ],
    );
    assert_eq!(v_key_a_memo().make_cache_key(&(1, 5)), v_key_a_memo().make_cache_key(&(1, 6)));
    assert_ne!(v_key_a_memo().make_cache_key(&(1, 5)), v_key_a_memo().make_cache_key(&(2, 5)));
}

static VS_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a.to_string())]
fn v_to_string(a: u64, b: u64) -> u64 {
    VS_RUNS.fetch_add(1, SeqCst);
    a + b
}

static VMIN_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a.min(b))]
fn v_min(a: u64, b: u64) -> u64 {
    VMIN_RUNS.fetch_add(1, SeqCst);
    a + b
}

static VDEREF_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = *a)]
fn v_deref(a: u64, b: u64) -> u64 {
    VDEREF_RUNS.fetch_add(1, SeqCst);
    a + b
}

#[test]
fn key_expressions_over_by_value_arguments() {
    check(
        "key = a.to_string()",
        &VS_RUNS,
        &|| {
            v_to_string(1, 2);
        },
        &[
            ("f_memo().delete", &|| v_to_string_memo().delete(&(1, 99))),
            ("delete_memoized!", &|| delete_memoized!(v_to_string, 1, 98)),
            ("by name", &|| by_name(v_to_string_memo().name(), &(1u64, 97u64))),
        ],
    );
    check(
        "key = a.min(b)",
        &VMIN_RUNS,
        &|| {
            v_min(3, 9);
        },
        &[
            ("f_memo().delete", &|| v_min_memo().delete(&(30, 3))),
            ("delete_memoized!", &|| delete_memoized!(v_min, 3, 4)),
            ("by name", &|| by_name(v_min_memo().name(), &(5u64, 3u64))),
        ],
    );
    check(
        "key = *a",
        &VDEREF_RUNS,
        &|| {
            v_deref(4, 9);
        },
        &[
            ("f_memo().delete", &|| v_deref_memo().delete(&(4, 3))),
            ("delete_memoized!", &|| delete_memoized!(v_deref, 4, 0)),
            ("by name", &|| by_name(v_deref_memo().name(), &(4u64, 1u64))),
        ],
    );
}

// --- borrowed arguments ------------------------------------------------------------------

static SLEN_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = (a.len(), b))]
fn s_len(a: &str, b: u64, _trace: u64) -> u64 {
    SLEN_RUNS.fetch_add(1, SeqCst);
    a.len() as u64 + b
}

static SCLONE_RUNS: AtomicU64 = AtomicU64::new(0);
#[allow(noop_method_call)]
#[memoize(memoizer = &MEMO, key = a.clone())]
fn s_clone(a: &str, _trace: u64) -> u64 {
    SCLONE_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

static SLICE_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a)]
fn slice_key(a: &[u64], _trace: u64) -> u64 {
    SLICE_RUNS.fetch_add(1, SeqCst);
    a.iter().sum()
}

static NESTED_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = ((a, b), c.len()))]
fn nested(a: &str, b: u64, c: &[u8], _trace: u64) -> u64 {
    NESTED_RUNS.fetch_add(1, SeqCst);
    a.len() as u64 + b + c.len() as u64
}

static SHADOW_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = { let a = a.len(); a + 1 })]
fn shadow(a: &str, _trace: u64) -> u64 {
    SHADOW_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

static PATH_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = p)]
fn path_key(p: &Path, _trace: u64) -> u64 {
    PATH_RUNS.fetch_add(1, SeqCst);
    p.as_os_str().len() as u64
}

static REFCOPY_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = *a)]
fn ref_copy(a: &u64, _trace: u64) -> u64 {
    REFCOPY_RUNS.fetch_add(1, SeqCst);
    *a
}

#[test]
fn key_expressions_over_borrowed_arguments() {
    check(
        "key = (a.len(), b), a: &str",
        &SLEN_RUNS,
        &|| {
            s_len("abc", 1, 0);
        },
        &[
            ("f_memo().delete", &|| s_len_memo().delete(&("xyz".to_string(), 1, 5))),
            ("delete_memoized!", &|| delete_memoized!(s_len, "qqq", 1, 6)),
            ("by name", &|| by_name(s_len_memo().name(), &("zzz".to_string(), 1u64, 7u64))),
        ],
    );
    check(
        "key = a.clone(), a: &str",
        &SCLONE_RUNS,
        &|| {
            s_clone("abc", 0);
        },
        &[
            ("f_memo().delete", &|| s_clone_memo().delete(&("abc".to_string(), 5))),
            ("delete_memoized!", &|| delete_memoized!(s_clone, "abc", 6)),
            ("by name", &|| by_name(s_clone_memo().name(), &("abc".to_string(), 7u64))),
        ],
    );
    check(
        "key = a, a: &[u64]",
        &SLICE_RUNS,
        &|| {
            slice_key(&[1, 2], 0);
        },
        &[
            ("f_memo().delete", &|| slice_key_memo().delete(&(vec![1, 2], 5))),
            ("delete_memoized!", &|| delete_memoized!(slice_key, &[1, 2], 6)),
            ("by name", &|| by_name(slice_key_memo().name(), &(vec![1u64, 2], 7u64))),
        ],
    );
    check(
        "key = ((a, b), c.len())",
        &NESTED_RUNS,
        &|| {
            nested("ab", 3, b"xyz", 0);
        },
        &[
            ("f_memo().delete", &|| nested_memo().delete(&("ab".into(), 3, b"123".to_vec(), 5))),
            ("delete_memoized!", &|| delete_memoized!(nested, "ab", 3, b"456", 6)),
            ("by name", &|| {
                by_name(nested_memo().name(), &("ab".to_string(), 3u64, b"789".to_vec(), 7u64))
            }),
        ],
    );
    check(
        "key = { let a = a.len(); a + 1 }",
        &SHADOW_RUNS,
        &|| {
            shadow("abcd", 0);
        },
        &[
            ("f_memo().delete", &|| shadow_memo().delete(&("wxyz".to_string(), 5))),
            ("delete_memoized!", &|| delete_memoized!(shadow, "1234", 6)),
            ("by name", &|| by_name(shadow_memo().name(), &("....".to_string(), 7u64))),
        ],
    );
    check(
        "key = p, p: &Path",
        &PATH_RUNS,
        &|| {
            path_key(Path::new("/a/b"), 0);
        },
        &[
            ("f_memo().delete", &|| path_key_memo().delete(&("/a/b".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(path_key, Path::new("/a/b"), 6)),
            ("by name", &|| {
                by_name(path_key_memo().name(), &(std::path::PathBuf::from("/a/b"), 7u64))
            }),
        ],
    );
    check(
        "key = *a, a: &u64",
        &REFCOPY_RUNS,
        &|| {
            ref_copy(&8, 0);
        },
        &[
            ("f_memo().delete", &|| ref_copy_memo().delete(&(8, 5))),
            ("delete_memoized!", &|| delete_memoized!(ref_copy, &8, 6)),
            ("by name", &|| by_name(ref_copy_memo().name(), &(8u64, 7u64))),
        ],
    );
}

// --- fields of a struct argument -------------------------------------------------------

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct User {
    id: u64,
    name: String,
}

static FIELD_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = &user.name)]
fn field_ref(user: &User, _trace: u64) -> u64 {
    FIELD_RUNS.fetch_add(1, SeqCst);
    user.id
}

static FIELDV_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = &user.name)]
fn field_ref_by_value(user: User, _trace: u64) -> u64 {
    FIELDV_RUNS.fetch_add(1, SeqCst);
    user.id
}

static FIELDC_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = (user.id, user.name.clone()))]
fn field_clone(user: &User, _trace: u64) -> u64 {
    FIELDC_RUNS.fetch_add(1, SeqCst);
    user.id
}

static USERCLONE_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = user.clone())]
fn user_clone(user: &User, _trace: u64) -> u64 {
    USERCLONE_RUNS.fetch_add(1, SeqCst);
    user.id
}

static COW_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a)]
fn cow_key(a: Cow<'static, str>, _trace: u64) -> u64 {
    COW_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

#[test]
fn key_expressions_over_fields() {
    let ann = || User { id: 1, name: "ann".into() };
    let other = |id| User { id, name: "ann".into() };
    check(
        "key = &user.name, user: &User",
        &FIELD_RUNS,
        &|| {
            field_ref(&ann(), 0);
        },
        &[
            ("f_memo().delete", &|| field_ref_memo().delete(&(other(5), 5))),
            ("delete_memoized!", &|| delete_memoized!(field_ref, &other(6), 6)),
            ("by name", &|| by_name(field_ref_memo().name(), &(other(7), 7u64))),
        ],
    );
    check(
        "key = &user.name, user: User",
        &FIELDV_RUNS,
        &|| {
            field_ref_by_value(ann(), 0);
        },
        &[
            ("f_memo().delete", &|| field_ref_by_value_memo().delete(&(other(5), 5))),
            ("delete_memoized!", &|| delete_memoized!(field_ref_by_value, other(6), 6)),
            ("by name", &|| by_name(field_ref_by_value_memo().name(), &(other(7), 7u64))),
        ],
    );
    check(
        "key = (user.id, user.name.clone())",
        &FIELDC_RUNS,
        &|| {
            field_clone(&ann(), 0);
        },
        &[
            ("f_memo().delete", &|| field_clone_memo().delete(&(ann(), 5))),
            ("delete_memoized!", &|| delete_memoized!(field_clone, &ann(), 6)),
            ("by name", &|| by_name(field_clone_memo().name(), &(ann(), 7u64))),
        ],
    );
    check(
        "key = user.clone()",
        &USERCLONE_RUNS,
        &|| {
            user_clone(&ann(), 0);
        },
        &[
            ("f_memo().delete", &|| user_clone_memo().delete(&(ann(), 5))),
            ("delete_memoized!", &|| delete_memoized!(user_clone, &ann(), 6)),
            ("by name", &|| by_name(user_clone_memo().name(), &(ann(), 7u64))),
        ],
    );
    check(
        "key = a, a: Cow<'static, str>",
        &COW_RUNS,
        &|| {
            cow_key(Cow::Borrowed("x"), 0);
        },
        &[
            ("f_memo().delete", &|| cow_key_memo().delete(&(Cow::Owned("x".into()), 5))),
            ("delete_memoized!", &|| delete_memoized!(cow_key, Cow::Borrowed("x"), 6)),
            ("by name", &|| {
                by_name(cow_key_memo().name(), &(Cow::<'static, str>::Borrowed("x"), 7u64))
            }),
        ],
    );
}

// --- `unless` with `key` ------------------------------------------------------------------

static BYPASS: AtomicBool = AtomicBool::new(false);
static UNLESS_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a, unless = || BYPASS.load(SeqCst))]
fn unless_key(a: String, _trace: u64) -> u64 {
    UNLESS_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

#[test]
fn unless_with_key() {
    check(
        "key = a with unless",
        &UNLESS_RUNS,
        &|| {
            unless_key("x".into(), 0);
        },
        &[
            ("f_memo().delete", &|| unless_key_memo().delete(&("x".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(unless_key, "x".into(), 6)),
            ("by name", &|| by_name(unless_key_memo().name(), &("x".to_string(), 7u64))),
        ],
    );
    BYPASS.store(true, SeqCst);
    let before = UNLESS_RUNS.load(SeqCst);
    unless_key("x".into(), 0);
    unless_key("x".into(), 0);
    BYPASS.store(false, SeqCst);
    assert_eq!(UNLESS_RUNS.load(SeqCst), before + 2);
}

// --- methods --------------------------------------------------------------------------------

#[derive(MemoIdentity)]
struct Thing {
    #[memo(id)]
    id: u64,
}

static METHOD_RUNS: AtomicU64 = AtomicU64::new(0);

impl Thing {
    #[memoize(memoizer = &MEMO, key = (a, b.len()))]
    fn m(&self, a: &str, b: &[u8], _trace: u64) -> u64 {
        METHOD_RUNS.fetch_add(1, SeqCst);
        self.id + a.len() as u64 + b.len() as u64
    }
}

#[test]
fn key_on_a_method() {
    let t = Thing { id: 3 };
    check(
        "method key = (a, b.len())",
        &METHOD_RUNS,
        &|| {
            t.m("a", b"12", 0);
        },
        &[
            ("f_memo().delete", &|| Thing::m_memo().delete(&(3, "a".into(), b"xy".to_vec(), 5))),
            ("delete_memoized!(obj.m, ..)", &|| delete_memoized!(t.m, "a", b"zz", 6)),
            ("delete_memoized!(Type::m, &obj, ..)", &|| {
                delete_memoized!(Thing::m, &t, "a", b"zz", 6)
            }),
            ("by name", &|| {
                by_name(Thing::m_memo().name(), &(3u64, "a".to_string(), b"ww".to_vec(), 7u64))
            }),
        ],
    );
}

// --- a hit clones no argument (api.md §3), with `key =` naming a borrowed argument too ------

#[memoize(memoizer = &MEMO)]
fn counted_plain(c: &Counted) -> u64 {
    c.0
}

#[memoize(memoizer = &MEMO, key = c)]
fn counted_key(c: &Counted, _trace: u64) -> u64 {
    c.0
}

#[test]
fn a_hit_clones_no_argument() {
    let c = Counted(4);
    assert_eq!(counted_plain(&c), 4);
    let before = clones();
    assert_eq!(counted_plain(&c), 4);
    assert_eq!(clones() - before, 0, "without key: a hit clones no argument");
    assert_eq!(counted_key(&c, 1), 4);
    let before = clones();
    assert_eq!(counted_key(&c, 2), 4);
    assert_eq!(counted_key_memo().stats().hits, 1);
    assert_eq!(clones() - before, 0, "key = c: a hit clones no argument");
}

// --- a key given through a `macro_rules!` (api.md §2 generates same-named functions so): the
// macro's `$key:expr` reaches `#[memoize]` wrapped in an invisible group --------------------

static MACRO_RUNS: AtomicU64 = AtomicU64::new(0);

macro_rules! keyed {
    ($name:ident, $region:ident, $tenant:ident, $key:expr) => {
        #[memoize(key = $key)]
        fn $name($region: &str, $tenant: String, _trace: u64) -> String {
            MACRO_RUNS.fetch_add(1, SeqCst);
            format!("{}/{}", $region, $tenant)
        }
    };
}

keyed!(by_tuple, region, tenant, (region, tenant));

#[test]
fn key_tuple_through_macro_rules() {
    assert_eq!(by_tuple("eu", "acme".into(), 1), "eu/acme");
    assert_eq!(by_tuple("eu", "acme".into(), 2), "eu/acme");
    assert_eq!(MACRO_RUNS.load(SeqCst), 1);
    by_tuple_memo().delete(&("eu".into(), "acme".into(), 0));
    assert_eq!(by_tuple("eu", "acme".into(), 3), "eu/acme");
    assert_eq!(MACRO_RUNS.load(SeqCst), 2);
}

// --- `key = &a`: a reference to an argument, which the expression sees by reference (`&&A`) --

static REF_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO, key = (&id, &region))]
fn lookup(id: u64, region: &str, _trace: u64) -> u64 {
    REF_RUNS.fetch_add(1, SeqCst);
    id + region.len() as u64
}

#[test]
fn key_can_be_a_reference_to_an_argument() {
    let call = || {
        lookup(1, "eu", 0);
    };
    let forms: [(&str, &dyn Fn()); 3] = [
        ("f_memo().delete", &|| lookup_memo().delete(&(1, "eu".into(), 5))),
        ("delete_memoized!", &|| delete_memoized!(lookup, 1, "eu", 6)),
        ("by name", &|| {
            MEMO.delete_memoized_args(lookup_memo().name(), &(1u64, "eu".to_string(), 7u64))
                .expect("by name")
        }),
    ];
    check("key = (&id, &region)", &REF_RUNS, &call, &forms);
}
