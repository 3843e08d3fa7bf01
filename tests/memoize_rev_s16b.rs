//! Review s16b: behaviour from a user's point of view, written from api.md and the crate docs
//! (no bug found by these; they pin down what they check). Zero timeouts read the cache; a
//! result lives its timeout and no longer (manual clock); a `Result`'s error needs no bounds
//! (`Rc`, a borrow); `Arc<dyn Trait>` and `Arc<str>` results are shared; memoized items
//! inside a function body and in concrete impls of generic types; a receiver with a named
//! lifetime; a function that deletes its own result (or calls `flush`, `clear`,
//! `run_maintenance`, `delete_memoized!`) while computing it; a waiter on a computation that
//! returns `Err` computes for itself; a memoizer whose default timeout is 0; fibonacci with
//! each level on its own thread (41 computations); below capacity nothing is evicted, across
//! functions and receivers; a key waited on by its own computation through another function
//! or a method panics clearly; builder extremes; memoized calls from thread-local destructors
//! (before and after memokit's own are gone); single-flight counts (a mutation counting a
//! joined call as a hit fails `single_flight_waits_are_counted_once_each`).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier, LazyLock};
use std::time::Duration;

use memokit::{memoize, ManualClock, MemoIdentity, Memoizer, Timeout};

fn manual() -> (ManualClock, &'static Memoizer) {
    let clock = ManualClock::new();
    let m = Memoizer::builder().clock(clock.clone()).build().expect("memoizer");
    (clock, Box::leak(Box::new(m)))
}

// --- zero timeout reads the cache ----------------------------------------------------------

static ZERO: LazyLock<(ManualClock, &'static Memoizer)> = LazyLock::new(manual);
static ZERO_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = ZERO.1, timeout = 10)]
fn zero_reads(x: u64) -> u64 {
    ZERO_RUNS.fetch_add(1, SeqCst);
    x
}

#[test]
fn zero_timeout_reads_but_stores_nothing() {
    zero_reads(1);
    zero_reads_memo().set_cache_timeout(0);
    zero_reads(1);
    assert_eq!(ZERO_RUNS.load(SeqCst), 1, "a zero timeout still reads the cache");
    zero_reads(2);
    zero_reads(2);
    assert_eq!(ZERO_RUNS.load(SeqCst), 3, "and stores nothing");
}

// --- timeout boundary -----------------------------------------------------------------------

static EDGE: LazyLock<(ManualClock, &'static Memoizer)> = LazyLock::new(manual);
static EDGE_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = EDGE.1, timeout = 10)]
fn edge(x: u64) -> u64 {
    EDGE_RUNS.fetch_add(1, SeqCst);
    x
}

#[test]
fn a_result_lives_its_timeout_and_no_longer() {
    edge(1);
    EDGE.0.advance(Duration::from_millis(9_999));
    edge(1);
    assert_eq!(EDGE_RUNS.load(SeqCst), 1);
    EDGE.0.advance(Duration::from_millis(2));
    edge(1);
    assert_eq!(EDGE_RUNS.load(SeqCst), 2);
}

// --- Result with an error that is neither Send nor 'static ----------------------------------

static RC_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize]
fn rc_error(x: u64) -> Result<u64, std::rc::Rc<str>> {
    RC_RUNS.fetch_add(1, SeqCst);
    if x == 0 {
        Err("zero".into())
    } else {
        Ok(x)
    }
}

#[memoize]
fn borrowed_error(s: &str) -> Result<usize, &str> {
    if s.is_empty() {
        Err(s)
    } else {
        Ok(s.len())
    }
}

#[test]
fn errors_need_no_bounds() {
    assert!(rc_error(0).is_err());
    assert!(rc_error(0).is_err());
    assert_eq!(rc_error(3), Ok(3));
    assert_eq!(rc_error(3), Ok(3));
    assert_eq!(RC_RUNS.load(SeqCst), 3);
    assert_eq!(borrowed_error(""), Err(""));
    assert_eq!(borrowed_error("ab"), Ok(2));
}

// --- Arc<dyn Trait> results --------------------------------------------------------------------

trait Shape: Send + Sync {
    fn area(&self) -> u64;
}
struct Sq(u64);
impl Shape for Sq {
    fn area(&self) -> u64 {
        self.0 * self.0
    }
}

#[memoize]
fn shape(x: u64) -> Arc<dyn Shape> {
    Arc::new(Sq(x))
}

#[memoize]
fn text(x: u64) -> Arc<str> {
    x.to_string().into()
}

#[test]
fn unsized_arc_results() {
    let a = shape(3);
    let b = shape(3);
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.area(), 9);
    assert_eq!(&*text(12), "12");
    assert!(Arc::ptr_eq(&text(12), &text(12)));
}

// --- nested items ------------------------------------------------------------------------------

#[test]
fn memoized_items_inside_a_function_body() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    #[memoize]
    fn inner(x: u64) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        x + 1
    }
    #[derive(MemoIdentity)]
    struct Local {
        #[memo(id)]
        id: u64,
    }
    impl Local {
        #[memoize]
        fn m(&self, y: u64) -> u64 {
            RUNS.fetch_add(1, SeqCst);
            self.id + y
        }
    }
    assert_eq!(inner(1), 2);
    assert_eq!(inner(1), 2);
    let l = Local { id: 5 };
    assert_eq!(l.m(1), 6);
    assert_eq!(l.m(1), 6);
    assert_eq!(RUNS.load(SeqCst), 2);
    memokit::delete_memoized!(inner, 1);
    memokit::delete_memoized!(l.m, 1);
    assert_eq!(inner(1), 2);
    assert_eq!(l.m(1), 6);
    assert_eq!(RUNS.load(SeqCst), 4);
    let g = memokit::global();
    g.delete_memoized(inner_memo().name()).unwrap();
    g.delete_memoized_args(Local::m_memo().name(), &(5u64, 1u64)).unwrap();
    assert_eq!(l.m(1), 6);
    assert_eq!(RUNS.load(SeqCst), 5);
}

// --- a method with a named lifetime on its receiver ------------------------------------------

#[derive(MemoIdentity)]
struct Named {
    #[memo(id)]
    id: u64,
}

impl Named {
    #[memoize]
    fn with_lifetime<'a>(&'a self, s: &'a str) -> usize {
        self.id as usize + s.len()
    }
}

#[test]
fn receiver_with_a_named_lifetime() {
    let n = Named { id: 1 };
    assert_eq!(n.with_lifetime("ab"), 3);
    assert_eq!(n.with_lifetime("ab"), 3);
    memokit::delete_memoized!(n.with_lifetime, "ab");
    assert_eq!(Named::with_lifetime_memo().stats().misses, 1);
}

// --- deleting one's own result while computing it -------------------------------------------

static SELF_DEL_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize]
fn deletes_itself(x: u64) -> u64 {
    let n = SELF_DEL_RUNS.fetch_add(1, SeqCst);
    if n == 0 {
        memokit::delete_memoized!(deletes_itself, x);
    }
    x + n
}

#[test]
fn a_function_that_deletes_its_own_result_while_computing() {
    assert_eq!(deletes_itself(10), 10);
    // The delete happened after the computation began: its value must not be stored.
    assert_eq!(deletes_itself(10), 11);
    assert_eq!(deletes_itself(10), 11);
}

// --- errors under single flight -------------------------------------------------------------

static ERR_RUNS: AtomicU64 = AtomicU64::new(0);
static ERR_GATE: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(2));

#[memoize]
fn err_flight(x: u64) -> Result<u64, String> {
    if ERR_RUNS.fetch_add(1, SeqCst) == 0 {
        ERR_GATE.wait();
        ERR_GATE.wait();
        return Err("first".into());
    }
    Ok(x)
}

#[test]
fn a_waiter_on_a_failed_computation_computes_for_itself() {
    let t = std::thread::spawn(|| err_flight(1));
    ERR_GATE.wait();
    let w = std::thread::spawn(|| err_flight(1));
    // Let the second caller join (or miss); the computation then fails.
    while memokit::global().stats().single_flight_waits == 0 {
        std::thread::yield_now();
    }
    ERR_GATE.wait();
    assert_eq!(t.join().unwrap(), Err("first".into()));
    assert_eq!(w.join().unwrap(), Ok(1));
    assert_eq!(err_flight(1), Ok(1));
    assert_eq!(ERR_RUNS.load(SeqCst), 2);
}

// --- timeouts of a memoizer ------------------------------------------------------------------

#[test]
fn a_memoizer_default_timeout_of_zero_stores_nothing() {
    static M: LazyLock<Memoizer> =
        LazyLock::new(|| Memoizer::builder().default_timeout(0).build().unwrap());
    static RUNS: AtomicU64 = AtomicU64::new(0);
    #[memoize(memoizer = &M)]
    fn f(x: u64) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        x
    }
    f(1);
    f(1);
    assert_eq!(RUNS.load(SeqCst), 2);
    assert_eq!(f_memo().cache_timeout(), Timeout::Default);
}

// --- recursion across threads ----------------------------------------------------------------

static FIB_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(timeout = Timeout::Never)]
fn par_fib(n: u64) -> u64 {
    FIB_RUNS.fetch_add(1, SeqCst);
    if n < 2 {
        return n;
    }
    std::thread::scope(|s| {
        let a = s.spawn(|| par_fib(n - 1));
        let b = par_fib(n - 2);
        a.join().unwrap() + b
    })
}

fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("hang: {what}"),
    }
}

#[test]
fn fibonacci_across_threads() {
    let r = within("par_fib", || par_fib(40));
    assert_eq!(r, 102_334_155);
    assert_eq!(FIB_RUNS.load(SeqCst), 41);
}

// --- memoizer maintenance from inside a computation -----------------------------------------

static ADMIN: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

#[memoize(memoizer = &ADMIN)]
fn admin(x: u64) -> u64 {
    ADMIN.flush();
    ADMIN.run_maintenance();
    ADMIN.clear();
    let _ = ADMIN.stats();
    memokit::delete_memoized!(admin);
    x
}

#[test]
fn a_computation_may_flush_clear_and_delete() {
    assert_eq!(within("admin", || admin(1)), 1);
    assert_eq!(within("admin", || admin(1)), 1);
    assert_eq!(admin_memo().stats().misses, 2, "its own delete_all detached it");
}

// --- capacity: nothing is evicted below it ---------------------------------------------------

static SMALL: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(100).build().unwrap());
static SMALL_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &SMALL)]
fn small_a(x: u64) -> u64 {
    SMALL_RUNS.fetch_add(1, SeqCst);
    x
}

#[derive(MemoIdentity)]
struct Acct {
    #[memo(id)]
    id: String,
}

impl Acct {
    #[memoize(memoizer = &SMALL)]
    fn bal(&self, k: u64) -> Result<Arc<u64>, String> {
        SMALL_RUNS.fetch_add(1, SeqCst);
        Ok(Arc::new(k + self.id.len() as u64))
    }
}

#[test]
fn below_capacity_every_result_stays() {
    for x in 0..60 {
        small_a(x);
    }
    let accts: Vec<Acct> = (0..10).map(|i| Acct { id: "a".repeat(i) }).collect();
    for a in &accts {
        for k in 0..4 {
            a.bal(k).unwrap();
        }
    }
    SMALL.flush();
    SMALL.run_maintenance();
    assert_eq!(SMALL.stats().entries, 100);
    assert_eq!(SMALL_RUNS.load(SeqCst), 100);
    for x in 0..60 {
        small_a(x);
    }
    for a in &accts {
        for k in 0..4 {
            let v1 = a.bal(k).unwrap();
            let v2 = a.bal(k).unwrap();
            assert!(Arc::ptr_eq(&v1, &v2));
        }
    }
    assert_eq!(SMALL_RUNS.load(SeqCst), 100, "nothing evicted below capacity");
    assert_eq!(SMALL.stats().evictions, 0);
    SMALL.delete_memoized_args(Acct::bal_memo().name(), &(String::from("aa"), 3u64)).unwrap();
    accts[2].bal(3).unwrap();
    assert_eq!(SMALL_RUNS.load(SeqCst), 101);
}

// --- a key waited on by its own computation through another function ------------------------

#[memoize]
fn cyc_f(x: u64) -> u64 {
    cyc_g(x) + 1
}

#[memoize]
fn cyc_g(x: u64) -> u64 {
    cyc_f(x) + 1
}

#[derive(MemoIdentity)]
struct Loop {
    #[memo(id)]
    id: u64,
}

impl Loop {
    #[memoize]
    fn again(&self, x: u64) -> u64 {
        self.again(x)
    }
}

#[test]
fn indirect_self_wait_is_a_clear_panic() {
    let r = within("cyc", || std::panic::catch_unwind(|| cyc_f(1)).is_err());
    assert!(r);
    let r = within("loop", || std::panic::catch_unwind(|| Loop { id: 1 }.again(1)).is_err());
    assert!(r);
    // Usable afterwards.
    let r = within("cyc again", || std::panic::catch_unwind(|| cyc_g(2)).is_err());
    assert!(r);
}

// --- concrete impls of a generic type ---------------------------------------------------------

#[derive(MemoIdentity)]
struct Wrapper<T> {
    #[memo(id)]
    id: u64,
    t: T,
}

impl Wrapper<u64> {
    #[memoize]
    fn plus(&self, x: u64) -> u64 {
        self.t + x + self.id
    }
}

impl Wrapper<String> {
    #[memoize]
    fn plus(&self, x: u64) -> u64 {
        self.t.len() as u64 + x + self.id
    }
}

#[derive(MemoIdentity)]
struct View<'a> {
    #[memo(id)]
    id: u64,
    s: &'a str,
}

impl View<'static> {
    #[memoize]
    fn len_plus(&self, x: u64) -> u64 {
        self.s.len() as u64 + x + self.id
    }
}

#[test]
fn concrete_impls_of_generic_types() {
    let a = Wrapper { id: 1, t: 10u64 };
    let b = Wrapper { id: 1, t: String::from("abc") };
    assert_eq!(a.plus(1), 12);
    assert_eq!(b.plus(1), 5);
    assert_eq!(a.plus(1), 12);
    assert_eq!(b.plus(1), 5);
    assert_ne!(Wrapper::<u64>::plus_memo().name(), Wrapper::<String>::plus_memo().name());
    memokit::delete_memoized!(a.plus, 1);
    memokit::delete_memoized!(Wrapper::<String>::plus);
    let v = View { id: 2, s: "xy" };
    assert_eq!(v.len_plus(1), 5);
    assert_eq!(v.len_plus(1), 5);
}

// --- builder extremes -------------------------------------------------------------------------

#[test]
fn builder_extremes_do_not_panic() {
    for t in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        let r = std::panic::catch_unwind(|| Memoizer::builder().tick(t).build().map(drop));
        assert!(r.is_ok(), "tick {t:?} panicked");
    }
    let m = Memoizer::builder().capacity(0).build().unwrap();
    m.flush();
    assert_eq!(m.stats().entries, 0);
}

// --- stats under single flight ------------------------------------------------------------------

static SF: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static SF_GATE: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(2));

#[memoize(memoizer = &SF)]
fn sf(x: u64) -> u64 {
    SF_GATE.wait();
    SF_GATE.wait();
    x
}

#[test]
fn single_flight_waits_are_counted_once_each() {
    let first = std::thread::spawn(|| sf(1));
    SF_GATE.wait();
    let waiters: Vec<_> = (0..3).map(|_| std::thread::spawn(|| sf(1))).collect();
    while SF.stats().single_flight_waits < 3 {
        std::thread::yield_now();
    }
    SF_GATE.wait();
    assert_eq!(first.join().unwrap(), 1);
    for w in waiters {
        assert_eq!(w.join().unwrap(), 1);
    }
    assert_eq!(sf(1), 1);
    let s = sf_memo().stats();
    assert_eq!((s.hits, s.misses, s.single_flight_waits), (1, 1, 3));
    let m = SF.stats();
    assert_eq!((m.hits, m.misses, m.single_flight_waits), (1, 1, 3));
}

// --- memoized calls from thread-local destructors -------------------------------------------

static TLS_RUNS: AtomicU64 = AtomicU64::new(0);
static OUT: AtomicU64 = AtomicU64::new(0);

#[memoize]
fn tls_f(x: u64) -> u64 {
    TLS_RUNS.fetch_add(1, SeqCst);
    x + 1
}

/// Calls a memoized function when its thread exits.
struct G(u64);
impl Drop for G {
    fn drop(&mut self) {
        let a = tls_f(self.0);
        let b = tls_f(self.0);
        OUT.store(a + b, SeqCst);
    }
}
thread_local! { static T: G = const { G(5) }; }

#[test]
fn memoized_call_in_a_tls_destructor() {
    let h = std::thread::spawn(|| {
        T.with(|_| ());
    });
    assert!(h.join().is_ok());
    assert_eq!(OUT.load(SeqCst), 12);
    // Threads that used the memoizer before its destructor was registered, and after (so
    // that it runs after memokit's own thread-locals are gone).
    let h = std::thread::spawn(|| {
        tls_f(7);
        tls_f(100);
        T.with(|_| ());
    });
    assert!(h.join().is_ok());
    let h = std::thread::spawn(|| {
        T.with(|_| ());
        tls_f(8);
        let _ = tls_f_memo().stats();
    });
    assert!(h.join().is_ok());
    let h = std::thread::spawn(|| {
        T.with(|_| ());
        tls_f(9);
        tls_f(9);
    });
    assert!(h.join().is_ok());
    assert_eq!(tls_f(5), 6);
    assert_eq!(TLS_RUNS.load(SeqCst), 5, "{:?}", tls_f_memo().stats());
}
