//! Review of time: deadlines at their edges, against a model and by hand.
//!
//! Model (`time_model`): a `HashMap<key, deadline>` (`None`: no deadline) and the manual
//! clock's time (which saturates at `u64::MAX - 1` ns). A store sets the key's deadline to
//! `now + ttl` (no deadline for no TTL or one too large to represent: `now + ttl` past
//! `u64::MAX - 1`, `Duration::MAX`), a zero TTL or a remove drops the key; the last store
//! decides, whatever the earlier ones said and whether they were applied yet. With a manual
//! clock the lookups' clock is the manual one: a value is served exactly while
//! `now < deadline` (pending or resident, `get`, `contains_key`, `get_or_insert_with`), and
//! after `run_maintenance` the engine holds exactly the keys whose deadline has not passed
//! (`len()`), every entry expired since the last step counted once in `expirations`.
//! Ticks from 1 ns to centuries; deadlines on and next to tick boundaries, at the end of
//! time, just below and above the "too large" limit; clock jumps of any size.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use memokit_engine::{Engine, ManualClock};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Ttl {
    None,
    Zero,
    Nanos(u64),
    /// `k` ticks from the current tick's start, plus `delta` ns (a deadline on or next to a
    /// tick boundary).
    Ticks(u64, i8),
    /// The largest TTL with a deadline, plus `delta` ns (past it: no deadline).
    Limit(i8),
    Max,
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, Ttl),
    Remove(u8),
    Get(u8),
    Compute(u8, Ttl),
    Advance(u64),
    /// To `k` ticks from the current tick's start, plus `delta` ns.
    AdvanceTicks(u64, i8),
    Flush,
    Maintain,
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        1 => Just(Ttl::None),
        1 => Just(Ttl::Zero),
        3 => (1u64..3_000).prop_map(Ttl::Nanos),
        1 => any::<u64>().prop_map(Ttl::Nanos),
        3 => (0u64..70, -2i8..=2).prop_map(|(k, d)| Ttl::Ticks(k, d)),
        1 => (-2i8..=2).prop_map(Ttl::Limit),
        1 => Just(Ttl::Max),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, ttl()).prop_map(|(k, t)| Op::Insert(k, t)),
        1 => (0u8..8).prop_map(Op::Remove),
        4 => (0u8..8).prop_map(Op::Get),
        1 => (0u8..8, ttl()).prop_map(|(k, t)| Op::Compute(k, t)),
        2 => prop_oneof![(0u64..3_000), any::<u64>(), (0u32..64).prop_map(|b| 1u64 << b)]
            .prop_map(Op::Advance),
        2 => (0u64..70, -2i8..=2).prop_map(|(k, d)| Op::AdvanceTicks(k, d)),
        1 => Just(Op::Flush),
        2 => Just(Op::Maintain),
    ]
}

fn tick() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1u64),
        Just(7),
        Just(1_000),
        Just(1_000_000_000),
        Just(100 * 365 * 86_400 * 1_000_000_000),
        Just(u64::MAX),
    ]
}

/// The end of the manual clock's time.
const END: u64 = u64::MAX - 1;

struct Model {
    now: u64,
    tick: u64,
    deadlines: HashMap<u8, Option<u64>>,
    expirations: u64,
}

impl Model {
    fn tick_time(&self, k: u64, delta: i8) -> u64 {
        let start = (self.now / self.tick).saturating_mul(self.tick);
        start.saturating_add(k.saturating_mul(self.tick)).saturating_add_signed(i64::from(delta))
    }

    /// The TTL as a `Duration` for the engine, and the deadline the model expects (`None`:
    /// not stored; `Some(None)`: no deadline).
    fn ttl(&self, t: &Ttl) -> (Option<Duration>, Option<Option<u64>>) {
        let nanos = |n: u64| {
            // A deadline past the clock's end cannot be reached: no deadline.
            let d = self.now.checked_add(n).filter(|&d| d < u64::MAX);
            (Some(Duration::from_nanos(n)), Some(d))
        };
        match *t {
            Ttl::None => (None, Some(None)),
            Ttl::Zero => (Some(Duration::ZERO), None),
            Ttl::Nanos(0) => (Some(Duration::ZERO), None),
            Ttl::Nanos(n) => nanos(n),
            Ttl::Ticks(k, delta) => match self.tick_time(k, delta).checked_sub(self.now) {
                Some(n) if n > 0 => nanos(n),
                _ => nanos(1),
            },
            Ttl::Limit(delta) => {
                nanos((u64::MAX - 1 - self.now).saturating_add_signed(delta.into()).max(1))
            }
            Ttl::Max => (Some(Duration::MAX), Some(None)),
        }
    }

    fn live(&self, key: u8) -> bool {
        self.deadlines.get(&key).is_some_and(|d| d.is_none_or(|d| self.now < d))
    }
}

fn run(tick: u64, shards: usize, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    clock.advance(Duration::from_nanos(start));
    let engine: Engine<u8, u64> = Engine::builder()
        .max_capacity(1_000)
        .shards(shards)
        .workers(2)
        .tick(Duration::from_nanos(tick))
        .clock_resolution(Duration::from_secs(3600))
        .clock(clock.clone())
        .build()
        .unwrap();
    let now = || u64::try_from(clock.now().as_nanos()).unwrap();
    let mut m = Model { now: now(), tick, deadlines: HashMap::new(), expirations: 0 };
    let mut values: HashMap<u8, u64> = HashMap::new();
    for (step, op) in ops.iter().enumerate() {
        let v = step as u64;
        match op {
            Op::Insert(k, t) => {
                let (ttl, deadline) = m.ttl(t);
                match ttl {
                    Some(ttl) => engine.insert_with_ttl(*k, v, ttl),
                    None => engine.insert(*k, v),
                }
                match deadline {
                    Some(d) => {
                        m.deadlines.insert(*k, d);
                        values.insert(*k, v);
                    }
                    None => {
                        m.deadlines.remove(k);
                    }
                }
            }
            Op::Remove(k) => {
                engine.remove(k);
                m.deadlines.remove(k);
            }
            Op::Get(k) => {
                let want = m.live(*k).then(|| values[k]);
                prop_assert_eq!(
                    engine.get(k),
                    want,
                    "get {} at {} (step {}: {:?})",
                    k,
                    m.now,
                    step,
                    op
                );
                prop_assert_eq!(engine.contains_key(k), want.is_some());
            }
            Op::Compute(k, t) => {
                let (ttl, deadline) = m.ttl(t);
                let mut opts = memokit_engine::InsertOptions::new();
                if let Some(ttl) = ttl {
                    opts = opts.ttl(ttl);
                }
                let live = m.live(*k).then(|| values[k]);
                let got = engine.get_or_insert_with_options(*k, opts, || v);
                prop_assert_eq!(got, live.unwrap_or(v), "compute {} at {}", k, m.now);
                // A zero TTL stores nothing; the older value, dead already, is left to expire.
                if let (None, Some(d)) = (live, deadline) {
                    m.deadlines.insert(*k, d);
                    values.insert(*k, v);
                }
            }
            Op::Advance(n) => clock.advance(Duration::from_nanos(*n)),
            Op::AdvanceTicks(k, delta) => {
                let to = m.tick_time(*k, *delta).min(END);
                clock.advance(Duration::from_nanos(to.saturating_sub(m.now)));
            }
            Op::Flush => engine.flush(),
            Op::Maintain => {
                engine.run_maintenance();
                let now = m.now;
                let before = m.deadlines.len();
                m.deadlines.retain(|_, d| d.is_none_or(|d| now < d));
                m.expirations += (before - m.deadlines.len()) as u64;
                prop_assert_eq!(
                    engine.len(),
                    m.deadlines.len() as u64,
                    "len after maintenance at {}",
                    now
                );
                prop_assert_eq!(
                    engine.stats().expirations,
                    m.expirations,
                    "expirations at {}",
                    now
                );
            }
        }
        m.now = now();
        engine.validate().map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random stores, lookups and clock moves agree with the model (module docs).
    #[test]
    fn time_model(
        tick in tick(),
        shards in prop_oneof![Just(1usize), Just(4)],
        start in prop_oneof![Just(0u64), any::<u64>(), (0u64..3_000).prop_map(|x| END - x)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(tick, shards, start.min(END), &ops)?;
    }
}
