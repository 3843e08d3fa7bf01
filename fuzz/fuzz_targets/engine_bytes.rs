//! Byte-string keys (`Vec<u8>`, looked up by `&[u8]` through `Equivalent`) with a weigher
//! (key length + a per-value weight, zero allowed), against the model in `memokit_fuzz::Model`.
//!
//! Exercises weights, eviction by weight, entries heavier than the capacity (never stored, the
//! old value dropped all the same), borrowed-key lookups, removes and single-flight inserts.
//! With a large capacity every lookup is exact; with a small one (up to 63) a lookup may miss
//! but never return another value than the model's, and the weight must be back within the
//! capacity after maintenance.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use memokit_engine::{Engine, InsertOptions, ManualClock};
use memokit_fuzz::{check_eq, check_within, validate, Model, Step, Ttl, Val, TICK};

/// A key: mostly short strings over a four-letter alphabet (so keys collide and repeat),
/// sometimes up to 300 arbitrary bytes (so some weigh more than a small capacity).
#[derive(Clone, Debug)]
struct Key(Vec<u8>);

impl<'a> Arbitrary<'a> for Key {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        if u.ratio(1, 8)? {
            let n = u.int_in_range(0..=300usize)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(u.arbitrary::<u8>()?);
            }
            return Ok(Key(v));
        }
        let n = u.int_in_range(0..=3usize)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(b'a' + u.int_in_range(0..=3u8)?);
        }
        Ok(Key(v))
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// `insert` or `insert_with_ttl`, then (unless `quiet`) a lookup of the key, which also
    /// marks it as read for the eviction policy.
    Insert {
        key: Key,
        ttl: Ttl,
        weight: u8,
        quiet: bool,
    },
    Get {
        key: Key,
    },
    Remove {
        key: Key,
    },
    /// `get_or_try_insert_with_ref` by `&[u8]`, the computation failing or not.
    GetOrInsert {
        key: Key,
        ttl: Ttl,
        weight: u8,
        fail: bool,
    },
    Advance(Step),
    Flush,
    Maintain,
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// `None`: an unbounded-in-practice capacity (exact run); `Some(n)`: `n % 64`.
    small: Option<u8>,
    /// 1, 2 or 4 shards.
    shards: u8,
    ops: Vec<Op>,
}

fn weigh(k: &[u8], v: &Val) -> u64 {
    k.len() as u64 + u64::from(v.weight)
}

struct Run {
    engine: Engine<Vec<u8>, Val>,
    clock: ManualClock,
    model: Model<Vec<u8>>,
    single_shard: bool,
    token: Arc<()>,
    next_id: u64,
}

impl Run {
    fn fresh(&mut self, weight: u8) -> Val {
        self.next_id += 1;
        Val::new(self.next_id, weight, &self.token)
    }

    fn values_held(&self) -> u64 {
        Arc::strong_count(&self.token) as u64 - 1
    }

    fn check_flushed(&self, step: usize, op: &Op) {
        let len = self.engine.len();
        check_eq!(self.values_held(), len, step, op, "values alive vs len() after flush");
        let s = self.engine.stats();
        check_eq!(s.entries, len, step, op, "stats().entries vs len()");
        check_eq!(s.weight, self.engine.weighted_size(), step, op, "stats().weight");
        check_eq!(s.hits + s.misses, self.model.lookups, step, op, "hits + misses vs lookups");
        if self.model.exact {
            check_within(len, self.model.len_bounds(), "len()", step, op);
            let w = self.engine.weighted_size();
            check_within(w, self.model.weight_bounds(), "weighted_size()", step, op);
            check_eq!((s.hits, s.misses), (self.model.hits, self.model.misses), step, op, "stats");
        } else if self.single_shard && self.engine.weighted_size() > self.model.capacity {
            // One shard holds every entry, so the batch that went over the capacity must have
            // evicted back under it.
            panic!(
                "divergence after step {step} ({op:?}): weighted_size() {} over the capacity {} \
                 after a flush, with one shard (len {len})",
                self.engine.weighted_size(),
                self.model.capacity
            );
        } else if len > self.model.entries.len() as u64 {
            panic!(
                "divergence after step {step} ({op:?}): len() {len} but the model stores at \
                 most {}",
                self.model.entries.len()
            );
        }
    }

    fn step(&mut self, step: usize, op: &Op) {
        match op {
            Op::Insert { key, ttl, weight, quiet } => {
                let v = self.fresh(*weight);
                let (id, w) = (v.id, weigh(&key.0, &v));
                match ttl.duration() {
                    None => self.engine.insert(key.0.clone(), v),
                    Some(d) => self.engine.insert_with_ttl(key.0.clone(), v, d),
                }
                self.model.store(key.0.clone(), id, ttl.duration(), [0, 0], w);
                if !quiet {
                    let got = self.engine.get(key.0.as_slice()).map(|v| v.id);
                    self.model.check_lookup(&key.0, got, &("get right after", op));
                }
            }
            Op::Get { key } => {
                let got = self.engine.get(key.0.as_slice()).map(|v| v.id);
                self.model.check_lookup(&key.0, got, op);
            }
            Op::Remove { key } => {
                self.engine.remove(key.0.as_slice());
                self.model.entries.remove(&key.0);
                let got = self.engine.get(key.0.as_slice()).map(|v| v.id);
                self.model.check_lookup(&key.0, got, &("get right after", op));
            }
            Op::GetOrInsert { key, ttl, weight, fail } => {
                let v = self.fresh(*weight);
                let (id, w) = (v.id, weigh(&key.0, &v));
                let mut opts = InsertOptions::new();
                if let Some(d) = ttl.duration() {
                    opts = opts.ttl(d);
                }
                let mut ran = false;
                let mut owned = 0;
                let r: Result<Val, ()> = self.engine.get_or_try_insert_with_ref(
                    key.0.as_slice(),
                    opts,
                    |k: &[u8]| {
                        owned += 1;
                        k.to_vec()
                    },
                    || {
                        ran = true;
                        if *fail {
                            Err(())
                        } else {
                            Ok(v)
                        }
                    },
                );
                if owned > 1 || (owned == 1) != ran {
                    panic!("step {step} ({op:?}): to_owned ran {owned} times, compute ran {ran}");
                }
                match r {
                    Ok(got) if ran => {
                        if got.id != id {
                            panic!("step {step} ({op:?}): computed {id}, returned {}", got.id);
                        }
                        self.model.check_lookup(&key.0, None, op);
                        if ttl.duration() != Some(Duration::ZERO) {
                            self.model.store(key.0.clone(), id, ttl.duration(), [0, 0], w);
                        }
                    }
                    Ok(got) => self.model.check_lookup(&key.0, Some(got.id), op),
                    Err(()) if ran => self.model.check_lookup(&key.0, None, op),
                    Err(()) => panic!("step {step} ({op:?}): an error without a computation"),
                }
            }
            Op::Advance(s) => {
                if let Some(d) = self.model.advance(s.duration()) {
                    self.clock.advance(d);
                }
            }
            Op::Flush => {
                self.engine.flush();
                self.check_flushed(step, op);
            }
            Op::Maintain => {
                self.engine.run_maintenance();
                self.model.maintain();
                self.check_flushed(step, op);
                let (w, cap) = (self.engine.weighted_size(), self.model.capacity);
                if w > cap {
                    panic!(
                        "step {step}: weighted_size {w} over capacity {cap} after maintenance \
                         (len {})",
                        self.engine.len()
                    );
                }
            }
            Op::Clear => {
                self.engine.clear();
                self.model.entries.clear();
                check_eq!(self.engine.len(), 0, step, op, "len() after clear");
                check_eq!(self.engine.weighted_size(), 0, step, op, "weight after clear");
                check_eq!(self.values_held(), 0, step, op, "values alive after clear");
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let Input { small, shards, ops } = input;
    let clock = ManualClock::new();
    let (capacity, exact) = match small {
        None => (1 << 40, true),
        Some(n) => (u64::from(n % 64), false),
    };
    let engine = Engine::builder()
        .max_capacity(capacity)
        .weigher(|k: &Vec<u8>, v: &Val| weigh(k, v) as u32)
        .shards(1 << (shards % 3))
        .workers(1)
        .tick(TICK)
        .clock(clock.clone())
        .build()
        .expect("engine builds");
    let mut run = Run {
        engine,
        clock,
        model: Model::new(capacity, exact),
        single_shard: shards % 3 == 0,
        token: Arc::new(()),
        next_id: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        run.step(step, op);
        validate(run.engine.validate(), step, op);
    }
    run.engine.flush();
    run.check_flushed(ops.len(), &Op::Flush);
    let token = run.token.clone();
    drop(run);
    if Arc::strong_count(&token) != 1 {
        panic!("{} values still alive after the engine was dropped", Arc::strong_count(&token) - 1);
    }
});
