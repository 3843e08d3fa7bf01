//! Review s17b: the write path of sessions 16-17 (in-place replacement, the pending table and
//! its filter, `Cell::hides`, `settle`, `may_hold_dead`).
//!
//! Every test runs on a manual clock; a worker is held deterministically by a key whose
//! `Drop` (run on the worker) waits for a gate, never by a sleep.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{no_hang, Gate, HookedKey};
use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);

/// A pending replacement of a resident key whose new value is dead by the time the worker
/// applies it (its deadline has passed, or its generation was retired) frees the hidden
/// entry's weight as surely as a remove does: it must go before a live entry, as a pending
/// remove does (`Cell::hides`). Without a weigher a replacement did not set `hides` (weight 1
/// before and after), so a store of a new key into another shard, applied first, found the
/// engine over capacity by that entry and evicted a live one while the live entries fit.
///
/// Capacity 2, one worker, two shards: `a` and `b` resident; the worker is held in the `Drop`
/// of `b`'s old key (a replacement of `b` with a long deadline); then a store of the new key
/// `c` and a replacement of `a` with a 1 s deadline are queued in that order, and the clock
/// moves 2 s. Live: `b` and `c`, within capacity, so nothing may be evicted. Each round is a
/// fresh engine (a fresh hasher): the case needs `a` and `c` in different shards, which
/// about half the rounds give.
#[test]
fn a_pending_replacement_that_is_dead_when_applied_goes_before_a_live_entry() {
    for round in 0..24 {
        let clock = ManualClock::new();
        let e: Engine<HookedKey, u64> = Engine::builder()
            .max_capacity(2)
            .shards(2)
            .workers(1)
            .clock(clock.clone())
            .build()
            .expect("engine");
        let gate = Gate::new();
        let g = gate.clone();
        e.insert(HookedKey::new(1), 1);
        e.insert(HookedKey::with_drop(2, move || g.enter_and_wait()), 2);
        e.flush();
        assert_eq!(e.len(), 2);
        // The worker replaces b's entry and drops its old key: held at the gate.
        e.insert_with_ttl(HookedKey::new(2), 20, 1000 * SEC);
        gate.wait_entered();
        e.insert(HookedKey::new(3), 3);
        e.insert_with_ttl(HookedKey::new(1), 10, SEC);
        clock.advance(2 * SEC);
        gate.open();
        let e2 = e.clone();
        no_hang("flush", move || e2.flush());
        let s = e.stats();
        let got = [1, 2, 3].map(|k| e.get(&HookedKey::new(k)));
        assert_eq!(
            got,
            [None, Some(20), Some(3)],
            "round {round}: a live entry evicted, the live weight (2) fitting: {s:?}"
        );
        assert_eq!(s.evictions, 0, "round {round}: {s:?}");
        e.run_maintenance();
        e.flush();
        assert_eq!(e.len(), 2, "round {round}");
        e.validate().unwrap();
    }
}

/// The batched capacity model of `engine_rev_s16a`, without a weigher (every entry weighs 1,
/// so a replacement never changes a weight, and only what the engine knows of deadlines and
/// generations tells a pending replacement's entry from a live one), on 1-8 shards and 1-3
/// workers, with several operations (stores with and without deadlines and generations, in
/// place or not, removes, clock moves, retirements) between flushes.
///
/// Model: `HashMap<key, (value, deadline, generation)>` on the manual clock. At each `Flush` /
/// `Maintain` and each `Get`: a value served is the model's live value (never stale, never a
/// removed or superseded one); `len() <= capacity`, `entries == len()`, `validate()` holds;
/// a live key may be missing only if the number of live keys went over the capacity (after
/// some operation) since it was stored; after maintenance `len()` is exactly the number of
/// visible values; `inserts` never exceeds the stores made.
mod unweighted {
    use super::*;

    pub(super) const KEYS: u64 = 16;

    #[derive(Clone, Debug)]
    pub(super) enum Op {
        Insert { k: u64, tag: u16, ttl: Option<u8>, gen: bool },
        Get(u64),
        Remove(u64),
        Advance(u8),
        Retire,
        Flush,
        Maintain,
    }

    #[derive(Clone, Copy, Debug)]
    pub(super) struct Config {
        pub(super) capacity: u64,
        pub(super) shards: usize,
        pub(super) workers: usize,
    }

    #[derive(Clone, Copy, Debug)]
    struct Stored {
        value: u64,
        deadline: Option<Duration>,
        gen: Option<Generation>,
        evictable: bool,
    }

    pub(super) fn config() -> impl Strategy<Value = Config> {
        (
            prop::sample::select(vec![1u64, 2, 3, 5, 8]),
            prop::sample::select(vec![1usize, 2, 3, 8]),
            1usize..=3,
        )
            .prop_map(|(capacity, shards, workers)| Config { capacity, shards, workers })
    }

    pub(super) fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => (0..KEYS, any::<u16>(), prop::option::of(1u8..4), any::<bool>())
                .prop_map(|(k, tag, ttl, gen)| Op::Insert { k, tag, ttl, gen }),
            3 => (0..KEYS).prop_map(Op::Get),
            2 => (0..KEYS).prop_map(Op::Remove),
            3 => (1u8..3).prop_map(Op::Advance),
            1 => Just(Op::Retire),
            3 => Just(Op::Flush),
            2 => Just(Op::Maintain),
        ]
    }

    fn is_live(e: &Engine<u64, u64>, clock: &ManualClock, s: &Stored) -> bool {
        s.deadline.is_none_or(|d| clock.now() < d) && s.gen.is_none_or(|g| e.is_live(g))
    }

    pub(super) fn run(cfg: Config, ops: &[Op]) -> Result<(), String> {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(cfg.capacity)
            .shards(cfg.shards)
            .workers(cfg.workers)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut model: HashMap<u64, Stored> = HashMap::new();
        let mut gen = e.new_generation();
        let mut inserts = 0u64;
        for (step, op) in ops.iter().enumerate() {
            let mut checkpoint = None;
            match *op {
                Op::Insert { k, tag, ttl, gen: with_gen } => {
                    let v = (k << 16) | u64::from(tag);
                    let mut opts = InsertOptions::new();
                    if let Some(t) = ttl {
                        opts = opts.ttl(u32::from(t) * SEC);
                    }
                    if with_gen {
                        opts = opts.generations(gen, None);
                    }
                    e.insert_with_options(k, v, opts);
                    inserts += 1;
                    let deadline = ttl.map(|t| clock.now() + u32::from(t) * SEC);
                    let gen = with_gen.then_some(gen);
                    model.insert(k, Stored { value: v, deadline, gen, evictable: false });
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
                    no_hang("maintain", move || {
                        e2.run_maintenance();
                        e2.flush();
                    });
                    checkpoint = Some(true);
                }
            }
            let live = model.values().filter(|s| is_live(&e, &clock, s)).count() as u64;
            if live > cfg.capacity {
                model.values_mut().for_each(|s| s.evictable = true);
            }
            if let Some(maintained) = checkpoint {
                check(&e, &clock, cfg, &mut model, maintained, inserts)
                    .map_err(|m| format!("step {step} ({op:?}): {m}"))?;
            }
        }
        let e2 = e.clone();
        no_hang("flush", move || {
            e2.run_maintenance();
            e2.flush();
        });
        check(&e, &clock, cfg, &mut model, true, inserts).map_err(|m| format!("at the end: {m}"))
    }

    fn check(
        e: &Engine<u64, u64>,
        clock: &ManualClock,
        cfg: Config,
        model: &mut HashMap<u64, Stored>,
        maintained: bool,
        inserts: u64,
    ) -> Result<(), String> {
        let stats = e.stats();
        if e.len() > cfg.capacity || stats.weight != stats.entries {
            return Err(format!("len {} over capacity {} ({stats:?})", e.len(), cfg.capacity));
        }
        if stats.entries != e.len() {
            return Err(format!("entries {} but len {}", stats.entries, e.len()));
        }
        // Stores under a generation retired before they were applied are refused, so the
        // count may be lower, never higher.
        if stats.inserts > inserts {
            return Err(format!("{} inserts counted, {inserts} made", stats.inserts));
        }
        e.validate()?;
        let mut visible = 0u64;
        for k in 0..KEYS {
            let got = e.get(&k);
            let live = model.get(&k).filter(|s| is_live(e, clock, s)).copied();
            match (got, live) {
                (Some(g), Some(s)) if g == s.value => visible += 1,
                (None, Some(s)) if s.evictable => {
                    model.remove(&k);
                }
                (None, None) => {}
                (g, m) => return Err(format!("k{k}: {g:?}, model {m:?} ({stats:?})")),
            }
        }
        if maintained && stats.entries != visible {
            return Err(format!(
                "after maintenance: {} entries, {visible} visible ({stats:?})",
                stats.entries
            ));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// See [`unweighted`].
    #[test]
    fn batched_unweighted_model(
        cfg in unweighted::config(),
        ops in prop::collection::vec(unweighted::op(), 1..80),
    ) {
        if let Err(m) = unweighted::run(cfg, &ops) {
            return Err(TestCaseError::fail(format!("{cfg:?}: {m}")));
        }
    }
}
