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

/// A worker's own `Retire` counts as much as another worker's. A batch stored before a
/// `retire` may reach the worker after `retire` has returned, with the `Retire` still behind
/// it in the mailbox: the shards then hold entries of the retired generation that their
/// `due_at` does not show yet. `apply_evicting` leaves that batch to `settle`
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
        let g = e.new_generation();
        for k in 10..13 {
            e.insert_with_options(HookedKey::new(k), k, InsertOptions::new().generations(g, None));
        }
        e.insert(HookedKey::new(0), 0);
        e.flush();
        // The retired-to-be entries look valuable to the policy; the live ones do not.
        for _ in 0..3 {
            for k in 10..13 {
                assert!(e.get(&HookedKey::new(k)).is_some());
            }
        }
        let gate = hold_worker(&e, 100);
        // Queued as `Work` before the `Retire` below, applied after `retire` has returned.
        e.insert(HookedKey::new(1), 1);
        e.insert(HookedKey::new(2), 2);
        e.retire(g);
        gate.open();
        let e2 = e.clone();
        no_hang("flush", move || e2.flush());
        let missing: Vec<u64> = (0..3).filter(|&k| e.get(&HookedKey::new(k)).is_none()).collect();
        let s = e.stats();
        assert!(missing.is_empty(), "{shards} shards: live keys {missing:?} evicted ({s:?})");
        assert_eq!(s.evictions, 0, "{shards} shards: {s:?}");
        assert!(s.weight <= 5, "{shards} shards: {s:?}");
        e.validate().unwrap();
    }
}
