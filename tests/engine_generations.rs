//! Generations: retiring hides at once, is idempotent, drops later inserts, and the workers
//! reclaim the stale entries on maintenance; a generation's count of entries includes the
//! stores still on their way to the worker.
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{manual_engine, Gate};
use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};

fn under(g: Generation) -> InsertOptions {
    InsertOptions::new().generations(g, None)
}

fn under2(a: Generation, b: Generation) -> InsertOptions {
    InsertOptions::new().generations(a, Some(b))
}

/// Maintenance steps needed until `len()` reaches `target` (reclamation is done in bounded
/// slices, so a few steps may be needed); fails after `max` steps.
fn maintain_until_len(e: &Engine<u64, u64>, target: u64, max: usize) -> usize {
    for step in 1..=max {
        e.run_maintenance();
        if e.len() == target {
            return step;
        }
    }
    panic!("len {} after {max} maintenance steps, expected {target}", e.len());
}

#[test]
fn retired_entries_are_hidden_at_once() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let g = e.new_generation();
    let other = e.new_generation();
    assert!(e.is_live(g));
    for i in 0..100u64 {
        e.insert_with_options(i, i, under(g));
        e.insert_with_options(1000 + i, i, under(other));
    }
    // No flush: the retirement must hide entries whose inserts may still be in a mailbox.
    e.retire(g);
    assert!(!e.is_live(g));
    assert!(e.is_live(other));
    for i in 0..100u64 {
        assert_eq!(e.get(&i), None, "key {i} under a retired generation");
        assert!(!e.contains_key(&i));
        assert_eq!(e.get(&(1000 + i)), Some(i), "key {} under a live generation", 1000 + i);
    }
    e.flush();
    for i in 0..100u64 {
        assert_eq!(e.get(&i), None, "key {i} after flush");
    }
}

#[test]
fn either_of_two_generations_hides_the_entry() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let (f, m1, m2) = (e.new_generation(), e.new_generation(), e.new_generation());
    e.insert_with_options(1, 1, under2(f, m1));
    e.insert_with_options(2, 2, under2(f, m2));
    e.insert_with_options(3, 3, under2(m2, f));
    e.insert_with_options(4, 4, under(m1));
    e.retire(m2);
    assert_eq!(e.get(&1), Some(1));
    assert_eq!(e.get(&2), None, "secondary generation retired");
    assert_eq!(e.get(&3), None, "primary generation retired");
    assert_eq!(e.get(&4), Some(4));
    e.retire(f);
    assert_eq!(e.get(&1), None, "primary generation retired");
    assert_eq!(e.get(&4), Some(4));
}

#[test]
fn retire_is_idempotent() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let g = e.new_generation();
    let keep = e.new_generation();
    for i in 0..20u64 {
        e.insert_with_options(i, i, under(g));
    }
    e.insert_with_options(99, 99, under(keep));
    e.flush(); // resident before the retirement (else the worker refuses them at once)
    e.retire(g);
    e.retire(g);
    maintain_until_len(&e, 1, 16);
    e.retire(g);
    maintain_until_len(&e, 1, 16);
    assert_eq!(e.stats().stale_reclaimed, 20, "each stale entry reclaimed once");
    assert!(!e.is_live(g));
    assert!(e.is_live(keep));
    assert_eq!(e.get(&99), Some(99));
}

#[test]
fn inserts_under_a_retired_generation_are_dropped() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let (g, h) = (e.new_generation(), e.new_generation());
    e.retire(g);
    e.insert_with_options(1, 1, under(g));
    e.insert_with_options(2, 2, under2(h, g));
    assert_eq!(e.get(&1), None);
    assert_eq!(e.get(&2), None);
    e.flush();
    assert_eq!(e.get(&1), None);
    assert_eq!(e.len(), 0, "nothing stored under a retired generation");

    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let v = e.get_or_insert_with_options(3, under(g), || {
            calls.fetch_add(1, Ordering::SeqCst);
            33
        });
        assert_eq!(v, 33, "the computed value still goes to the caller");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "not stored: the second call computes again");
    e.flush();
    assert_eq!(e.len(), 0);
}

/// An insert dropped because its generation is retired supersedes the key's older value:
/// that value is no longer the last one inserted for the key (issue 2, Proof).
#[test]
fn dropped_insert_hides_the_older_value() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let g = e.new_generation();
    e.insert(1, 10);
    e.retire(g);
    e.insert_with_options(1, 11, under(g));
    assert_eq!(e.get(&1), None, "10 was superseded by an insert of 11 (dropped: retired)");
    e.flush();
    assert_eq!(e.get(&1), None, "after flush");
}

#[test]
fn stale_entries_are_reclaimed_by_maintenance() {
    let (e, _clock) = manual_engine::<u64, u64>(100_000);
    let (g1, g2, keep) = (e.new_generation(), e.new_generation(), e.new_generation());
    for i in 0..3000u64 {
        let opts = match i % 3 {
            0 => under(g1),
            1 => under2(keep, g2),
            _ => under(keep),
        };
        e.insert_with_options(i, i, opts);
    }
    e.flush();
    assert_eq!(e.len(), 3000);
    e.retire(g1);
    e.retire(g2);
    let steps = maintain_until_len(&e, 1000, 64);
    let s = e.stats();
    assert_eq!(s.stale_reclaimed, 2000, "reclaimed in {steps} steps");
    assert_eq!(s.entries, 1000);
    assert_eq!(s.expirations, 0);
    for i in 0..3000u64 {
        assert_eq!(e.get(&i), (i % 3 == 2).then_some(i));
    }
}

/// A retired generation's entry replaced by a live one: reclamation must remove only the
/// stale entry, never its replacement.
#[test]
fn reclamation_spares_replacements() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let (old, new) = (e.new_generation(), e.new_generation());
    for i in 0..50u64 {
        e.insert_with_options(i, i, under(old));
    }
    e.retire(old);
    for i in 0..25u64 {
        e.insert_with_options(i, 100 + i, under(new));
    }
    maintain_until_len(&e, 25, 16);
    for i in 0..50u64 {
        assert_eq!(e.get(&i), (i < 25).then_some(100 + i));
    }
}

#[test]
fn generation_ids_are_never_reused() {
    let (a, _ca) = manual_engine::<u64, u64>(10);
    let (b, _cb) = manual_engine::<u64, u64>(10);
    let mut seen = HashSet::new();
    for i in 0..500 {
        for e in [&a, &b] {
            let g = e.new_generation();
            assert!(seen.insert(g.id()), "generation id {} handed out twice", g.id());
            assert!(e.is_live(g));
            if i % 2 == 0 {
                e.retire(g);
            }
        }
    }
    // From several threads at once, and after an engine is gone.
    drop(b);
    let ids: Vec<Vec<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| (0..300).map(|_| a.new_generation().id()).collect()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for id in ids.into_iter().flatten() {
        assert!(seen.insert(id), "generation id {id} handed out twice");
    }
    let (c, _cc) = manual_engine::<u64, u64>(10);
    let g = c.new_generation();
    assert!(seen.insert(g.id()), "a new engine reused generation id {}", g.id());
}

#[test]
fn new_generation_after_retire_serves_new_entries() {
    // The memoizer's "delete": swap the version, the old entries vanish, new ones are served.
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let mut version = e.new_generation();
    for round in 0..5u64 {
        for k in 0..10u64 {
            let v = e.get_or_insert_with_options(k, under(version), || round * 100 + k);
            assert_eq!(v, round * 100 + k, "round {round} key {k}: a stale value was served");
        }
        let old = version;
        version = e.new_generation();
        e.retire(old);
    }
    maintain_until_len(&e, 0, 16);
}

// A store is counted under its generations from the moment it is recorded, not only once the
// worker has applied it (found by a review: the memoizer drops receiver records whose
// generation counts no entry, and lost results still on their way to the worker).

/// A value whose last clone, if gated, blocks in its `Drop` until the gate opens: dropped by
/// the worker (which drops what it removes), it holds the worker there, so that stores stay
/// recorded and unapplied until the test opens the gate.
#[derive(Clone)]
struct Held(u64, #[allow(dead_code)] Option<Arc<Blocker>>); // the blocker is kept for its drop

struct Blocker(Gate);

impl Drop for Blocker {
    fn drop(&mut self) {
        self.0.enter_and_wait();
    }
}

/// Opens the gate when dropped: declared after the engine, so a failing test lets the worker
/// go before the engine's drop joins it.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// An engine with one shard and one worker, so that one blocked drop holds every store back.
fn one_worker(capacity: u64) -> Engine<u64, Held> {
    Engine::builder()
        .max_capacity(capacity)
        .shards(1)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("build an engine of one shard")
}

/// Holds `e`'s only worker in the drop of a removed value until `gate` opens.
fn hold_worker(e: &Engine<u64, Held>, gate: &Gate) {
    const HOLD: u64 = u64::MAX;
    e.insert(HOLD, Held(0, Some(Arc::new(Blocker(gate.clone())))));
    e.flush(); // resident: the remove below leaves its value to the worker to drop
    e.remove(&HOLD);
    gate.wait_entered();
}

#[test]
fn a_store_counts_under_its_generation_before_the_worker_applies_it() {
    let e = one_worker(100);
    let gate = Gate::new();
    let _open = OpenOnDrop(gate.clone());
    let opts = |a, b| InsertOptions::new().generations(a, b);
    let [applied, retired, removed, superseded, successor, first, second, zero_ttl] =
        std::array::from_fn(|_| e.new_generation());
    hold_worker(&e, &gate);

    e.insert_with_options(1, Held(1, None), opts(applied, None));
    assert_eq!(e.generation_entries(applied), 1, "a recorded store, not yet applied");
    e.insert_with_options(2, Held(2, None), opts(retired, None));
    e.retire(retired);
    e.insert_with_options(3, Held(3, None), opts(removed, None));
    assert_eq!(e.generation_entries(removed), 1);
    e.remove(&3);
    assert_eq!(e.generation_entries(removed), 0, "a pending store removed");
    e.insert_with_options(4, Held(4, None), opts(superseded, None));
    e.insert_with_options(4, Held(40, None), opts(successor, None));
    assert_eq!(e.generation_entries(superseded), 0, "a pending store superseded");
    assert_eq!(e.generation_entries(successor), 1);
    e.insert_with_options(5, Held(5, None), opts(first, Some(second)));
    assert_eq!((e.generation_entries(first), e.generation_entries(second)), (1, 1));
    e.insert_with_options(6, Held(6, None), opts(zero_ttl, None).ttl(Duration::ZERO));
    assert_eq!(e.generation_entries(zero_ttl), 0, "a zero TTL stores nothing");
    assert_eq!(e.len(), 0, "every store still waits for the worker");

    gate.open();
    e.flush();
    assert_eq!(e.len(), 3, "keys 1, 4 and 5 applied");
    let values: Vec<_> = (1..=6).map(|k| e.get(&k).map(|v| v.0)).collect();
    assert_eq!(values, [Some(1), None, None, Some(40), Some(5), None]);
    assert_eq!(e.generation_entries(applied), 1, "applied: counted once");
    assert_eq!(e.generation_entries(retired), 0, "refused by the worker: retired before");
    assert_eq!(e.generation_entries(removed), 0);
    assert_eq!((e.generation_entries(superseded), e.generation_entries(successor)), (0, 1));
    assert_eq!((e.generation_entries(first), e.generation_entries(second)), (1, 1));
    e.remove(&1);
    e.retire(first);
    e.flush();
    e.run_maintenance();
    assert_eq!(e.generation_entries(applied), 0, "removed after it was applied");
    assert_eq!((e.generation_entries(first), e.generation_entries(second)), (0, 0));
    e.validate().unwrap();
}

/// The stores an engine could not keep leave no count: too heavy for the capacity (zero),
/// made after shutdown; and shutdown gives back the counts of what it drops.
#[test]
fn stores_that_are_not_kept_leave_no_count() {
    let e = one_worker(0);
    let g = e.new_generation();
    e.insert_with_options(1, Held(1, None), under(g));
    assert_eq!(e.generation_entries(g), 0, "capacity zero stores nothing");
    e.flush();
    assert_eq!(e.generation_entries(g), 0);

    let e = one_worker(100);
    let gate = Gate::new();
    let _open = OpenOnDrop(gate.clone());
    let g = e.new_generation();
    hold_worker(&e, &gate);
    e.insert_with_options(1, Held(1, None), under(g));
    assert_eq!(e.generation_entries(g), 1);
    gate.open();
    e.shutdown();
    assert_eq!(e.generation_entries(g), 0, "dropped by the shutdown");
    e.insert_with_options(2, Held(2, None), under(g));
    assert_eq!(e.generation_entries(g), 0, "a store after shutdown is not kept");
}

fn in_key(g: Generation) -> InsertOptions {
    InsertOptions::new().generations(g, None).primary_in_key()
}

/// A primary generation declared in the key (`InsertOptions::primary_in_key`): lookups do not
/// check it, so an entry under a retired one can be found by its exact key until the workers
/// reclaim it; everything else about the generation stands: counted, a store or a
/// computation's result under it refused once it is retired, the entry reclaimed, and a
/// secondary still checked. (A computation under it is not joined once it is retired:
/// `engine_single_flight_detach`.)
#[test]
fn a_primary_in_the_key_is_counted_refused_and_reclaimed_but_not_checked() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let (g, h, keep) = (e.new_generation(), e.new_generation(), e.new_generation());
    for i in 0..100u64 {
        e.insert_with_options(i, i, in_key(g));
    }
    e.insert_with_options(500, 5, in_key(keep));
    let both = InsertOptions::new().generations(g, Some(h)).primary_in_key();
    e.insert_with_options(1000, 10, both);
    e.flush();
    assert_eq!(e.generation_entries(g), 101);
    e.validate().unwrap();
    e.retire(h);
    assert_eq!(e.get(&1000), None, "a secondary is checked");
    e.retire(g);
    // Not checked: found until reclaimed (the memoizer's keys never look for them again).
    assert_eq!(e.get(&7), Some(7));
    e.insert_with_options(200, 2, in_key(g));
    e.flush();
    assert_eq!(e.get(&200), None, "a store under a retired primary is refused");
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let v = e.get_or_insert_with_options(300, in_key(g), || {
            calls.fetch_add(1, Ordering::SeqCst);
            3
        });
        assert_eq!(v, 3);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "not stored under the retired primary");
    maintain_until_len(&e, 1, 64);
    assert_eq!(e.get(&7), None, "reclaimed");
    assert_eq!(e.get(&500), Some(5), "another generation's entry stays");
    assert_eq!(e.stats().stale_reclaimed, 101);
    e.validate().unwrap();
}

/// Replacing a value in place keeps the entry's generations and whether lookups check them:
/// a store declared in the key never replaces one that is checked, nor one stored under
/// another primary, in place (either would change what hides the entry).
#[test]
fn a_primary_in_the_key_never_replaces_another_kind_of_entry_in_place() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let (g, other) = (e.new_generation(), e.new_generation());
    e.insert_with_options(1, 1, under(g));
    e.insert_with_options(2, 2, in_key(g));
    e.flush();
    // Same key, same primary, the other way of checking it: each store goes to the worker.
    e.insert_with_options(1, 11, in_key(g));
    e.insert_with_options(2, 22, under(g));
    e.insert_with_options(3, 3, in_key(other));
    e.flush();
    e.insert_with_options(3, 33, in_key(g));
    e.flush();
    e.validate().unwrap();
    e.retire(g);
    assert_eq!(e.get(&2), None, "22 was stored checked: retiring hides it");
    assert_eq!(e.get(&1), Some(11), "11 was stored in the key: found until reclaimed");
    assert_eq!(e.get(&3), Some(33));
    // Everything left is under `g` (33 too): all reclaimed, `other` holds nothing.
    assert_eq!(e.generation_entries(other), 0);
    maintain_until_len(&e, 0, 64);
    assert_eq!(e.generation_entries(g), 0);
}

/// A store without generations over an entry whose primary is in its key: both have no
/// `VERSIONED` flag, but the entry is under a generation and the store is not, so the store
/// must not take the entry's generation by replacing its value in place (it would be counted
/// under that generation and reclaimed when it is retired).
#[test]
fn a_store_without_generations_never_takes_a_primary_in_the_key_in_place() {
    let (e, _clock) = manual_engine::<u64, u64>(10_000);
    let g = e.new_generation();
    e.insert_with_options(1, 1, in_key(g));
    e.flush();
    assert_eq!(e.generation_entries(g), 1);
    e.insert(1, 11);
    e.flush();
    e.validate().unwrap();
    assert_eq!(e.generation_entries(g), 0, "11 was stored under no generation");
    e.retire(g);
    for _ in 0..8 {
        e.run_maintenance();
    }
    assert_eq!(e.get(&1), Some(11), "a value stored under no generation outlives g");
    assert_eq!(e.stats().stale_reclaimed, 0);
    e.validate().unwrap();
}
