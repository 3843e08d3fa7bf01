//! Invalidation: every form of `delete_memoized!`, `delete_memoized_verhash!`, the handle's
//! and the memoizer's deletes; O(1) whole-function deletes reclaimed in the background; and no
//! stale resurrection for every form (a computation that began before a delete is neither
//! served to a call that starts after the delete returned nor stored).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use memokit::{memoize, MemoIdentity, Memoizer, Timeout};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

/// Only turns a deadlock into a test failure.
const HANG: Duration = Duration::from_secs(60);

/// Holds the first computation of a function open until released.
struct Gate {
    runs: AtomicU64,
    started: (Sender<()>, Receiver<()>),
    release: (Sender<()>, Receiver<()>),
}

impl Gate {
    fn new() -> Self {
        Gate { runs: AtomicU64::new(0), started: bounded(1), release: bounded(1) }
    }

    /// The body of a gated function: returns the run number (1, 2, ...).
    fn enter(&self) -> u64 {
        let run = self.runs.fetch_add(1, SeqCst) + 1;
        if run == 1 {
            self.started.0.send(()).expect("started");
            self.release.1.recv().expect("released");
        }
        run
    }
}

/// Starts the first computation, deletes while it runs, and checks that a call starting after
/// the delete computes afresh (does not join), that the old value reaches only its own caller,
/// and that it was not stored.
fn assert_no_stale_resurrection(gate: &'static Gate, call: fn() -> u64, delete: impl FnOnce()) {
    let first = thread::spawn(call);
    gate.started.1.recv_timeout(HANG).expect("first computation started");
    delete();
    let (tx, rx) = bounded(1);
    thread::spawn(move || tx.send(call()).expect("send"));
    let after =
        rx.recv_timeout(HANG).expect("a call after the delete does not join the old computation");
    assert_eq!(after, 2, "computed afresh after the delete");
    gate.release.0.send(()).expect("release");
    assert_eq!(first.join().expect("first caller"), 1, "the old value goes to its own caller");
    assert_eq!(call(), 2, "the old value was not stored over the fresh one");
    assert_eq!(gate.runs.load(SeqCst), 2);
}

macro_rules! gated_fn {
    ($f:ident, $gate:ident) => {
        static $gate: LazyLock<Gate> = LazyLock::new(Gate::new);
        #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
        fn $f(k: u64) -> u64 {
            let _ = k;
            $gate.enter()
        }
    };
}

gated_fn!(g_all, GATE_ALL);
gated_fn!(g_args, GATE_ARGS);
gated_fn!(g_verhash, GATE_VERHASH);
gated_fn!(g_handle, GATE_HANDLE);
gated_fn!(g_name, GATE_NAME);
gated_fn!(g_name_args, GATE_NAME_ARGS);
gated_fn!(g_name_verhash, GATE_NAME_VERHASH);

#[test]
fn no_stale_resurrection_after_delete_memoized_function() {
    assert_no_stale_resurrection(&GATE_ALL, || g_all(1), || memokit::delete_memoized!(g_all));
}

#[test]
fn no_stale_resurrection_after_delete_memoized_arguments() {
    assert_no_stale_resurrection(&GATE_ARGS, || g_args(1), || memokit::delete_memoized!(g_args, 1));
}

#[test]
fn no_stale_resurrection_after_delete_memoized_verhash() {
    assert_no_stale_resurrection(
        &GATE_VERHASH,
        || g_verhash(1),
        || memokit::delete_memoized_verhash!(g_verhash),
    );
}

#[test]
fn no_stale_resurrection_after_handle_delete() {
    assert_no_stale_resurrection(&GATE_HANDLE, || g_handle(1), || g_handle_memo().delete(&(1,)));
}

#[test]
fn no_stale_resurrection_after_by_name_deletes() {
    assert_no_stale_resurrection(
        &GATE_NAME,
        || g_name(1),
        || {
            MEMO.delete_memoized(g_name_memo().name()).expect("known");
        },
    );
    assert_no_stale_resurrection(
        &GATE_NAME_ARGS,
        || g_name_args(1),
        || {
            MEMO.delete_memoized_args(g_name_args_memo().name(), &(1u64,)).expect("known");
        },
    );
    assert_no_stale_resurrection(
        &GATE_NAME_VERHASH,
        || g_name_verhash(1),
        || {
            MEMO.delete_memoized_verhash(g_name_verhash_memo().name()).expect("known");
        },
    );
}

#[derive(MemoIdentity)]
struct Doc(#[memo(id)] u32);

macro_rules! gated_method {
    ($m:ident, $gate:ident) => {
        static $gate: LazyLock<Gate> = LazyLock::new(Gate::new);
        impl Doc {
            #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
            fn $m(&self, k: u64) -> u64 {
                let _ = (k, self.0);
                $gate.enter()
            }
        }
    };
}

gated_method!(m_instance, GATE_M_INSTANCE);
gated_method!(m_instance_args, GATE_M_INSTANCE_ARGS);
gated_method!(m_type, GATE_M_TYPE);
gated_method!(m_type_args, GATE_M_TYPE_ARGS);
gated_method!(m_verhash, GATE_M_VERHASH);

#[test]
fn no_stale_resurrection_after_method_deletes() {
    let d = Doc(1);
    assert_no_stale_resurrection(
        &GATE_M_INSTANCE,
        || Doc(1).m_instance(1),
        || memokit::delete_memoized!(d.m_instance),
    );
    assert_no_stale_resurrection(
        &GATE_M_INSTANCE_ARGS,
        || Doc(1).m_instance_args(1),
        || memokit::delete_memoized!(d.m_instance_args, 1),
    );
    assert_no_stale_resurrection(
        &GATE_M_TYPE,
        || Doc(1).m_type(1),
        || memokit::delete_memoized!(Doc::m_type),
    );
    assert_no_stale_resurrection(
        &GATE_M_TYPE_ARGS,
        || Doc(1).m_type_args(1),
        || memokit::delete_memoized!(Doc::m_type_args, &d, 1),
    );
    assert_no_stale_resurrection(
        &GATE_M_VERHASH,
        || Doc(1).m_verhash(1),
        || memokit::delete_memoized_verhash!(d.m_verhash),
    );
}

static PLAIN_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO)]
fn plain(a: u64, b: &str) -> String {
    PLAIN_RUNS.fetch_add(1, SeqCst);
    format!("{a}{b}")
}

#[test]
fn argument_deletes_are_exact_and_never_cached_ones_are_no_ops() {
    let runs = || PLAIN_RUNS.load(SeqCst);
    plain(1, "x");
    plain(2, "x");
    plain(1, "y");
    assert_eq!(runs(), 3);
    memokit::delete_memoized!(plain, 1, "x");
    memokit::delete_memoized!(plain, 9, "never cached");
    plain_memo().delete(&(8, "never".to_string()));
    plain(2, "x");
    plain(1, "y");
    assert_eq!(runs(), 3, "other arguments keep their results");
    plain(1, "x");
    assert_eq!(runs(), 4);
    let owned = String::from("y");
    memokit::delete_memoized!(plain, 1, &owned);
    plain(1, "y");
    assert_eq!(runs(), 5, "arguments are type-checked like a call: &String coerces to &str");
}

static BULK: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(100_000).build().expect("memoizer"));

#[memoize(memoizer = &BULK, timeout = Timeout::Never)]
fn bulk(x: u64) -> u64 {
    x + 1
}

/// Stores `n` results of `call` (of memoizer `memo`), deletes them all with `delete`, and
/// checks that a sample of
/// the arguments misses at once: the engine's workers reclaim the old results over many
/// slices, so a delete that left them where calls look would serve them meanwhile. Returns
/// the size of the sample (the results stored anew).
fn no_old_result_after(
    memo: &Memoizer,
    n: u64,
    call: fn(u64) -> u64,
    misses: fn() -> u64,
    delete: fn(),
) -> u64 {
    for x in 0..n {
        call(x);
    }
    memo.flush();
    delete();
    let before = misses();
    let again = (0..n).step_by(997).count() as u64;
    for x in (0..n).step_by(997) {
        call(x);
    }
    assert_eq!(misses(), before + again, "no old result is served");
    again
}

#[test]
fn whole_function_delete_hides_everything_and_is_reclaimed_in_the_background() {
    const N: u64 = 20_000;
    let delete = || memokit::delete_memoized!(bulk);
    let again = no_old_result_after(&BULK, N, bulk, || bulk_memo().stats().misses, delete);
    let mut rounds = 0;
    loop {
        BULK.run_maintenance();
        let s = BULK.stats();
        if s.entries == again {
            assert!(s.stale_reclaimed >= N - again);
            break;
        }
        rounds += 1;
        assert!(rounds < 10_000, "stale entries never reclaimed: {s:?}");
    }
}

static BULK_VERHASH: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(100_000).build().expect("memoizer"));

#[memoize(memoizer = &BULK_VERHASH, timeout = Timeout::Never)]
fn bulk_verhash(x: u64) -> u64 {
    x + 1
}

/// `delete_memoized_verhash!` too hides every result at once.
#[test]
fn verhash_delete_hides_everything_at_once() {
    let delete = || memokit::delete_memoized_verhash!(bulk_verhash);
    let misses = || bulk_verhash_memo().stats().misses;
    no_old_result_after(&BULK_VERHASH, 20_000, bulk_verhash, misses, delete);
}

/// An argument whose first hash deletes every result of `rekeyed`: the delete lands between
/// the call's lookup and its computation.
#[derive(Clone, PartialEq, Eq)]
struct DeletesOnFirstHash(u64);

static REKEYED_HASHES: AtomicU64 = AtomicU64::new(0);
static REKEYED_RUNS: AtomicU64 = AtomicU64::new(0);

impl std::hash::Hash for DeletesOnFirstHash {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if REKEYED_HASHES.fetch_add(1, SeqCst) == 0 {
            rekeyed_memo().delete_all();
        }
        self.0.hash(h);
    }
}

#[memoize(memoizer = &MEMO)]
fn rekeyed(a: DeletesOnFirstHash) -> u64 {
    REKEYED_RUNS.fetch_add(1, SeqCst);
    a.0
}

/// A call whose lookup missed before a delete and whose computation starts after it stores
/// its result where calls after the delete look (found by the next call), not under the key
/// the lookup used, which no later call looks for (keys change with the function's version).
#[test]
fn a_result_computed_after_a_delete_is_stored_where_later_calls_look() {
    assert_eq!(rekeyed(DeletesOnFirstHash(4)), 4);
    assert!(REKEYED_HASHES.load(SeqCst) >= 1);
    assert_eq!(rekeyed(DeletesOnFirstHash(4)), 4);
    assert_eq!(REKEYED_RUNS.load(SeqCst), 1, "the second call hits");
    assert_eq!(rekeyed_memo().stats().hits, 1);
}
