//! Review s20u (a new user's trial): callers that joined a computation which returns `Err`.
//!
//! Fixed in session 20: a caller whose computation failed waits for no other (the first of
//! its waiters to retry leads a new computation, the others compute for themselves; see
//! `engine/src/shared/single_flight.rs`). This test failed before on every run (more than 3
//! joins).
//!
//! Four callers of `lookup(7)` arrive together: one computes, three join its flight. The
//! computation fails (`Err`, as when a database is down). Errors are not stored (api.md §3),
//! but the three callers that waited for it are then *serialized*: one of them becomes the
//! next leader and the other two join its flight again, and so on. The k-th waiter waits for k
//! failed computations one after another, so under an outage whose calls take the client's
//! timeout (say 5 s), 100 concurrent requests for one key make the last one wait 500 s:
//! latency grows with the load exactly when the backend is failing. Measured in the review
//! with a failing call of 200 ms and 6 callers: 201, 401, 601, 802, 1002, 1202 ms.
//!
//! What a user expects: a caller waits for at most one computation it did not start. Either
//! the callers already waiting get the error of the computation they joined (Go's
//! `singleflight` shares it, and it is what "concurrent callers with the same key wait for one
//! computation" reads as), or they retry at once without joining each other again. Both keep
//! the count of joins at 3 below; the engine re-joined (3 + 2 + 1 = 6 joins). The same
//! convoy follows a panic, where api.md §5 allows it ("waiters are woken and recompute or
//! re-panic"); for `Err` nothing in the docs or the spec says that waiters queue.
//!
//! No timing assertion: each computation waits at a gate the test opens, and the test watches
//! the memoizer's join counter (`Stats::single_flight_waits` counts each join, re-joins
//! included), so the outcome does not depend on the scheduler. Generous bounds only turn a
//! hang into a failure.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use memokit::{memoize, Memoizer};

static M: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

/// Computations started.
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// Gate tokens: each computation takes one before it returns.
static GATE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn release(n: usize) {
    *GATE.0.lock().unwrap() += n;
    GATE.1.notify_all();
}

#[memoize(memoizer = &M)]
fn lookup(id: u64) -> Result<u64, String> {
    STARTED.fetch_add(1, SeqCst);
    let mut tokens = GATE.0.lock().unwrap();
    while *tokens == 0 {
        tokens = GATE.1.wait(tokens).unwrap();
    }
    *tokens -= 1;
    Err(format!("backend down for {id}"))
}

/// Polls `cond` until it holds or 20 s pass (a hang becomes a failure, not a timing check).
fn until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn callers_that_joined_a_failed_computation_do_not_queue_behind_each_other() {
    const CALLERS: usize = 4;
    static DONE: AtomicUsize = AtomicUsize::new(0);
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            std::thread::spawn(|| {
                let r = lookup(7);
                DONE.fetch_add(1, SeqCst);
                r
            })
        })
        .collect();
    // One leader at the gate, three callers joined to its flight.
    until("one computation and three joins", || {
        STARTED.load(SeqCst) == 1 && M.stats().single_flight_waits == 3
    });
    // The leader fails.
    release(1);
    // Wait until the callers are answered, or a second computation has callers joined to it
    // (joins > 3), or the three waiters all compute at once (started == 4).
    until("the waiters to settle", || {
        DONE.load(SeqCst) == CALLERS
            || M.stats().single_flight_waits > 3
            || STARTED.load(SeqCst) == CALLERS
    });
    let joins = M.stats().single_flight_waits;
    // Let every computation still waiting finish, whatever happened.
    release(100);
    for t in threads {
        assert!(t.join().unwrap().is_err());
    }
    assert_eq!(
        joins, 3,
        "after the leader's Err, waiters joined a second computation: they queue, each waiting \
         for one more failed computation than the one before"
    );
}
