//! Review s18f: generated-code hygiene, and valid signatures that must compile warning-free
//! and work (one computation, then hits; deletes). `shadow` and `noprelude` failed to compile
//! before the fix: `String::from` (needs `From` in scope) and `fn() -> bool`, `fn(&str)` (the
//! user's `bool`/`str`) in the expansion.
#![deny(warnings, missing_docs, unreachable_pub, clippy::all)]
#![allow(dead_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use memokit::{memoize, MemoIdentity};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn r#type(r#fn: u64, r#match: &str) -> u64 {
    r#fn + r#match.len() as u64
}

#[memoize(key = r#fn)]
fn r#loop(r#fn: u64, r#in: u64) -> u64 {
    r#fn + r#in
}

mod shadow {
    #![allow(non_camel_case_types, clippy::all, unused)]
    use ::memokit::memoize;
    mod memokit {}
    mod core {}
    mod std {}
    struct Option;
    struct Result;
    struct Box;
    struct Arc;
    struct String;
    struct Vec;
    struct Some;
    struct None;
    struct Ok;
    struct Err;
    trait Hash {}
    trait Clone {}
    trait Send {}
    trait Sync {}
    trait Default {}
    trait ToOwned {}
    trait Borrow {}
    trait Fn {}
    trait FnOnce {}
    fn drop() {}
    struct bool;
    struct str;
    struct u64;
    struct usize;
    pub(crate) fn call() -> ::std::primitive::u64 {
        f(1, "a")
    }

    #[memoize(timeout = 60, unless = || false, key = (a, b), make_name = |n| n.into(), memoizer = ::memokit::global())]
    pub(crate) fn f(a: ::std::primitive::u64, b: &::std::primitive::str) -> ::std::primitive::u64 {
        a + b.len() as ::std::primitive::u64
    }
    #[memoize]
    pub(crate) fn g(
        a: ::std::primitive::u64,
        b: &::std::primitive::str,
        c: &[::std::primitive::u8],
    ) -> ::std::primitive::u64 {
        a + b.len() as ::std::primitive::u64 + c.len() as ::std::primitive::u64
    }
    #[memoize]
    pub(crate) fn h(a: ::std::primitive::u64) -> ::std::result::Result<::std::primitive::u64, ()> {
        ::std::result::Result::Ok(a)
    }
}

mod noprelude {
    #![no_implicit_prelude]
    use ::memokit::memoize;
    #[memoize(timeout = 60u64, key = (a, b))]
    pub(crate) fn f(a: ::std::primitive::u64, b: &::std::primitive::str) -> ::std::primitive::u64 {
        a + b.len() as ::std::primitive::u64
    }
    #[memoize]
    pub(crate) fn g(
        a: ::std::primitive::u64,
        b: &::std::primitive::str,
        c: &[::std::primitive::u8],
    ) -> ::std::option::Option<::std::sync::Arc<::std::string::String>> {
        let _ = (a, b, c);
        ::std::option::Option::None
    }
    #[memoize(
        unless = || false,
        make_name = |n| ::std::format!("{n}!"),
        memoizer = ::memokit::global()
    )]
    pub(crate) fn h(a: ::std::primitive::u64) -> ::std::io::Result<::std::primitive::u64> {
        ::std::result::Result::Ok(a)
    }
    #[derive(::memokit::MemoIdentity)]
    pub(crate) struct S {
        #[memo(id)]
        pub(crate) id: ::std::primitive::u64,
    }
    impl S {
        #[memoize]
        pub(crate) fn m(&self, x: &::std::primitive::str) -> ::std::primitive::u64 {
            self.id + x.len() as ::std::primitive::u64
        }
        #[memoize(associated)]
        pub(crate) fn a(x: ::std::primitive::u64) -> ::std::primitive::u64 {
            x
        }
    }
}

/// Doc.
#[memoize]
#[cfg(test)]
#[cfg_attr(all(), must_use)]
#[inline]
#[track_caller]
#[allow(clippy::needless_pass_by_value)]
#[deny(unused_variables)]
pub(crate) fn attrs(x: String) -> u64 {
    x.len() as u64
}

#[memoize]
#[cfg(any())]
fn cfg_off(x: u64) -> u64 {
    x
}

pub(crate) mod a {
    pub(crate) mod b {
        #[memokit::memoize]
        pub(crate) fn f(x: u64) -> u64 {
            super::super::CALLS.fetch_add(1, super::super::Ordering::SeqCst);
            x
        }
        #[memokit::memoize]
        pub(super) fn sup(x: u64) -> u64 {
            x
        }
        #[memokit::memoize]
        pub(in crate::a) fn inpath(x: u64) -> u64 {
            x
        }
        pub(crate) mod c {
            #[memokit::memoize]
            pub(in crate::a::b) fn deeper(x: u64) -> u64 {
                x
            }
        }
        pub(crate) fn use_deeper() -> u64 {
            c::deeper(1)
        }
    }
    pub(crate) fn use_sup() -> u64 {
        b::sup(1) + b::inpath(1)
    }
    #[memokit::memoize]
    pub(crate) fn f(x: u64) -> u64 {
        x + 1
    }
}

#[memoize]
fn lt<'a>(s: &'a str, t: &'a [u8]) -> usize
where
    'a: 'a,
{
    s.len() + t.len()
}

type Alias = Vec<u8>;
type IoRes<T, E> = Result<T, E>;

#[memoize]
fn ret_alias(x: u8) -> Alias {
    vec![x]
}
#[memoize]
fn ret_io(x: u8) -> std::io::Result<u8> {
    Ok(x)
}
#[memoize]
fn ret_io2(x: u8) -> Result<u8, std::io::Error> {
    Ok(x)
}
#[memoize]
fn ret_opt_arc(x: u8) -> Option<Arc<String>> {
    Some(Arc::new(x.to_string()))
}
#[memoize]
fn ret_fmt(x: u8) -> std::fmt::Result {
    let _ = x;
    Ok(())
}

mod other {
    use memokit::MemoIdentity;
    #[derive(MemoIdentity)]
    pub(crate) struct T<'a> {
        #[memo(id)]
        pub(crate) id: u64,
        pub(crate) s: &'a str,
    }
    #[derive(MemoIdentity)]
    pub(crate) struct U {
        #[memo(id)]
        pub(crate) id: u64,
    }
}

impl other::U {
    #[memoize]
    pub(crate) fn m(&self, x: u64) -> u64 {
        self.id + x
    }
}

macro_rules! make {
    ($ty:ident, $m:ident) => {
        #[derive(MemoIdentity)]
        struct $ty {
            #[memo(id)]
            id: u64,
        }
        impl $ty {
            #[memoize]
            fn $m(&self, x: u64) -> u64 {
                self.id + x
            }
            #[memoize(associated)]
            fn assoc(x: u64) -> u64 {
                x
            }
        }
    };
}
make!(Gen, gm);

#[derive(MemoIdentity, Clone, Copy, Hash, PartialEq, Eq)]
struct Cp {
    #[memo(id)]
    id: u32,
}

impl Cp {
    #[memoize]
    #[allow(clippy::too_many_arguments)]
    fn eleven(
        &self,
        a: u8,
        b: u8,
        c: u8,
        d: u8,
        e: u8,
        f: u8,
        g: u8,
        h: u8,
        i: u8,
        j: u8,
        k: u8,
    ) -> u64 {
        u64::from(self.id)
            + u64::from(a)
            + u64::from(b)
            + u64::from(c)
            + u64::from(d)
            + u64::from(e)
            + u64::from(f)
            + u64::from(g)
            + u64::from(h)
            + u64::from(i)
            + u64::from(j)
            + u64::from(k)
    }
}

#[memoize]
#[allow(clippy::too_many_arguments)]
fn twelve(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    e: u8,
    f: u8,
    g: u8,
    h: u8,
    i: u8,
    j: u8,
    k: u8,
    l: u8,
) -> u64 {
    u64::from(a)
        + u64::from(b)
        + u64::from(c)
        + u64::from(d)
        + u64::from(e)
        + u64::from(f)
        + u64::from(g)
        + u64::from(h)
        + u64::from(i)
        + u64::from(j)
        + u64::from(k)
        + u64::from(l)
}

#[memoize]
fn unit_ret(x: u8) -> () {
    let _ = x;
}
#[memoize]
fn no_ret(x: u8) {
    let _ = x;
}
#[memoize]
fn copy_arg(c: Cp, x: &u32) -> u32 {
    c.id + x
}

type Handle = memokit::Memoized<(u8,)>;

/// `f_memo()` in a static.
static H: std::sync::LazyLock<Handle> = std::sync::LazyLock::new(no_ret_memo);

fn inside() -> u64 {
    #[derive(MemoIdentity)]
    struct L {
        #[memo(id)]
        id: u64,
    }
    impl L {
        #[memoize]
        fn m(&self, x: u64) -> u64 {
            self.id + x
        }
    }
    #[memoize]
    fn inner(x: u64) -> u64 {
        x
    }
    memokit::delete_memoized!(inner, 1);
    let l = L { id: 1 };
    memokit::delete_memoized!(l.m, 1);
    inner(1) + l.m(1)
}

thread_local!(static T: Cell<u8> = const { Cell::new(0) });

#[test]
fn hygiene_and_valid_signatures() {
    assert_eq!(r#type(1, "ab"), 3);
    assert_eq!(r#type(1, "ab"), 3);
    assert_eq!(type_memo().stats().hits, 1);
    memokit::delete_memoized!(r#type, 1, "ab");
    assert_eq!(r#type(1, "ab"), 3);
    assert_eq!(type_memo().stats().misses, 2);
    assert_eq!(type_uncached(1, "ab"), 3);
    assert_eq!(r#loop(1, 2), 3);
    assert_eq!(shadow::call(), 2);
    assert_eq!(shadow::call(), 2);
    assert_eq!(shadow::f_memo().stats().hits, 1);
    assert_eq!(shadow::h(1), Ok(1));
    assert_eq!(shadow::g(1, "a", &[1]), 3);
    assert_eq!(noprelude::f(1, "a"), 2);
    assert_eq!(noprelude::f(1, "a"), 2);
    assert_eq!(noprelude::f_memo().stats().misses, 1);
    assert_eq!(noprelude::g(1, "a", &[1]), None);
    assert_eq!(noprelude::h(1).unwrap(), 1);
    assert!(noprelude::h_memo().name().ends_with("noprelude::h!"));
    let s = noprelude::S { id: 1 };
    assert_eq!(s.m("ab"), 3);
    memokit::delete_memoized!(s.m, "ab");
    assert_eq!(s.m("ab"), 3);
    assert_eq!(noprelude::S::m_memo().stats().misses, 2);
    assert_eq!(noprelude::S::a(4), 4);
    assert!(noprelude::f_memo().name().ends_with("noprelude::f"));
    assert_eq!(attrs("ab".into()), 2);
    assert_eq!(a::b::f(1), 1);
    assert_eq!(a::b::f(1), 1);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    memokit::delete_memoized!(a::b::f, 1);
    assert_eq!(a::b::f(1), 1);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    memokit::delete_memoized!(a::b::f);
    memokit::delete_memoized_verhash!(a::b::f);
    assert_eq!(a::f(1), 2);
    assert_ne!(a::f_memo().name(), a::b::f_memo().name());
    assert_eq!(lt("a", b"b"), 2);
    let u = other::U { id: 1 };
    assert_eq!(u.m(1), 2);
    memokit::delete_memoized!(u.m, 1);
    memokit::delete_memoized!(other::U::m, &u, 1);
    let g = Gen { id: 1 };
    assert_eq!(g.gm(1), 2);
    assert_eq!(Gen::assoc(1), 1);
    let c = Cp { id: 1 };
    assert_eq!(c.eleven(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 12);
    memokit::delete_memoized!(c.eleven, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    assert_eq!(twelve(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 12);
    memokit::delete_memoized!(twelve, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    unit_ret(1);
    no_ret(1);
    no_ret(1);
    assert_eq!(H.stats().hits, 1);
    assert_eq!(copy_arg(c, &1), 2);
    memokit::delete_memoized!(copy_arg, c, &1);
    assert_eq!(inside(), 3);
    let _ = (ret_alias(1), ret_io(1).unwrap(), ret_io2(1).unwrap(), ret_opt_arc(1), ret_fmt(1));
    let _ = T.with(Cell::get);
}

/// `key = Self::..` in an impl of a type alias, for a method and an associated function.
mod self_key {
    use memokit::{memoize, MemoIdentity};

    #[derive(MemoIdentity)]
    struct S {
        #[memo(id)]
        id: u64,
    }

    type Alias = S;

    impl Alias {
        fn norm(s: &str) -> String {
            s.to_lowercase()
        }
        #[memoize(key = Self::norm(name))]
        fn m(&self, name: &str) -> u64 {
            self.id + name.len() as u64
        }
        #[memoize(associated, key = Self::norm(name))]
        fn a(name: &str) -> usize {
            name.len()
        }
    }

    #[test]
    fn key_through_self_in_an_impl_of_an_alias() {
        let s = S { id: 1 };
        assert_eq!(s.m("AB"), 3);
        assert_eq!(s.m("ab"), 3);
        assert_eq!(S::m_memo().stats().hits, 1);
        memokit::delete_memoized!(s.m, "Ab");
        assert_eq!(S::a("AB"), 2);
        assert_eq!(S::a("ab"), 2);
        assert_eq!(S::a_memo().stats().hits, 1);
        memokit::delete_memoized!(S::a, "aB");
        assert_eq!(S::a("ab"), 2);
        assert_eq!(S::a_memo().stats().misses, 2);
    }
}
