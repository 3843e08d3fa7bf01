//! Every counter of `EngineStats`, `len()`, `weighted_size()` and `generation_entries` is
//! exact where the docs say so, checked against a model after every `flush`.
//!
//! **The model.** A `HashMap<key, Entry { value, deadline, gens, in_key }>` of *resident*
//! entries, a manual clock `now`, the set of retired generations, and the expected counters.
//! The engine runs on a `ManualClock` with a capacity far above what the keys can weigh, so
//! nothing is evicted and no worker expires or reclaims on its own: only `run_maintenance`
//! does (the builder's and `run_maintenance`'s docs). Every store is followed by `flush`, so
//! that no store is superseded while still pending (the one case where `inserts` depends on
//! the worker's timing). The rules, from the docs of `EngineStats` and the methods:
//! - a lookup (`get`, `contains_key`, `get_or_insert_with`) is a hit when the key's entry is
//!   resident, `now < deadline`, and every generation it checks is live (a primary declared
//!   in the key is not checked: until maintenance reclaims it, it is found); otherwise a
//!   miss. A `get_or_insert_with` miss counts one miss and computes;
//! - a store that can be kept (TTL not zero, every generation live) counts one insert and
//!   replaces the resident entry (which leaves silently: not an expiration, not stale). One
//!   that cannot be kept drops the resident entry (an explicit insert) or leaves it alone
//!   (a `get_or_insert_with`, which stores nothing and displaces nothing then);
//! - `remove` and `clear` drop resident entries without counting them anywhere;
//! - `run_maintenance` removes every resident entry whose deadline has passed (an expiration;
//!   the wheel goes first, so an entry both expired and retired counts as expired), then every
//!   one under a retired generation, in its key or not (stale reclaimed);
//! - `entries` and `len()` are the resident entries, `weight` and `weighted_size()` the sum of
//!   their weights (the weigher: value % 3, zero included), `generation_entries(g)` the
//!   resident entries stored under `g`, `evictions` and `single_flight_waits` 0.
mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use memokit_engine::{Engine, EngineStats, Generation, InsertOptions, ManualClock};
use proptest::prelude::*;

const KEYS: u8 = 10;
const SLOTS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Gens {
    None,
    One(u8),
    Two(u8, u8),
    InKey(u8),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Insert { key: u8, ttl: Option<u8>, gens: Gens },
    GetOrInsert { key: u8, ttl: Option<u8>, gens: Gens },
    Get(u8),
    Contains(u8),
    Remove(u8),
    Retire(u8),
    Renew(u8),
    Advance(u8),
    Maintain,
    Clear,
}

fn gens() -> impl Strategy<Value = Gens> {
    prop_oneof![
        2 => Just(Gens::None),
        2 => (0..SLOTS as u8).prop_map(Gens::One),
        1 => (0..SLOTS as u8, 0..SLOTS as u8).prop_map(|(a, b)| Gens::Two(a, b)),
        1 => (0..SLOTS as u8).prop_map(Gens::InKey),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // TTLs in seconds (0: do not store), the clock in steps of half a second.
    let ttl = prop_oneof![2 => Just(None), 3 => (0u8..4).prop_map(Some)];
    prop_oneof![
        5 => (0..KEYS, ttl.clone(), gens()).prop_map(|(key, ttl, gens)| Op::Insert { key, ttl, gens }),
        4 => (0..KEYS, ttl, gens()).prop_map(|(key, ttl, gens)| Op::GetOrInsert { key, ttl, gens }),
        4 => (0..KEYS).prop_map(Op::Get),
        1 => (0..KEYS).prop_map(Op::Contains),
        2 => (0..KEYS).prop_map(Op::Remove),
        1 => (0..SLOTS as u8).prop_map(Op::Retire),
        1 => (0..SLOTS as u8).prop_map(Op::Renew),
        3 => (0u8..5).prop_map(Op::Advance),
        2 => Just(Op::Maintain),
        1 => Just(Op::Clear),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    value: u64,
    /// Nanoseconds on the manual clock; `None`: no deadline.
    deadline: Option<u64>,
    gens: [Option<Generation>; 2],
    in_key: bool,
}

struct Model {
    entries: HashMap<u8, Entry>,
    retired: HashSet<Generation>,
    now: u64,
    expect: EngineStats,
}

impl Model {
    fn live(&self, g: Option<Generation>) -> bool {
        g.is_none_or(|g| !self.retired.contains(&g))
    }

    /// What a lookup finds.
    fn visible(&self, key: u8) -> Option<u64> {
        let e = self.entries.get(&key)?;
        let timely = e.deadline.is_none_or(|d| self.now < d);
        let primary_ok = e.in_key || self.live(e.gens[0]);
        (timely && primary_ok && self.live(e.gens[1])).then_some(e.value)
    }

    fn lookup(&mut self, key: u8) -> Option<u64> {
        let v = self.visible(key);
        if v.is_some() {
            self.expect.hits += 1;
        } else {
            self.expect.misses += 1;
        }
        v
    }

    fn maintain(&mut self) {
        let now = self.now;
        let expired: Vec<u8> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.entries.remove(&k);
            self.expect.expirations += 1;
        }
        let retired = &self.retired;
        let stale: Vec<u8> = self
            .entries
            .iter()
            .filter(|(_, e)| e.gens.iter().flatten().any(|g| retired.contains(g)))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.entries.remove(&k);
            self.expect.stale_reclaimed += 1;
        }
    }
}

fn weight(v: u64) -> u64 {
    v % 3
}

fn options(
    ttl: Option<u8>,
    gens: Gens,
    slots: &[Generation; SLOTS],
) -> (InsertOptions, [Option<Generation>; 2], bool) {
    let mut opts = InsertOptions::new();
    if let Some(s) = ttl {
        opts = opts.ttl(Duration::from_secs(u64::from(s)));
    }
    let (g, in_key) = match gens {
        Gens::None => ([None, None], false),
        Gens::One(a) => ([Some(slots[a as usize]), None], false),
        // The same generation twice would count the entry twice under it: kept to one.
        Gens::Two(a, b) if a == b => ([Some(slots[a as usize]), None], false),
        Gens::Two(a, b) => ([Some(slots[a as usize]), Some(slots[b as usize])], false),
        Gens::InKey(a) => ([Some(slots[a as usize]), None], true),
    };
    if let Some(p) = g[0] {
        opts = opts.generations(p, g[1]);
    }
    if in_key {
        opts = opts.primary_in_key();
    }
    (opts, g, in_key)
}

fn check(e: &Engine<u8, u64>, m: &Model, slots: &[Generation], step: usize) -> Result<(), String> {
    e.flush();
    let mut want = m.expect;
    want.entries = m.entries.len() as u64;
    want.weight = m.entries.values().map(|x| weight(x.value)).sum();
    let got = e.stats();
    if got != want {
        return Err(format!("step {step}: stats {got:?}, model {want:?}"));
    }
    if (e.len(), e.weighted_size()) != (want.entries, want.weight) {
        return Err(format!("step {step}: len {} weight {}", e.len(), e.weighted_size()));
    }
    for g in slots {
        let n = m.entries.values().filter(|x| x.gens.contains(&Some(*g))).count() as u64;
        let got = e.generation_entries(*g);
        if got != n {
            return Err(format!("step {step}: generation_entries({g:?}) {got}, model {n}"));
        }
    }
    e.validate().map_err(|err| format!("step {step}: {err}"))
}

fn run(shards: usize, workers: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let e: Engine<u8, u64> = Engine::builder()
        .max_capacity(1_000)
        .shards(shards)
        .workers(workers)
        .weigher(|_, v| weight(*v) as u32)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut slots: [Generation; SLOTS] = std::array::from_fn(|_| e.new_generation());
    let mut issued: Vec<Generation> = slots.to_vec();
    let mut m = Model {
        entries: HashMap::new(),
        retired: HashSet::new(),
        now: 0,
        expect: EngineStats::default(),
    };
    let mut token = 0u64;
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert { key, ttl, gens } => {
                token += 1;
                let (opts, g, in_key) = options(ttl, gens, &slots);
                e.insert_with_options(key, token, opts);
                let kept = ttl != Some(0) && g.iter().all(|g| m.live(*g));
                if kept {
                    m.expect.inserts += 1;
                    let deadline = ttl.map(|s| m.now + u64::from(s) * 1_000_000_000);
                    m.entries.insert(key, Entry { value: token, deadline, gens: g, in_key });
                } else {
                    m.entries.remove(&key);
                }
            }
            Op::GetOrInsert { key, ttl, gens } => {
                token += 1;
                let (opts, g, in_key) = options(ttl, gens, &slots);
                let want = m.lookup(key);
                let got = e.get_or_insert_with_options(key, opts, || token);
                prop_assert_eq!(got, want.unwrap_or(token), "step {}: {:?}", step, op);
                let kept = ttl != Some(0) && g.iter().all(|g| m.live(*g));
                if want.is_none() && kept {
                    m.expect.inserts += 1;
                    let deadline = ttl.map(|s| m.now + u64::from(s) * 1_000_000_000);
                    m.entries.insert(key, Entry { value: token, deadline, gens: g, in_key });
                }
            }
            Op::Get(key) => {
                let want = m.lookup(key);
                prop_assert_eq!(e.get(&key), want, "step {}: {:?}", step, op);
            }
            Op::Contains(key) => {
                let want = m.lookup(key);
                prop_assert_eq!(e.contains_key(&key), want.is_some(), "step {}: {:?}", step, op);
            }
            Op::Remove(key) => {
                e.remove(&key);
                m.entries.remove(&key);
            }
            Op::Retire(s) => {
                e.retire(slots[s as usize]);
                m.retired.insert(slots[s as usize]);
            }
            Op::Renew(s) => {
                slots[s as usize] = e.new_generation();
                issued.push(slots[s as usize]);
            }
            Op::Advance(halves) => {
                clock.advance(Duration::from_millis(500 * u64::from(halves)));
                m.now += 500_000_000 * u64::from(halves);
            }
            Op::Maintain => {
                e.run_maintenance();
                m.maintain();
            }
            Op::Clear => {
                e.clear();
                m.entries.clear();
            }
        }
        check(&e, &m, &issued, step).map_err(TestCaseError::fail)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random operation sequences: every counter agrees with the model after every step.
    #[test]
    fn counters_agree_with_model(
        shards in prop_oneof![Just(1usize), Just(3), Just(8)],
        workers in 1usize..=3,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(shards, workers, &ops)?;
    }
}

/// The cases the model singles out, in a fixed order: an entry both expired and retired is
/// an expiration; a store that replaces an expired or a retired entry counts neither; a
/// `get_or_insert_with` under a retired generation stores nothing and displaces nothing; a
/// primary in the key is found until maintenance reclaims it.
#[test]
fn fixed_sequence_agrees_with_model() {
    use Op::*;
    let ops = [
        Insert { key: 1, ttl: Some(1), gens: Gens::One(0) },
        Insert { key: 2, ttl: Some(1), gens: Gens::None },
        Insert { key: 3, ttl: None, gens: Gens::InKey(1) },
        Insert { key: 4, ttl: None, gens: Gens::Two(2, 1) },
        Advance(2),
        Retire(0),
        Retire(1),
        Get(1),
        Get(3),
        Get(4),
        Insert { key: 2, ttl: None, gens: Gens::None },
        GetOrInsert { key: 4, ttl: None, gens: Gens::One(1) },
        GetOrInsert { key: 5, ttl: Some(0), gens: Gens::None },
        // In place (a resident key, no deadline, same generations and weight).
        Insert { key: 6, ttl: None, gens: Gens::None },
        Insert { key: 6, ttl: None, gens: Gens::None },
        Maintain,
        Get(3),
        Renew(1),
        GetOrInsert { key: 3, ttl: None, gens: Gens::InKey(1) },
        Contains(3),
        Maintain,
    ];
    for (shards, workers) in [(1, 1), (8, 3)] {
        run(shards, workers, &ops).unwrap();
    }
}

/// Over capacity, the dead entries a worker reclaims before it evicts count as what they are
/// (expired, stale), and only live entries the policy then removes count as evictions.
#[test]
fn reclaimed_before_eviction_counts_as_expired_or_stale() {
    for (shards, workers) in [(1, 1), (4, 2)] {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(6)
            .shards(shards)
            .workers(workers)
            .clock(clock.clone())
            .build()
            .unwrap();
        let g = e.new_generation();
        for k in 0..3 {
            e.insert_with_ttl(k, k, Duration::from_secs(1));
            e.insert_with_options(10 + k, k, InsertOptions::new().generations(g, None));
        }
        e.flush();
        clock.advance(Duration::from_secs(1));
        e.retire(g);
        for k in 20..26 {
            e.insert(k, k);
        }
        e.flush();
        let s = e.stats();
        let what = format!("{shards} shards: {s:?}");
        assert_eq!(
            (s.inserts, s.expirations, s.stale_reclaimed, s.evictions),
            (12, 3, 3, 0),
            "{what}"
        );
        assert_eq!((s.entries, s.weight, e.generation_entries(g)), (6, 6, 0), "{what}");
        for k in 30..32 {
            e.insert(k, k);
        }
        e.flush();
        let s = e.stats();
        assert_eq!((s.inserts, s.evictions, s.entries), (14, 2, 6), "{shards} shards: {s:?}");
        e.run_maintenance();
        assert_eq!(e.stats(), s, "{shards} shards: nothing left to expire or reclaim");
    }
}

/// Single flight in the counters: a leader counts one miss, each caller that joins its
/// computation one `single_flight_waits` (and neither a hit nor a miss). When the leader
/// panics, its waiters retry without waiting again (session 20): each computes (one more
/// miss: the first leads and stores, the others compute for themselves) or, arriving after
/// that store, hits the stored value. (Before, they joined the retry: one more wait each.)
#[test]
fn single_flight_counts_one_miss_per_leader() {
    const WAITERS: u64 = 3;
    for panics in [false, true] {
        let e = common::sharded_engine(4);
        let gate = common::Gate::new();
        let leader = {
            let (e, gate) = (e.clone(), gate.clone());
            std::thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    e.get_or_insert_with(1, || {
                        gate.enter_and_wait();
                        assert!(!panics, "boom");
                        10
                    })
                }))
            })
        };
        gate.wait_entered();
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || e.get_or_insert_with(1, || 11))
            })
            .collect();
        common::wait_until("the waiters joined", || e.stats().single_flight_waits == WAITERS);
        gate.open();
        let led = common::no_hang("the leader", move || leader.join().unwrap());
        assert_eq!(led.is_err(), panics);
        for w in waiters {
            let v = common::no_hang("a waiter", move || w.join().unwrap());
            assert_eq!(v, if panics { 11 } else { 10 });
        }
        let s = e.stats();
        if panics {
            assert!(s.misses >= 2, "{s:?}: the leader, then at least one waiter computing");
            assert_eq!(s.single_flight_waits, WAITERS, "{s:?}: no waiter waited twice");
            assert_eq!(s.misses - 1 + s.hits, WAITERS, "{s:?}: the waiters computed or hit");
        } else {
            assert_eq!((s.hits, s.misses, s.single_flight_waits), (0, 1, WAITERS), "{s:?}");
        }
        e.flush();
        assert_eq!((e.stats().inserts, e.stats().entries), (1, 1));
    }
}
