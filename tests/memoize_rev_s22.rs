//! Review s22 of the memoizer (api/src/state.rs, memoizer.rs, handle.rs, dispatch.rs): deletes
//! racing in-flight computations (per-receiver, per-type, per-key, by name, verhash, `clear`),
//! receivers sharing an id, computations deleting their own results, timeouts (zero, `Never`,
//! huge, per function, memoizer default, `set_cache_timeout`) on a manual clock, `unless`, and
//! the stats' accounting of returned calls.
//!
//! Each test's doc comment says whether it is a guard (passes) or shows a bug (fails).
mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Gate, HANG_LIMIT};
use memokit::{memoize, ManualClock, MemoIdentity, Memoizer, Timeout};

// ---------------------------------------------------------------------------------------------
// A computation probe: counts runs (the value a computation returns is its run number), and
// holds the next run at a gate when armed.

#[derive(Default)]
struct Probe {
    runs: AtomicU64,
    armed: Mutex<Option<Gate>>,
}

impl Probe {
    fn run(&self) -> u64 {
        let n = self.runs.fetch_add(1, SeqCst) + 1;
        let g = self.armed.lock().unwrap().take();
        if let Some(g) = g {
            g.enter_and_wait();
        }
        n
    }
    fn arm(&self) -> Gate {
        let g = Gate::new();
        *self.armed.lock().unwrap() = Some(g.clone());
        g
    }
    fn runs(&self) -> u64 {
        self.runs.load(SeqCst)
    }
}

/// The in-flight scenario: `call` starts a computation (held at the gate); `delete` runs and
/// returns; a call begun after it must neither join the held computation nor later receive its
/// value from the cache, and must not wait for it ("a delete never waits", and a new call has
/// its own computation). Returns (value of the held call, value of the call after the delete).
fn inflight_then_delete(
    what: &str,
    p: &'static Probe,
    call: fn() -> u64,
    delete: impl Fn(),
) -> (u64, u64) {
    // Nothing cached for the call's key (every delete given covers it), so the call computes.
    delete();
    let base = p.runs();
    let g = p.arm();
    let held = thread::spawn(call);
    g.wait_entered();
    assert_eq!(p.runs(), base + 1, "{what}: the held call is computing");
    delete();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let after = thread::spawn(move || {
        let _ = tx.send(call());
    });
    let r2 = match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(v) => v,
        Err(_) => {
            g.open();
            let v = rx.recv_timeout(HANG_LIMIT).expect("the late call returned");
            panic!(
                "{what}: a call begun after the delete waited for the computation in flight \
                 before it (and got run {v}, held run {})",
                base + 1
            );
        }
    };
    assert_ne!(r2, base + 1, "{what}: the call after the delete got the held (stale) computation");
    g.open();
    let r1 = held.join().expect("held call");
    after.join().expect("after call");
    assert_eq!(r1, base + 1, "{what}: the held call returns its own computation");
    // The held computation's value must not have been stored over the fresh one.
    let r3 = call();
    assert_ne!(r3, r1, "{what}: the stale value of the held computation was stored");
    (r1, r2)
}

// ---------------------------------------------------------------------------------------------
// Deletes racing in-flight computations.

static M_FLIGHT: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(ManualClock::new()).build().expect("memoizer"));

#[derive(MemoIdentity, Clone)]
struct Rx {
    #[memo(id)]
    id: u64,
    #[allow(dead_code)]
    name: &'static str,
}

static P_RECV_SAME_ID: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_RECV_TYPE: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_RECV_ARGS: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_RECV_VERHASH: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_RECV_NAME: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_RECV_NAME_ARGS: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_RECV_HANDLE: LazyLock<Probe> = LazyLock::new(Probe::default);

impl Rx {
    #[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
    fn same_id(&self, k: u64) -> u64 {
        let _ = k;
        P_RECV_SAME_ID.run()
    }
    #[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
    fn by_type(&self, k: u64) -> u64 {
        let _ = k;
        P_RECV_TYPE.run()
    }
    #[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
    fn by_args(&self, k: u64) -> u64 {
        let _ = k;
        P_RECV_ARGS.run()
    }
    #[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
    fn by_verhash(&self, k: u64) -> u64 {
        let _ = k;
        P_RECV_VERHASH.run()
    }
    #[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
    fn by_name(&self, k: u64) -> u64 {
        let _ = k;
        P_RECV_NAME.run()
    }
    #[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
    fn by_name_args(&self, k: u64) -> u64 {
        let _ = k;
        P_RECV_NAME_ARGS.run()
    }
    #[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
    fn by_handle(&self, k: u64) -> u64 {
        let _ = k;
        P_RECV_HANDLE.run()
    }
}

/// Guard: a per-receiver delete through *another* receiver with the same id
/// (`delete_memoized!(b.m)` while `a.m(1)` computes, `a.id == b.id`) detaches the computation
/// in flight: a later `a.m(1)` computes afresh and the held value is never stored.
#[test]
fn per_receiver_delete_through_another_receiver_with_the_same_id() {
    let a = Rx { id: 5, name: "a" };
    a.same_id(1);
    let _ = inflight_then_delete(
        "delete_memoized!(b.m), same id",
        &P_RECV_SAME_ID,
        || Rx { id: 5, name: "a" }.same_id(1),
        || memokit::delete_memoized!(Rx { id: 5, name: "b" }.same_id),
    );
    // Another id keeps its results throughout.
    let c = Rx { id: 6, name: "c" };
    let v = c.same_id(1);
    memokit::delete_memoized!(Rx { id: 5, name: "b" }.same_id);
    assert_eq!(c.same_id(1), v, "another receiver id keeps its result");
}

/// Guard: `delete_memoized!(Type::m)` (every receiver) while a method call computes, and a
/// per-receiver delete right after it: the later call computes afresh.
#[test]
fn per_type_delete_then_per_receiver_delete_while_a_method_computes() {
    let _ = inflight_then_delete(
        "delete_memoized!(Type::m) + delete_memoized!(obj.m)",
        &P_RECV_TYPE,
        || Rx { id: 9, name: "x" }.by_type(2),
        || {
            memokit::delete_memoized!(Rx::by_type);
            memokit::delete_memoized!(Rx { id: 9, name: "y" }.by_type);
        },
    );
}

/// Guard: the per-argument delete of a method, every spelling (`obj.m, k`, `Type::m, &obj, k`,
/// the handle's `delete(&(id, k))`), detaches the computation in flight.
#[test]
fn per_argument_method_deletes_detach_the_computation_in_flight() {
    let _ = inflight_then_delete(
        "delete_memoized!(obj.m, k)",
        &P_RECV_ARGS,
        || Rx { id: 3, name: "x" }.by_args(4),
        || memokit::delete_memoized!(Rx { id: 3, name: "other" }.by_args, 4),
    );
    let _ = inflight_then_delete(
        "delete_memoized!(Type::m, &obj, k)",
        &P_RECV_ARGS,
        || Rx { id: 3, name: "x" }.by_args(4),
        || memokit::delete_memoized!(Rx::by_args, &Rx { id: 3, name: "z" }, 4),
    );
    let _ = inflight_then_delete(
        "handle.delete(&(id, k))",
        &P_RECV_HANDLE,
        || Rx { id: 3, name: "x" }.by_handle(4),
        || Rx::by_handle_memo().delete(&(3, 4)),
    );
}

/// Guard: `delete_memoized_verhash!` of a method (function and every receiver version) and
/// the by-name deletes of a method (`delete_memoized`, `delete_memoized_args` with the
/// receiver's id first) detach the computation in flight.
#[test]
fn verhash_and_by_name_method_deletes_detach_the_computation_in_flight() {
    let _ = inflight_then_delete(
        "delete_memoized_verhash!(Type::m)",
        &P_RECV_VERHASH,
        || Rx { id: 1, name: "x" }.by_verhash(0),
        || memokit::delete_memoized_verhash!(Rx::by_verhash),
    );
    let _ = inflight_then_delete(
        "delete_memoized_verhash!(obj.m)",
        &P_RECV_VERHASH,
        || Rx { id: 1, name: "x" }.by_verhash(0),
        || memokit::delete_memoized_verhash!(Rx { id: 1, name: "w" }.by_verhash),
    );
    let _ = inflight_then_delete(
        "Memoizer::delete_memoized(name) of a method",
        &P_RECV_NAME,
        || Rx { id: 1, name: "x" }.by_name(0),
        || M_FLIGHT.delete_memoized(Rx::by_name_memo().name()).expect("known"),
    );
    let _ = inflight_then_delete(
        "Memoizer::delete_memoized_verhash(name) of a method",
        &P_RECV_NAME,
        || Rx { id: 1, name: "x" }.by_name(0),
        || M_FLIGHT.delete_memoized_verhash(Rx::by_name_memo().name()).expect("known"),
    );
    let _ = inflight_then_delete(
        "Memoizer::delete_memoized_args(name, (id, k)) of a method",
        &P_RECV_NAME_ARGS,
        || Rx { id: 1, name: "x" }.by_name_args(0),
        || {
            M_FLIGHT
                .delete_memoized_args(Rx::by_name_args_memo().name(), &(1u64, 0u64))
                .expect("known")
        },
    );
}

static P_FREE_ALL: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_FREE_ARGS: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_FREE_NAME: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_FREE_CLEAR: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_FREE_STR: LazyLock<Probe> = LazyLock::new(Probe::default);

#[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
fn free_all(k: u64) -> u64 {
    let _ = k;
    P_FREE_ALL.run()
}
#[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
fn free_args(k: u64, s: &str) -> u64 {
    let _ = (k, s);
    P_FREE_ARGS.run()
}
#[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
fn free_name(k: u64) -> u64 {
    let _ = k;
    P_FREE_NAME.run()
}
#[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never)]
fn free_clear(k: u64) -> u64 {
    let _ = k;
    P_FREE_CLEAR.run()
}
#[memoize(memoizer = &M_FLIGHT, timeout = Timeout::Never, key = s)]
fn free_str(k: u64, s: &str) -> u64 {
    let _ = (k, s);
    P_FREE_STR.run()
}

/// Guard: every delete form of a free function while its computation is in flight (all,
/// verhash, per argument, by name, by name with arguments, `key =`'s handle delete), and
/// `Memoizer::clear`: the call after it computes afresh, the held value is not stored.
#[test]
fn free_function_deletes_and_clear_detach_the_computation_in_flight() {
    let _ = inflight_then_delete(
        "delete_memoized!(f)",
        &P_FREE_ALL,
        || free_all(1),
        || memokit::delete_memoized!(free_all),
    );
    let _ = inflight_then_delete(
        "delete_memoized_verhash!(f)",
        &P_FREE_ALL,
        || free_all(1),
        || memokit::delete_memoized_verhash!(free_all),
    );
    let _ = inflight_then_delete(
        "delete_memoized!(f, k, s)",
        &P_FREE_ARGS,
        || free_args(1, "a"),
        || memokit::delete_memoized!(free_args, 1, "a"),
    );
    let _ = inflight_then_delete(
        "delete_memoized_args(name, (k, String))",
        &P_FREE_ARGS,
        || free_args(1, "a"),
        || {
            M_FLIGHT
                .delete_memoized_args(free_args_memo().name(), &(1u64, "a".to_string()))
                .expect("known")
        },
    );
    let _ = inflight_then_delete(
        "delete_memoized(name)",
        &P_FREE_NAME,
        || free_name(1),
        || M_FLIGHT.delete_memoized(free_name_memo().name()).expect("known"),
    );
    let _ = inflight_then_delete(
        "Memoizer::clear",
        &P_FREE_CLEAR,
        || free_clear(1),
        || M_FLIGHT.clear(),
    );
    let _ = inflight_then_delete(
        "key = s, delete_memoized!(f, other k, s)",
        &P_FREE_STR,
        || free_str(1, "s"),
        || memokit::delete_memoized!(free_str, 99, "s"),
    );
    let _ = inflight_then_delete(
        "key = s, handle.delete(&(k, String))",
        &P_FREE_STR,
        || free_str(1, "s"),
        || free_str_memo().delete(&(7, "s".to_string())),
    );
}

// ---------------------------------------------------------------------------------------------
// Stats: every returned call counted once, on the handle and on the memoizer.

thread_local! {
    /// On a thread that sets it: the number of hashes of a [`Slow`] key so far (`u32::MAX`: off).
    static HASHES: std::cell::Cell<u32> = const { std::cell::Cell::new(u32::MAX) };
}
static SLOW_GATE: LazyLock<Mutex<Option<Gate>>> = LazyLock::new(|| Mutex::new(None));

/// A key whose second `Hash` on an armed thread (the engine's, after the call's own lookup
/// missed) blocks at [`SLOW_GATE`]. `Hash` is the user's code that runs outside every lock.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Slow(u64);

impl Hash for Slow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let n = HASHES.with(|c| {
            let n = c.get();
            if n != u32::MAX {
                c.set(n + 1);
            }
            n
        });
        if n == 1 {
            let g = SLOW_GATE.lock().unwrap().take();
            if let Some(g) = g {
                g.enter_and_wait();
            }
        }
        self.0.hash(state);
    }
}

static M_STATS: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(ManualClock::new()).build().expect("memoizer"));
static STATS_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &M_STATS, timeout = Timeout::Never)]
fn counted(k: &Slow) -> u64 {
    STATS_RUNS.fetch_add(1, SeqCst);
    k.0
}

/// Failed before the fix (session 22: the memoizer's waits are now the larger of the engine's
/// joins and the functions' waits). A call whose lookup missed just before another call stored the result, and
/// which then found that result in the engine's single-flight path (no computation, no join),
/// is counted on the function's handle (as a wait) but in *none* of the memoizer's counters:
/// `Memoizer::stats()` takes `single_flight_waits` from the engine (joins only) and drops the
/// functions' own wait counts. api.md §1: "Every call that returned before `stats()` is
/// counted." Two calls returned; the memoizer's hits + misses + waits is 1.
#[test]
fn memoizer_stats_count_a_call_that_found_the_result_on_its_second_look() {
    let g = Gate::new();
    *SLOW_GATE.lock().unwrap() = Some(g.clone());
    let late = thread::spawn(|| {
        HASHES.with(|c| c.set(0));
        let v = counted(&Slow(7));
        HASHES.with(|c| c.set(u32::MAX));
        v
    });
    // The late call's lookup has missed; it is about to enter the single-flight path.
    g.wait_entered();
    assert_eq!(counted(&Slow(7)), 7, "the other call computes and stores");
    g.open();
    assert_eq!(late.join().expect("late call"), 7);
    assert_eq!(STATS_RUNS.load(SeqCst), 1, "one computation");
    let f = counted_memo().stats();
    assert_eq!(f.hits + f.misses + f.single_flight_waits, 2, "handle: {f:?}");
    let m = M_STATS.stats();
    assert_eq!(
        m.hits + m.misses + m.single_flight_waits,
        2,
        "memoizer: two calls returned, but hits + misses + waits = {} ({m:?}; handle {f:?})",
        m.hits + m.misses + m.single_flight_waits
    );
}

static M_ZERO_CAP: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder().capacity(0).clock(ManualClock::new()).build().expect("memoizer")
});
static P_ZERO_CAP: LazyLock<Probe> = LazyLock::new(Probe::default);

#[memoize(memoizer = &M_ZERO_CAP)]
fn zero_cap(k: u64) -> u64 {
    let _ = k;
    P_ZERO_CAP.run()
}

/// Guard (the doc of `MemoizerBuilder::capacity` said "every call runs its function, and no
/// counter but `misses` moves", fixed in session 22): two concurrent calls of one key on a
/// zero-capacity memoizer share one computation (single flight still joins), counted as a miss
/// and a wait; nothing is stored, so a later call computes again.
#[test]
fn zero_capacity_stores_nothing_but_concurrent_calls_share_a_computation() {
    let g = P_ZERO_CAP.arm();
    let first = thread::spawn(|| zero_cap(1));
    g.wait_entered();
    let second = thread::spawn(|| zero_cap(1));
    common::wait_until("the second call joins", || M_ZERO_CAP.stats().single_flight_waits > 0);
    g.open();
    first.join().expect("first");
    second.join().expect("second");
    let f = zero_cap_memo().stats();
    assert_eq!((P_ZERO_CAP.runs(), f.misses, f.single_flight_waits), (1, 1, 1), "{f:?}");
    zero_cap(1);
    let f = zero_cap_memo().stats();
    assert_eq!((P_ZERO_CAP.runs(), f.hits, f.misses), (2, 0, 2), "not stored: {f:?}");
    assert_eq!(M_ZERO_CAP.stats().entries, 0);
}

static M_STATS2: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(ManualClock::new()).build().expect("memoizer"));

#[memoize(memoizer = &M_STATS2)]
fn st_a(k: u64) -> u64 {
    k
}
#[memoize(memoizer = &M_STATS2, unless = || true)]
fn st_unless(k: u64) -> u64 {
    k
}
#[memoize(memoizer = &M_STATS2)]
fn st_err(k: u64) -> Result<u64, String> {
    if k % 2 == 0 {
        Ok(k)
    } else {
        Err(format!("odd {k}"))
    }
}

/// Guard: the handle's and the memoizer's hits + misses + waits equal the cached calls that
/// returned (calls bypassed by `unless` are not counted), under concurrent callers of a few
/// keys with deletes and errors; after `flush`, `entries` counts the stored results.
#[test]
fn stats_count_every_returned_call_once() {
    let calls = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let calls = calls.clone();
            thread::spawn(move || {
                for i in 0..2000u64 {
                    let k = (i * 7 + t) % 5;
                    st_a(k);
                    let _ = st_err(k);
                    st_unless(k);
                    calls.fetch_add(2, SeqCst);
                    if i % 97 == 0 {
                        memokit::delete_memoized!(st_a, k);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("caller");
    }
    let a = st_a_memo().stats();
    let e = st_err_memo().stats();
    let u = st_unless_memo().stats();
    let total = |s: memokit::Stats| s.hits + s.misses + s.single_flight_waits;
    assert_eq!(total(u), 0, "unless-bypassed calls are not counted");
    assert_eq!(total(a) + total(e), calls.load(SeqCst), "handles: {a:?} {e:?}");
    let m = M_STATS2.stats();
    // Waits on the memoizer are joins; they match here only if no call found a result on its
    // second look (see the bug test above), so only hits + misses are bounded.
    assert!(m.hits + m.misses <= calls.load(SeqCst), "memoizer {m:?}");
    M_STATS2.flush();
    let stored = M_STATS2.stats().entries;
    assert!(stored <= 5 + 3, "at most the even/odd keys of two functions: {stored}");
}

// ---------------------------------------------------------------------------------------------
// Timeouts on a manual clock.

static CLOCK_T: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static M_T: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder().default_timeout(20).clock(CLOCK_T.clone()).build().expect("memoizer")
});
static T_LOCK: Mutex<()> = Mutex::new(());
static P_T10: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_TDEF: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_TSET: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_TZERO: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_TNEVER: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_THUGE: LazyLock<Probe> = LazyLock::new(Probe::default);

#[memoize(memoizer = &M_T, timeout = 10)]
fn t10(k: u64) -> u64 {
    let _ = k;
    P_T10.run()
}
#[memoize(memoizer = &M_T)]
fn tdef(k: u64) -> u64 {
    let _ = k;
    P_TDEF.run()
}
#[memoize(memoizer = &M_T, timeout = 10)]
fn tset(k: u64) -> u64 {
    let _ = k;
    P_TSET.run()
}
#[memoize(memoizer = &M_T, timeout = Duration::ZERO)]
fn tzero(k: u64) -> u64 {
    let _ = k;
    P_TZERO.run()
}
#[memoize(memoizer = &M_T, timeout = Timeout::Never)]
fn tnever(k: u64) -> u64 {
    let _ = k;
    P_TNEVER.run()
}

#[derive(MemoIdentity)]
struct Huge(#[memo(id)] u64);
impl Huge {
    #[memoize(memoizer = &M_T, timeout = Duration::MAX)]
    fn get(&self, k: u64) -> u64 {
        let _ = (k, self.0);
        P_THUGE.run()
    }
}

fn advance(d: Duration) {
    CLOCK_T.advance(d);
}

/// Guard: a per-function timeout (10 s), the memoizer's default (20 s) for `Timeout::Default`,
/// exact to the nanosecond on the manual clock, served until the deadline and never at it,
/// reclaimed or not.
#[test]
fn per_function_and_default_timeouts_are_exact() {
    let _l = T_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let a = t10(1);
    let b = tdef(1);
    advance(Duration::from_secs(10) - Duration::from_nanos(1));
    assert_eq!(t10(1), a, "t10: hit just before its deadline");
    advance(Duration::from_nanos(1));
    assert_ne!(t10(1), a, "t10: expired at its deadline (not reclaimed yet)");
    assert_eq!(tdef(1), b, "default 20 s: still live at 10 s");
    advance(Duration::from_secs(10) - Duration::from_nanos(1));
    M_T.run_maintenance();
    assert_eq!(tdef(1), b, "default: hit just before 20 s");
    advance(Duration::from_nanos(1));
    assert_ne!(tdef(1), b, "default: expired at 20 s");
}

/// Guard: `set_cache_timeout` applies to the next call that stores; a result stored before
/// keeps its own deadline; `Timeout::Default` set later resolves to the memoizer's default.
#[test]
fn set_cache_timeout_applies_to_the_next_store() {
    let _l = T_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let h = tset_memo();
    let old = tset(1);
    h.set_cache_timeout(100);
    let new = tset(2);
    advance(Duration::from_secs(10));
    assert_ne!(tset(1), old, "the result stored under 10 s expired at 10 s");
    assert_eq!(tset(2), new, "the result stored under 100 s lives on");
    h.set_cache_timeout(Timeout::Default);
    memokit::delete_memoized!(tset, 3);
    let d = tset(3);
    advance(Duration::from_secs(19));
    assert_eq!(tset(3), d, "Default = the memoizer's 20 s");
    advance(Duration::from_secs(1));
    assert_ne!(tset(3), d, "expired at 20 s");
    h.set_cache_timeout(10);
}

/// Guard: timeout zero reads the cache but stores nothing: every call computes, nothing is
/// held after `flush`; a result stored under another timeout is still read while the timeout
/// is zero; a per-key delete then makes calls compute again, storing nothing.
#[test]
fn timeout_zero_reads_but_never_stores() {
    let _l = T_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let a = tzero(1);
    let b = tzero(1);
    assert_eq!(b, a + 1, "zero: computed again");
    let h = tzero_memo();
    h.set_cache_timeout(Timeout::Never);
    let c = tzero(2);
    h.set_cache_timeout(0);
    assert_eq!(tzero(2), c, "zero still reads what is stored");
    memokit::delete_memoized!(tzero, 2);
    let d = tzero(2);
    assert_ne!(d, c);
    assert_ne!(tzero(2), d, "zero stores nothing");
    h.set_cache_timeout(Duration::ZERO);
}

/// Guard: `Timeout::Never` and a timeout too large to represent (`Duration::MAX`, on a method,
/// whose receiver record's deadline saturates) keep results through any advance of the clock,
/// maintenance and prunings of receiver records.
#[test]
fn never_and_huge_timeouts_keep_results() {
    let _l = T_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let a = tnever(1);
    let h = Huge(1).get(1);
    advance(Duration::from_secs(10 * 365 * 24 * 3600));
    M_T.run_maintenance();
    // Many receivers: the records' table is pruned several times.
    for id in 2..300 {
        Huge(id).get(0);
    }
    advance(Duration::from_secs(10 * 365 * 24 * 3600));
    M_T.run_maintenance();
    for id in 300..600 {
        Huge(id).get(0);
    }
    assert_eq!(tnever(1), a, "Never: still cached");
    assert_eq!(Huge(1).get(1), h, "Duration::MAX: still cached");
}

// ---------------------------------------------------------------------------------------------
// Computations that delete their own results.

static M_SELF: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(ManualClock::new()).build().expect("memoizer"));
static SELF_MODE: AtomicU64 = AtomicU64::new(0);
static P_SELF: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_SELF_M: LazyLock<Probe> = LazyLock::new(Probe::default);
static P_SELF_REC: LazyLock<Probe> = LazyLock::new(Probe::default);

#[memoize(memoizer = &M_SELF, timeout = Timeout::Never)]
fn self_del(k: u64) -> u64 {
    let n = P_SELF.run();
    match SELF_MODE.load(SeqCst) {
        1 => memokit::delete_memoized!(self_del),
        2 => memokit::delete_memoized!(self_del, k),
        3 => memokit::delete_memoized_verhash!(self_del),
        4 => M_SELF.delete_memoized(self_del_memo().name()).expect("known"),
        5 => M_SELF.delete_memoized_args(self_del_memo().name(), &(k,)).expect("known"),
        6 => M_SELF.clear(),
        _ => {}
    }
    n
}

#[derive(MemoIdentity)]
struct SelfDel(#[memo(id)] u64);

impl SelfDel {
    #[memoize(memoizer = &M_SELF, timeout = Timeout::Never)]
    fn get(&self, k: u64) -> u64 {
        let n = P_SELF_M.run();
        match SELF_MODE.load(SeqCst) {
            1 => memokit::delete_memoized!(self.get),
            2 => memokit::delete_memoized!(self.get, k),
            3 => memokit::delete_memoized!(SelfDel::get),
            4 => memokit::delete_memoized_verhash!(SelfDel::get),
            5 => memokit::delete_memoized!(SelfDel(self.0).get),
            _ => {}
        }
        n
    }
}

/// Guard: a computation that deletes its own result (every delete form, and `clear`) returns
/// its value to its caller, but the value is not stored: the next call computes, and the one
/// after that hits. Other receivers/keys are unaffected by per-key and per-receiver forms.
#[test]
fn a_computation_that_deletes_its_own_results_is_not_stored() {
    for mode in 1..=6 {
        memokit::delete_memoized!(self_del);
        SELF_MODE.store(mode, SeqCst);
        let a = self_del(1);
        SELF_MODE.store(0, SeqCst);
        let b = self_del(1);
        assert_eq!(b, a + 1, "free fn, mode {mode}: the self-deleting computation was stored");
        assert_eq!(self_del(1), b, "free fn, mode {mode}: the next result is stored");
    }
    for mode in 1..=5 {
        memokit::delete_memoized!(SelfDel::get);
        let other = SelfDel(2).get(1);
        SELF_MODE.store(mode, SeqCst);
        let a = SelfDel(1).get(1);
        SELF_MODE.store(0, SeqCst);
        let b = SelfDel(1).get(1);
        assert_eq!(b, a + 1, "method, mode {mode}: the self-deleting computation was stored");
        assert_eq!(SelfDel(1).get(1), b, "method, mode {mode}: the next result is stored");
        if mode == 1 || mode == 2 || mode == 5 {
            assert_eq!(SelfDel(2).get(1), other, "method, mode {mode}: other receiver kept");
        }
    }
}

thread_local! {
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// `Rec`'s own memoizer: the tests above clear `M_SELF` while this one runs beside them.
static M_REC: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(ManualClock::new()).build().expect("memoizer"));

#[derive(MemoIdentity)]
struct Rec(#[memo(id)] u64);

impl Rec {
    /// Deletes its own results (per receiver), then calls itself with the same arguments.
    #[memoize(memoizer = &M_REC, timeout = Timeout::Never)]
    fn get(&self, k: u64) -> u64 {
        let n = P_SELF_REC.run();
        let d = DEPTH.with(|c| c.get());
        if d == 0 {
            DEPTH.with(|c| c.set(1));
            match k {
                0 => memokit::delete_memoized!(self.get),
                1 => memokit::delete_memoized!(self.get, k),
                _ => memokit::delete_memoized!(Rec::get),
            }
            let inner = self.get(k);
            DEPTH.with(|c| c.set(0));
            return inner * 1000 + n;
        }
        n
    }
}

/// Guard: a computation that deletes its own key (per receiver, per key, per type) and then
/// calls itself with the same arguments does not panic as a self-wait (the key it computes is
/// detached or under a retired version): the inner call computes and its result is the one
/// stored; the outer value is returned to the outer caller only.
#[test]
fn delete_then_same_arguments_inside_the_computation() {
    for k in 0..3 {
        let outer = Rec(1).get(k);
        let inner = outer / 1000;
        assert_eq!(Rec(1).get(k), inner, "k {k}: the inner computation's result is stored");
    }
}

// ---------------------------------------------------------------------------------------------
// `unless`.

static M_UNLESS: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(ManualClock::new()).build().expect("memoizer"));
static BYPASS: AtomicBool = AtomicBool::new(false);
static P_UNLESS: LazyLock<Probe> = LazyLock::new(Probe::default);

fn bypass() -> bool {
    BYPASS.load(SeqCst)
}

#[memoize(memoizer = &M_UNLESS, unless = bypass, timeout = Timeout::Never)]
fn un(k: u64) -> u64 {
    let _ = k;
    P_UNLESS.run()
}

/// Guard: a bypassed call neither reads (it computes while a result is stored), writes (the
/// stored result stays), waits for a computation in flight, nor is counted; a delete made
/// while bypassing still deletes.
#[test]
fn unless_bypasses_reads_writes_and_single_flight() {
    let a = un(1);
    BYPASS.store(true, SeqCst);
    let b = un(1);
    assert_ne!(b, a, "bypassed: computed, not read");
    BYPASS.store(false, SeqCst);
    assert_eq!(un(1), a, "bypassed: not written");
    // A computation in flight: a bypassed call does not wait for it.
    memokit::delete_memoized!(un, 1);
    let g = P_UNLESS.arm();
    let held = thread::spawn(|| un(1));
    g.wait_entered();
    BYPASS.store(true, SeqCst);
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(un(1));
    });
    let r = rx.recv_timeout(Duration::from_secs(5));
    g.open();
    let h = held.join().expect("held");
    assert!(r.is_ok(), "a bypassed call waited for the computation in flight");
    memokit::delete_memoized!(un, 1);
    BYPASS.store(false, SeqCst);
    let c = un(1);
    assert!(c > h && c > r.unwrap(), "deleted while bypassing: computed afresh");
    let s = un_memo().stats();
    assert_eq!(s.hits + s.misses + s.single_flight_waits, 4, "bypassed calls not counted: {s:?}");
}

// ---------------------------------------------------------------------------------------------
// Stress: per-receiver deletes (through fresh receivers of the same id) racing per-type
// deletes, by-name verhash, expiry on a manual clock and the pruning of receiver records.

static CLOCK_S: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static M_S: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder().capacity(64).clock(CLOCK_S.clone()).build().expect("memoizer")
});
const IDS: usize = 160;
/// Data version of every receiver (bumped before a per-receiver delete), and of the type
/// (bumped before a per-type delete), and the versions whose delete has returned.
static RECV_DATA: [AtomicU64; IDS] = [const { AtomicU64::new(0) }; IDS];
static RECV_DONE: [AtomicU64; IDS] = [const { AtomicU64::new(0) }; IDS];
static TYPE_DATA: AtomicU64 = AtomicU64::new(0);
static TYPE_DONE: AtomicU64 = AtomicU64::new(0);

#[derive(MemoIdentity)]
struct St {
    #[memo(id)]
    id: u64,
}

impl St {
    #[memoize(memoizer = &M_S, timeout = 3)]
    fn get(&self, k: u64) -> u64 {
        let _ = k;
        let t = TYPE_DATA.load(SeqCst);
        let r = RECV_DATA[self.id as usize].load(SeqCst);
        if (t + r) % 5 == 0 {
            thread::yield_now();
        }
        t << 32 | r
    }
}

fn check_st(id: usize, k: u64) {
    let (t, r) = (TYPE_DONE.load(SeqCst), RECV_DONE[id].load(SeqCst));
    let got = St { id: id as u64 }.get(k);
    assert!(
        got >> 32 >= t && got & 0xffff_ffff >= r,
        "receiver {id} key {k}: got (type {}, receiver {}) after the deletes of (type {t}, \
         receiver {r})",
        got >> 32,
        got & 0xffff_ffff
    );
}

/// Guard (stress, ~2 s): no call begun after a delete returned gets a result computed from
/// older data, while per-receiver deletes, per-type deletes and by-name verhash race calls of
/// 160 receivers (more than the capacity: records are pruned) and the clock moves (results
/// expire, records' deadlines pass).
#[test]
fn receiver_deletes_racing_type_deletes_expiry_and_pruning() {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            while !stop.load(SeqCst) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                check_st((x % IDS as u64) as usize, (x >> 20) % 3);
            }
        }));
    }
    {
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            while !stop.load(SeqCst) {
                CLOCK_S.advance(Duration::from_millis(700));
                M_S.run_maintenance();
                thread::yield_now();
            }
        }));
    }
    let end = Instant::now() + Duration::from_secs(2);
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        if n % 10 == 0 {
            let v = TYPE_DATA.fetch_add(1, SeqCst) + 1;
            if n % 20 == 0 {
                memokit::delete_memoized!(St::get);
            } else {
                M_S.delete_memoized_verhash(St::get_memo().name()).expect("known");
            }
            TYPE_DONE.store(v, SeqCst);
            check_st((n % IDS as u64) as usize, n % 3);
        } else {
            let id = (n * 7 % IDS as u64) as usize;
            let v = RECV_DATA[id].fetch_add(1, SeqCst) + 1;
            if n % 3 == 0 {
                memokit::delete_memoized!(St::get, &St { id: id as u64 }, n % 3);
                // Only key n % 3 is deleted: data of the others may stay older.
                memokit::delete_memoized!(St { id: id as u64 }.get);
            } else {
                memokit::delete_memoized!(St { id: id as u64 }.get);
            }
            RECV_DONE[id].store(v, SeqCst);
            check_st(id, n % 3);
        }
    }
    stop.store(true, SeqCst);
    for t in threads {
        t.join().expect("thread");
    }
}

static CLOCK_TO: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static M_TO: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(CLOCK_TO.clone()).build().expect("memoizer"));
static TO_DATA: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &M_TO, timeout = 5)]
fn racing_timeout(k: u64) -> (u64, u64) {
    // The clock when the computation began, and the data.
    let _ = k;
    (CLOCK_TO.now().as_secs(), TO_DATA.load(SeqCst))
}

/// Guard (stress, ~1 s): `set_cache_timeout` racing calls (between zero, 1 s, 5 s, `Never`
/// and `Default`) while the clock moves: a result is never served at or after the longest
/// deadline it could have been stored with (`Never` excepted: then only data matters), and
/// the data deletes are never lost.
#[test]
fn set_cache_timeout_racing_calls_and_the_clock() {
    let stop = Arc::new(AtomicBool::new(false));
    let never_used = Arc::new(AtomicBool::new(false));
    let setter = {
        let (stop, never_used) = (stop.clone(), never_used.clone());
        thread::spawn(move || {
            let h = racing_timeout_memo();
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                i += 1;
                match i % 5 {
                    0 => h.set_cache_timeout(0),
                    1 => h.set_cache_timeout(1),
                    2 => h.set_cache_timeout(5),
                    3 if i % 50 == 3 => {
                        never_used.store(true, SeqCst);
                        h.set_cache_timeout(Timeout::Never)
                    }
                    _ => h.set_cache_timeout(Timeout::Default),
                }
                CLOCK_TO.advance(Duration::from_millis(250));
            }
        })
    };
    let end = Instant::now() + Duration::from_secs(1);
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        if n % 50 == 0 {
            let v = TO_DATA.fetch_add(1, SeqCst) + 1;
            memokit::delete_memoized!(racing_timeout);
            let (_, d) = racing_timeout(n % 4);
            assert!(d >= v, "after the delete of data {v}, got {d}");
        }
        let now = CLOCK_TO.now().as_secs();
        let (began, _) = racing_timeout(n % 4);
        // 300 s (Default) is the longest finite timeout; Never may keep anything.
        if !never_used.load(SeqCst) {
            assert!(now < began + 300 + 1, "served a result computed at {began} s at {now} s");
        }
    }
    stop.store(true, SeqCst);
    setter.join().expect("setter");
}
