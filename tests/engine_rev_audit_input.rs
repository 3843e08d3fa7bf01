//! Bad input gets a clear answer (engine.md), beyond `engine_bad_input.rs`: the same
//! generation passed twice, every public method after `shutdown()` with its documented
//! result, and keys whose `Hash` or `Eq` panic in every operation followed by every operation
//! on the same keys (flush, clear, retire, remove, `get_or_insert_with`), with the counters
//! and `validate()` still exact.
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{expect_panic, manual_engine, no_hang, Evil};
use memokit_engine::{Engine, InsertOptions, ManualClock};

/// `generations(g, Some(g))`: "each value counts once" (`Engine::generation_entries`), and
/// the value behaves as stored under `g`.
#[test]
fn the_same_generation_twice_counts_once() {
    let (e, _clock) = manual_engine::<u64, u64>(100);
    let g = e.new_generation();
    let twice = InsertOptions::new().generations(g, Some(g));
    e.insert_with_options(1, 10, twice);
    assert_eq!(e.generation_entries(g), 1, "one value, pending");
    e.flush();
    assert_eq!(e.generation_entries(g), 1, "one value, applied");
    assert_eq!(e.get_or_insert_with_options(2, twice, || 20), 20);
    e.flush();
    assert_eq!(e.generation_entries(g), 2, "two values");
    assert_eq!((e.get(&1), e.get(&2)), (Some(10), Some(20)));
    e.retire(g);
    assert_eq!((e.get(&1), e.get(&2)), (None, None));
    e.run_maintenance();
    assert_eq!((e.generation_entries(g), e.len()), (0, 0));
    assert_eq!(e.stats().stale_reclaimed, 2);
    assert_eq!(e.validate(), Ok(()));
    // Declared in the key too: still checked as a secondary (hidden at once when retired).
    let h = e.new_generation();
    e.insert_with_options(3, 30, InsertOptions::new().generations(h, Some(h)).primary_in_key());
    e.flush();
    assert_eq!((e.get(&3), e.generation_entries(h)), (Some(30), 1));
    e.retire(h);
    assert_eq!(e.get(&3), None, "the secondary is checked");
}

/// Every public method after `shutdown()`: "lookups miss, inserts are dropped and
/// `get_or_insert_with` computes without storing"; `flush`, `clear`, `run_maintenance` and
/// `shutdown` return at once; what was resident, or on its way to a worker, is gone from
/// every count (`len`, `stats`, `generation_entries`).
#[test]
fn every_method_after_shutdown() {
    let (e, clock) = manual_engine::<String, u64>(1_000);
    let g = e.new_generation();
    for i in 0..20u64 {
        e.insert_with_options(format!("k{i}"), i, InsertOptions::new().generations(g, None));
    }
    e.flush();
    // Still pending at shutdown, for some of them.
    for i in 20..40u64 {
        e.insert_with_options(format!("k{i}"), i, InsertOptions::new().generations(g, None));
    }
    no_hang("shutdown", {
        let e = e.clone();
        move || e.shutdown()
    });
    // Pending stores may have been applied by the workers before they stopped (counted as
    // inserts), then dropped with everything else.
    let before = e.stats();
    assert_eq!((before.entries, before.weight, e.generation_entries(g)), (0, 0, 0));
    let e2 = e.clone();
    no_hang("every method after shutdown", move || {
        let e = e2;
        assert_eq!(e.get("k1"), None);
        assert_eq!(e.get_map("k1", |v| *v), None);
        assert!(!e.contains_key("k1"));
        e.insert("a".into(), 1);
        e.insert_with_ttl("b".into(), 2, Duration::from_secs(60));
        e.insert_with_options("c".into(), 3, InsertOptions::new().generations(g, None));
        let runs = AtomicUsize::new(0);
        let compute = || runs.fetch_add(1, Ordering::SeqCst) as u64 + 100;
        assert_eq!(e.get_or_insert_with("d".into(), compute), 100);
        let opts = InsertOptions::new().ttl(Duration::from_secs(5));
        assert_eq!(e.get_or_insert_with_options("d".into(), opts, compute), 101);
        let r: Result<u64, ()> =
            e.get_or_try_insert_with_ref("d", opts, str::to_owned, || Ok(compute()));
        assert_eq!(r, Ok(102));
        for k in ["a", "b", "c", "d"] {
            assert_eq!(e.get(k), None, "{k}: nothing stored after shutdown");
        }
        e.remove("k2");
        e.flush();
        e.run_maintenance();
        e.clear();
        e.shutdown();
        assert!(e.is_live(g));
        assert_eq!(e.generation_entries(g), 0, "every value of g dropped by shutdown");
        let h = e.new_generation();
        assert!(e.is_live(h));
        e.retire(h);
        assert!(!e.is_live(h));
        e.retire(g);
        assert!(!e.is_live(g));
        assert_eq!((e.len(), e.is_empty(), e.weighted_size()), (0, true, 0));
        assert_eq!(e.max_capacity(), 1_000);
        assert_eq!(e.validate(), Ok(()));
        let s = e.stats();
        assert_eq!((s.entries, s.weight), (0, 0));
        assert_eq!((s.hits, s.inserts, s.evictions), (before.hits, before.inserts, 0));
        assert!(s.misses > before.misses, "the lookups after shutdown missed: {s:?}");
        assert!(!format!("{e:?}").is_empty());
    });
    clock.advance(Duration::from_secs(3600));
    no_hang("drop after shutdown", move || drop(e));
}

/// One operation of a test, boxed.
type Op<'a> = Box<dyn Fn() + 'a>;

/// Every operation that hashes or compares a key, with its `Hash`, then its `Eq`, panicking;
/// then every operation on the same keys, disarmed: each works, and the engine's counts and
/// invariants are exact.
#[test]
fn every_operation_after_panicking_hash_or_eq() {
    for which in ["hash", "eq"] {
        let (e, _clock) = manual_engine::<Evil, u64>(1_000);
        let (hash, eq) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let key = |id| Evil { id, hash_bomb: hash.clone(), eq_bomb: eq.clone() };
        let g = e.new_generation();
        let under_g = InsertOptions::new().generations(g, None);
        for id in 0..8 {
            e.insert_with_options(key(id), u64::from(id), under_g);
        }
        e.flush();
        let switch = if which == "hash" { &hash } else { &eq };
        switch.store(true, Ordering::SeqCst);
        // Operations whose lookup finds the resident key (so `Eq` runs) or hashes it.
        let ops: Vec<(&str, Op<'_>)> = vec![
            (
                "get",
                Box::new(|| {
                    let _ = e.get(&key(0));
                }),
            ),
            (
                "get_map",
                Box::new(|| {
                    let _ = e.get_map(&key(1), |v| *v);
                }),
            ),
            (
                "contains_key",
                Box::new(|| {
                    let _ = e.contains_key(&key(2));
                }),
            ),
            ("insert", Box::new(|| e.insert(key(3), 30))),
            ("insert_with_options", Box::new(|| e.insert_with_options(key(4), 40, under_g))),
            ("remove", Box::new(|| e.remove(&key(5)))),
            (
                "get_or_insert_with",
                Box::new(|| {
                    let _ = e.get_or_insert_with(key(6), || 60);
                }),
            ),
            (
                "get_or_insert_with, absent",
                Box::new(|| {
                    let _ = e.get_or_insert_with(key(20), || 1);
                }),
            ),
        ];
        for (what, op) in &ops {
            if which == "eq" && what.ends_with("absent") {
                continue; // no key of that hash to compare with
            }
            let m = expect_panic(what, op);
            assert!(m.contains("evil"), "{which}, {what}: the key's own panic: {m:?}");
        }
        switch.store(false, Ordering::SeqCst);
        let e2 = e.clone();
        let key2 = move |id| Evil::new(id);
        no_hang("every operation on the same keys", move || {
            let e = e2;
            let key = key2;
            e.flush();
            assert_eq!(e.validate(), Ok(()), "{which}");
            for id in 0..8 {
                let v = e.get(&key(id));
                assert_eq!(v, Some(u64::from(id)), "{which}: key {id} unchanged by its panic");
            }
            assert_eq!(e.generation_entries(g), 8, "{which}");
            assert_eq!(e.get_or_insert_with(key(20), || 200), 200, "{which}");
            assert_eq!(e.get_or_insert_with(key(20), || 0), 200, "{which}: stored");
            e.insert(key(3), 33);
            e.remove(&key(5));
            assert_eq!((e.get(&key(3)), e.get(&key(5))), (Some(33), None), "{which}");
            e.flush();
            assert_eq!((e.len(), e.generation_entries(g)), (8, 6), "{which}");
            e.retire(g);
            e.run_maintenance();
            assert_eq!((e.len(), e.generation_entries(g)), (2, 0), "{which}");
            assert_eq!(e.stats().stale_reclaimed, 6, "{which}");
            e.clear();
            assert_eq!((e.len(), e.weighted_size()), (0, 0), "{which}");
            assert_eq!(e.get_or_insert_with(key(3), || 3), 3, "{which}");
            e.flush();
            assert_eq!(e.validate(), Ok(()), "{which}");
            e.shutdown();
        });
    }
}

/// A value heavier than the whole capacity: "not stored", "the previous value of the key is
/// dropped all the same" (an explicit insert), and "never counted" under its generation.
#[test]
fn heavier_than_the_capacity() {
    let (e, _clock) = common::manual_engine_with::<u64, u64>(
        Engine::builder().max_capacity(10).weigher(|_, v| *v as u32),
    );
    let g = e.new_generation();
    let under_g = InsertOptions::new().generations(g, None);
    e.insert_with_options(1, 5, under_g);
    assert_eq!(e.generation_entries(g), 1);
    e.insert_with_options(1, 11, under_g);
    assert_eq!((e.get(&1), e.generation_entries(g)), (None, 0), "pending: dropped, uncounted");
    e.insert_with_options(2, 6, under_g);
    e.flush();
    e.insert_with_options(2, 12, under_g);
    assert_eq!(e.get(&2), None, "resident: dropped (uncounted once the worker removes it)");
    e.flush();
    assert_eq!((e.len(), e.weighted_size(), e.generation_entries(g)), (0, 0, 0));
    // Computed: returned to the caller, not stored.
    assert_eq!(e.get_or_insert_with_options(3, under_g, || 13), 13);
    assert_eq!(e.get_or_insert_with_options(3, under_g, || 3), 3);
    e.flush();
    assert_eq!((e.get(&3), e.generation_entries(g), e.len()), (Some(3), 1, 1));
    let s = e.stats();
    // Key 1's first store counts unless the second superseded it while still pending.
    assert!((2..=3).contains(&s.inserts), "{s:?}");
    assert_eq!((s.evictions, s.weight), (0, 3), "{s:?}");
}

/// `shards`: "at most 65,536; more are treated as 65,536"; `workers`: at most one per shard.
#[test]
fn too_many_shards_or_workers_are_capped() {
    let e: Engine<u64, u64> =
        Engine::builder().shards(1 << 20).workers(3).clock(ManualClock::new()).build().unwrap();
    let shown = format!("{e:?}");
    assert!(shown.contains("shards: 65536") && shown.contains("workers: 3"), "{shown}");
    e.insert(1, 1);
    e.flush();
    assert_eq!((e.get(&1), e.len()), (Some(1), 1));
    let e: Engine<u64, u64> = Engine::builder().shards(2).workers(64).build().unwrap();
    assert!(format!("{e:?}").contains("workers: 2"), "{e:?}");
}
