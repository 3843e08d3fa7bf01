//! Review of session 24's single flight (c848e7a): a leader clones its value for waiters, and
//! publishes it, only when `Arc::strong_count(&flight) > 1` once its flight is out of the
//! table; a panic of the store or of the waiters' clone abandons the flight.
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread::Result as TResult;
use std::time::Duration;

use common::{no_hang, wait_until};
use memokit_engine::{Engine, InsertOptions};

type Hook = Arc<dyn Fn(usize) + Send + Sync>;

/// A value that counts its clones (on a shared counter) and may run a hook on each, with the
/// clone's number (1 for the first).
struct Counted {
    id: u64,
    clones: Arc<AtomicUsize>,
    hook: Option<Hook>,
}

impl Counted {
    fn new(id: u64, clones: &Arc<AtomicUsize>) -> Self {
        Counted { id, clones: clones.clone(), hook: None }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        let n = self.clones.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(h) = &self.hook {
            h(n);
        }
        Counted { id: self.id, clones: self.clones.clone(), hook: self.hook.clone() }
    }
}

type E = Engine<u64, Counted>;

fn engine() -> E {
    Engine::builder().max_capacity(1_000).shards(1).build().expect("build")
}

/// Runs a leader of `key` (value `make()`) and `waiters` callers that join it (each would
/// compute `100 + i`); once all of them wait (`single_flight_waits`), runs `while_waiting`,
/// then lets the leader finish. The ids each got (or their panics): leader, waiters.
fn flight_with_waiters(
    e: &E,
    key: u64,
    opts: InsertOptions,
    waiters: usize,
    make: impl FnOnce() -> Counted + Send,
    while_waiting: impl FnOnce(),
) -> (TResult<u64>, Vec<TResult<u64>>) {
    let clones = Arc::new(AtomicUsize::new(0));
    let base = e.stats().single_flight_waits;
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let leader = s.spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                e.get_or_insert_with_options(key, opts, || {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    make()
                })
                .id
            }))
        });
        started_rx.recv().expect("the leader computes");
        let ws: Vec<_> = (0..waiters as u64)
            .map(|i| {
                let clones = &clones;
                s.spawn(move || {
                    catch_unwind(AssertUnwindSafe(|| {
                        e.get_or_insert_with_options(key, opts, || Counted::new(100 + i, clones)).id
                    }))
                })
            })
            .collect();
        wait_until("the callers wait for the leader", || {
            e.stats().single_flight_waits == base + waiters as u64
        });
        while_waiting();
        go_tx.send(()).unwrap();
        let l = leader.join().expect("leader thread");
        (l, ws.into_iter().map(|w| w.join().expect("waiter thread")).collect())
    })
}

fn ids(ws: Vec<TResult<u64>>) -> Vec<u64> {
    ws.into_iter().map(|w| w.expect("a waiter panicked")).collect()
}

/// A flight taken out of the table by `remove`, `clear`, `insert`, or replaced by a newcomer
/// under other generations, still hands its value to the callers that waited for it (they hold
/// handles of it, so the leader's count sees them), and is not stored.
#[test]
fn detached_flights_hand_their_value_to_their_waiters() {
    no_hang("waiters of detached flights", || {
        for how in ["remove", "clear", "insert", "newcomer"] {
            let e = engine();
            let c = Arc::new(AtomicUsize::new(0));
            let (g1, g2) = (e.new_generation(), e.new_generation());
            let opts = InsertOptions::new().generations(g1, None);
            let mut newcomer = None;
            let (l, ws) = flight_with_waiters(
                &e,
                1,
                opts,
                2,
                || Counted::new(1, &c),
                || match how {
                    "remove" => e.remove(&1),
                    "clear" => e.clear(),
                    "insert" => e.insert_with_options(1, Counted::new(7, &c), opts),
                    _ => {
                        let o2 = InsertOptions::new().generations(g2, None);
                        newcomer =
                            Some(e.get_or_insert_with_options(1, o2, || Counted::new(2, &c)));
                    }
                },
            );
            assert_eq!(l.expect("leader"), 1, "{how}");
            assert_eq!(ids(ws), [1, 1], "{how}: the waiters get the detached flight's value");
            e.flush();
            let stored = e.get(&1).map(|v| v.id);
            match how {
                "insert" => assert_eq!(stored, Some(7), "{how}: the insert stays"),
                "newcomer" => {
                    assert_eq!(newcomer.map(|v| v.id), Some(2));
                    let o1 = InsertOptions::new().generations(g1, None);
                    let again = e.get_or_insert_with_options(1, o1, || Counted::new(3, &c));
                    assert_ne!(again.id, 1, "the replaced flight's value was stored");
                }
                _ => assert_eq!(stored, None, "{how}: a detached flight is not stored"),
            }
            e.validate().unwrap();
        }
    });
}

/// The clones of a miss: one for the store without a waiter; with one, a second for the
/// waiters and the waiter's own; a flight detached (no waiter) before it ends is not
/// published. Also pins that the waiters' copy is made at all when one waits.
#[test]
fn a_miss_clones_for_waiters_only_when_one_waits() {
    no_hang("clone counts", || {
        let e = engine();
        let c = Arc::new(AtomicUsize::new(0));
        assert_eq!(e.get_or_insert_with(1, || Counted::new(1, &c)).id, 1);
        assert_eq!(c.load(Ordering::SeqCst), 1, "no waiter: the store's clone only");

        let c = Arc::new(AtomicUsize::new(0));
        let c2 = c.clone();
        let (l, ws) = flight_with_waiters(
            &e,
            2,
            InsertOptions::new(),
            1,
            move || Counted::new(2, &c2),
            || {},
        );
        assert_eq!((l.unwrap(), ids(ws)), (2, vec![2]));
        assert_eq!(c.load(Ordering::SeqCst), 3, "store, waiters' copy, the waiter's own");

        let c = Arc::new(AtomicUsize::new(0));
        let c2 = c.clone();
        let (l, ws) = flight_with_waiters(
            &e,
            3,
            InsertOptions::new(),
            0,
            move || Counted::new(3, &c2),
            || e.remove(&3),
        );
        assert_eq!((l.unwrap(), ws.len()), (3, 0));
        assert_eq!(c.load(Ordering::SeqCst), 1, "detached, nobody waits: the store's clone only");
        e.flush();
        assert!(e.get(&3).is_none());
    });
}

/// A miss that stores nothing (`ttl(ZERO)`) with nobody waiting clones its value for nobody.
/// Found by this review: `lead` kept the taken-out slot (a handle of the flight) until after
/// its count was read, so the count was always 2 there and the value cloned and published
/// (failed before `lead` kept only the slot's key).
#[test]
fn a_miss_that_stores_nothing_clones_nothing_without_waiters() {
    let e = engine();
    let c = Arc::new(AtomicUsize::new(0));
    let opts = InsertOptions::new().ttl(Duration::ZERO);
    assert_eq!(e.get_or_insert_with_options(1, opts, || Counted::new(1, &c)).id, 1);
    assert_eq!(
        c.load(Ordering::SeqCst),
        0,
        "nothing stored and nobody waits, yet the value was cloned (for the waiters)"
    );
}

/// At capacity 0 (a way to switch caching off) a miss clones its value for no store (found by
/// review s24b: it cloned it once, for a store that could not happen; failed before).
#[test]
fn a_miss_at_capacity_zero_clones_nothing() {
    let e: E = Engine::builder().max_capacity(0).shards(1).build().expect("build");
    let c = Arc::new(AtomicUsize::new(0));
    assert_eq!(e.get_or_insert_with(1, || Counted::new(1, &c)).id, 1);
    assert_eq!(c.load(Ordering::SeqCst), 0, "cloned for a store at capacity 0");
    e.flush();
    assert!(e.get(&1).is_none());
    assert_eq!(c.load(Ordering::SeqCst), 0);
}

/// A store whose weigher panics abandons the flight: the leader's caller gets the panic, the
/// waiter wakes (no hang), finds nothing stored, leads a computation of its own and stores it.
#[test]
fn a_store_that_panics_abandons_the_flight_to_its_waiters() {
    no_hang("a waiter of a leader whose weigher panics", || {
        let e: E = Engine::builder()
            .max_capacity(1_000)
            .shards(1)
            .weigher(|_, v: &Counted| {
                assert!(v.id != 1, "evil weigher");
                1
            })
            .build()
            .expect("build");
        let c = Arc::new(AtomicUsize::new(0));
        let (l, ws) =
            flight_with_waiters(&e, 1, InsertOptions::new(), 1, || Counted::new(1, &c), || {});
        assert!(l.is_err(), "the weigher's panic reaches the leader's caller");
        assert_eq!(ids(ws), [100], "the waiter computed (and stored) its own value");
        e.flush();
        assert_eq!(e.get(&1).map(|v| v.id), Some(100));
        e.validate().unwrap();
    });
}

/// The waiters' clone runs with no engine lock held: from it, the leader's thread can store,
/// remove and compute in the same (single-shard) engine. Under the flights lock it would hang.
#[test]
fn the_waiters_clone_runs_outside_the_engine_locks() {
    let e = engine();
    let slot: Arc<Mutex<Option<E>>> = Arc::new(Mutex::new(Some(e.clone())));
    let ran = Arc::new(AtomicBool::new(false));
    let hook: Hook = {
        let (slot, ran) = (slot.clone(), ran.clone());
        Arc::new(move |n| {
            // The second clone is the waiters' copy (the first, the store's).
            if n != 2 {
                return;
            }
            let e = slot.lock().unwrap().clone().expect("engine");
            let other = Arc::new(AtomicUsize::new(0));
            e.insert(50, Counted::new(50, &other));
            e.remove(&50);
            assert_eq!(e.get_or_insert_with(51, || Counted::new(51, &other)).id, 51);
            ran.store(true, Ordering::SeqCst);
        })
    };
    let e2 = e.clone();
    let (l, ws) = no_hang("the waiters' clone calling into the engine", move || {
        let c = Arc::new(AtomicUsize::new(0));
        let make = move || Counted { id: 1, clones: c, hook: Some(hook) };
        flight_with_waiters(&e2, 1, InsertOptions::new(), 1, make, || {})
    });
    assert_eq!((l.unwrap(), ids(ws)), (1, vec![1]));
    assert!(ran.load(Ordering::SeqCst), "the waiters' copy was made");
    *slot.lock().unwrap() = None;
    e.clear();
}

/// Many rounds of callers racing for one key: every caller gets the one computed value (no
/// hang, no caller left without it), and the clones are exactly: the store's, one for the
/// waiters iff some caller waited, one per other caller (its wait or its hit).
#[test]
fn racing_callers_get_one_value_and_the_clones_add_up() {
    const THREADS: usize = 4;
    no_hang("racing callers", || {
        let e = engine();
        let barrier = Barrier::new(THREADS);
        for round in 0..300u64 {
            let c = Arc::new(AtomicUsize::new(0));
            let before = e.stats().single_flight_waits;
            let got: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..THREADS as u64)
                    .map(|t| {
                        let (e, c, barrier) = (&e, &c, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            e.get_or_insert_with(round, || Counted::new(round * 10 + t, c)).id
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(got.iter().all(|&v| v == got[0]), "round {round}: {got:?}");
            let waited = e.stats().single_flight_waits > before;
            assert_eq!(
                c.load(Ordering::SeqCst),
                1 + usize::from(waited) + (THREADS - 1),
                "round {round}: waited {waited}"
            );
        }
        e.validate().unwrap();
    });
}

/// A value whose waiters' clone panics, one that records how it is dropped, or one whose
/// `Drop` holds its thread (a worker) until the test lets it go.
#[derive(Debug)]
enum Probe {
    /// Panics on its second clone only (the store's clone is the first, the waiters' the second).
    Leader(Arc<AtomicUsize>),
    /// Records, when dropped, whether its thread was unwinding then.
    Displaced(Arc<Mutex<Vec<bool>>>),
    /// Says it is being dropped, then waits to be let go.
    Gate(mpsc::Sender<()>, Arc<Mutex<mpsc::Receiver<()>>>),
    Plain,
}

impl Clone for Probe {
    fn clone(&self) -> Self {
        match self {
            Probe::Leader(n) => {
                assert!(n.fetch_add(1, Ordering::SeqCst) != 1, "evil waiters' clone");
                Probe::Leader(n.clone())
            }
            Probe::Displaced(d) => Probe::Displaced(d.clone()),
            Probe::Gate(entered, release) => Probe::Gate(entered.clone(), release.clone()),
            Probe::Plain => Probe::Plain,
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        match self {
            Probe::Displaced(d) => d.lock().unwrap().push(std::thread::panicking()),
            Probe::Gate(entered, release) => {
                let _ = entered.send(());
                let _ = release.lock().unwrap().recv();
            }
            _ => {}
        }
    }
}

/// When the waiters' clone panics after the store, what the store displaced from the pending
/// table (here an expired store of the key) is dropped by the store's usual finish, not while
/// the leader's thread unwinds (where a panic of its `Drop` would abort the process). Found by
/// this review (dropped while unwinding before the waiters' clone was caught: failed before).
/// The worker is held in a `Drop` meanwhile, so the expired store stays pending until the
/// leader's store displaces it.
#[test]
fn a_panicking_waiters_clone_drops_what_the_store_displaced_outside_the_unwinding() {
    let clock = memokit_engine::ManualClock::new();
    let e: Engine<u64, Probe> = Engine::builder()
        .max_capacity(1_000)
        .shards(1)
        .clock(clock.clone())
        .build()
        .expect("build");
    // Hold the worker in the `Drop` of a removed value.
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    e.insert(1_000, Probe::Gate(entered_tx, Arc::new(Mutex::new(release_rx))));
    e.flush();
    e.remove(&1_000);
    entered_rx.recv().expect("the worker drops the gate");
    // Key 1's store stays pending, expired.
    let drops = Arc::new(Mutex::new(Vec::new()));
    e.insert_with_ttl(1, Probe::Displaced(drops.clone()), Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    let base = e.stats().single_flight_waits;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let e = &e;
    let leader_panicked = std::thread::scope(|s| {
        let leader = s.spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                e.get_or_insert_with(1, || {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    Probe::Leader(Arc::new(AtomicUsize::new(0)))
                })
            }))
            .is_err()
        });
        started_rx.recv().expect("the leader computes");
        let waiter = s.spawn(move || e.get_or_insert_with(1, || Probe::Plain));
        wait_until("the waiter waits", || e.stats().single_flight_waits == base + 1);
        go_tx.send(()).unwrap();
        let panicked = leader.join().unwrap();
        let d = drops.lock().unwrap().clone();
        assert_eq!(
            d,
            [false],
            "the displaced store, dropped by the leader (true: while unwinding)"
        );
        release_tx.send(()).unwrap();
        waiter.join().expect("the waiter wakes and gets a value");
        panicked
    });
    assert!(leader_panicked, "the waiters' clone panics in the leader");
    e.flush();
    e.validate().unwrap();
}
