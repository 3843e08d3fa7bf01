//! Review of bounded size and its bookkeeping (`Shared::weight`, `settle`, `flush`).
//!
//! Every test runs on a manual clock and uses only `flush`/`run_maintenance` to make the
//! workers act. Each test's doc says which bug it would catch.

mod common;

use std::time::Duration;

use common::{manual_engine_with, no_hang};
use memokit_engine::Engine;

const SEC: Duration = Duration::from_secs(1);

/// A live entry is never evicted while expired entries take its place, however many of them
/// must go: here one store needs more dead entries reclaimed than one reclamation slice
/// (`RECLAIM_BEFORE_EVICT`, 1,024) frees. Catches a worker that reclaims one slice of dead
/// entries and then lets the policy evict live ones although dead ones are left.
///
/// Capacity 3,000 (weights); 2,500 dead entries of weight 1, 500 live of weight 1, then one
/// live entry of weight 1,500: 2,000 live weight in all, well within capacity, but 1,500 over
/// it until the dead go.
#[test]
fn more_dead_entries_than_one_reclaim_slice_go_before_live_ones() {
    // Keys >= 1_000_000 weigh their value; the others weigh 1.
    let (e, clock) = manual_engine_with::<u64, u64>(
        Engine::builder().max_capacity(3_000).shards(1).workers(1).weigher(|k, v| {
            if *k >= 1_000_000 {
                *v as u32
            } else {
                1
            }
        }),
    );
    for k in 10_000..12_500 {
        e.insert_with_ttl(k, 1, SEC);
    }
    for k in 0..500 {
        e.insert(k, 1);
    }
    e.flush();
    // Make the dead-to-be entries look valuable to the policy.
    for _ in 0..3 {
        for k in 10_000..12_500 {
            assert!(e.get(&k).is_some());
        }
    }
    clock.advance(2 * SEC);
    e.insert(1_000_000, 1_500);
    e.flush();
    assert_eq!(e.get(&1_000_000), Some(1_500), "the heavy live entry was evicted");
    for k in 0..500 {
        assert_eq!(e.get(&k), Some(1), "live key {k} evicted while dead entries remained");
    }
    let s = e.stats();
    assert_eq!(s.evictions, 0, "{s:?}");
    assert!(s.weight <= 3_000, "{s:?}");
    e.validate().unwrap();
}

/// With three workers or more, an over-capacity worker asks every worker whose shards may
/// hold dead entries to reclaim them. Each asked worker used to evict live entries of its own
/// shards as soon as its own reclamation left the engine over capacity, while another asked
/// worker had not reclaimed its dead entries yet: live entries went, below capacity, and dead
/// ones stayed. Catches any asked worker that evicts before every worker holding dead entries
/// has reclaimed them. A race between the asked workers, so each configuration is repeated
/// (with the bug it failed on most runs; found by `weight_bookkeeping_agrees_with_model`).
///
/// Capacity 100 (weights): 30 entries of weight 1 that expire, 60 live ones of weight 1 spread
/// over the three shards, then one live entry of weight 35: 95 live, 125 resident.
#[test]
fn asked_workers_do_not_evict_while_others_still_reclaim() {
    for (shards, workers) in [(3, 3), (8, 4), (16, 3)] {
        for round in 0..20 {
            let (e, clock) = manual_engine_with::<u64, u64>(
                Engine::builder()
                    .max_capacity(100)
                    .shards(shards)
                    .workers(workers)
                    .weigher(|k, v| if *k >= 1_000_000 { *v as u32 } else { 1 }),
            );
            for k in 10_000..10_030 {
                e.insert_with_ttl(k, 1, SEC);
            }
            for k in 0..60 {
                e.insert(k, 1);
            }
            e.flush();
            clock.advance(2 * SEC);
            e.insert(1_000_000, 35);
            let e2 = e.clone();
            no_hang("flush", move || e2.flush());
            let missing: Vec<u64> = (0..60).filter(|k| e.get(k).is_none()).collect();
            let s = e.stats();
            assert!(
                missing.is_empty() && e.get(&1_000_000).is_some(),
                "{shards} shards, {workers} workers, round {round}: live keys {missing:?} \
                 evicted below capacity ({s:?})"
            );
            assert_eq!(s.evictions, 0, "{shards} shards, {workers} workers, round {round}");
            assert!(s.weight <= 100, "{s:?}");
            e.validate().unwrap();
        }
    }
}

/// Capacity 1 in many shards, with one or several workers: each shard's share is rounded up
/// to 1, so the shards together could hold 16; after every `flush` exactly one entry of
/// weight 1 is resident, and entries the weigher weighs 0 are not counted in the weight.
/// Catches a bound enforced per shard share instead of on the
/// engine's total, a weight of 0 counted as 1 (or an eviction loop that never ends on
/// weight-0 victims: `no_hang`), and drift in `len`/`weight` at the smallest capacity.
#[test]
fn capacity_one_in_many_shards_and_weightless_entries() {
    for workers in [1, 3] {
        let (e, _clock) = manual_engine_with::<u64, u64>(
            Engine::builder()
                .max_capacity(1)
                .shards(16)
                .workers(workers)
                .weigher(|k, _| u32::from(*k < 1_000)),
        );
        for k in 0..40 {
            e.insert(k, k);
            e.insert(1_000 + k, k); // weighs 0
            let e2 = e.clone();
            no_hang("flush", move || e2.flush());
            let s = e.stats();
            assert_eq!(s.weight, 1, "{workers} workers, after key {k}: {s:?}");
            let weighed = (0..=k).filter(|k| e.get(k).is_some()).count();
            assert_eq!(weighed, 1, "{workers} workers, after key {k}: {s:?}");
            // Weightless entries may be chosen as victims (the policy does not skip them: see
            // the review report), but every resident one is visible and counted.
            let free = (1_000..=1_000 + k).filter(|k| e.get(k).is_some()).count() as u64;
            assert_eq!((s.entries, e.len()), (free + 1, free + 1), "{workers} workers");
            e.validate().unwrap();
        }
    }
}

/// A retirement is O(1) for the caller: each worker learns of it from a `Retire` command in
/// its mailbox. A store right after `retire`, over capacity, used to make its worker evict
/// live entries while another worker had not handled its `Retire` yet (its shards' `due_at`
/// did not show the retired entries), in about one run of seven. Catches an over-capacity
/// worker that ignores retirements the other workers have not handled yet. Repeated: a race.
#[test]
fn a_retirement_not_yet_handled_elsewhere_goes_before_live_entries() {
    use memokit_engine::InsertOptions;
    for round in 0..200 {
        let (e, _clock) = manual_engine_with::<u64, u64>(
            Engine::builder().max_capacity(100).shards(4).workers(2).weigher(|k, v| {
                if *k >= 1_000_000 {
                    *v as u32
                } else {
                    1
                }
            }),
        );
        let g = e.new_generation();
        for k in 10_000..10_040 {
            e.insert_with_options(k, 1, InsertOptions::new().generations(g, None));
        }
        for k in 0..55 {
            e.insert(k, 1);
        }
        e.flush();
        e.retire(g);
        e.insert(1_000_000, 30);
        let e2 = e.clone();
        no_hang("flush", move || e2.flush());
        let s = e.stats();
        assert_eq!(s.evictions, 0, "round {round}: live entries evicted ({s:?})");
        assert!((0..55).all(|k| e.get(&k).is_some()), "round {round}");
    }
}

/// The weighted model: keys `0..KEYS`; a value carries its weight in its high bits (the
/// weigher reads it back, `u32::MAX` included). Model: `HashMap<key, (value, deadline,
/// generation)>`, the manual clock, and the retired generations. Every operation is followed
/// by `flush`, so the workers apply them in program order. After each one:
///
/// * a visible value is the model's live value for its key (never a removed, expired,
///   superseded or retired one);
/// * `stats().weight <= max_capacity`, `stats().entries == len()`, `validate()` holds;
/// * if the model's live weight is within the capacity, every live model value is visible
///   (nothing evicted below capacity, whatever the dead entries resident, in whichever shard
///   or worker); otherwise entries the engine evicted leave the model;
/// * after `run_maintenance` (every dead entry reclaimed), `stats().weight` is exactly the sum
///   of the visible weights and `len()` their number.
///
/// Catches: weight drift in any path (batch deltas, in-place replacement, eviction, expiry,
/// stale reclamation, `clear`, a superseded pending store), underflow (a huge `weight`),
/// over-capacity after `flush`, eviction of live entries while dead ones are resident, a
/// `flush` that returns before the settle hops ended (the checks right after it fail), and a
/// `flush` that hangs (`no_hang`).
mod weighted_model {
    use super::*;
    use memokit_engine::{Generation, InsertOptions, ManualClock};
    use proptest::prelude::*;
    use std::collections::HashMap;

    const KEYS: u64 = 12;

    #[derive(Clone, Debug)]
    pub(super) enum Op {
        Insert { k: u64, w: u32, tag: u8, ttl: Option<u8>, gen: bool },
        GetOrInsert { k: u64, w: u32, tag: u8 },
        Remove(u64),
        Advance(u8),
        Retire,
        Clear,
        Maintain,
    }

    #[derive(Clone, Copy, Debug)]
    pub(super) struct Config {
        pub(super) capacity: u64,
        pub(super) shards: usize,
        pub(super) workers: usize,
    }

    fn value(w: u32, tag: u8) -> u64 {
        (u64::from(w) << 8) | u64::from(tag)
    }

    fn weight(v: u64) -> u64 {
        v >> 8
    }

    pub(super) fn config() -> impl Strategy<Value = Config> {
        (
            prop::sample::select(vec![0u64, 1, 2, 3, 5, 8, 20, u64::MAX]),
            prop::sample::select(vec![1usize, 2, 3, 8, 16]),
            1usize..=3,
        )
            .prop_map(|(capacity, shards, workers)| Config { capacity, shards, workers })
    }

    fn w() -> impl Strategy<Value = u32> {
        prop_oneof![6 => 0u32..=9, 1 => Just(u32::MAX)]
    }

    pub(super) fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            10 => (0..KEYS, w(), any::<u8>(), prop::option::of(1u8..4), any::<bool>())
                .prop_map(|(k, w, tag, ttl, gen)| Op::Insert { k, w, tag, ttl, gen }),
            3 => (0..KEYS, w(), any::<u8>()).prop_map(|(k, w, tag)| Op::GetOrInsert { k, w, tag }),
            3 => (0..KEYS).prop_map(Op::Remove),
            2 => (1u8..3).prop_map(Op::Advance),
            1 => Just(Op::Retire),
            1 => Just(Op::Clear),
            2 => Just(Op::Maintain),
        ]
    }

    #[derive(Clone, Copy, Debug)]
    struct Stored {
        value: u64,
        deadline: Option<Duration>,
        gen: Option<Generation>,
    }

    pub(super) fn run(cfg: Config, ops: &[Op]) -> Result<(), String> {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(cfg.capacity)
            .shards(cfg.shards)
            .workers(cfg.workers)
            .weigher(|_, v| u32::try_from(weight(*v)).unwrap_or(u32::MAX))
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut model: HashMap<u64, Stored> = HashMap::new();
        let mut gen = e.new_generation();
        for (step, op) in ops.iter().enumerate() {
            let fits = |w: u32| cfg.capacity > 0 && u64::from(w) <= cfg.capacity;
            let mut maintained = false;
            match *op {
                Op::Insert { k, w, tag, ttl, gen: with_gen } => {
                    let v = value(w, tag);
                    let mut opts = InsertOptions::new();
                    if let Some(t) = ttl {
                        opts = opts.ttl(u32::from(t) * SEC);
                    }
                    if with_gen {
                        opts = opts.generations(gen, None);
                    }
                    e.insert_with_options(k, v, opts);
                    if fits(w) {
                        let deadline = ttl.map(|t| clock.now() + u32::from(t) * SEC);
                        model
                            .insert(k, Stored { value: v, deadline, gen: with_gen.then_some(gen) });
                    } else {
                        model.remove(&k);
                    }
                }
                Op::GetOrInsert { k, w, tag } => {
                    let v = value(w, tag);
                    let got = e.get_or_insert_with(k, || v);
                    let live = model.get(&k).filter(|s| is_live(&e, &clock, s)).map(|s| s.value);
                    match live {
                        Some(m) if got == m => {}
                        // Evicted is not possible here: the model drops evicted keys.
                        Some(m) => return Err(format!("step {step}: k{k} gave {got}, model {m}")),
                        None if got == v => {
                            if fits(w) {
                                model.insert(k, Stored { value: v, deadline: None, gen: None });
                            } else {
                                model.remove(&k);
                            }
                        }
                        None => return Err(format!("step {step}: k{k} served {got}, not live")),
                    }
                }
                Op::Remove(k) => {
                    e.remove(&k);
                    model.remove(&k);
                }
                Op::Advance(s) => clock.advance(u32::from(s) * SEC),
                Op::Retire => {
                    e.retire(gen);
                    gen = e.new_generation();
                }
                Op::Clear => {
                    e.clear();
                    model.clear();
                }
                Op::Maintain => {
                    e.run_maintenance();
                    maintained = true;
                }
            }
            let e2 = e.clone();
            no_hang("flush", move || e2.flush());
            check(&e, &clock, cfg, &mut model, maintained)
                .map_err(|m| format!("step {step} ({op:?}): {m}"))?;
        }
        e.run_maintenance();
        e.flush();
        check(&e, &clock, cfg, &mut model, true).map_err(|m| format!("at the end: {m}"))
    }

    fn is_live(e: &Engine<u64, u64>, clock: &ManualClock, s: &Stored) -> bool {
        s.deadline.is_none_or(|d| clock.now() < d) && s.gen.is_none_or(|g| e.is_live(g))
    }

    fn check(
        e: &Engine<u64, u64>,
        clock: &ManualClock,
        cfg: Config,
        model: &mut HashMap<u64, Stored>,
        maintained: bool,
    ) -> Result<(), String> {
        let stats = e.stats();
        if stats.weight > cfg.capacity {
            return Err(format!("weight {} over capacity {}", stats.weight, cfg.capacity));
        }
        if stats.entries != e.len() {
            return Err(format!("entries {} but len {}", stats.entries, e.len()));
        }
        e.validate()?;
        let mut live_weight = 0u64;
        let mut visible_weight = 0u64;
        let mut visible = 0u64;
        let mut evicted = Vec::new();
        for k in 0..KEYS {
            let got = e.get(&k);
            let live = model.get(&k).filter(|s| is_live(e, clock, s)).map(|s| s.value);
            live_weight = live_weight.saturating_add(live.map_or(0, weight));
            match (got, live) {
                (Some(g), Some(m)) if g == m => {
                    visible += 1;
                    visible_weight += weight(g);
                }
                (Some(g), m) => return Err(format!("k{k} served {g}, model {m:?}")),
                (None, Some(_)) => evicted.push(k),
                (None, None) => {}
            }
        }
        if !evicted.is_empty() {
            if live_weight <= cfg.capacity {
                return Err(format!(
                    "live keys {evicted:?} missing with live weight {live_weight} <= capacity \
                     {} ({stats:?})",
                    cfg.capacity
                ));
            }
            for k in evicted {
                model.remove(&k);
            }
        }
        if maintained && (stats.weight, stats.entries) != (visible_weight, visible) {
            return Err(format!(
                "after maintenance: weight {} entries {}, visible weight {visible_weight} \
                 entries {visible}",
                stats.weight, stats.entries
            ));
        }
        Ok(())
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: common::proptest_cases(256),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// The weighted model (see `weighted_model`).
    #[test]
    fn weight_bookkeeping_agrees_with_model(
        cfg in weighted_model::config(),
        ops in proptest::collection::vec(weighted_model::op(), 1..50),
    ) {
        if let Err(m) = weighted_model::run(cfg, &ops) {
            return Err(proptest::test_runner::TestCaseError::fail(format!("{cfg:?}: {m}")));
        }
    }
}
