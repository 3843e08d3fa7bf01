//! Review s18a: api.md's promises, section by section, checked as a user would write them
//! (a memoizer on a manual clock, no sleeps; every test bounded by `no_hang`).
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;
use std::time::Duration;

use common::no_hang;
use memokit::{memoize, Error, ManualClock, MemoIdentity, Memoizer, Timeout};

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static MEMO: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(CLOCK.clone()).build().expect("memoizer"));
static RUNS: AtomicU64 = AtomicU64::new(0);

fn run() -> u64 {
    RUNS.fetch_add(1, SeqCst)
}

// §2 `timeout`: zero still reads the cache but stores nothing; a changed timeout applies to
// the next call; expiry follows the manual clock.
#[memoize(memoizer = &MEMO, timeout = 10)]
fn timed(a: u64) -> u64 {
    a * 1_000_000 + run()
}

#[test]
fn timeout_zero_reads_but_does_not_store_and_changes_apply_at_once() {
    no_hang("timeouts", || {
        let h = timed_memo();
        let x = timed(1);
        assert_eq!(timed(1), x, "a hit");
        h.set_cache_timeout(0);
        assert_eq!(h.cache_timeout(), Timeout::After(Duration::ZERO));
        assert_eq!(timed(1), x, "timeout 0 still reads the cache");
        let y = timed(2);
        assert_ne!(timed(2), y, "timeout 0 stores nothing");
        h.set_cache_timeout(Duration::from_secs(5));
        let z = timed(3);
        CLOCK.advance(Duration::from_secs(4));
        assert_eq!(timed(3), z, "within its 5 s");
        CLOCK.advance(Duration::from_secs(2));
        assert_ne!(timed(3), z, "expired after 5 s, not the attribute's 10");
    });
}

// §2 `unless`: when it returns true the call bypasses the cache entirely (no read, no write).
static BYPASS: AtomicBool = AtomicBool::new(false);

#[memoize(memoizer = &MEMO, unless = || BYPASS.load(SeqCst))]
fn bypassable(a: u64) -> u64 {
    a * 1_000_000 + run()
}

#[test]
fn unless_neither_reads_nor_writes() {
    no_hang("unless", || {
        let x = bypassable(1);
        BYPASS.store(true, SeqCst);
        let y = bypassable(1);
        assert_ne!(y, x, "no read");
        assert_ne!(bypassable(2), bypassable(2), "no write");
        BYPASS.store(false, SeqCst);
        assert_eq!(bypassable(1), x, "the cached result is still there, and was not replaced");
        let z = bypassable(2);
        assert_eq!(bypassable(2), z);
    });
}

// §1 by name, §2 `make_name`: names, unknown and ambiguous names, argument types.
macro_rules! twins {
    ($($name:ident),*) => {$(
        mod $name {
            use super::*;
            #[memoize(memoizer = &MEMO, make_name = |_: &str| "s18a::twin".to_string())]
            pub(crate) fn twin(a: u64) -> u64 {
                a + run()
            }
        }
    )*};
}
twins!(left, right);

#[memoize(memoizer = &MEMO, make_name = |n: &str| format!("{n}_v2"))]
fn renamed(s: &str, n: u32) -> u64 {
    s.len() as u64 * 1_000_000 + u64::from(n) * 1_000 + run()
}

#[test]
fn by_name_deletes_and_their_errors() {
    no_hang("by name", || {
        // Known from its first `f_memo()`, before any call.
        let name = renamed_memo().name();
        assert!(name.ends_with("::renamed_v2"), "{name}");
        MEMO.delete_memoized(name).expect("known from f_memo()");
        let x = renamed("ab", 2);
        MEMO.delete_memoized_args(name, &("ab".to_string(), 2u32)).expect("args");
        let y = renamed("ab", 2);
        assert_ne!(y, x, "the by-name delete of the arguments removed the result");
        match MEMO.delete_memoized_args(name, &("ab", 2u32)) {
            Err(Error::ArgumentTypes { expected, given, .. }) => {
                assert!(
                    expected.contains("String") && given.contains("&str"),
                    "{expected} {given}"
                );
            }
            other => panic!("wrong argument types: {other:?}"),
        }
        assert_eq!(renamed("ab", 2), y, "a failed delete deletes nothing");
        MEMO.delete_memoized_verhash(name).expect("verhash");
        assert_ne!(renamed("ab", 2), y);
        let plain = name.trim_end_matches("_v2");
        assert!(matches!(MEMO.delete_memoized(plain), Err(Error::UnknownFunction { .. })));
        assert!(matches!(
            MEMO.delete_memoized_verhash("no::such::fn"),
            Err(Error::UnknownFunction { .. })
        ));
        let _ = (left::twin(1), right::twin(1));
        assert!(matches!(
            MEMO.delete_memoized("s18a::twin"),
            Err(Error::AmbiguousName { count: 2, .. })
        ));
        assert!(matches!(
            MEMO.delete_memoized_args("s18a::twin", &(1u64,)),
            Err(Error::AmbiguousName { .. })
        ));
        // Two functions of one name never share results.
        assert_ne!(left::twin(5), right::twin(5) + 1_000_000);
        assert_eq!(left::twin_memo().stats().misses + right::twin_memo().stats().misses, 4);
    });
}

// §1 by name for a method: the arguments are preceded by the receiver's id.
#[derive(MemoIdentity)]
struct Account {
    #[memo(id)]
    id: u32,
}

impl Account {
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn balance(&self, day: &str) -> u64 {
        u64::from(self.id) * 1_000_000 + day.len() as u64 * 1_000 + run()
    }
}

#[test]
fn a_methods_by_name_and_handle_deletes_take_the_receiver_id_first() {
    no_hang("methods by name", || {
        let (a, b) = (Account { id: 1 }, Account { id: 2 });
        let (x, y) = (a.balance("mon"), b.balance("mon"));
        let name = Account::balance_memo().name();
        assert!(name.ends_with("::Account::balance"), "{name}");
        MEMO.delete_memoized_args(name, &(1u32, "mon".to_string())).expect("args");
        let x2 = a.balance("mon");
        assert_ne!(x2, x);
        assert_eq!(b.balance("mon"), y, "only receiver 1");
        Account::balance_memo().delete(&(1, "mon".to_string()));
        assert_ne!(a.balance("mon"), x2);
        assert!(matches!(
            MEMO.delete_memoized_args(name, &("mon".to_string(),)),
            Err(Error::ArgumentTypes { .. })
        ));
        assert_eq!(
            Account::balance_memo().make_cache_key(&(2, "mon".into())),
            Account::balance_memo().make_cache_key(&(2, "mon".into()))
        );
    });
}

// §3 `Result` and `Option`: only `Ok` is stored, `None` is.
#[memoize(memoizer = &MEMO)]
fn fallible(a: u64) -> std::io::Result<u64> {
    let r = run();
    if a == 0 {
        Err(std::io::Error::other("zero"))
    } else {
        Ok(a * 1_000_000 + r)
    }
}

#[memoize(memoizer = &MEMO)]
fn maybe(a: u64) -> Option<u64> {
    let r = run();
    (a != 0).then_some(r)
}

#[test]
fn errors_are_not_cached_and_none_is() {
    no_hang("result and option", || {
        let before = RUNS.load(SeqCst);
        assert!(fallible(0).is_err());
        assert!(fallible(0).is_err());
        let ok = fallible(1).expect("ok");
        assert_eq!(fallible(1).expect("ok"), ok);
        assert_eq!(maybe(0), None);
        assert_eq!(maybe(0), None);
        // Two errors, one `Ok`, one `None`; the counter is shared with other tests.
        assert!(RUNS.load(SeqCst) >= before + 4);
        let s = fallible_memo().stats();
        assert_eq!((s.hits, s.misses), (1, 3));
        let s = maybe_memo().stats();
        assert_eq!((s.hits, s.misses), (1, 1));
    });
}

// §5: a panic propagates, the cache is not poisoned; self-recursion on the same key panics.
static PANIC_ONCE: AtomicBool = AtomicBool::new(true);

#[memoize(memoizer = &MEMO)]
fn panics_once(a: u64) -> u64 {
    assert!(!PANIC_ONCE.swap(false, SeqCst), "the user's panic");
    a + run()
}

#[memoize(memoizer = &MEMO)]
fn recurses(a: u64) -> u64 {
    if a > 0 {
        recurses(a)
    } else {
        0
    }
}

#[test]
fn panics_propagate_and_self_recursion_panics_clearly() {
    no_hang("panics", || {
        let p = std::panic::catch_unwind(|| panics_once(1)).expect_err("the panic propagates");
        let msg =
            p.downcast_ref::<String>().map(String::as_str).or(p.downcast_ref::<&str>().copied());
        assert_eq!(msg, Some("the user's panic"));
        let x = panics_once(1);
        assert_eq!(panics_once(1), x, "then cached");
        let p = std::panic::catch_unwind(|| recurses(1)).expect_err("self-recursion panics");
        let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.starts_with("memokit:"), "{msg}");
        assert_eq!(recurses(0), 0);
    });
}

// §3 borrowed arguments: `&str`, `&[T]`, `&T` are keyed by value.
#[memoize(memoizer = &MEMO)]
fn borrowed(s: &str, xs: &[u8], t: &(u8, u8)) -> u64 {
    s.len() as u64 + xs.len() as u64 + u64::from(t.0) + 1_000 * run()
}

#[test]
fn borrowed_arguments_are_keyed_by_value() {
    no_hang("borrowed", || {
        let x = borrowed("ab", &[1, 2], &(1, 2));
        let s = String::from("ab");
        let v: Vec<u8> = [1, 2].into();
        assert_eq!(borrowed(&s, &v, &(1, 2)), x, "equal values share");
        assert_ne!(borrowed("ab", &[1, 2], &(1, 3)), x, "different values do not");
        memokit::delete_memoized!(borrowed, "ab", &[1, 2], &(1, 2));
        assert_ne!(borrowed("ab", &[1, 2], &(1, 2)), x);
        let y = borrowed("ab", &[1, 2], &(1, 2));
        borrowed_memo().delete(&("ab".to_string(), vec![1, 2], (1, 2)));
        assert_ne!(borrowed("ab", &[1, 2], &(1, 2)), y);
    });
}

// §2 `memoizer =`, `make_name =` (and `timeout =`) are evaluated once, at the first call. An expression that
// calls the function it belongs to (directly or through its handle) would set the function up
// inside its own set-up.
static SELF_MEMO_CALLS: AtomicU64 = AtomicU64::new(0);

fn memo_calling_its_function() -> &'static Memoizer {
    if SELF_MEMO_CALLS.fetch_add(1, SeqCst) == 0 {
        let _ = binds_through_itself(1);
    }
    &MEMO
}

#[memoize(memoizer = memo_calling_its_function())]
fn binds_through_itself(a: u64) -> u64 {
    a
}

#[memoize(make_name = |n: &str| format!("{n}{}", names_through_itself_memo().name().len()))]
fn names_through_itself(a: u64) -> u64 {
    a
}

fn timeout_calling_its_function() -> u64 {
    let _ = times_through_itself_memo();
    5
}

#[memoize(memoizer = &MEMO, timeout = timeout_calling_its_function())]
fn times_through_itself(a: u64) -> u64 {
    a
}

#[test]
fn a_memoizer_make_name_or_timeout_expression_that_calls_its_function_panics_clearly() {
    for (what, call) in [
        ("memoizer", (|| binds_through_itself(1)) as fn() -> u64),
        ("make_name", || names_through_itself(1)),
        ("timeout", || times_through_itself(1)),
    ] {
        let r = no_hang(what, move || std::panic::catch_unwind(call));
        let p = r.expect_err(what);
        let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.starts_with("memokit:") && msg.contains("must not use the function"),
            "{what}: {msg}"
        );
    }
}
