//! Proof suite, part 3: failure injection.
//!
//! - Computations that panic at random (seeded): callers see the panic, nothing is poisoned,
//!   later calls work and are cached, waiters of a panicking computation wake.
//! - Slow computations racing deletes, for every form of delete, forced with gates (never
//!   sleeps): a computation that began before a delete is neither served to a call that began
//!   after the delete returned (from the cache or by joining it) nor stored.
//! - Memoized functions calling memoized functions: fibonacci(90), mutual recursion across
//!   functions, recursion across receivers; a self-wait is a clear panic.
//! - Keys whose `Hash` panics, at each hashing point of a call or a delete in turn (also while
//!   other callers wait): the caller sees the panic, the memoizer stays usable, waiters wake.
//!
//! `MEMOKIT_STRESS_ITERS` multiplies the random-panic storm (2000 operations per thread) and
//! `MEMOKIT_STRESS_SEED` picks its seed.
mod common;

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;
use std::thread;

use common::{env_u64, expect_panic, no_hang, panic_message, wait_until, wait_until_or, Gate};
use memokit::{memoize, MemoIdentity, Memoizer, Timeout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A fresh number per real computation.
static SEQ: AtomicU64 = AtomicU64::new(1);

fn next() -> u64 {
    SEQ.fetch_add(1, SeqCst)
}

fn never() -> Memoizer {
    Memoizer::builder().default_timeout(Timeout::Never).build().expect("memoizer")
}

// ---------------------------------------------------------------------------------------------
// Random panics.

static STORM: LazyLock<Memoizer> = LazyLock::new(never);
static STORM_SEED: AtomicU64 = AtomicU64::new(0);
static STORM_ON: AtomicBool = AtomicBool::new(true);
const INJECTED: &str = "injected panic";

/// Panics for about a third of its computations (decided by the seed and the computation's
/// number), else returns `(k, fresh number)`.
#[memoize(memoizer = &STORM)]
fn flaky(k: u8) -> (u8, u64) {
    let n = next();
    let mut r = StdRng::seed_from_u64(STORM_SEED.load(SeqCst) ^ n);
    if STORM_ON.load(SeqCst) && r.gen_range(0..3) == 0 {
        panic!("{INJECTED} (computation {n})");
    }
    (k, n)
}

#[test]
fn random_panics_poison_nothing() {
    let iters = 2000 * env_u64("MEMOKIT_STRESS_ITERS", 1);
    let seed = env_u64("MEMOKIT_STRESS_SEED", 1);
    STORM_SEED.store(seed, SeqCst);
    no_hang("random panics", move || {
        let panics = AtomicU64::new(0);
        thread::scope(|s| {
            for t in 0..4 {
                let panics = &panics;
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed * 100 + t);
                    for _ in 0..iters {
                        let k = rng.gen_range(0..6u8);
                        match rng.gen_range(0..10) {
                            0 => memokit::delete_memoized!(flaky, k),
                            1 => memokit::delete_memoized!(flaky),
                            _ => match catch_unwind(|| flaky(k)) {
                                Ok((got, _)) => assert_eq!(got, k, "another key's result"),
                                Err(p) => {
                                    let msg = panic_message(&*p);
                                    assert!(msg.contains(INJECTED), "unexpected panic: {msg}");
                                    panics.fetch_add(1, SeqCst);
                                }
                            },
                        }
                    }
                });
            }
        });
        assert!(panics.load(SeqCst) > 0, "the storm injected no panic");
        // Nothing is poisoned: every key computes, is stored, and is then served.
        STORM_ON.store(false, SeqCst);
        for k in 0..6 {
            let v = flaky(k);
            assert_eq!(v.0, k);
            assert_eq!(flaky(k), v, "key {k} cached after the storm");
        }
        STORM_ON.store(true, SeqCst);
    });
}

static WAKE: LazyLock<Memoizer> = LazyLock::new(never);
static WAKE_GATE: LazyLock<Gate> = LazyLock::new(Gate::new);
static WAKE_ARMED: AtomicBool = AtomicBool::new(true);

/// The first computation waits at the gate, then panics; later ones return a fresh number.
#[memoize(memoizer = &WAKE)]
fn held_then_panics(k: u8) -> u64 {
    if WAKE_ARMED.swap(false, SeqCst) {
        WAKE_GATE.enter_and_wait();
        panic!("{INJECTED} while others wait");
    }
    u64::from(k) * 1_000_000 + next()
}

#[test]
fn waiters_wake_when_the_computation_panics() {
    const WAITERS: u64 = 4;
    no_hang("waiters of a panicking computation", || {
        let first = thread::spawn(|| catch_unwind(|| held_then_panics(7)));
        WAKE_GATE.wait_entered();
        let waiters: Vec<_> =
            (0..WAITERS).map(|_| thread::spawn(|| catch_unwind(|| held_then_panics(7)))).collect();
        // The waiters have joined the held computation (the engine counts a join when it
        // happens); the bound only keeps the test from hanging if they never do.
        wait_until("every waiter joined the computation", || {
            WAKE.stats().single_flight_waits >= WAITERS
        });
        WAKE_GATE.open();
        let msg = panic_message(&*first.join().unwrap().expect_err("the first caller panics"));
        assert!(msg.contains(INJECTED), "{msg}");
        let mut values = Vec::new();
        for w in waiters {
            // A woken waiter retries without waiting again (session 20): the first leads a
            // new computation and stores its value, the others compute values of their own
            // (not stored) or hit the stored one; or it sees the panic; it never hangs.
            match w.join().expect("waiter thread") {
                Ok(v) => values.push(v),
                Err(p) => assert!(panic_message(&*p).contains(INJECTED)),
            }
        }
        let after = held_then_panics(7);
        if !values.is_empty() {
            assert!(
                values.contains(&after),
                "the stored value, {after}, is a waiter's: {values:?}"
            );
        }
        assert_eq!(held_then_panics(7), after, "cached, nothing poisoned");
    });
}

// ---------------------------------------------------------------------------------------------
// Slow computations racing deletes.

static RACE: LazyLock<Memoizer> = LazyLock::new(never);

/// The gate the next computation of a racing function waits at, when armed.
static HOLD: parking_lot::Mutex<Option<Gate>> = parking_lot::Mutex::new(None);

/// Called by the racing functions: the first computation after [`arm`] waits at its gate.
fn hold_point() {
    let gate = HOLD.lock().take();
    if let Some(g) = gate {
        g.enter_and_wait();
    }
}

fn arm() -> Gate {
    let g = Gate::new();
    *HOLD.lock() = Some(g.clone());
    g
}

#[memoize(memoizer = &RACE)]
fn rf(k: u8) -> u64 {
    let started = next();
    hold_point();
    let _ = k;
    started
}

#[derive(MemoIdentity)]
struct Racer(#[memo(id)] u8);

impl Racer {
    #[memoize(memoizer = &RACE)]
    fn m(&self, a: u8) -> u64 {
        let started = next();
        hold_point();
        let _ = (self.0, a);
        started
    }
}

/// Runs `call` on another thread and waits for its value; the bound (a failure, not a timing
/// assertion) catches a call that wrongly joined a computation held at a gate.
fn call_elsewhere(what: &str, call: fn() -> u64) -> u64 {
    let h = thread::spawn(call);
    // Half the hang limit, so that this message, not `no_hang`'s, reports a wrong join.
    let done = wait_until_or(common::HANG_LIMIT / 2, || h.is_finished());
    assert!(done, "hang: never reached: {what} (it joined the held computation)");
    h.join().expect("call")
}

/// One delete form raced against a held computation, in two interleavings.
fn race(form: &str, call: fn() -> u64, reset: &dyn Fn(), delete: &dyn Fn()) {
    // 1. Delete while A computes, then B calls: B neither joins A nor gets A's value, and A's
    //    value is not stored over B's.
    reset();
    let gate = arm();
    let a = thread::spawn(call);
    gate.wait_entered();
    let before_delete = SEQ.load(SeqCst);
    delete();
    let b = call_elsewhere(
        &format!("{form}: a call after the delete returned without joining the held computation"),
        call,
    );
    assert!(b >= before_delete, "{form}: the call after the delete got an old value {b}");
    gate.open();
    let av = a.join().expect("the held computation returns to its caller");
    assert!(av < before_delete, "{form}: the held computation began before the delete");
    assert_eq!(call(), b, "{form}: the held computation's value was stored over the fresh one");

    // 2. Delete while A computes, nobody calls until A is done: A's value is not stored.
    reset();
    let gate = arm();
    let a = thread::spawn(call);
    gate.wait_entered();
    delete();
    gate.open();
    let av = a.join().expect("the held computation returns to its caller");
    let c = call();
    assert_ne!(c, av, "{form}: a computation that began before the delete was stored");
    assert_eq!(call(), c, "{form}: the fresh value is cached");
}

/// A named form of delete.
type Form<'a> = (&'static str, Box<dyn Fn() + 'a>);

#[test]
fn slow_computations_racing_every_delete_form() {
    no_hang("slow computations racing deletes", || {
        let m = &*RACE;
        let fname = rf_memo().name();
        let mname = Racer::m_memo().name();
        let f_call: fn() -> u64 = || rf(3);
        let f_reset = || memokit::delete_memoized!(rf);
        let f_forms: Vec<Form<'_>> = vec![
            ("delete_memoized!(rf)", Box::new(|| memokit::delete_memoized!(rf))),
            ("delete_memoized!(rf, 3)", Box::new(|| memokit::delete_memoized!(rf, 3))),
            ("delete_memoized_verhash!(rf)", Box::new(|| memokit::delete_memoized_verhash!(rf))),
            ("Memoizer::delete_memoized", Box::new(|| m.delete_memoized(fname).unwrap())),
            (
                "Memoizer::delete_memoized_args",
                Box::new(|| m.delete_memoized_args(fname, &(3u8,)).unwrap()),
            ),
            (
                "Memoizer::delete_memoized_verhash",
                Box::new(|| m.delete_memoized_verhash(fname).unwrap()),
            ),
            ("rf_memo().delete", Box::new(|| rf_memo().delete(&(3,)))),
            ("rf_memo().delete_all", Box::new(|| rf_memo().delete_all())),
            ("rf_memo().delete_verhash", Box::new(|| rf_memo().delete_verhash())),
            ("Memoizer::clear", Box::new(|| m.clear())),
        ];
        for (form, delete) in &f_forms {
            race(form, f_call, &f_reset, delete.as_ref());
        }

        let m_call: fn() -> u64 = || Racer(1).m(2);
        let m_reset = || memokit::delete_memoized!(Racer::m);
        let m_forms: Vec<Form<'_>> = vec![
            ("delete_memoized!(Racer::m)", Box::new(|| memokit::delete_memoized!(Racer::m))),
            ("delete_memoized!(obj.m)", Box::new(|| memokit::delete_memoized!(Racer(1).m))),
            ("delete_memoized!(obj.m, 2)", Box::new(|| memokit::delete_memoized!(Racer(1).m, 2))),
            (
                "delete_memoized!(Racer::m, &obj, 2)",
                Box::new(|| memokit::delete_memoized!(Racer::m, &Racer(1), 2)),
            ),
            (
                "delete_memoized_verhash!(Racer::m)",
                Box::new(|| memokit::delete_memoized_verhash!(Racer::m)),
            ),
            (
                "delete_memoized_verhash!(obj.m)",
                Box::new(|| memokit::delete_memoized_verhash!(Racer(1).m)),
            ),
            ("Memoizer::delete_memoized (method)", Box::new(|| m.delete_memoized(mname).unwrap())),
            (
                "Memoizer::delete_memoized_args (method)",
                Box::new(|| m.delete_memoized_args(mname, &(1u8, 2u8)).unwrap()),
            ),
            (
                "Memoizer::delete_memoized_verhash (method)",
                Box::new(|| m.delete_memoized_verhash(mname).unwrap()),
            ),
            ("Racer::m_memo().delete", Box::new(|| Racer::m_memo().delete(&(1, 2)))),
            ("Racer::m_memo().delete_all", Box::new(|| Racer::m_memo().delete_all())),
            ("Racer::m_memo().delete_verhash", Box::new(|| Racer::m_memo().delete_verhash())),
        ];
        for (form, delete) in &m_forms {
            race(form, m_call, &m_reset, delete.as_ref());
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Memoized functions calling memoized functions.

static REC: LazyLock<Memoizer> = LazyLock::new(never);
static FIB_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &REC)]
fn fib(n: u64) -> u64 {
    FIB_RUNS.fetch_add(1, SeqCst);
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[memoize(memoizer = &REC)]
fn is_even(n: u32) -> bool {
    n == 0 || is_odd(n - 1)
}

#[memoize(memoizer = &REC)]
fn is_odd(n: u32) -> bool {
    n != 0 && is_even(n - 1)
}

#[derive(MemoIdentity)]
struct Node(#[memo(id)] u32);

impl Node {
    /// Recursion across receivers of one method, and into a free function of another memoizer.
    #[memoize(memoizer = &REC)]
    fn depth(&self) -> u32 {
        if self.0 == 0 {
            u32::from(flaky_free_twin(0))
        } else {
            Node(self.0 - 1).depth() + 1
        }
    }
}

/// A memoized function on another memoizer, called from inside a computation of `REC`.
#[memoize(memoizer = &STORM)]
fn flaky_free_twin(k: u8) -> u8 {
    k
}

#[memoize(memoizer = &REC)]
fn waits_on_itself(n: u64) -> u64 {
    waits_on_itself(n) + 1
}

#[test]
fn memoized_functions_calling_memoized_functions() {
    no_hang("recursion", || {
        assert_eq!(fib(90), 2_880_067_194_370_816_120);
        assert_eq!(FIB_RUNS.load(SeqCst), 91, "each fib(n) computed once");
        assert_eq!(fib(90), 2_880_067_194_370_816_120);
        assert_eq!(FIB_RUNS.load(SeqCst), 91, "served from the cache");

        assert!(is_even(200));
        assert!(is_odd(151));
        assert!(!is_even(151));
        memokit::delete_memoized!(is_odd);
        assert!(is_even(200), "recomputed through a deleted function");

        assert_eq!(Node(150).depth(), 150);
        memokit::delete_memoized!(Node(75).depth);
        assert_eq!(Node(150).depth(), 150);

        // Concurrent recursions over shared sub-results never wait on each other forever.
        memokit::delete_memoized!(fib);
        thread::scope(|s| {
            for n in [60, 70, 80, 90] {
                s.spawn(move || assert_eq!(fib(n), fib_plain(n)));
            }
        });
    });
}

fn fib_plain(n: u64) -> u64 {
    (0..n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0
}

#[test]
fn waiting_on_its_own_key_is_a_clear_panic_and_poisons_nothing() {
    no_hang("self-wait", || {
        let msg = expect_panic("a self-waiting memoized function", || waits_on_itself(1));
        assert!(!msg.is_empty());
        let msg2 = expect_panic("again", || waits_on_itself(1));
        assert_eq!(msg, msg2, "the same clear panic, not a deadlock");
        assert!(is_even(10), "the memoizer stays usable");
    });
}

// ---------------------------------------------------------------------------------------------
// Keys whose Hash panics.

thread_local! {
    /// Hashes of `BadKey` left before one panics, on this thread; `u32::MAX`: never.
    static HASHES_LEFT: Cell<u32> = const { Cell::new(u32::MAX) };
}

const BAD_HASH: &str = "injected Hash panic";

/// An argument type whose `Hash` panics at the hash chosen by [`HASHES_LEFT`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct BadKey(u8);

impl Hash for BadKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let left = HASHES_LEFT.get();
        if left != u32::MAX {
            if left == 0 {
                HASHES_LEFT.set(u32::MAX);
                panic!("{BAD_HASH}");
            }
            HASHES_LEFT.set(left - 1);
        }
        self.0.hash(state);
    }
}

/// Arms a panic at the `n`th next hash of a `BadKey` on this thread (0 = the next one).
fn panic_at_hash(n: u32) {
    HASHES_LEFT.set(n);
}

fn disarm() -> u32 {
    HASHES_LEFT.replace(u32::MAX)
}

static BAD: LazyLock<Memoizer> = LazyLock::new(never);
/// The tests that use `by_bad` take this first: they run in parallel otherwise, and one of
/// them deletes every result of `by_bad` (`delete_memoized!(by_bad)`), which would retire the
/// version under which another test's gated computation runs.
static BAD_SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
/// A gate for the computation of one key: (gate, hash to panic at, key). Keyed, because the
/// tests of this file run in parallel and share `by_bad`: another test's computation must not
/// take this one's gate.
static BAD_GATE: parking_lot::Mutex<Option<(Gate, u32, u8)>> = parking_lot::Mutex::new(None);

#[memoize(memoizer = &BAD)]
fn by_bad(k: BadKey) -> u64 {
    // When set up by a test: wait at its gate, then arm a hash panic on this thread for the
    // hashes after the computation (the store).
    let setup = {
        let mut gate = BAD_GATE.lock();
        if gate.as_ref().is_some_and(|(_, _, key)| *key == k.0) {
            gate.take()
        } else {
            None
        }
    };
    if let Some((g, n, _)) = setup {
        g.enter_and_wait();
        panic_at_hash(n);
    }
    u64::from(k.0) * 1_000_000 + next()
}

/// Calls `by_bad(k)` with a hash panic armed at hash `n`; returns whether the call panicked
/// (with the injected message).
fn call_with_bad_hash(k: u8, n: u32) -> bool {
    panic_at_hash(n);
    let r = catch_unwind(|| by_bad(BadKey(k)));
    disarm();
    match r {
        Ok(v) => {
            assert_eq!(v / 1_000_000, u64::from(k));
            false
        }
        Err(p) => {
            let msg = panic_message(&*p);
            assert!(msg.contains(BAD_HASH), "unexpected panic: {msg}");
            true
        }
    }
}

/// The memoizer answers `k` correctly, caches it, and the cached value survives.
fn usable(k: u8) {
    let v = by_bad(BadKey(k));
    assert_eq!(v / 1_000_000, u64::from(k));
    assert_eq!(by_bad(BadKey(k)), v, "cached after the panic");
    let other = by_bad(BadKey(k.wrapping_add(100)));
    assert_eq!(by_bad(BadKey(k.wrapping_add(100))), other);
}

#[test]
fn keys_whose_hash_panics() {
    let _serial = BAD_SERIAL.lock();
    no_hang("panicking Hash", || {
        // A panic at each hashing point of a miss, then of a hit, in turn.
        let mut panicked_somewhere = false;
        for n in 0..8 {
            let k = n as u8;
            memokit::delete_memoized!(by_bad);
            panicked_somewhere |= call_with_bad_hash(k, n);
            usable(k);
            // On a hit.
            let cached = by_bad(BadKey(k));
            if !call_with_bad_hash(k, n) {
                assert_eq!(by_bad(BadKey(k)), cached);
            }
            usable(k);
        }
        assert!(panicked_somewhere, "no hash panic was ever reached");

        // Deletes with a panicking hash: the caller sees the panic, nothing else changes.
        for n in 0..4 {
            let k = 50 + n as u8;
            let v = by_bad(BadKey(k));
            panic_at_hash(n);
            let r = catch_unwind(|| memokit::delete_memoized!(by_bad, BadKey(k)));
            let left = disarm();
            match r {
                Err(p) => {
                    assert!(panic_message(&*p).contains(BAD_HASH));
                    if n == 0 {
                        assert_eq!(by_bad(BadKey(k)), v, "a delete that panicked at once kept it");
                    }
                }
                Ok(()) => {
                    assert_ne!(left, u32::MAX, "the delete hashed fewer than {n} times");
                    assert_ne!(by_bad(BadKey(k)), v, "the delete that returned applied");
                }
            }
            usable(k);
        }
    });
}

#[test]
fn a_hash_panic_in_the_store_wakes_the_waiters() {
    const WAITERS: u64 = 3;
    let _serial = BAD_SERIAL.lock();
    for n in 0..4 {
        no_hang("waiters of a computation whose store panics", move || {
            let k = 200 + n as u8;
            let gate = Gate::new();
            *BAD_GATE.lock() = Some((gate.clone(), n, k));
            let waits_before = BAD.stats().single_flight_waits;
            let first = thread::spawn(move || {
                let r = catch_unwind(|| by_bad(BadKey(k)));
                disarm();
                r.map_err(|p| panic_message(&*p))
            });
            gate.wait_entered();
            let waiters: Vec<_> = (0..WAITERS)
                .map(|_| thread::spawn(move || catch_unwind(|| by_bad(BadKey(k))).ok()))
                .collect();
            wait_until("every waiter joined", || {
                BAD.stats().single_flight_waits >= waits_before + WAITERS
            });
            gate.open();
            if let Err(msg) = first.join().expect("first caller") {
                assert!(msg.contains(BAD_HASH), "unexpected panic: {msg}");
            }
            for w in waiters {
                if let Some(v) = w.join().expect("waiter thread") {
                    assert_eq!(v / 1_000_000, u64::from(k));
                }
            }
            usable(k);
        });
    }
}
