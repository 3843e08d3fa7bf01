//! Review of the 2026-11-27 engine changes (review s12): the eviction within a batch's own
//! write-lock hold (`worker/capacity.rs`) and the capacity rule around retirements.
//!
//! Every test runs on a manual clock; a worker is held deterministically by a key whose
//! `Drop` (run on the worker) waits for a gate, never by a sleep. Each test's doc says which
//! bug it would catch.

mod common;

use common::{no_hang, Gate, HookedKey};
use memokit_engine::{Engine, InsertOptions, ManualClock};

type E = Engine<HookedKey, u64>;

/// An engine of one worker on a manual clock.
fn one_worker(capacity: u64, shards: usize) -> E {
    Engine::builder()
        .max_capacity(capacity)
        .shards(shards)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("build an engine on a manual clock")
}

/// Holds `e`'s worker (one worker) in a user's `Drop` until the gate is opened: stores a key
/// whose `Drop` waits, then removes it; returns once the worker runs that `Drop`. The key
/// weighs 1 while resident.
fn hold_worker(e: &E, id: u64) -> Gate {
    let gate = Gate::new();
    let g = gate.clone();
    e.insert(HookedKey::with_drop(id, move || g.enter_and_wait()), 0);
    e.flush();
    e.remove(&HookedKey::new(id));
    gate.wait_entered();
    gate
}

/// Stores keys 10..13 under a new generation and live key 0, then reads 10..13 three times
/// (the retired-to-be entries look valuable to the policy; the live ones do not); returns
/// the generation.
fn valued_generation(e: &E) -> memokit_engine::Generation {
    let g = e.new_generation();
    for k in 10..13 {
        e.insert_with_options(HookedKey::new(k), k, InsertOptions::new().generations(g, None));
    }
    e.insert(HookedKey::new(0), 0);
    e.flush();
    for _ in 0..3 {
        for k in 10..13 {
            assert!(e.get(&HookedKey::new(k)).is_some());
        }
    }
    g
}

/// After the generation of [`valued_generation`] was retired and live keys 1 and 2 stored
/// (capacity 5): live keys 0..3 are all resident, nothing was evicted, within capacity.
fn no_live_key_evicted(e: &E, case: &str) {
    let missing: Vec<u64> = (0..3).filter(|&k| e.get(&HookedKey::new(k)).is_none()).collect();
    let s = e.stats();
    assert!(missing.is_empty(), "{case}: live keys {missing:?} evicted ({s:?})");
    assert_eq!(s.evictions, 0, "{case}: {s:?}");
    assert!(s.weight <= 5, "{case}: {s:?}");
    e.validate().unwrap();
}

/// A worker's own `Retire` counts as much as another worker's. A batch stored before a
/// `retire` may reach the worker after `retire` has returned, with the `Retire` still behind
/// it in the mailbox: the shards then hold entries of the retired generation that their
/// `due_at` does not show yet. `apply_and_settle` leaves that batch to `settle`
/// (`retires_pending[me]`), but `settle` read only the other workers' pending retirements and
/// evicted live entries in place of the retired ones (live weight within capacity, live
/// entries lost). Catches any over-capacity path that ignores the worker's own pending
/// `Retire`.
///
/// Capacity 5: 3 entries of generation `g`, 1 live, the holding key; then, while the worker is
/// held, 2 live stores and `retire(g)`: 3 live entries once `g` is gone, 6 resident until then.
#[test]
fn own_pending_retire_goes_before_live_entries() {
    for shards in [1, 4] {
        let e = one_worker(5, shards);
        let g = valued_generation(&e);
        let gate = hold_worker(&e, 100);
        // Queued as `Work` before the `Retire` below, applied after `retire` has returned.
        e.insert(HookedKey::new(1), 1);
        e.insert(HookedKey::new(2), 2);
        e.retire(g);
        gate.open();
        let e2 = e.clone();
        no_hang("flush", move || e2.flush());
        no_live_key_evicted(&e, &format!("{shards} shards"));
    }
}

/// `run_maintenance` served between a batch over capacity and the worker's own `Retire`: the
/// batch left the excess to the `Retire` (the worker's shards may hold entries of the retired
/// generation that nothing shows yet), but the maintenance step ended by evicting from the
/// worker's shards while the engine was over capacity, without asking whether dead entries
/// were left anywhere (its own pending `Retire`, other workers' shards). Catches any path
/// that evicts live entries without the checks of `settle`.
///
/// Same numbers as [`own_pending_retire_goes_before_live_entries`]; the mailbox holds, in
/// order: the batch, `Maintain`, `Retire`.
#[cfg(target_os = "linux")]
#[test]
fn maintenance_before_a_pending_retire_evicts_nothing_live() {
    let e = one_worker(5, 1);
    let g = valued_generation(&e);
    let gate = hold_worker(&e, 100);
    e.insert(HookedKey::new(1), 1);
    e.insert(HookedKey::new(2), 2);
    let tid = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let maintainer = {
        let (e, tid) = (e.clone(), tid.clone());
        std::thread::spawn(move || {
            *tid.lock().unwrap() = common::this_thread_id();
            e.run_maintenance();
        })
    };
    common::wait_until("the maintainer started", || !tid.lock().unwrap().is_empty());
    let tid = tid.lock().unwrap().clone();
    // Asleep: it has sent `Maintain` and waits for the answer.
    common::wait_asleep("run_maintenance waits for the held worker", &tid);
    e.retire(g);
    gate.open();
    no_hang("run_maintenance", move || maintainer.join().unwrap());
    let e2 = e.clone();
    no_hang("flush", move || e2.flush());
    no_live_key_evicted(&e, "maintenance first");
}

/// A key whose `Eq` panics while this thread's [`PANIC_EQ`] is set, and a value whose `Clone`
/// panics while [`PANIC_CLONE`] is set (the user's code under an engine lock).
struct Touchy(u64);

impl std::hash::Hash for Touchy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if self.0 == other.0 && PANIC_EQ.with(std::cell::Cell::get) {
            panic!("a user's Eq panics");
        }
        self.0 == other.0
    }
}

impl Eq for Touchy {}

#[derive(Debug)]
struct Brittle(u64);

impl Clone for Brittle {
    fn clone(&self) -> Self {
        if PANIC_CLONE.with(std::cell::Cell::get) {
            panic!("a user's Clone panics");
        }
        Brittle(self.0)
    }
}

std::thread_local! {
    static PANIC_EQ: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static PANIC_CLONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the thread's `flag` set, expecting the user's panic.
fn panicking(flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>, f: impl FnOnce()) {
    flag.with(|p| p.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    flag.with(|p| p.set(false));
    let msg = common::panic_message(&*r.expect_err("the user's code panicked"));
    assert!(msg.starts_with("a user's"), "not the user's panic: {msg}");
}

/// One shard, one worker, capacity 100, a manual clock.
fn one_shard<K, V>() -> Engine<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    common::manual_engine_with(Engine::builder().max_capacity(100).shards(1).workers(1)).0
}

/// A user's `Eq` or `Clone` that panics under an engine lock (the hit path's read lock, a
/// slow lookup's pending table, single flight's flights lock, an in-place replacement's write
/// lock) leaves the thread as it was: the re-entry marks (`reentry::UNDER_LOCK`, `HELD`) are
/// given back on unwinding, so later ordinary calls on that thread (`flush`, `clear`,
/// `run_maintenance`, stores, computations, lookups) neither panic as if called back from
/// under a lock nor take their read locks recursively. Catches a mark left set by a panic.
#[test]
fn user_code_panicking_under_a_lock_leaves_no_mark() {
    no_hang("panicking user code", || {
        let e: Engine<Touchy, Brittle> = one_shard();
        let usable = |e: &Engine<Touchy, Brittle>, round: u64| {
            e.flush();
            e.run_maintenance();
            e.insert(Touchy(round), Brittle(round));
            assert_eq!(e.get(&Touchy(round)).map(|v| v.0), Some(round), "round {round}");
            let v = e.get_or_insert_with(Touchy(1_000 + round), || Brittle(round));
            assert_eq!(v.0, round);
            e.remove(&Touchy(round));
            e.flush();
        };
        e.insert(Touchy(1), Brittle(1));
        e.flush();
        // The hit path: `Clone` under the read lock, `Eq` in the probe.
        panicking(&PANIC_CLONE, || {
            let _ = e.get(&Touchy(1));
        });
        usable(&e, 10);
        panicking(&PANIC_EQ, || {
            let _ = e.get(&Touchy(1));
        });
        usable(&e, 11);
        // An in-place replacement: `Eq` under the shard's write lock.
        panicking(&PANIC_EQ, || e.insert(Touchy(1), Brittle(2)));
        usable(&e, 12);
        // Single flight: `to_owned` under the flights lock.
        panicking(&PANIC_EQ, || {
            e.get_or_try_insert_with_ref(
                &Touchy(2),
                InsertOptions::new(),
                |_| panic!("a user's to_owned panics"),
                || Ok::<_, ()>(Brittle(2)),
            )
            .ok();
        });
        usable(&e, 13);
        // A slow lookup (the key pending): `Eq` and `Clone` under the pending table.
        let gate = Gate::new();
        let g = gate.clone();
        let held = one_shard();
        held.insert(HookedKey::with_drop(100, move || g.enter_and_wait()), Brittle(0));
        held.flush();
        held.remove(&HookedKey::new(100));
        gate.wait_entered();
        held.insert(HookedKey::new(3), Brittle(3)); // pending while the worker is held
        panicking(&PANIC_CLONE, || {
            let _ = held.get(&HookedKey::new(3));
        });
        assert_eq!(held.get(&HookedKey::new(3)).map(|v| v.0), Some(3));
        held.insert(HookedKey::new(4), Brittle(4));
        gate.open();
        held.flush();
        held.clear();
        usable(&e, 14);
        e.shutdown();
    });
}
