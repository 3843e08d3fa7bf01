//! A new user's journey through memokit, written from the README, api.md and the crate docs
//! only: a small account service with a memoized lookup, memoized methods, every documented
//! form of invalidation, stats, `Result`s, a custom memoizer and the global one.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use memokit::{delete_memoized, memoize, Error, ManualClock, MemoIdentity, Memoizer, Timeout};

// ---------------------------------------------------------------------------------------------
// A custom memoizer on a manual clock, so timeouts are tested without sleeping.

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static SERVICE_MEMO: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder()
        .default_timeout(120)
        .capacity(1_000)
        .clock(CLOCK.clone())
        .key_prefix("svc:")
        .build()
        .unwrap()
});

#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    id: u64,
    name: String,
}

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// The "database".
static NAMES: LazyLock<parking_lot::Mutex<Vec<String>>> =
    LazyLock::new(|| parking_lot::Mutex::new(vec!["ann".into(), "bob".into(), "cy".into()]));

#[memoize(timeout = 60, memoizer = &SERVICE_MEMO)]
fn lookup_user(id: u64) -> Arc<User> {
    LOOKUPS.fetch_add(1, SeqCst);
    Arc::new(User { id, name: NAMES.lock()[id as usize].clone() })
}

static DEFAULT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memoizer = &SERVICE_MEMO)]
fn default_timeout_fn(x: u64) -> u64 {
    DEFAULT_CALLS.fetch_add(1, SeqCst);
    x
}

#[test]
fn lookup_with_timeout_on_a_custom_memoizer() {
    let before = LOOKUPS.load(SeqCst);
    let a = lookup_user(0);
    let b = lookup_user(0);
    assert!(Arc::ptr_eq(&a, &b), "an Arc result is shared on a hit");
    assert_eq!(LOOKUPS.load(SeqCst), before + 1);
    assert_eq!(lookup_user_memo().cache_timeout(), Timeout::from(60));
    assert!(std::ptr::eq(lookup_user_memo().memoizer(), &*SERVICE_MEMO));
    assert_eq!(SERVICE_MEMO.key_prefix(), "svc:");

    // A write, then the per-argument delete.
    NAMES.lock()[0] = "anne".into();
    delete_memoized!(lookup_user, 0);
    assert_eq!(lookup_user(0).name, "anne");
    assert_eq!(LOOKUPS.load(SeqCst), before + 2);

    // The timeout: 59 s later still cached, 61 s later recomputed.
    CLOCK.advance(Duration::from_secs(59));
    lookup_user(0);
    assert_eq!(LOOKUPS.load(SeqCst), before + 2);
    CLOCK.advance(Duration::from_secs(2));
    lookup_user(0);
    assert_eq!(LOOKUPS.load(SeqCst), before + 3);

    // The memoizer's default timeout (120 s) applies when the attribute gives none.
    let d0 = DEFAULT_CALLS.load(SeqCst);
    default_timeout_fn(7);
    CLOCK.advance(Duration::from_secs(100));
    default_timeout_fn(7);
    assert_eq!(DEFAULT_CALLS.load(SeqCst), d0 + 1);
    CLOCK.advance(Duration::from_secs(21));
    default_timeout_fn(7);
    assert_eq!(DEFAULT_CALLS.load(SeqCst), d0 + 2);

    // By name on the memoizer it is bound to; on the global one it is unknown.
    SERVICE_MEMO.delete_memoized(lookup_user_memo().name()).unwrap();
    assert!(matches!(
        memokit::global().delete_memoized(lookup_user_memo().name()),
        Err(Error::UnknownFunction { .. })
    ));
    SERVICE_MEMO.run_maintenance();
    assert!(SERVICE_MEMO.stats().hits >= 2);
}

// ---------------------------------------------------------------------------------------------
// A struct with memoized methods.

#[derive(MemoIdentity)]
struct Ledger {
    #[memo(id)]
    id: u32,
    calls: Arc<AtomicUsize>,
    balances: Arc<parking_lot::Mutex<Vec<(String, u64)>>>,
}

impl Ledger {
    fn new(id: u32) -> Self {
        Ledger {
            id,
            calls: Arc::new(AtomicUsize::new(0)),
            balances: Arc::new(parking_lot::Mutex::new(vec![
                ("alice".into(), 10),
                ("bob".into(), 20),
            ])),
        }
    }

    fn set(&self, who: &str, v: u64) {
        for (n, b) in self.balances.lock().iter_mut() {
            if n == who {
                *b = v;
            }
        }
    }

    #[memoize]
    fn balance(&self, who: &str) -> Option<u64> {
        self.calls.fetch_add(1, SeqCst);
        self.balances.lock().iter().find(|(n, _)| n == who).map(|(_, b)| *b)
    }

    #[memoize(associated, timeout = Timeout::Never)]
    fn currency_name(code: u16) -> String {
        format!("cur-{code}")
    }
}

#[test]
fn memoized_methods_and_every_form_of_delete() {
    let l1 = Ledger::new(1001);
    let l2 = Ledger::new(1002);
    assert_eq!(l1.memo_id(), 1001);
    assert_eq!(l1.balance("alice"), Some(10));
    assert_eq!(l1.balance("alice"), Some(10));
    assert_eq!(l1.balance("nobody"), None);
    assert_eq!(l1.balance("nobody"), None); // None is a value and is cached
    assert_eq!(l1.calls.load(SeqCst), 2);
    assert_eq!(l2.balance("alice"), Some(10));

    // Same id => shared results.
    let l1_again = Ledger { id: 1001, ..Ledger::new(1001) };
    assert_eq!(l1_again.balance("alice"), Some(10));
    assert_eq!(l1_again.calls.load(SeqCst), 0);

    // One result for one object.
    l1.set("alice", 11);
    delete_memoized!(l1.balance, "alice");
    assert_eq!(l1.balance("alice"), Some(11));
    assert_eq!(l2.balance("alice"), Some(10), "other receivers keep their results");

    // Every result of one method for one object.
    l1.set("bob", 21);
    delete_memoized!(l1.balance);
    assert_eq!(l1.balance("bob"), Some(21));
    let c2 = l2.calls.load(SeqCst);
    assert_eq!(l2.balance("alice"), Some(10));
    assert_eq!(l2.calls.load(SeqCst), c2, "l2 untouched by a delete for l1");

    // Through an Arc, like a call.
    let shared = Arc::new(Ledger::new(1003));
    assert_eq!(shared.balance("bob"), Some(20));
    shared.set("bob", 22);
    delete_memoized!(shared.balance, "bob");
    assert_eq!(shared.balance("bob"), Some(22));

    // Path form with an instance.
    l2.set("alice", 12);
    delete_memoized!(Ledger::balance, &l2, "alice");
    assert_eq!(l2.balance("alice"), Some(12));

    // Every instance.
    l1.set("alice", 13);
    l2.set("alice", 14);
    delete_memoized!(Ledger::balance);
    assert_eq!(l1.balance("alice"), Some(13));
    assert_eq!(l2.balance("alice"), Some(14));

    // By name, with the receiver id first in the args tuple.
    let name = Ledger::balance_memo().name();
    assert!(name.ends_with("Ledger::balance"), "{name}");
    l1.set("alice", 15);
    memokit::global().delete_memoized_args(name, &(1001u32, "alice".to_string())).unwrap();
    assert_eq!(l1.balance("alice"), Some(15));
    let err = memokit::global().delete_memoized_args(name, &(1001u64, "alice")).unwrap_err();
    match &err {
        Error::ArgumentTypes { expected, given, .. } => {
            assert!(expected.contains("u32") && expected.contains("String"), "{expected}");
            assert!(given.contains("u64"), "{given}");
        }
        other => panic!("expected ArgumentTypes, got {other:?}"),
    }
    memokit::global().delete_memoized_verhash(name).unwrap();
    l1.set("alice", 16);
    assert_eq!(l1.balance("alice"), Some(16));

    // An associated function without self.
    assert_eq!(Ledger::currency_name(978), "cur-978");
    assert_eq!(Ledger::currency_name_memo().cache_timeout(), Timeout::Never);
    Ledger::currency_name_memo().delete(&(978u16,));
    delete_memoized!(Ledger::currency_name, 978);
    delete_memoized!(Ledger::currency_name);
}

// ---------------------------------------------------------------------------------------------
// Free functions on the global memoizer.

static PRICE_CALLS: AtomicUsize = AtomicUsize::new(0);
static PRICES: LazyLock<parking_lot::Mutex<u64>> = LazyLock::new(|| parking_lot::Mutex::new(100));

#[memoize(timeout = Duration::from_secs(30))]
fn price(sku: &str, qty: u32) -> u64 {
    PRICE_CALLS.fetch_add(1, SeqCst);
    *PRICES.lock() * u64::from(qty) + sku.len() as u64
}

#[test]
fn free_function_deletes_and_stats() {
    let c0 = PRICE_CALLS.load(SeqCst);
    assert_eq!(price("ab", 2), 202);
    assert_eq!(price("ab", 2), 202);
    assert_eq!(price("abc", 1), 103);
    assert_eq!(PRICE_CALLS.load(SeqCst), c0 + 2);
    let s = price_memo().stats();
    assert_eq!((s.hits, s.misses), (1, 2));

    *PRICES.lock() = 200;
    delete_memoized!(price, "ab", 2);
    assert_eq!(price("ab", 2), 402);
    assert_eq!(price("abc", 1), 103, "the other result is still cached");

    delete_memoized!(price);
    assert_eq!(price("abc", 1), 203);

    memokit::delete_memoized_verhash!(price);
    *PRICES.lock() = 300;
    assert_eq!(price("abc", 1), 303);

    // By name.
    *PRICES.lock() = 400;
    let g = memokit::global();
    g.delete_memoized_args(price_memo().name(), &("abc".to_string(), 1u32)).unwrap();
    assert_eq!(price("abc", 1), 403);
    *PRICES.lock() = 500;
    g.delete_memoized(price_memo().name()).unwrap();
    assert_eq!(price("abc", 1), 503);
    assert!(g.function_names().iter().any(|n| n == price_memo().name()));
    assert!(matches!(g.delete_memoized("no::such"), Err(Error::UnknownFunction { .. })));
    assert!(g.delete_memoized_verhash("no::such").is_err());
    // Never cached: a no-op, not an error.
    g.delete_memoized_args(price_memo().name(), &("never".to_string(), 9u32)).unwrap();
    price_memo().delete(&("never".to_string(), 9));

    assert_eq!(
        price_memo().make_cache_key(&("a".to_string(), 1)),
        price_memo().make_cache_key(&("a".to_string(), 1))
    );
    assert_ne!(
        price_memo().make_cache_key(&("a".to_string(), 1)),
        price_memo().make_cache_key(&("a".to_string(), 2))
    );
}

// Two functions with the same name (one per module): by name is ambiguous, `make_name` fixes it.
mod v1 {
    #[memokit::memoize(make_name = |_n: &str| "shared::report".to_string())]
    pub(crate) fn report(x: u8) -> u8 {
        x
    }
}
mod v2 {
    #[memokit::memoize(make_name = |_n: &str| "shared::report".to_string())]
    pub(crate) fn report(x: u8) -> u8 {
        x + 1
    }
}

#[test]
fn ambiguous_names_and_definition_identity() {
    assert_eq!(v1::report(1), 1);
    assert_eq!(v2::report(1), 2, "same name, never shared results");
    assert!(matches!(
        memokit::global().delete_memoized("shared::report"),
        Err(Error::AmbiguousName { count: 2, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Result-returning functions.

static PARSE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn parse_port(s: &str) -> Result<u16, String> {
    PARSE_CALLS.fetch_add(1, SeqCst);
    s.parse().map_err(|e| format!("{s}: {e}"))
}

static READ_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn read_config(path: &str) -> std::io::Result<Arc<String>> {
    READ_CALLS.fetch_add(1, SeqCst);
    if path.starts_with('/') {
        Ok(Arc::new(format!("config of {path}")))
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string()))
    }
}

#[test]
fn results_store_only_ok() {
    let c0 = PARSE_CALLS.load(SeqCst);
    assert_eq!(parse_port("80"), Ok(80));
    assert_eq!(parse_port("80"), Ok(80));
    assert!(parse_port("x").is_err());
    assert!(parse_port("x").is_err());
    assert_eq!(PARSE_CALLS.load(SeqCst), c0 + 3, "errors are never cached");

    let r0 = READ_CALLS.load(SeqCst);
    assert!(read_config("/etc/a").is_ok());
    assert!(read_config("/etc/a").is_ok());
    assert!(read_config("rel").is_err());
    assert!(read_config("rel").is_err());
    assert_eq!(READ_CALLS.load(SeqCst), r0 + 3);
    // The handle's args for a Result function: the owned argument tuple.
    read_config_memo().delete(&("/etc/a".to_string(),));
    assert!(read_config("/etc/a").is_ok());
    assert_eq!(READ_CALLS.load(SeqCst), r0 + 4);
}

// ---------------------------------------------------------------------------------------------
// Options: unless, key, timeout 0, set_cache_timeout.

static BYPASS: AtomicUsize = AtomicUsize::new(0);
static UNLESS_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(unless = || BYPASS.load(SeqCst) == 1)]
fn maybe_cached(x: u64) -> u64 {
    UNLESS_CALLS.fetch_add(1, SeqCst);
    x
}

#[derive(Clone)]
struct Req {
    user_id: u64,
    trace: String,
}

static KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(key = req.user_id)]
fn profile(req: Req) -> String {
    KEY_CALLS.fetch_add(1, SeqCst);
    format!("{}@{}", req.user_id, req.trace)
}

static ZERO_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(timeout = 0)]
fn never_stored(x: u64) -> u64 {
    ZERO_CALLS.fetch_add(1, SeqCst);
    x
}

#[test]
fn options_behave_as_documented() {
    let u0 = UNLESS_CALLS.load(SeqCst);
    maybe_cached(1);
    maybe_cached(1);
    assert_eq!(UNLESS_CALLS.load(SeqCst), u0 + 1);
    BYPASS.store(1, SeqCst);
    maybe_cached(1);
    assert_eq!(UNLESS_CALLS.load(SeqCst), u0 + 2, "unless: no read");
    BYPASS.store(0, SeqCst);

    let k0 = KEY_CALLS.load(SeqCst);
    assert_eq!(profile(Req { user_id: 5, trace: "a".into() }), "5@a");
    assert_eq!(profile(Req { user_id: 5, trace: "b".into() }), "5@a", "trace is not in the key");
    assert_eq!(KEY_CALLS.load(SeqCst), k0 + 1);
    delete_memoized!(profile, Req { user_id: 5, trace: "zzz".into() });
    assert_eq!(profile(Req { user_id: 5, trace: "c".into() }), "5@c");
    profile_memo().delete(&(Req { user_id: 5, trace: String::new() },));
    assert_eq!(profile(Req { user_id: 5, trace: "d".into() }), "5@d");

    let z0 = ZERO_CALLS.load(SeqCst);
    never_stored(1);
    never_stored(1);
    assert_eq!(ZERO_CALLS.load(SeqCst), z0 + 2);
    never_stored_memo().set_cache_timeout(Duration::from_secs(60));
    never_stored(1);
    never_stored(1);
    assert_eq!(ZERO_CALLS.load(SeqCst), z0 + 3, "the changed timeout applies to the next call");
    never_stored_memo().set_cache_timeout(0);
}

// ---------------------------------------------------------------------------------------------
// Panics and self-recursion.

static PANIC_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn flaky(x: u64) -> u64 {
    if PANIC_CALLS.fetch_add(1, SeqCst) == 0 {
        panic!("first call fails");
    }
    x
}

#[memoize]
fn loops(x: u64) -> u64 {
    loops(x)
}

#[memoize]
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn panics_do_not_poison_and_self_wait_panics_clearly() {
    assert!(std::panic::catch_unwind(|| flaky(1)).is_err());
    assert_eq!(flaky(1), 1);
    assert_eq!(fib(90), 2_880_067_194_370_816_120);

    let err = std::panic::catch_unwind(|| loops(1)).unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(!msg.is_empty(), "a clear panic message");
}
