//! Differential test of the engine against a naive model.
//!
//! Model: a `HashMap<key, (value, deadline, generations)>` + a manual clock + the set of
//! retired generation ids. A random sequence of operations is replayed on a single-threaded
//! engine driven by a `ManualClock` and on the model; after every lookup the engine's answer
//! is checked against the model:
//!
//! * a hit returns exactly the value the model holds for that key, and that value is not
//!   expired (deadline + `clock_resolution` reached), not under a retired generation, not
//!   removed or cleared, not superseded by a later insert (an insert the engine drops, under
//!   a retired generation or with a zero TTL or at capacity 0, also supersedes the older value:
//!   that older value is no longer "the last one inserted for that key");
//! * the one exception to "not under a retired generation": a value stored under one
//!   generation declared in its key (`InsertOptions::primary_in_key`) whose generation has been
//!   retired, but which no maintenance step has run since (`Status::Stale`), may be returned or
//!   missed (lookups do not check that generation; the workers reclaim the entry). Once a
//!   miss has been seen it must not come back, and after `run_maintenance` (one step reclaims
//!   every entry of a retired generation, up to 256k per shard) it must never be served. A
//!   value stored in the key with a secondary generation is hidden when either is retired, as
//!   any checked value;
//! * a miss is always allowed when the capacity is smaller than the key domain (eviction),
//!   and inside the window `[deadline, deadline + clock_resolution)`; otherwise a live model
//!   entry must hit (read-your-writes, nothing evicted below capacity);
//! * a value never comes back after a miss without a new insert;
//! * at capacity 0 nothing is ever returned;
//! * the engine's own `validate()` invariant checker holds after every operation;
//! * `generation_entries`: after `run_maintenance`, every retired generation counts 0 entries;
//!   after `flush` and `run_maintenance` (capacity above the key domain), every live
//!   generation counts at least the live model values stored under it (in the key or not);
//! * after `flush()`, `len()` lies between the number of live entries and the number of keys
//!   that may still be resident; at the end, once the clock has passed every deadline and
//!   maintenance has run, `len()` equals the model's live count exactly.
mod common;
#[path = "engine_model/harness.rs"]
mod harness;

use harness::*;
use memokit_engine::{Engine, InsertOptions, ManualClock};
use proptest::prelude::*;
proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random operation sequences agree with the model (see the module docs for the model).
    #[test]
    fn engine_agrees_with_model(cfg in config(), ops in proptest::collection::vec(op(), 1..60)) {
        run(cfg, &ops)?;
    }
}

/// Read-your-writes with a capacity far above the key domain: a lookup right after an insert
/// hits, whatever the number of shards and workers.
#[test]
fn lookup_right_after_insert_hits() {
    for (shards, workers) in [(1, 1), (4, 2), (64, 2)] {
        let clock = ManualClock::new();
        let engine: Engine<String, u64> = Engine::builder()
            .max_capacity(BIG)
            .shards(shards)
            .workers(workers)
            .clock(clock)
            .build()
            .unwrap();
        for i in 0..200u64 {
            let key = format!("k{}", i % 17);
            engine.insert(key.clone(), i);
            assert_eq!(engine.get(key.as_str()), Some(i), "shards={shards} workers={workers}");
        }
    }
}

/// A hand-written sequence touching expiry, both generations of an entry, a zero TTL and
/// maintenance, replayed twice on fresh engines (a manual clock leaves no room for timing).
#[test]
fn fixed_sequence_agrees_with_model() {
    let ops = [
        Op::Insert { key: 0, ttl: Ttl::Units(1), gens: Gens::One(0) },
        Op::Insert { key: 1, ttl: Ttl::Never, gens: Gens::Two(0, 1) },
        Op::Get(0),
        Op::Advance(2),
        Op::Get(0),
        Op::Retire(1),
        Op::Get(1),
        Op::Flush,
        Op::Maintain,
        Op::Insert { key: 2, ttl: Ttl::Zero, gens: Gens::None },
        Op::Get(2),
    ];
    let cfg = Config { capacity: BIG, shards: 4, workers: 2 };
    run(cfg, &ops).unwrap();
    run(cfg, &ops).unwrap();
}

/// Values stored under a generation declared in the key (`InsertOptions::primary_in_key`)
/// across a `Retire`, a `Maintain` and a `Renew`: the model allows the retired ones to be
/// found until maintenance and forbids them after; a store under the retired generation is
/// refused (a `get_or_insert` computes again), a secondary is checked, a later insert under a
/// live generation supersedes a stale value. On this engine (manual clock, nothing evicted)
/// the stale values are in fact still found before maintenance, and every case occurs.
#[test]
fn fixed_in_key_sequence_agrees_with_model() {
    let ops = [
        Op::Insert { key: 0, ttl: Ttl::Never, gens: Gens::OneInKey(0) },
        Op::Insert { key: 1, ttl: Ttl::Never, gens: Gens::TwoInKey(0, 1) },
        Op::Insert { key: 2, ttl: Ttl::Units(3), gens: Gens::OneInKey(0) },
        Op::GetOrInsert { key: 3, ttl: Ttl::Never, gens: Gens::OneInKey(1) },
        Op::Insert { key: 4, ttl: Ttl::Never, gens: Gens::TwoInKey(2, 0) },
        Op::Get(0),
        Op::Flush,
        Op::Retire(0),
        Op::Get(0),
        Op::Get(1),
        Op::Get(4),
        Op::Contains(2),
        Op::Insert { key: 5, ttl: Ttl::Never, gens: Gens::OneInKey(0) },
        Op::Get(5),
        Op::GetOrInsert { key: 5, ttl: Ttl::Never, gens: Gens::OneInKey(0) },
        Op::GetOrInsert { key: 5, ttl: Ttl::Never, gens: Gens::OneInKey(0) },
        Op::Flush,
        Op::Get(0),
        Op::Maintain,
        Op::Get(0),
        Op::Get(2),
        Op::Get(3),
        Op::Renew(0),
        Op::Insert { key: 0, ttl: Ttl::Never, gens: Gens::OneInKey(0) },
        Op::Get(0),
        Op::Flush,
        Op::Retire(0),
        Op::Get(0),
        Op::Insert { key: 0, ttl: Ttl::Units(1), gens: Gens::OneInKey(1) },
        Op::Get(0),
        Op::Maintain,
        Op::Get(0),
        Op::Retire(1),
        Op::Get(3),
        Op::Maintain,
        Op::Get(3),
        Op::Get(0),
    ];
    for (shards, workers) in [(1, 1), (4, 2), (16, 2)] {
        let cfg = Config { capacity: BIG, shards, workers };
        let c = run(cfg, &ops).unwrap();
        // Get(0) twice and Contains(2) before the first Maintain, Get(0) after the renewed
        // slot's retirement, Get(3) after Retire(1).
        assert_eq!(c.stale_hits, 5, "{cfg:?}: {c:?}");
        assert_eq!(c.stale_misses, 0, "{cfg:?}: {c:?}");
        // Get(0) and Get(2) after the first Maintain, Get(3) and Get(0) after the last.
        assert_eq!(c.reclaimed_misses, 4, "{cfg:?}: {c:?}");
        // The insert and both computations of k5.
        assert_eq!(c.refused_in_key, 3, "{cfg:?}: {c:?}");
        // Get(1), Get(4).
        assert_eq!(c.hidden_with_secondary, 2, "{cfg:?}: {c:?}");
    }
}

/// The in-key cases of the random test do occur: a fixed-seed run of the same strategies
/// (checked against the model like the property test) meets each of them.
#[test]
fn random_sequences_exercise_in_key_cases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (config(), proptest::collection::vec(op(), 1..60));
    let mut total = Counts::default();
    for _ in 0..400 {
        let (cfg, ops) = strategy.new_tree(&mut runner).unwrap().current();
        total.add(run(cfg, &ops).unwrap());
    }
    // `stale_misses` is not required: a miss of a stale value is allowed, not expected (it
    // comes only from eviction under capacity pressure, which depends on the workers' timing).
    // `stale_hits` also requires the engine to serve a stale value before maintenance, as it
    // does (the model allows a miss too): an engine checking the primary anyway fails here.
    let Counts { stale_hits, reclaimed_misses, refused_in_key, hidden_with_secondary, .. } = total;
    assert!(
        [stale_hits, reclaimed_misses, refused_in_key, hidden_with_secondary]
            .iter()
            .all(|&n| n > 0),
        "{total:?}"
    );
}

/// Lookups, removes and single flight by a borrowed form of the key (`Equivalent`), also
/// while the insert is still pending (no flush in between).
#[test]
fn borrowed_key_forms() {
    use memokit_engine::Equivalent;
    #[derive(Hash, PartialEq, Eq, Debug)]
    struct Owned(String, u64);
    #[derive(Hash)]
    struct Borrowed<'a>(&'a str, u64);
    impl Equivalent<Owned> for Borrowed<'_> {
        fn equivalent(&self, k: &Owned) -> bool {
            self.0 == k.0 && self.1 == k.1
        }
    }
    let e: Engine<Owned, u32> =
        Engine::builder().max_capacity(100).clock(ManualClock::new()).build().unwrap();
    e.insert(Owned("a".into(), 1), 7);
    assert_eq!(e.get(&Borrowed("a", 1)), Some(7), "pending insert found by borrowed key");
    assert_eq!(e.get(&Borrowed("a", 2)), None);
    e.flush();
    assert_eq!(e.get(&Borrowed("a", 1)), Some(7));
    assert!(e.contains_key(&Borrowed("a", 1)));
    e.remove(&Borrowed("a", 1));
    assert_eq!(e.get(&Borrowed("a", 1)), None);
    let mut owned = 0;
    let r: Result<u32, ()> = e.get_or_try_insert_with_ref(
        &Borrowed("b", 2),
        InsertOptions::new(),
        |q| {
            owned += 1;
            Owned(q.0.to_string(), q.1)
        },
        || Ok(9),
    );
    assert_eq!((r, owned), (Ok(9), 1));
    assert_eq!(e.get(&Owned("b".into(), 2)), Some(9));
    e.flush();
    assert_eq!(e.len(), 1);
}
