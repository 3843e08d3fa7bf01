//! Basic calls: hits and misses, keys by value, timeouts, `unless`, `key`, `make_name`,
//! `Result` and `Option`, visibility, and the seed's documented examples (big_foo,
//! random_func, param_func).

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use common::memo::{clones, Counted};
use memokit::{memoize, ManualClock, Memoizer, Timeout};

/// A memoizer with a manual clock, for timeout tests; one per test that moves its clock.
fn manual() -> (ManualClock, &'static Memoizer) {
    let clock = ManualClock::new();
    let m = Memoizer::builder().clock(clock.clone()).build().expect("memoizer");
    (clock, Box::leak(Box::new(m)))
}

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

// --- The seed's examples -----------------------------------------------------------------

static BIG_FOO: LazyLock<(ManualClock, &'static Memoizer)> = LazyLock::new(manual);
static BIG_FOO_RUNS: AtomicU64 = AtomicU64::new(0);

/// The seed's `big_foo(a, b)`: an expensive function of two arguments, memoized for 5 s.
#[memoize(timeout = 5, memoizer = BIG_FOO.1)]
fn big_foo(a: u64, b: u64) -> u64 {
    BIG_FOO_RUNS.fetch_add(1, SeqCst);
    a + b + 100
}

#[test]
fn big_foo_is_computed_once_per_arguments_until_its_timeout() {
    assert_eq!(big_foo(5, 2), 107);
    assert_eq!(big_foo(5, 2), 107);
    assert_eq!(BIG_FOO_RUNS.load(SeqCst), 1);
    assert_eq!(big_foo(5, 3), 108);
    assert_eq!(BIG_FOO_RUNS.load(SeqCst), 2);
    BIG_FOO.0.advance(Duration::from_secs(4));
    assert_eq!(big_foo(5, 2), 107);
    assert_eq!(BIG_FOO_RUNS.load(SeqCst), 2, "still fresh after 4 s");
    BIG_FOO.0.advance(Duration::from_secs(2));
    assert_eq!(big_foo(5, 2), 107);
    assert_eq!(BIG_FOO_RUNS.load(SeqCst), 3, "recomputed after 6 s");
    BIG_FOO.1.run_maintenance();
    BIG_FOO.1.flush();
    let s = BIG_FOO.1.stats();
    assert_eq!(s.entries, 1, "the wheel expired (5, 3); (5, 2) was stored again");
    assert!(s.expirations >= 1);
}

static RANDOM_SEQ: AtomicU64 = AtomicU64::new(1);

/// The seed's `random_func()`: a new value per run; memoized, the same value until deleted.
#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn random_func() -> u64 {
    RANDOM_SEQ.fetch_add(1, SeqCst).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[test]
fn random_func_returns_the_same_value_until_deleted() {
    let first = random_func();
    assert_eq!(random_func(), first);
    assert_eq!(random_func(), first);
    assert_ne!(random_func_uncached(), first, "the uncached body runs every time");
    memokit::delete_memoized!(random_func);
    let second = random_func();
    assert_ne!(second, first);
    assert_eq!(random_func(), second);
}

#[memoize(memoizer = &MEMO)]
fn param_func(a: u64, b: u64) -> u64 {
    a * 1000 + b
}

#[test]
fn param_func_keys_by_every_argument() {
    assert_eq!(param_func(1, 2), 1002);
    assert_eq!(param_func(2, 1), 2001);
    assert_eq!(param_func(1, 2), 1002);
    let s = param_func_memo().stats();
    assert_eq!((s.hits, s.misses), (1, 2));
    assert_eq!(
        param_func_memo().make_cache_key(&(1, 2)),
        param_func_memo().make_cache_key(&(1, 2))
    );
    assert_ne!(
        param_func_memo().make_cache_key(&(1, 2)),
        param_func_memo().make_cache_key(&(2, 1))
    );
}

// --- Keys --------------------------------------------------------------------------------

#[memoize(memoizer = &MEMO)]
fn borrowed(name: &str, items: &[u32], c: &Counted) -> usize {
    name.len() + items.len() + c.0 as usize
}

#[test]
fn borrowed_arguments_are_owned_only_when_stored() {
    let c = Counted(5);
    assert_eq!(borrowed("abc", &[1, 2], &c), 10);
    assert_eq!(clones(), 1, "stored once: one clone");
    for _ in 0..10 {
        assert_eq!(borrowed("abc", &[1, 2], &c), 10);
    }
    assert_eq!(clones(), 1, "a hit clones no argument");
    assert_eq!(borrowed_memo().stats().hits, 10);
    assert_eq!(borrowed("abd", &[1, 2], &c), 10);
    assert_eq!(borrowed_memo().stats().misses, 2, "different values never share a result");
    // The handle takes the owned tuple: `&str` -> String, `&[T]` -> Vec<T>, `&T` -> T.
    let k: memokit::CacheKey =
        borrowed_memo().make_cache_key(&("abc".to_string(), vec![1, 2], Counted(5)));
    assert_eq!(k, borrowed_memo().make_cache_key(&("abc".to_string(), vec![1, 2], Counted(5))));
}

mod one {
    #[memokit::memoize]
    pub(crate) fn same(x: u64) -> u64 {
        x + 1
    }
}

mod two {
    #[memokit::memoize]
    pub(crate) fn same(x: u64) -> u64 {
        x + 2
    }
}

#[test]
fn functions_with_the_same_name_never_share_results() {
    assert_eq!(one::same(1), 2);
    assert_eq!(two::same(1), 3);
    assert_eq!(one::same(1), 2);
    assert_eq!(two::same(1), 3);
    assert_ne!(one::same_memo().name(), two::same_memo().name());
    assert_ne!(one::same_memo().make_cache_key(&(1,)), two::same_memo().make_cache_key(&(1,)));
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct User {
    id: u64,
    visits: u64,
}

#[memoize(memoizer = &MEMO, key = user.id)]
fn greeting(user: &User, punctuation: char) -> String {
    format!("hello {}{punctuation} ({})", user.id, user.visits)
}

#[test]
fn key_replaces_the_arguments() {
    let a = greeting(&User { id: 7, visits: 1 }, '!');
    assert_eq!(a, "hello 7! (1)");
    assert_eq!(greeting(&User { id: 7, visits: 99 }, '?'), a, "only user.id is the key");
    assert_ne!(greeting(&User { id: 8, visits: 1 }, '!'), a);
    let k = greeting_memo().make_cache_key(&(User { id: 7, visits: 3 }, '.'));
    assert_eq!(k, greeting_memo().make_cache_key(&(User { id: 7, visits: 4 }, '!')));
    greeting_memo().delete(&(User { id: 7, visits: 0 }, ' '));
    assert_eq!(greeting(&User { id: 7, visits: 99 }, '?'), "hello 7? (99)");
}

static TENANT_RUNS: AtomicU64 = AtomicU64::new(0);

// The key is one argument, named as it is: a by-value `String` (the body still gets it) ...
#[memoize(memoizer = &MEMO, key = tenant)]
fn tenant_quota(tenant: String, request_id: u64) -> usize {
    TENANT_RUNS.fetch_add(1, SeqCst);
    tenant.len() + usize::from(request_id == u64::MAX)
}

// ... or a borrowed `&str`: either way the key is the owned `String`.
#[memoize(memoizer = &MEMO, key = region)]
fn region_code(region: &str, _trace: u64) -> String {
    region.to_uppercase()
}

// ... or several, in a tuple.
#[memoize(memoizer = &MEMO, key = (region, tenant))]
fn region_tenant(region: &str, tenant: String, _trace: u64) -> String {
    format!("{region}/{tenant}")
}

#[test]
fn key_can_name_an_argument_by_value_or_borrowed() {
    assert_eq!(tenant_quota("acme".to_string(), 1), 4);
    assert_eq!(tenant_quota("acme".to_string(), 2), 4);
    assert_eq!(TENANT_RUNS.load(SeqCst), 1, "request_id is not part of the key");
    tenant_quota_memo().delete(&("acme".to_string(), 99));
    assert_eq!(tenant_quota("acme".to_string(), 3), 4);
    assert_eq!(TENANT_RUNS.load(SeqCst), 2, "deleted by the owned arguments");

    assert_eq!(region_code("eu", 1), "EU");
    let k = region_code_memo().make_cache_key(&("eu".to_string(), 7));
    assert_eq!(k, region_code_memo().make_cache_key(&("eu".to_string(), 8)));
    assert_eq!(region_code_memo().stats().misses, 1);
    assert_eq!(region_code("eu", 2), "EU");
    assert_eq!(region_code_memo().stats().hits, 1);

    assert_eq!(region_tenant("eu", "acme".to_string(), 1), "eu/acme");
    assert_eq!(region_tenant("eu", "acme".to_string(), 2), "eu/acme");
    assert_eq!(region_tenant("us", "acme".to_string(), 3), "us/acme");
    assert_eq!(region_tenant_memo().stats().hits, 1);
    region_tenant_memo().delete(&("eu".to_string(), "acme".to_string(), 0));
    assert_eq!(region_tenant("eu", "acme".to_string(), 4), "eu/acme");
    assert_eq!(region_tenant_memo().stats().misses, 3, "deleted by the owned arguments");
}

static BYPASS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static UNLESS_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO, unless = || BYPASS.load(SeqCst))]
fn sometimes(x: u64) -> u64 {
    UNLESS_RUNS.fetch_add(1, SeqCst);
    x
}

#[test]
fn unless_bypasses_the_cache_entirely() {
    BYPASS.store(true, SeqCst);
    sometimes(1);
    sometimes(1);
    assert_eq!(UNLESS_RUNS.load(SeqCst), 2, "bypassed: no write");
    BYPASS.store(false, SeqCst);
    sometimes(1);
    sometimes(1);
    assert_eq!(UNLESS_RUNS.load(SeqCst), 3, "cached again");
    BYPASS.store(true, SeqCst);
    sometimes(1);
    assert_eq!(UNLESS_RUNS.load(SeqCst), 4, "bypassed: no read");
    let s = sometimes_memo().stats();
    assert_eq!((s.hits, s.misses), (1, 1), "bypassed calls are not counted");
}

// --- Timeouts ----------------------------------------------------------------------------

static TIMEOUTS: LazyLock<(ManualClock, &'static Memoizer)> = LazyLock::new(manual);
static TIMEOUT_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = TIMEOUTS.1)]
fn timed(x: u64) -> u64 {
    TIMEOUT_RUNS.fetch_add(1, SeqCst);
    x
}

#[test]
fn timeouts_default_set_zero_and_never() {
    let (clock, runs) = (&TIMEOUTS.0, || TIMEOUT_RUNS.load(SeqCst));
    let h = timed_memo();
    assert_eq!(h.cache_timeout(), Timeout::Default);
    timed(1);
    clock.advance(Duration::from_secs(299));
    timed(1);
    assert_eq!(runs(), 1, "the default timeout is 300 s");
    clock.advance(Duration::from_secs(2));
    timed(1);
    assert_eq!(runs(), 2);

    h.set_cache_timeout(10);
    assert_eq!(h.cache_timeout(), Timeout::After(Duration::from_secs(10)));
    timed(2);
    clock.advance(Duration::from_secs(11));
    timed(2);
    assert_eq!(runs(), 4, "the new timeout applies to the next call");

    h.set_cache_timeout(0);
    timed(1);
    assert_eq!(runs(), 4, "zero still reads the cache");
    timed(3);
    timed(3);
    assert_eq!(runs(), 6, "zero stores nothing");
    h.set_cache_timeout(Duration::ZERO);
    timed(3);
    assert_eq!(runs(), 7);

    h.set_cache_timeout(Timeout::Never);
    timed(4);
    clock.advance(Duration::from_secs(1_000_000));
    timed(4);
    assert_eq!(runs(), 8, "never expires");
}

#[test]
fn builder_default_timeout_applies_to_default_functions() {
    let clock = ManualClock::new();
    let m = Memoizer::builder().clock(clock.clone()).default_timeout(1).build().expect("memoizer");
    static M: std::sync::OnceLock<Memoizer> = std::sync::OnceLock::new();
    let _ = M.set(m);
    static RUNS: AtomicU64 = AtomicU64::new(0);
    #[memoize(memoizer = M.get().expect("set"))]
    fn short(x: u64) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        x
    }
    short(1);
    short(1);
    assert_eq!(RUNS.load(SeqCst), 1);
    clock.advance(Duration::from_secs(2));
    short(1);
    assert_eq!(RUNS.load(SeqCst), 2);
}

// --- Values ------------------------------------------------------------------------------

static RESULT_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO)]
fn parse(s: &str) -> Result<u64, std::num::ParseIntError> {
    RESULT_RUNS.fetch_add(1, SeqCst);
    s.parse()
}

#[test]
fn only_ok_results_are_stored() {
    assert!(parse("x").is_err());
    assert!(parse("x").is_err());
    assert_eq!(RESULT_RUNS.load(SeqCst), 2, "errors are never cached");
    assert_eq!(parse("12"), Ok(12));
    assert_eq!(parse("12"), Ok(12));
    assert_eq!(RESULT_RUNS.load(SeqCst), 3);
}

static IO_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO)]
fn read_config(path: &str) -> std::io::Result<Arc<String>> {
    IO_RUNS.fetch_add(1, SeqCst);
    if path.is_empty() {
        Err(std::io::Error::other("empty path"))
    } else {
        Ok(Arc::new(format!("config at {path}")))
    }
}

#[test]
fn io_result_aliases_store_only_ok_and_arc_values_are_shared() {
    assert!(read_config("").is_err());
    assert!(read_config("").is_err());
    let a = read_config("/etc/x").expect("ok");
    let b = read_config("/etc/x").expect("ok");
    assert!(Arc::ptr_eq(&a, &b), "an Arc result is shared, not deep-cloned");
    assert_eq!(IO_RUNS.load(SeqCst), 3);
}

static OPTION_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO)]
fn find(id: u64) -> Option<String> {
    OPTION_RUNS.fetch_add(1, SeqCst);
    (id == 1).then(|| "one".to_string())
}

#[test]
fn none_is_stored_like_any_value() {
    assert_eq!(find(2), None);
    assert_eq!(find(2), None);
    assert_eq!(find(1).as_deref(), Some("one"));
    assert_eq!(find(1).as_deref(), Some("one"));
    assert_eq!(OPTION_RUNS.load(SeqCst), 2);
}

// --- Names, associated functions, visibility ---------------------------------------------

macro_rules! counter_fn {
    ($name:ident, $tag:literal) => {
        #[memoize(memoizer = &MEMO, make_name = |n: &str| format!("{n}[{}]", $tag))]
        fn $name() -> &'static str {
            $tag
        }
    };
}

counter_fn!(made_a, "a");
counter_fn!(made_b, "b");

#[test]
fn make_name_changes_the_name() {
    assert!(made_a_memo().name().ends_with("::made_a[a]"), "{}", made_a_memo().name());
    assert!(made_b_memo().name().ends_with("::made_b[b]"));
    assert_eq!((made_a(), made_b()), ("a", "b"));
    MEMO.delete_memoized(made_a_memo().name()).expect("known by its made name");
}

struct Catalog;

static CATALOG_RUNS: AtomicU64 = AtomicU64::new(0);

impl Catalog {
    #[memoize(associated, memoizer = &MEMO)]
    fn count(kind: u8) -> u64 {
        CATALOG_RUNS.fetch_add(1, SeqCst);
        u64::from(kind) * 10
    }

    fn twice(kind: u8) -> u64 {
        Self::count(kind) + Self::count_memo().stats().hits
    }
}

#[test]
fn associated_functions_take_the_marker() {
    assert_eq!(Catalog::count(2), 20);
    assert_eq!(Catalog::twice(2), 21);
    assert_eq!(CATALOG_RUNS.load(SeqCst), 1);
    assert!(
        Catalog::count_memo().name().ends_with("Catalog::count"),
        "{}",
        Catalog::count_memo().name()
    );
    memokit::delete_memoized!(Catalog::count, 2);
    assert_eq!(Catalog::count(2), 20);
    assert_eq!(CATALOG_RUNS.load(SeqCst), 2);
    assert_eq!(Catalog::count_uncached(3), 30);
}

mod api {
    /// A documented public function: its companions are public too.
    #[memokit::memoize]
    pub(crate) fn visible(x: u32) -> u32 {
        x * 2
    }
}

#[test]
fn companions_have_the_functions_visibility() {
    assert_eq!(api::visible(2), 4);
    assert_eq!(api::visible_uncached(2), 4);
    api::visible_memo().delete_all();
    memokit::delete_memoized!(api::visible, 2);
    memokit::delete_memoized_verhash!(api::visible);
    assert!(std::ptr::eq(api::visible_memo().memoizer(), memokit::global()));
}
