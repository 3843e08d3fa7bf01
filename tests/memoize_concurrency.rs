//! Calls under concurrency and failure: single flight, independent keys, recursion, panics,
//! self-waits.
//!
//! Waits are on conditions (channels, counters), never on sleeps; a generous receive timeout
//! only turns a deadlock into a failure.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Barrier, LazyLock};
use std::thread;
use std::time::Duration;

use memokit::{memoize, Memoizer};

/// Only turns a deadlock into a test failure.
const HANG: Duration = Duration::from_secs(60);

fn spin_until(cond: impl Fn() -> bool) {
    let mut spins = 0u64;
    while !cond() {
        spins += 1;
        assert!(spins < 2_000_000_000, "condition never became true");
        thread::yield_now();
    }
}

static FLIGHT: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static FLIGHT_RUNS: AtomicU64 = AtomicU64::new(0);
const CALLERS: u64 = 8;

#[memoize(memoizer = &FLIGHT)]
fn slow_square(x: u64) -> u64 {
    FLIGHT_RUNS.fetch_add(1, SeqCst);
    // Hold the flight open until every other caller has joined it.
    spin_until(|| FLIGHT.stats().single_flight_waits >= CALLERS - 1);
    x * x
}

#[test]
fn concurrent_callers_of_one_key_share_one_computation() {
    let barrier = Barrier::new(CALLERS as usize);
    let results: Vec<u64> = thread::scope(|s| {
        let hs: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    slow_square(12)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    assert!(results.iter().all(|&r| r == 144));
    assert_eq!(FLIGHT_RUNS.load(SeqCst), 1, "one computation for all callers");
    let s = slow_square_memo().stats();
    assert_eq!(s.misses, 1);
    assert_eq!(s.hits + s.single_flight_waits, CALLERS - 1);
}

static INDEP: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static KEY2_DONE: AtomicBool = AtomicBool::new(false);

#[memoize(memoizer = &INDEP)]
fn independent(k: u64) -> u64 {
    if k == 1 {
        // Key 1 finishes only after key 2 has been computed by another thread.
        spin_until(|| KEY2_DONE.load(SeqCst));
    }
    k
}

#[test]
fn different_keys_never_wait_for_each_other() {
    let (tx, rx) = std::sync::mpsc::channel();
    let t1 = thread::spawn(move || {
        let r = independent(1);
        tx.send(r).expect("send");
    });
    let t2 = thread::spawn(|| {
        let r = independent(2);
        KEY2_DONE.store(true, SeqCst);
        r
    });
    assert_eq!(t2.join().expect("key 2"), 2);
    assert_eq!(rx.recv_timeout(HANG).expect("key 1 finished"), 1);
    t1.join().expect("key 1");
}

static FIB_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(timeout = memokit::Timeout::Never)]
fn fib(n: u64) -> u64 {
    FIB_RUNS.fetch_add(1, SeqCst);
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn recursion_works_and_fibonacci_of_90_returns_at_once() {
    assert_eq!(fib(90), 2_880_067_194_370_816_120);
    assert_eq!(FIB_RUNS.load(SeqCst), 91, "each n computed once: linear, not exponential");
    assert_eq!(fib(90), 2_880_067_194_370_816_120);
    assert_eq!(FIB_RUNS.load(SeqCst), 91);
}

static PANIC_MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static PANIC_RUNS: AtomicU64 = AtomicU64::new(0);
const PANIC_WAITERS: u64 = 4;

#[memoize(memoizer = &PANIC_MEMO)]
fn fragile(x: u64) -> u64 {
    let run = PANIC_RUNS.fetch_add(1, SeqCst);
    if run == 0 {
        // The first computation panics once every waiter has joined it.
        spin_until(|| PANIC_MEMO.stats().single_flight_waits >= PANIC_WAITERS);
        panic!("fragile: first run fails");
    }
    x
}

#[test]
fn a_panic_propagates_wakes_waiters_and_poisons_nothing() {
    let (tx, rx) = std::sync::mpsc::channel();
    let leader = thread::spawn(|| catch_unwind(|| fragile(7)).is_err());
    // Waiters start once the leader is computing.
    spin_until(|| PANIC_RUNS.load(SeqCst) == 1);
    for _ in 0..PANIC_WAITERS {
        let tx = tx.clone();
        thread::spawn(move || {
            let r = catch_unwind(|| fragile(7));
            tx.send(r.ok()).expect("send");
        });
    }
    assert!(leader.join().expect("leader thread"), "the panic reached the leader's caller");
    for _ in 0..PANIC_WAITERS {
        let r = rx.recv_timeout(HANG).expect("a waiter woke up");
        assert_eq!(r, Some(7), "waiters recompute after the leader's panic");
    }
    // Each waiter retries without waiting again (session 20): the first to find no flight
    // leads one and stores its value, the others compute for themselves or, if they come after
    // that store, hit it. (Before, the others joined the retry, and under an outage the k-th
    // waiter waited for k failures: `tests/memoize_rev_s20u.rs`.)
    let runs = PANIC_RUNS.load(SeqCst);
    assert!((2..=1 + PANIC_WAITERS).contains(&runs), "{runs} runs");
    assert_eq!(PANIC_MEMO.stats().single_flight_waits, PANIC_WAITERS, "each waiter waited once");
    assert_eq!(fragile(7), 7, "nothing poisoned");
    assert_eq!(PANIC_RUNS.load(SeqCst), runs, "the retry's value was stored");
}

#[memoize]
fn waits_on_itself(n: u64) -> u64 {
    waits_on_itself(n) + 1
}

/// "returned {v}", or the panic message of `call`.
fn outcome(call: impl FnOnce() -> u64) -> String {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(v) => format!("returned {v}"),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

#[test]
fn waiting_on_its_own_key_is_a_clear_panic_not_a_deadlock() {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(outcome(|| waits_on_itself(1))).expect("send"));
    let msg = rx.recv_timeout(HANG).expect("no deadlock");
    assert!(msg.contains("its own key"), "clear message: {msg}");
}

static CYCLE_LEADS: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(2));
static CYCLE_CALLS: AtomicU64 = AtomicU64::new(0);

/// The first two computations (one of each function, on two threads) meet before going on.
fn both_computing() {
    if CYCLE_CALLS.fetch_add(1, SeqCst) < 2 {
        CYCLE_LEADS.wait();
    }
}

#[memoize]
fn ping(n: u64) -> u64 {
    both_computing();
    pong(n) + 1
}

#[memoize]
fn pong(n: u64) -> u64 {
    both_computing();
    ping(n) + 1
}

/// `ping(1)` computing on one thread needs `pong(1)`, whose computation on another thread
/// needs `ping(1)` (the barrier makes both computations run before either asks): on one thread
/// this is a function waiting on its own key. Each thread's wait is for the other's: one of
/// them panics with a clear message instead of both hanging, and the other thread's call
/// then panics on its own key (the same calls on one thread), so both calls panic and
/// nothing hangs.
#[test]
fn functions_waiting_for_each_other_on_two_threads_panic_not_deadlock() {
    let (tx, rx) = std::sync::mpsc::channel();
    for f in [ping as fn(u64) -> u64, pong] {
        let tx = tx.clone();
        thread::spawn(move || tx.send(outcome(|| f(1))).expect("send"));
    }
    let msgs: Vec<String> = (0..2).map(|_| rx.recv_timeout(HANG).expect("no deadlock")).collect();
    assert!(msgs.iter().any(|m| m.contains("wait for each other")), "clear message: {msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("its own key")), "clear message: {msgs:?}");
}
