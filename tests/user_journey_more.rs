//! A new user's journey through memokit, part 2 (part 1: `user_journey.rs`): no stale value
//! after any delete returns while the old computation still runs, a memoizer's stats, `clear`
//! and `flush`, `configure` after use, `fmt::Result`, and a function without arguments.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, LazyLock};
use std::thread;

use memokit::{delete_memoized, memoize, Error, MemoIdentity, Memoizer};

// ---------------------------------------------------------------------------------------------
// No stale value after a delete returns, while the old computation is still running.

static SLOW_GATE: LazyLock<parking_lot::Mutex<Option<Arc<Barrier>>>> =
    LazyLock::new(|| parking_lot::Mutex::new(None));
static SLOW_VALUE: AtomicUsize = AtomicUsize::new(0);

#[derive(MemoIdentity)]
struct Slow {
    #[memo(id)]
    id: u8,
}

fn slow_body(x: u64) -> u64 {
    let v = SLOW_VALUE.load(SeqCst) as u64;
    let gate = SLOW_GATE.lock().clone();
    if let Some(g) = gate {
        g.wait(); // started
        g.wait(); // released after the delete
    }
    v + x
}

#[memoize]
fn slow_free(x: u64) -> u64 {
    slow_body(x)
}

impl Slow {
    #[memoize]
    fn slow(&self, x: u64) -> u64 {
        slow_body(x)
    }
}

#[test]
fn no_stale_value_after_any_delete() {
    type Del = Box<dyn Fn()>;
    type Call = Box<dyn Fn() -> u64 + Send + Sync>;
    let forms: Vec<(&str, Call, Del)> = vec![
        ("free one", Box::new(|| slow_free(1)), Box::new(|| delete_memoized!(slow_free, 1))),
        ("free all", Box::new(|| slow_free(1)), Box::new(|| delete_memoized!(slow_free))),
        (
            "free by name",
            Box::new(|| slow_free(1)),
            Box::new(|| memokit::global().delete_memoized(slow_free_memo().name()).unwrap()),
        ),
        (
            "free by name args",
            Box::new(|| slow_free(1)),
            Box::new(|| {
                memokit::global().delete_memoized_args(slow_free_memo().name(), &(1u64,)).unwrap()
            }),
        ),
        (
            "method one",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| delete_memoized!(Slow { id: 1 }.slow, 1)),
        ),
        (
            "method obj",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| delete_memoized!(Slow { id: 1 }.slow)),
        ),
        (
            "method all",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| delete_memoized!(Slow::slow)),
        ),
        (
            "method path one",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| delete_memoized!(Slow::slow, &Slow { id: 1 }, 1)),
        ),
        (
            "method by name args",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| {
                memokit::global()
                    .delete_memoized_args(Slow::slow_memo().name(), &(1u8, 1u64))
                    .unwrap()
            }),
        ),
        ("free handle one", Box::new(|| slow_free(1)), Box::new(|| slow_free_memo().delete(&(1,)))),
        ("free handle all", Box::new(|| slow_free(1)), Box::new(|| slow_free_memo().delete_all())),
        (
            "free verhash",
            Box::new(|| slow_free(1)),
            Box::new(|| memokit::delete_memoized_verhash!(slow_free)),
        ),
        (
            "free handle verhash",
            Box::new(|| slow_free(1)),
            Box::new(|| slow_free_memo().delete_verhash()),
        ),
        (
            "free by name verhash",
            Box::new(|| slow_free(1)),
            Box::new(|| {
                memokit::global().delete_memoized_verhash(slow_free_memo().name()).unwrap()
            }),
        ),
        (
            "method handle one",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| Slow::slow_memo().delete(&(1, 1))),
        ),
        (
            "method verhash",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| memokit::delete_memoized_verhash!(Slow::slow)),
        ),
        ("free clear", Box::new(|| slow_free(1)), Box::new(|| memokit::global().clear())),
        (
            "method clear",
            Box::new(|| Slow { id: 1 }.slow(1)),
            Box::new(|| memokit::global().clear()),
        ),
    ];
    let _serial = SERIAL.lock();
    for (what, call, del) in forms {
        let call: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::from(call);
        // Start from an empty cache for this key.
        del();
        let gate = Arc::new(Barrier::new(2));
        *SLOW_GATE.lock() = Some(gate.clone());
        SLOW_VALUE.store(100, SeqCst);
        let c = call.clone();
        let old = thread::spawn(move || c());
        gate.wait(); // the old computation has read 100
        *SLOW_GATE.lock() = None;
        SLOW_VALUE.store(200, SeqCst);
        del();
        assert_eq!(
            call(),
            201,
            "{what}: a call after the delete must not join the old computation"
        );
        gate.wait(); // release the old one
        assert_eq!(old.join().unwrap(), 101);
        assert_eq!(call(), 201, "{what}: the old value must not be stored");
    }
}

static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

// ---------------------------------------------------------------------------------------------
// Stats on a fresh memoizer, clear, flush.

static STATS_MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

#[memoize(memoizer = &STATS_MEMO)]
fn sq(x: u64) -> u64 {
    x * x
}

#[test]
fn memoizer_stats_clear_and_flush() {
    assert_eq!(STATS_MEMO.stats(), memokit::Stats::default());
    sq(2);
    sq(2);
    sq(3);
    STATS_MEMO.flush();
    let s = STATS_MEMO.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 2, 2));
    STATS_MEMO.clear();
    STATS_MEMO.flush();
    assert_eq!(STATS_MEMO.stats().entries, 0);
    sq(2);
    assert_eq!(sq_memo().stats().misses, 3);
    assert_eq!(STATS_MEMO.function_names(), vec![sq_memo().name().to_string()]);
}

#[test]
fn configure_after_use_is_refused() {
    let _ = memokit::global();
    assert!(matches!(
        memokit::configure(Memoizer::builder().default_timeout(1)),
        Err(Error::AlreadyInitialized)
    ));
}

// `std::fmt::Result` is a `Result` (last path segment `Result`): only `Ok` is stored.
static FMT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn validate_name(name: &str) -> std::fmt::Result {
    FMT_CALLS.fetch_add(1, SeqCst);
    if name.is_empty() {
        Err(std::fmt::Error)
    } else {
        Ok(())
    }
}

#[test]
fn fmt_result_errors_are_not_cached() {
    let c0 = FMT_CALLS.load(SeqCst);
    assert!(validate_name("ok").is_ok());
    assert!(validate_name("ok").is_ok());
    assert_eq!(FMT_CALLS.load(SeqCst), c0 + 1);
    assert!(validate_name("").is_err());
    assert!(validate_name("").is_err());
    assert_eq!(FMT_CALLS.load(SeqCst), c0 + 3, "an Err of fmt::Result must not be stored");
}

#[memoize]
fn site_title() -> String {
    "memokit".to_string()
}

#[test]
fn zero_argument_function() {
    assert_eq!(site_title(), "memokit");
    memokit::global().delete_memoized_args(site_title_memo().name(), &()).unwrap();
    site_title_memo().delete(&());
    delete_memoized!(site_title);
    assert_eq!(site_title(), "memokit");
    assert_eq!(site_title_memo().stats().misses, 2);
}
