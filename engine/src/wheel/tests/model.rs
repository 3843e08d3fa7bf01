//! Model test of the wheel alone, with extreme ticks, deadlines and clock jumps.
//!
//! Model: a map from entry to its absolute deadline and the current time `now` (moving
//! forward only, up to `u64::MAX - 1` as the manual clock does). Driven as the shard
//! drives the wheel: `Maintain` advances and drains the backlog (expired entries leave,
//! the others are scheduled again); `Reclaim` is `Shard::reclaim_dead`, in slices of
//! `budget` entries until a slice comes back short, as `settle` runs it. Checked after
//! every step: `validate`; the wheel holds exactly the model's entries; no entry leaves
//! before its deadline; after `Maintain` none is left whose tick has ended, after
//! `Reclaim` none whose deadline has passed; the slices end; and the bound from which the
//! shard says a dead entry may exist (`min(busy_from, next_expiry_from)`, what
//! `Shard::dead_possible_from` publishes) is at most every deadline held.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum When {
    /// `now + x`.
    After(u64),
    /// `now - x` (saturating): already past when scheduled.
    Before(u64),
    /// `k` ticks after the current tick's start, plus `delta` (boundaries).
    Ticks(u64, i8),
    /// `u64::MAX - x`.
    End(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Schedule(u32, When),
    Cancel(u32),
    Maintain(When),
    Reclaim(When, usize),
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        3 => (0u64..2_000).prop_map(When::After),
        1 => any::<u64>().prop_map(When::After),
        1 => (0u64..64).prop_map(|b| When::After(1 << b)),
        1 => (0u64..5_000).prop_map(When::Before),
        2 => (0u64..300, -2i8..=2).prop_map(|(k, d)| When::Ticks(k, d)),
        // Across the levels' boundaries (64^L ticks) and beyond the last level.
        3 => ((1u32..=5), -1i64..=1, -2i8..=2).prop_map(|(l, off, d)| {
            When::Ticks((1u64 << (6 * l)).saturating_add_signed(off), d)
        }),
        1 => (0u64..4).prop_map(When::End),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..24, when()).prop_map(|(i, w)| Op::Schedule(i, w)),
        1 => (0u32..24).prop_map(Op::Cancel),
        2 => when().prop_map(Op::Maintain),
        2 => (when(), 1usize..10).prop_map(|(w, b)| Op::Reclaim(w, b)),
    ]
}

fn tick() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1u64),
        Just(3),
        Just(10),
        Just(64),
        Just(1_000_000),
        Just(1_000_000_000),
        Just(365 * 86_400 * 1_000_000_000),
        Just(1 << 62),
        Just(u64::MAX / 3),
        Just(u64::MAX),
    ]
}

fn resolve(w: &When, now: u64, tick: u64) -> u64 {
    match *w {
        When::After(x) => now.saturating_add(x),
        When::Before(x) => now.saturating_sub(x),
        When::Ticks(k, d) => {
            let start = (now / tick).saturating_mul(tick);
            let t = start.saturating_add(k.saturating_mul(tick));
            t.saturating_add_signed(i64::from(d))
        }
        When::End(x) => u64::MAX - x,
    }
}

struct Run {
    links: Links,
    wheel: Wheel,
    tick: u64,
    now: u64,
    model: BTreeMap<u32, u64>,
}

impl Run {
    fn check(&self, after: &str) -> Result<(), TestCaseError> {
        let model = &self.model;
        let mut held = self
            .wheel
            .validate(&self.links, |i| model.get(&i).copied())
            .map_err(|e| TestCaseError::fail(format!("{after}: {e}")))?;
        held.sort_unstable();
        let want: Vec<u32> = model.keys().copied().collect();
        prop_assert_eq!(&held, &want, "{}: entries held", after);
        if let Some(&min) = model.values().min() {
            let from = self.wheel.busy_from(&self.links).min(self.wheel.next_expiry_from());
            prop_assert!(
                from <= min,
                "{}: dead possible from {} but an entry is due at {} (now {}, tick {})",
                after,
                from,
                min,
                self.now,
                self.tick
            );
        }
        Ok(())
    }

    /// Pops up to `budget` entries: expired ones leave, the others are scheduled
    /// again. Returns how many it popped.
    fn drain(&mut self, budget: usize) -> Result<usize, TestCaseError> {
        let mut work = 0;
        while work < budget {
            let Some(i) = self.wheel.pop_backlog(&mut self.links) else { break };
            work += 1;
            let d = self.model[&i];
            if d <= self.now {
                self.model.remove(&i);
            } else {
                self.wheel.schedule(&mut self.links, i, d);
            }
        }
        Ok(work)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Schedule(i, w) => {
                if self.model.remove(i).is_some() {
                    Wheel::cancel(&mut self.links, *i);
                }
                let d = resolve(w, self.now, self.tick);
                if d != u64::MAX {
                    self.model.insert(*i, d);
                    self.wheel.schedule(&mut self.links, *i, d);
                }
            }
            Op::Cancel(i) => {
                if self.model.remove(i).is_some() {
                    Wheel::cancel(&mut self.links, *i);
                }
            }
            Op::Maintain(w) => {
                self.now = resolve(w, self.now, self.tick).clamp(self.now, u64::MAX - 1);
                self.wheel.advance(&mut self.links, self.now);
                self.drain(usize::MAX)?;
                let ended = (self.now / self.tick).saturating_mul(self.tick);
                for (i, &d) in &self.model {
                    prop_assert!(d > ended, "entry {} due {} left at {}", i, d, self.now);
                }
            }
            Op::Reclaim(w, budget) => {
                self.now = resolve(w, self.now, self.tick).clamp(self.now, u64::MAX - 1);
                let mut slices = 0;
                loop {
                    slices += 1;
                    prop_assert!(slices < 10_000, "reclaiming does not end");
                    self.wheel.advance(&mut self.links, self.now);
                    if !self.model.is_empty() && self.wheel.next_expiry_from() <= self.now {
                        self.wheel.pull_next(&mut self.links, self.now);
                    }
                    if self.drain(*budget)? < *budget {
                        break;
                    }
                }
                for (i, &d) in &self.model {
                    prop_assert!(d > self.now, "entry {} due {} left at {}", i, d, self.now);
                }
            }
        }
        self.check(&format!("{op:?} (now {}, tick {})", self.now, self.tick))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn wheel_agrees_with_its_model(
        tick in tick(),
        start in prop_oneof![Just(0u64), any::<u64>(), (0u64..4).prop_map(|x| u64::MAX - 1 - x)],
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut links = Links::default();
        let now = start.min(u64::MAX - 1);
        let wheel = Wheel::new(&mut links, tick, now);
        let mut run = Run { links, wheel, tick, now, model: BTreeMap::new() };
        for op in &ops {
            run.step(op)?;
        }
    }
}
