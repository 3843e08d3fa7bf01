//! Review s16a: the weighted capacity model of `engine_rev_capacity`, but with several
//! operations between flushes, so that the workers apply batches of mixed removes, in-place
//! replacements (weights changing) and new keys, in whatever order their mailboxes and the
//! shards' wake-ups give, on 1-8 shards and 1-3 workers.
//!
//! Model: `HashMap<key, (value, deadline, generation)>` on a manual clock. At each `Flush` /
//! `Maintain` (and on each `Get`): a value served is the model's live value; the weight is
//! within the capacity, `entries == len()`, `validate()` holds; a live key may be missing only
//! if the model's live weight went over the capacity (after some operation) since it was
//! stored; after maintenance the weight and entry count are exactly those of the visible
//! values.
//!
//! Timing decides which batches the workers see, so this finds such orderings rather than
//! replaying one (proptest's shrinking is unreliable here; the failing case is printed).
//! Failed before the fix (`Cell::hides`) in about half the runs of 256 cases, always with two
//! shards or more (9,000 cases on one shard passed),
//! e.g. `Config { capacity: 10, shards: 8, workers: 2 }: step 37 (Flush): k11: None, model
//! Some(..)`: a store into one shard applied before an earlier remove (or shrinking
//! replacement) pending in another shard, the engine over capacity by the weight of the
//! entry already removed, and a live entry evicted in its place. The deterministic case is
//! `worker::capacity::tests::a_pending_remove_goes_before_a_live_entry`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::no_hang;
use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);
const KEYS: u64 = 24;

#[derive(Clone, Debug)]
enum Op {
    Insert { k: u64, w: u32, tag: u8, ttl: Option<u8>, gen: bool },
    Get(u64),
    Remove(u64),
    Advance(u8),
    Retire,
    Flush,
    Maintain,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    capacity: u64,
    shards: usize,
    workers: usize,
}

#[derive(Clone, Copy, Debug)]
struct Stored {
    value: u64,
    deadline: Option<Duration>,
    gen: Option<Generation>,
    /// The live weight exceeded the capacity since it was stored: it may be evicted.
    evictable: bool,
}

fn value(w: u32, tag: u8) -> u64 {
    (u64::from(w) << 8) | u64::from(tag)
}

fn weight(v: u64) -> u64 {
    v >> 8
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop::sample::select(vec![4u64, 10, 20, 40]),
        prop::sample::select(vec![1usize, 2, 3, 5, 8]),
        1usize..=3,
    )
        .prop_map(|(capacity, shards, workers)| Config { capacity, shards, workers })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..KEYS, 0u32..=12, any::<u8>(), prop::option::of(1u8..4), any::<bool>())
            .prop_map(|(k, w, tag, ttl, gen)| Op::Insert { k, w, tag, ttl, gen }),
        3 => (0..KEYS).prop_map(Op::Get),
        2 => (0..KEYS).prop_map(Op::Remove),
        2 => (1u8..3).prop_map(Op::Advance),
        1 => Just(Op::Retire),
        3 => Just(Op::Flush),
        2 => Just(Op::Maintain),
    ]
}

fn is_live(e: &Engine<u64, u64>, clock: &ManualClock, s: &Stored) -> bool {
    s.deadline.is_none_or(|d| clock.now() < d) && s.gen.is_none_or(|g| e.is_live(g))
}

fn run(cfg: Config, ops: &[Op]) -> Result<(), String> {
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
        let mut checkpoint = None;
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
                if u64::from(w) <= cfg.capacity {
                    let deadline = ttl.map(|t| clock.now() + u32::from(t) * SEC);
                    let gen = with_gen.then_some(gen);
                    model.insert(k, Stored { value: v, deadline, gen, evictable: false });
                } else {
                    model.remove(&k);
                }
            }
            Op::Get(k) => {
                let got = e.get(&k);
                let live = model.get(&k).filter(|s| is_live(&e, &clock, s)).copied();
                match (got, live) {
                    (Some(g), Some(s)) if g == s.value => {}
                    (None, Some(s)) if s.evictable => {
                        model.remove(&k);
                    }
                    (None, None) => {}
                    (g, m) => return Err(format!("step {step}: get k{k} {g:?}, model {m:?}")),
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
            Op::Flush => {
                let e2 = e.clone();
                no_hang("flush", move || e2.flush());
                checkpoint = Some(false);
            }
            Op::Maintain => {
                let e2 = e.clone();
                no_hang("maintain", move || e2.run_maintenance());
                let e2 = e.clone();
                no_hang("flush", move || e2.flush());
                checkpoint = Some(true);
            }
        }
        let live_weight: u64 =
            model.values().filter(|s| is_live(&e, &clock, s)).map(|s| weight(s.value)).sum();
        if live_weight > cfg.capacity {
            model.values_mut().for_each(|s| s.evictable = true);
        }
        if let Some(maintained) = checkpoint {
            check(&e, &clock, cfg, &mut model, maintained)
                .map_err(|m| format!("step {step} ({op:?}): {m}"))?;
        }
    }
    let e2 = e.clone();
    no_hang("flush", move || {
        e2.run_maintenance();
        e2.flush();
    });
    check(&e, &clock, cfg, &mut model, true).map_err(|m| format!("at the end: {m}"))
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
    let (mut visible, mut visible_weight) = (0u64, 0u64);
    for k in 0..KEYS {
        let got = e.get(&k);
        let live = model.get(&k).filter(|s| is_live(e, clock, s)).copied();
        match (got, live) {
            (Some(g), Some(s)) if g == s.value => {
                visible += 1;
                visible_weight += weight(g);
            }
            (None, Some(s)) if s.evictable => {
                model.remove(&k);
            }
            (None, None) => {}
            (g, m) => return Err(format!("k{k}: {g:?}, model {m:?} ({stats:?})")),
        }
    }
    if maintained && (stats.weight, stats.entries) != (visible_weight, visible) {
        return Err(format!(
            "after maintenance: weight {} entries {}, visible weight {visible_weight} entries \
             {visible}",
            stats.weight, stats.entries
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn batched_weighted_model(cfg in config(), ops in prop::collection::vec(op(), 1..80)) {
        if let Err(m) = run(cfg, &ops) {
            return Err(TestCaseError::fail(format!("{cfg:?}: {m}")));
        }
    }
}
