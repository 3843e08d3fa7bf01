//! The handle's key operations (`Memoized::delete`, `Memoized::make_cache_key`, the by-name
//! delete by arguments) against the key a call stores, for every argument form: they build
//! the call's own view from the owned argument tuple (each borrowed argument through
//! `Borrow`), so a key made from an owned tuple must equal exactly the key a call with those
//! arguments stores. For each form, two calls with different arguments: each delete form
//! (handle, by name, `delete_memoized!`) removes exactly the result of its call and leaves the
//! other's; `make_cache_key` is equal for equal arguments and differs otherwise; calls whose
//! arguments differ but whose keys are equal (`key =`) share one result and one key.

use std::any::Any;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use memokit::{delete_memoized, memoize, MemoIdentity, Memoized, Memoizer, Timeout};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

/// A fresh value per computation: a result that changes tells a recomputation.
static NEXT: AtomicU64 = AtomicU64::new(1);

fn fresh() -> u64 {
    NEXT.fetch_add(1, SeqCst)
}

/// One argument form: a function, two calls `x` and `y` of it with different keys, their
/// owned argument tuples, and `delete_memoized!` of each.
struct Form<'a, A: 'static> {
    what: &'a str,
    memo: Memoized<A>,
    call: [&'a dyn Fn() -> u64; 2],
    args: [&'a dyn Fn() -> A; 2],
    by_macro: [&'a dyn Fn(); 2],
}

fn check<A: Any>(f: Form<'_, A>) {
    let what = f.what;
    let name = f.memo.name();
    for i in 0..2 {
        let j = 1 - i;
        let deletes: [(&str, &dyn Fn()); 3] = [
            ("Memoized::delete", &|| f.memo.delete(&(f.args[i])())),
            ("the by-name delete", &|| {
                MEMO.delete_memoized_args(name, &(f.args[i])()).expect("by-name delete")
            }),
            ("delete_memoized!", f.by_macro[i]),
        ];
        for (form, delete) in deletes {
            let (vi, vj) = ((f.call[i])(), (f.call[j])());
            assert_ne!(vi, vj, "{what}: the two calls share a result");
            assert_eq!((f.call[i])(), vi, "{what}: call {i} is cached");
            assert_eq!((f.call[j])(), vj, "{what}: call {j} is cached");
            delete();
            assert_ne!((f.call[i])(), vi, "{what}: {form} of call {i} missed its result");
            assert_eq!((f.call[j])(), vj, "{what}: {form} of call {i} removed call {j}'s result");
        }
    }
    let key = |i: usize| f.memo.make_cache_key(&(f.args[i])());
    assert_eq!(key(0), key(0), "{what}: make_cache_key of equal arguments");
    assert_eq!(key(1), key(1), "{what}: make_cache_key of equal arguments");
    assert_ne!(key(0), key(1), "{what}: make_cache_key of calls that do not share a result");
}

/// Two calls with different arguments but one key (`key =`): one result, one cache key, and a
/// delete by either's arguments removes it.
fn check_shared<A: Any>(what: &str, memo: Memoized<A>, call: [&dyn Fn() -> u64; 2], args: [A; 2]) {
    let v = call[0]();
    assert_eq!(call[1](), v, "{what}: the calls share a result");
    assert_eq!(memo.make_cache_key(&args[0]), memo.make_cache_key(&args[1]), "{what}: keys");
    memo.delete(&args[1]);
    let w = call[0]();
    assert_ne!(w, v, "{what}: the delete by the other call's arguments missed");
    MEMO.delete_memoized_args(memo.name(), &args[1]).expect("by-name delete");
    assert_ne!(call[0](), w, "{what}: the by-name delete by the other call's arguments missed");
}

// --- by value ------------------------------------------------------------------------------

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn word_u64(_a: u64) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn word_i8(_a: i8) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn word_char(_c: char) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn word_bool(_b: bool) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn string_and_u64(_s: String, _n: u64) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn option_string(_o: Option<String>) -> u64 {
    fresh()
}

#[test]
fn by_value_arguments() {
    check(Form {
        what: "fn(u64)",
        memo: word_u64_memo(),
        call: [&|| word_u64(1), &|| word_u64(1 << 40)],
        args: [&|| (1,), &|| (1 << 40,)],
        by_macro: [&|| delete_memoized!(word_u64, 1), &|| delete_memoized!(word_u64, 1 << 40)],
    });
    check(Form {
        what: "fn(i8)",
        memo: word_i8_memo(),
        call: [&|| word_i8(-1), &|| word_i8(127)],
        args: [&|| (-1,), &|| (127,)],
        by_macro: [&|| delete_memoized!(word_i8, -1), &|| delete_memoized!(word_i8, 127)],
    });
    check(Form {
        what: "fn(char)",
        memo: word_char_memo(),
        call: [&|| word_char('a'), &|| word_char(char::MAX)],
        args: [&|| ('a',), &|| (char::MAX,)],
        by_macro: [&|| delete_memoized!(word_char, 'a'), &|| {
            delete_memoized!(word_char, char::MAX)
        }],
    });
    check(Form {
        what: "fn(bool)",
        memo: word_bool_memo(),
        call: [&|| word_bool(false), &|| word_bool(true)],
        args: [&|| (false,), &|| (true,)],
        by_macro: [&|| delete_memoized!(word_bool, false), &|| delete_memoized!(word_bool, true)],
    });
    check(Form {
        what: "fn(String, u64)",
        memo: string_and_u64_memo(),
        call: [&|| string_and_u64("a".into(), 1), &|| string_and_u64("a".into(), 2)],
        args: [&|| ("a".into(), 1), &|| ("a".into(), 2)],
        by_macro: [&|| delete_memoized!(string_and_u64, "a".into(), 1), &|| {
            delete_memoized!(string_and_u64, "a".into(), 2)
        }],
    });
    check(Form {
        what: "fn(Option<String>)",
        memo: option_string_memo(),
        call: [&|| option_string(None), &|| option_string(Some(String::new()))],
        args: [&|| (None,), &|| (Some(String::new()),)],
        by_macro: [&|| delete_memoized!(option_string, None), &|| {
            delete_memoized!(option_string, Some(String::new()))
        }],
    });
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn no_arguments() -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn no_arguments_either() -> u64 {
    fresh()
}

#[test]
fn no_arguments_and_two_functions_of_one_signature() {
    let v = no_arguments();
    let w = no_arguments_either();
    assert_eq!(no_arguments(), v);
    no_arguments_memo().delete(&());
    assert_ne!(no_arguments(), v, "Memoized::delete(&())");
    assert_eq!(no_arguments_either(), w, "the other function's result stays");
    assert_eq!(no_arguments_memo().make_cache_key(&()), no_arguments_memo().make_cache_key(&()));
    assert_ne!(
        no_arguments_memo().make_cache_key(&()),
        no_arguments_either_memo().make_cache_key(&()),
        "two functions never share a key"
    );
    assert_ne!(
        word_u64_memo().make_cache_key(&(7,)),
        word_u64_twin_memo().make_cache_key(&(7,)),
        "two functions of one signature never share a key"
    );
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn word_u64_twin(_a: u64) -> u64 {
    fresh()
}

// --- by reference --------------------------------------------------------------------------

#[derive(Hash, PartialEq, Eq, Clone, Debug)]
struct Point {
    x: i32,
    name: String,
}

/// A borrowed key whose owned form (`Owned`) is not `Clone` (as in memoize_delete_noclone).
#[derive(Hash, PartialEq, Eq, Debug)]
struct Name(u64);

#[derive(Hash, PartialEq, Eq, Debug)]
struct OwnedName(Name);

impl std::borrow::Borrow<Name> for OwnedName {
    fn borrow(&self) -> &Name {
        &self.0
    }
}

impl ToOwned for Name {
    type Owned = OwnedName;
    fn to_owned(&self) -> OwnedName {
        OwnedName(Name(self.0))
    }
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_u64(_a: &u64) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_str(_s: &str) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_slice(_v: &[u32]) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_path(_p: &Path) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_os_str(_p: &OsStr) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_struct(_p: &Point) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_tuple(_t: &(u8, String)) -> u64 {
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn ref_not_clone_owned(_n: &Name) -> u64 {
    fresh()
}

fn point(x: i32) -> Point {
    Point { x, name: "p".into() }
}

#[test]
fn by_reference_arguments() {
    check(Form {
        what: "fn(&u64)",
        memo: ref_u64_memo(),
        call: [&|| ref_u64(&0), &|| ref_u64(&u64::MAX)],
        args: [&|| (0,), &|| (u64::MAX,)],
        by_macro: [&|| delete_memoized!(ref_u64, &0), &|| delete_memoized!(ref_u64, &u64::MAX)],
    });
    check(Form {
        what: "fn(&str)",
        memo: ref_str_memo(),
        call: [&|| ref_str(""), &|| ref_str("b")],
        args: [&|| (String::new(),), &|| ("b".into(),)],
        by_macro: [&|| delete_memoized!(ref_str, ""), &|| delete_memoized!(ref_str, "b")],
    });
    check(Form {
        what: "fn(&[u32])",
        memo: ref_slice_memo(),
        call: [&|| ref_slice(&[1, 2]), &|| ref_slice(&[1, 2, 3])],
        args: [&|| (vec![1, 2],), &|| (vec![1, 2, 3],)],
        by_macro: [&|| delete_memoized!(ref_slice, &[1, 2]), &|| {
            delete_memoized!(ref_slice, &[1, 2, 3])
        }],
    });
    check(Form {
        what: "fn(&Path)",
        memo: ref_path_memo(),
        call: [&|| ref_path(Path::new("/a")), &|| ref_path(Path::new("/a/b"))],
        args: [&|| (PathBuf::from("/a"),), &|| (PathBuf::from("/a/b"),)],
        by_macro: [&|| delete_memoized!(ref_path, Path::new("/a")), &|| {
            delete_memoized!(ref_path, Path::new("/a/b"))
        }],
    });
    check(Form {
        what: "fn(&OsStr)",
        memo: ref_os_str_memo(),
        call: [&|| ref_os_str(OsStr::new("a")), &|| ref_os_str(OsStr::new("A"))],
        args: [&|| (OsString::from("a"),), &|| (OsString::from("A"),)],
        by_macro: [&|| delete_memoized!(ref_os_str, OsStr::new("a")), &|| {
            delete_memoized!(ref_os_str, OsStr::new("A"))
        }],
    });
    check(Form {
        what: "fn(&Point)",
        memo: ref_struct_memo(),
        call: [&|| ref_struct(&point(1)), &|| ref_struct(&point(2))],
        args: [&|| (point(1),), &|| (point(2),)],
        by_macro: [&|| delete_memoized!(ref_struct, &point(1)), &|| {
            delete_memoized!(ref_struct, &point(2))
        }],
    });
    check(Form {
        what: "fn(&(u8, String))",
        memo: ref_tuple_memo(),
        call: [&|| ref_tuple(&(1, "a".into())), &|| ref_tuple(&(1, "b".into()))],
        args: [&|| ((1, "a".into()),), &|| ((1, "b".into()),)],
        by_macro: [&|| delete_memoized!(ref_tuple, &(1, "a".into())), &|| {
            delete_memoized!(ref_tuple, &(1, "b".into()))
        }],
    });
    check(Form {
        what: "fn(&Name), Name::Owned not Clone",
        memo: ref_not_clone_owned_memo(),
        call: [&|| ref_not_clone_owned(&Name(1)), &|| ref_not_clone_owned(&Name(2))],
        args: [&|| (OwnedName(Name(1)),), &|| (OwnedName(Name(2)),)],
        by_macro: [&|| delete_memoized!(ref_not_clone_owned, &Name(1)), &|| {
            delete_memoized!(ref_not_clone_owned, &Name(2))
        }],
    });
}

// --- many arguments --------------------------------------------------------------------------

type Twelve = (u8, String, u16, Vec<u8>, u32, String, i64, PathBuf, bool, char, usize, u64);

#[allow(clippy::too_many_arguments)]
#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn twelve(
    _a: u8,
    _b: &str,
    _c: u16,
    _d: &[u8],
    _e: u32,
    _f: String,
    _g: i64,
    _h: &Path,
    _i: bool,
    _j: char,
    _k: usize,
    _l: &u64,
) -> u64 {
    fresh()
}

fn twelve_args(last: u64) -> Twelve {
    (1, "b".into(), 3, vec![4], 5, "f".into(), -7, "/h".into(), true, 'j', 11, last)
}

/// The call with these arguments (the last one varies).
fn twelve_call(last: u64) -> u64 {
    twelve(1, "b", 3, &[4], 5, "f".into(), -7, Path::new("/h"), true, 'j', 11, &last)
}

/// `delete_memoized!` of [`twelve_call`]'s call.
fn twelve_delete(last: u64) {
    delete_memoized!(
        twelve,
        1,
        "b",
        3,
        &[4],
        5,
        "f".into(),
        -7,
        Path::new("/h"),
        true,
        'j',
        11,
        &last
    )
}

#[test]
fn twelve_arguments_mixed() {
    check(Form {
        what: "fn of 12 arguments",
        memo: twelve_memo(),
        call: [&|| twelve_call(0), &|| twelve_call(1)],
        args: [&|| twelve_args(0), &|| twelve_args(1)],
        by_macro: [&|| twelve_delete(0), &|| twelve_delete(1)],
    });
}

// --- key = ---------------------------------------------------------------------------------

#[derive(Hash, PartialEq, Eq, Clone, Debug)]
struct Holder {
    name: String,
    n: u64,
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never, key = s.len())]
fn key_len(s: &str, _trace: u64) -> u64 {
    let _ = s;
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never, key = &h.name)]
fn key_field_ref(h: &Holder) -> u64 {
    let _ = h;
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never, key = (o.as_deref().map(str::len), n))]
fn key_option(o: Option<String>, n: u64) -> u64 {
    let _ = (o, n);
    fresh()
}

#[memoize(memoizer = &MEMO, timeout = Timeout::Never, key = (b, a))]
fn key_swapped(a: u64, b: &str) -> u64 {
    let _ = (a, b);
    fresh()
}

fn holder(name: &str, n: u64) -> Holder {
    Holder { name: name.into(), n }
}

#[test]
fn key_expressions() {
    check(Form {
        what: "key = s.len()",
        memo: key_len_memo(),
        call: [&|| key_len("ab", 0), &|| key_len("abc", 0)],
        args: [&|| ("xy".into(), 5), &|| ("xyz".into(), 5)],
        by_macro: [&|| delete_memoized!(key_len, "zz", 9), &|| delete_memoized!(key_len, "zzz", 9)],
    });
    check_shared(
        "key = s.len()",
        key_len_memo(),
        [&|| key_len("ab", 1), &|| key_len("cd", 2)],
        [("ab".into(), 1), ("cd".into(), 2)],
    );
    check(Form {
        what: "key = &h.name",
        memo: key_field_ref_memo(),
        call: [&|| key_field_ref(&holder("a", 1)), &|| key_field_ref(&holder("b", 1))],
        args: [&|| (holder("a", 2),), &|| (holder("b", 2),)],
        by_macro: [&|| delete_memoized!(key_field_ref, &holder("a", 3)), &|| {
            delete_memoized!(key_field_ref, &holder("b", 3))
        }],
    });
    check_shared(
        "key = &h.name",
        key_field_ref_memo(),
        [&|| key_field_ref(&holder("s", 1)), &|| key_field_ref(&holder("s", 2))],
        [(holder("s", 1),), (holder("s", 2),)],
    );
    check(Form {
        what: "key = (o.as_deref().map(str::len), n)",
        memo: key_option_memo(),
        call: [&|| key_option(None, 1), &|| key_option(Some(String::new()), 1)],
        args: [&|| (None, 1), &|| (Some("".into()), 1)],
        by_macro: [&|| delete_memoized!(key_option, None, 1), &|| {
            delete_memoized!(key_option, Some(String::new()), 1)
        }],
    });
    check(Form {
        what: "key = (b, a)",
        memo: key_swapped_memo(),
        call: [&|| key_swapped(1, "a"), &|| key_swapped(2, "a")],
        args: [&|| (1, "a".into()), &|| (2, "a".into())],
        by_macro: [&|| delete_memoized!(key_swapped, 1, "a"), &|| {
            delete_memoized!(key_swapped, 2, "a")
        }],
    });
}

// --- methods and associated functions ----------------------------------------------------

#[derive(MemoIdentity)]
struct Svc {
    #[memo(id)]
    id: u64,
    #[allow(dead_code)]
    noise: u64,
}

#[derive(Hash, PartialEq, Eq, Clone, Debug)]
struct Tenant(String);

#[derive(MemoIdentity)]
struct ByTenant {
    #[memo(id)]
    tenant: Tenant,
}

impl Svc {
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn m(&self, _s: &str, _n: u64) -> u64 {
        fresh()
    }

    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn m0(&self) -> u64 {
        fresh()
    }

    #[memoize(memoizer = &MEMO, timeout = Timeout::Never, key = s.len())]
    fn mk(&self, s: &str, _trace: u64) -> u64 {
        let _ = s;
        fresh()
    }

    #[memoize(associated, memoizer = &MEMO, timeout = Timeout::Never)]
    fn assoc(_p: &Path, _n: u64) -> u64 {
        fresh()
    }
}

impl ByTenant {
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn t(&self, _v: &[u8]) -> u64 {
        fresh()
    }
}

fn svc(id: u64) -> Svc {
    Svc { id, noise: id * 7 }
}

#[test]
fn methods_and_associated_functions() {
    let (one, two, one_again) = (svc(1), svc(2), svc(1));
    // The same arguments, two receivers.
    check(Form {
        what: "method, receivers 1 and 2",
        memo: Svc::m_memo(),
        call: [&|| one.m("a", 1), &|| two.m("a", 1)],
        args: [&|| (1, "a".into(), 1), &|| (2, "a".into(), 1)],
        by_macro: [&|| delete_memoized!(one.m, "a", 1), &|| delete_memoized!(Svc::m, &two, "a", 1)],
    });
    // One receiver, two arguments.
    check(Form {
        what: "method, arguments a and b",
        memo: Svc::m_memo(),
        call: [&|| one.m("a", 1), &|| one.m("b", 1)],
        args: [&|| (1, "a".into(), 1), &|| (1, "b".into(), 1)],
        by_macro: [&|| delete_memoized!(one.m, "a", 1), &|| delete_memoized!(one.m, "b", 1)],
    });
    check_shared(
        "method, two receivers of one id",
        Svc::m_memo(),
        [&|| one.m("c", 3), &|| one_again.m("c", 3)],
        [(1, "c".into(), 3), (1, "c".into(), 3)],
    );
    check(Form {
        what: "method without arguments (the id is the key)",
        memo: Svc::m0_memo(),
        call: [&|| one.m0(), &|| two.m0()],
        args: [&|| (1,), &|| (2,)],
        by_macro: [&|| delete_memoized!(Svc::m0, &one), &|| delete_memoized!(Svc::m0, &two)],
    });
    check(Form {
        what: "method, key = s.len()",
        memo: Svc::mk_memo(),
        call: [&|| one.mk("ab", 0), &|| two.mk("ab", 0)],
        args: [&|| (1, "xy".into(), 4), &|| (2, "zw".into(), 4)],
        by_macro: [&|| delete_memoized!(one.mk, "qq", 1), &|| delete_memoized!(two.mk, "rr", 1)],
    });
    check_shared(
        "method, key = s.len()",
        Svc::mk_memo(),
        [&|| one.mk("ab", 0), &|| one_again.mk("cd", 9)],
        [(1, "ab".into(), 0), (1, "cd".into(), 9)],
    );
    let (ta, tb) =
        (ByTenant { tenant: Tenant("a".into()) }, ByTenant { tenant: Tenant("b".into()) });
    check(Form {
        what: "method, a String-like id",
        memo: ByTenant::t_memo(),
        call: [&|| ta.t(b"x"), &|| tb.t(b"x")],
        args: [&|| (Tenant("a".into()), b"x".to_vec()), &|| (Tenant("b".into()), b"x".to_vec())],
        by_macro: [&|| delete_memoized!(ta.t, b"x"), &|| delete_memoized!(tb.t, b"x")],
    });
    check(Form {
        what: "associated fn(&Path, u64)",
        memo: Svc::assoc_memo(),
        call: [&|| Svc::assoc(Path::new("p"), 1), &|| Svc::assoc(Path::new("p"), 2)],
        args: [&|| ("p".into(), 1), &|| ("p".into(), 2)],
        by_macro: [&|| delete_memoized!(Svc::assoc, Path::new("p"), 1), &|| {
            delete_memoized!(Svc::assoc, Path::new("p"), 2)
        }],
    });
    // A method's key and a free function's of the same arguments never meet.
    assert_ne!(Svc::m0_memo().make_cache_key(&(5,)), word_u64_memo().make_cache_key(&(5,)));
}

// --- macro_rules! ----------------------------------------------------------------------------

macro_rules! memoized {
    ($name:ident, $t:ty) => {
        #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
        fn $name(_a: &$t, _n: u64) -> u64 {
            fresh()
        }
    };
}

memoized!(from_macro_str, str);
memoized!(from_macro_slice, [u64]);

#[test]
fn functions_from_macro_rules() {
    check(Form {
        what: "macro_rules!, fn(&str, u64)",
        memo: from_macro_str_memo(),
        call: [&|| from_macro_str("a", 1), &|| from_macro_str("a", 2)],
        args: [&|| ("a".into(), 1), &|| ("a".into(), 2)],
        by_macro: [&|| delete_memoized!(from_macro_str, "a", 1), &|| {
            delete_memoized!(from_macro_str, "a", 2)
        }],
    });
    check(Form {
        what: "macro_rules!, fn(&[u64], u64)",
        memo: from_macro_slice_memo(),
        call: [&|| from_macro_slice(&[], 1), &|| from_macro_slice(&[0], 1)],
        args: [&|| (vec![], 1), &|| (vec![0], 1)],
        by_macro: [&|| delete_memoized!(from_macro_slice, &[], 1), &|| {
            delete_memoized!(from_macro_slice, &[0], 1)
        }],
    });
}
