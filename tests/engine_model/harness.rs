//! The harness of `engine_model.rs`: the operations and their strategies, the model, and the
//! replay of a sequence on an engine and the model side by side (what is checked: the
//! module docs of `engine_model.rs`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};
use proptest::prelude::*;

/// Keys are `k0..k{KEYS-1}`; the engine's key type is `String`, looked up by `&str`.
pub(crate) const KEYS: u8 = 6;
/// Generation slots: each holds the current generation of one "version"; `Retire` retires
/// it without replacing it (later inserts go to a retired generation), `Renew` replaces it.
pub(crate) const SLOTS: u8 = 3;
/// Clock steps are multiples of `STEP`, TTLs multiples of `TTL_UNIT`, so that lookups land
/// exactly on deadlines and inside the resolution window as well as before and after.
pub(crate) const STEP: Duration = Duration::from_millis(5);
pub(crate) const TTL_UNIT: Duration = Duration::from_millis(10);
pub(crate) const RESOLUTION: Duration = Duration::from_millis(1);
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// Capacity far above the key domain: nothing may be evicted.
pub(crate) const BIG: u64 = 1000;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Ttl {
    Never,
    Zero,
    Units(u8),
    Huge,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Gens {
    None,
    One(u8),
    Two(u8, u8),
    /// `One` with `InsertOptions::primary_in_key`: lookups do not check the generation.
    OneInKey(u8),
    /// `Two` with `InsertOptions::primary_in_key`: the secondary (and the primary with it) is
    /// still checked.
    TwoInKey(u8, u8),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Insert { key: u8, ttl: Ttl, gens: Gens },
    GetOrInsert { key: u8, ttl: Ttl, gens: Gens },
    Get(u8),
    Contains(u8),
    Remove(u8),
    Retire(u8),
    Renew(u8),
    Advance(u8),
    Flush,
    Maintain,
    Clear,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) capacity: u64,
    pub(crate) shards: usize,
    pub(crate) workers: usize,
}

pub(crate) fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        3 => Just(Ttl::Never),
        1 => Just(Ttl::Zero),
        4 => (1u8..=6).prop_map(Ttl::Units),
        1 => Just(Ttl::Huge),
    ]
}

pub(crate) fn gens() -> impl Strategy<Value = Gens> {
    prop_oneof![
        2 => Just(Gens::None),
        2 => (0..SLOTS).prop_map(Gens::One),
        1 => (0..SLOTS, 0..SLOTS).prop_map(|(a, b)| Gens::Two(a, b)),
        2 => (0..SLOTS).prop_map(Gens::OneInKey),
        1 => (0..SLOTS, 0..SLOTS).prop_map(|(a, b)| Gens::TwoInKey(a, b)),
    ]
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        5 => (key.clone(), ttl(), gens()).prop_map(|(key, ttl, gens)| Op::Insert { key, ttl, gens }),
        3 => (key.clone(), ttl(), gens())
            .prop_map(|(key, ttl, gens)| Op::GetOrInsert { key, ttl, gens }),
        5 => key.clone().prop_map(Op::Get),
        1 => key.clone().prop_map(Op::Contains),
        1 => key.prop_map(Op::Remove),
        1 => (0..SLOTS).prop_map(Op::Retire),
        1 => (0..SLOTS).prop_map(Op::Renew),
        2 => (0u8..=4).prop_map(Op::Advance),
        1 => Just(Op::Flush),
        1 => Just(Op::Maintain),
        1 => Just(Op::Clear),
    ]
}

pub(crate) fn config() -> impl Strategy<Value = Config> {
    (prop_oneof![Just(0u64), Just(1), Just(3), Just(BIG), Just(BIG)], 0usize..3, 1usize..=2)
        .prop_map(|(capacity, s, workers)| Config { capacity, shards: [1, 4, 16][s], workers })
}

pub(crate) fn key_name(k: u8) -> String {
    format!("k{k}")
}

#[derive(Clone, Debug)]
pub(crate) struct ModelEntry {
    pub(crate) value: u64,
    pub(crate) deadline: Option<Duration>,
    pub(crate) gens: Vec<u64>,
    /// Stored with `InsertOptions::primary_in_key`.
    pub(crate) in_key: bool,
}

impl ModelEntry {
    /// Whether lookups do not check the entry's generation: declared in the key, and alone
    /// (with a secondary, both are checked).
    pub(crate) fn unchecked(&self) -> bool {
        self.in_key && self.gens.len() == 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Must be served (unless capacity pressure may have evicted it).
    Live,
    /// Inside `[deadline, deadline + resolution)`: may or may not be served.
    Expiring,
    /// Stored under one generation declared in the key, retired since, not reclaimed yet (no
    /// maintenance step since the retirement), not expired: may or may not be served.
    Stale,
    /// Must never be served.
    Dead,
}

pub(crate) struct Model {
    pub(crate) entries: HashMap<u8, ModelEntry>,
    /// Keys that may hold a resident entry in the engine (inserted since the last remove/clear).
    pub(crate) maybe_resident: HashSet<u8>,
    pub(crate) retired: HashSet<u64>,
    /// Retired generations that a maintenance step has run after: none of their entries is
    /// left.
    pub(crate) reclaimed: HashSet<u64>,
    pub(crate) now: Duration,
}

impl Model {
    pub(crate) fn status(&self, e: &ModelEntry) -> Status {
        let mut stale = false;
        if e.gens.iter().any(|g| self.retired.contains(g)) {
            if !e.unchecked() || self.reclaimed.contains(&e.gens[0]) {
                return Status::Dead;
            }
            stale = true;
        }
        let by_time = match e.deadline {
            None => Status::Live,
            Some(d) if self.now < d => Status::Live,
            Some(d) if self.now < d + RESOLUTION => Status::Expiring,
            Some(_) => Status::Dead,
        };
        if stale && by_time != Status::Dead {
            Status::Stale
        } else {
            by_time
        }
    }

    pub(crate) fn live_count(&self) -> u64 {
        self.entries.values().filter(|e| self.status(e) == Status::Live).count() as u64
    }
}

/// How often the cases specific to generations declared in the key came up (so that a test
/// can check that they are exercised at all).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    /// Lookups (`contains_key` too) that hit a `Stale` value (retired, not reclaimed yet).
    pub(crate) stale_hits: u64,
    /// Lookups that missed a `Stale` value.
    pub(crate) stale_misses: u64,
    /// Lookups of an in-key value whose generation was retired and then maintained: must miss.
    pub(crate) reclaimed_misses: u64,
    /// In-key stores under an already-retired generation (refused).
    pub(crate) refused_in_key: u64,
    /// Lookups of an in-key value stored with a secondary, one of the two retired: must miss.
    pub(crate) hidden_with_secondary: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, c: Counts) {
        self.stale_hits += c.stale_hits;
        self.stale_misses += c.stale_misses;
        self.reclaimed_misses += c.reclaimed_misses;
        self.refused_in_key += c.refused_in_key;
        self.hidden_with_secondary += c.hidden_with_secondary;
    }
}

pub(crate) struct Harness {
    pub(crate) cfg: Config,
    pub(crate) engine: Engine<String, u64>,
    pub(crate) clock: ManualClock,
    pub(crate) model: Model,
    pub(crate) slots: Vec<Generation>,
    /// Every generation issued (a renewed slot's old generation stays live until retired).
    pub(crate) issued: Vec<Generation>,
    pub(crate) next_value: u64,
    pub(crate) log: Vec<String>,
    pub(crate) counts: Counts,
}

impl Harness {
    pub(crate) fn new(cfg: Config) -> Self {
        let clock = ManualClock::new();
        let engine = Engine::builder()
            .max_capacity(cfg.capacity)
            .shards(cfg.shards)
            .workers(cfg.workers)
            .tick(TICK)
            .clock_resolution(RESOLUTION)
            .clock(clock.clone())
            .build()
            .expect("build");
        let slots: Vec<Generation> = (0..SLOTS).map(|_| engine.new_generation()).collect();
        let model = Model {
            entries: HashMap::new(),
            maybe_resident: HashSet::new(),
            retired: HashSet::new(),
            reclaimed: HashSet::new(),
            now: Duration::ZERO,
        };
        Harness {
            cfg,
            engine,
            clock,
            model,
            issued: slots.clone(),
            slots,
            next_value: 1,
            log: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Whether the engine may have evicted something (capacity below the key domain).
    pub(crate) fn may_evict(&self) -> bool {
        self.cfg.capacity < u64::from(KEYS)
    }

    /// The engine's options and the model's deadline, generations, and whether the primary
    /// is declared in the key.
    pub(crate) fn options(
        &self,
        ttl: Ttl,
        gens: Gens,
    ) -> (InsertOptions, Option<Duration>, Vec<u64>, bool) {
        let mut opts = InsertOptions::new();
        let mut deadline = None;
        match ttl {
            Ttl::Never => {}
            Ttl::Zero => opts = opts.ttl(Duration::ZERO),
            Ttl::Units(n) => {
                let t = TTL_UNIT * u32::from(n);
                opts = opts.ttl(t);
                deadline = Some(self.model.now + t);
            }
            Ttl::Huge => opts = opts.ttl(Duration::MAX),
        }
        let mut ids = Vec::new();
        match gens {
            Gens::None => {}
            Gens::One(a) | Gens::OneInKey(a) => {
                let g = self.slots[a as usize];
                opts = opts.generations(g, None);
                ids.push(g.id());
            }
            Gens::Two(a, b) | Gens::TwoInKey(a, b) => {
                let (ga, gb) = (self.slots[a as usize], self.slots[b as usize]);
                opts = opts.generations(ga, Some(gb));
                ids.extend([ga.id(), gb.id()]);
            }
        }
        let in_key = matches!(gens, Gens::OneInKey(_) | Gens::TwoInKey(..));
        if in_key {
            opts = opts.primary_in_key();
        }
        (opts, deadline, ids, in_key)
    }

    /// The model's side of an insert (also of a value computed by `get_or_insert_with`).
    pub(crate) fn model_insert(
        &mut self,
        key: u8,
        value: u64,
        ttl: Ttl,
        deadline: Option<Duration>,
        gens: Vec<u64>,
        in_key: bool,
    ) {
        let m = &mut self.model;
        let under_retired = gens.iter().any(|g| m.retired.contains(g));
        if in_key && under_retired {
            // Refused even though lookups would not check the generation.
            self.counts.refused_in_key += 1;
        }
        let dropped = self.cfg.capacity == 0 || matches!(ttl, Ttl::Zero) || under_retired;
        if dropped {
            // Not stored, and the older value is superseded all the same.
            m.entries.remove(&key);
        } else {
            m.entries.insert(key, ModelEntry { value, deadline, gens, in_key });
        }
        if self.cfg.capacity > 0 {
            m.maybe_resident.insert(key);
        }
    }

    /// Checks one lookup answer against the model; updates the model after a miss.
    pub(crate) fn check_lookup(
        &mut self,
        key: u8,
        got: Option<u64>,
        what: &str,
    ) -> Result<(), String> {
        let entry = self.model.entries.get(&key).cloned();
        let status = entry.as_ref().map(|e| self.model.status(e));
        if let Some(e) = &entry {
            self.count_in_key(e, status, got.is_some());
        }
        match (got, entry) {
            (Some(v), _) if self.cfg.capacity == 0 => {
                Err(format!("{what}: capacity 0 engine returned {v} for k{key}"))
            }
            (Some(v), None) => Err(format!(
                "{what}: k{key} returned {v}, but the model has no value (removed, cleared, \
                 superseded by a dropped insert, or never inserted)"
            )),
            (Some(v), Some(e)) if v != e.value => Err(format!(
                "{what}: k{key} returned {v}, but the last value inserted is {} ({e:?})",
                e.value
            )),
            (Some(v), Some(e)) if status == Some(Status::Dead) => Err(format!(
                "{what}: k{key} returned {v}, which is dead at now={:?} ({e:?}, retired={:?})",
                self.model.now, self.model.retired
            )),
            (Some(_), Some(_)) => Ok(()),
            (None, Some(e))
                if status == Some(Status::Live) && !self.may_evict() && self.cfg.capacity > 0 =>
            {
                Err(format!(
                    "{what}: k{key} missed, but holds a live value at now={:?} ({e:?}); \
                     capacity {} exceeds the key domain, so nothing may be evicted",
                    self.model.now, self.cfg.capacity
                ))
            }
            (None, _) => {
                // Gone (expired, evicted); it must not come back without a new insert.
                self.model.entries.remove(&key);
                Ok(())
            }
        }
    }

    /// Counts the in-key cases a lookup of `e` (in `status`) meets.
    pub(crate) fn count_in_key(&mut self, e: &ModelEntry, status: Option<Status>, hit: bool) {
        let retired = |g: &u64| self.model.retired.contains(g);
        match (status, hit) {
            (Some(Status::Stale), true) => self.counts.stale_hits += 1,
            (Some(Status::Stale), false) => self.counts.stale_misses += 1,
            _ if e.unchecked() && self.model.reclaimed.contains(&e.gens[0]) => {
                self.counts.reclaimed_misses += 1;
            }
            _ if e.in_key && e.gens.len() == 2 && e.gens.iter().any(retired) => {
                self.counts.hidden_with_secondary += 1;
            }
            _ => {}
        }
    }

    /// A maintenance step has run: every entry of a generation retired before it is gone.
    pub(crate) fn maintained(&mut self) {
        self.model.reclaimed.extend(self.model.retired.iter().copied());
    }

    /// `generation_entries` of every generation issued: 0 for one retired and then maintained
    /// (reclaimed, or refused when applied); at least the live model values stored under it
    /// otherwise, once the workers have applied every store (capacity above the key domain:
    /// live values are resident). A value counts once under each generation it was stored
    /// under, also when given as both primary and secondary ("each value counts once").
    pub(crate) fn check_generation_entries(&self, when: &str) -> Result<(), String> {
        for g in &self.issued {
            let n = self.engine.generation_entries(*g);
            if self.model.reclaimed.contains(&g.id()) {
                if n != 0 {
                    return Err(format!(
                        "{when}: retired {g:?} still counts {n} entries after maintenance"
                    ));
                }
                continue;
            }
            if self.may_evict() || self.cfg.capacity == 0 {
                continue;
            }
            let live: u64 = (self.model.entries.values())
                .filter(|e| self.model.status(e) == Status::Live)
                .filter(|e| e.gens.contains(&g.id()))
                .count() as u64;
            if n < live {
                return Err(format!(
                    "{when}: {g:?} counts {n} entries, but the model holds {live} live values \
                     under it"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn check_len(&self, when: &str) -> Result<(), String> {
        let len = self.engine.len();
        if len > self.cfg.capacity {
            return Err(format!("{when}: len {len} exceeds capacity {}", self.cfg.capacity));
        }
        if self.may_evict() {
            return Ok(());
        }
        let live = self.model.live_count();
        let upper = self.model.maybe_resident.len() as u64;
        if len < live || len > upper {
            return Err(format!(
                "{when}: len {len} outside [{live} live entries, {upper} possibly resident keys]"
            ));
        }
        Ok(())
    }

    pub(crate) fn apply(&mut self, op: Op) -> Result<(), String> {
        self.log.push(format!("{op:?}"));
        match op {
            Op::Insert { key, ttl, gens } => {
                let value = self.next_value;
                self.next_value += 1;
                let (opts, deadline, ids, in_key) = self.options(ttl, gens);
                self.engine.insert_with_options(key_name(key), value, opts);
                self.model_insert(key, value, ttl, deadline, ids, in_key);
            }
            Op::GetOrInsert { key, ttl, gens } => {
                let fresh = self.next_value;
                self.next_value += 1;
                let (opts, deadline, ids, in_key) = self.options(ttl, gens);
                let mut computed = false;
                let got = self.engine.get_or_insert_with_options(key_name(key), opts, || {
                    computed = true;
                    fresh
                });
                if computed {
                    if got != fresh {
                        return Err(format!(
                            "get_or_insert_with computed {fresh} but returned {got}"
                        ));
                    }
                    // A computation means a miss: same rules as a `get` that missed.
                    self.check_lookup(key, None, "get_or_insert_with (computed)")?;
                    self.model_insert(key, fresh, ttl, deadline, ids, in_key);
                } else {
                    self.check_lookup(key, Some(got), "get_or_insert_with (hit)")?;
                }
            }
            Op::Get(key) => {
                let got = self.engine.get(key_name(key).as_str());
                self.check_lookup(key, got, "get")?;
            }
            Op::Contains(key) => {
                let name = key_name(key);
                let got = self.engine.contains_key(name.as_str());
                let expect = self.model.entries.get(&key).map(|e| (e.value, self.model.status(e)));
                if let Some(e) = self.model.entries.get(&key).cloned() {
                    self.count_in_key(&e, expect.map(|x| x.1), got);
                }
                match (got, expect) {
                    (true, Some((_, Status::Dead))) | (true, None) => {
                        return Err(format!("contains_key(k{key}) = true, model: {expect:?}"));
                    }
                    (true, _) if self.cfg.capacity == 0 => {
                        return Err("contains_key true at capacity 0".into());
                    }
                    (false, Some((_, Status::Live))) if !self.may_evict() => {
                        return Err(format!("contains_key(k{key}) = false for a live entry"));
                    }
                    (false, _) => {
                        self.model.entries.remove(&key);
                    }
                    _ => {}
                }
            }
            Op::Remove(key) => {
                self.engine.remove(key_name(key).as_str());
                self.model.entries.remove(&key);
                self.model.maybe_resident.remove(&key);
            }
            Op::Retire(slot) => {
                let g = self.slots[slot as usize];
                self.engine.retire(g);
                self.model.retired.insert(g.id());
                if self.engine.is_live(g) {
                    return Err(format!("is_live({g:?}) is true after retire"));
                }
            }
            Op::Renew(slot) => {
                let g = self.engine.new_generation();
                if !self.engine.is_live(g) {
                    return Err(format!("new generation {g:?} is not live"));
                }
                self.slots[slot as usize] = g;
                self.issued.push(g);
            }
            Op::Advance(n) => {
                let d = STEP * u32::from(n);
                self.clock.advance(d);
                self.model.now += d;
            }
            Op::Flush => {
                self.engine.flush();
                self.check_len("after flush")?;
                self.check_generation_entries("after flush")?;
            }
            Op::Maintain => {
                self.engine.run_maintenance();
                self.maintained();
                self.check_len("after run_maintenance")?;
                self.check_generation_entries("after run_maintenance")?;
            }
            Op::Clear => {
                self.engine.clear();
                self.model.entries.clear();
                self.model.maybe_resident.clear();
                let len = self.engine.len();
                if len != 0 {
                    return Err(format!("len {len} after clear"));
                }
            }
        }
        Ok(())
    }

    /// Passes every deadline, lets maintenance reclaim everything dead, then compares the
    /// whole content and `len()` with the model.
    pub(crate) fn settle(&mut self) -> Result<(), String> {
        self.log.push("settle".into());
        let jump = Duration::from_secs(3600);
        self.clock.advance(jump);
        self.model.now += jump;
        let expected = self.model.live_count();
        let mut steps = 0;
        while steps < 16 {
            self.engine.run_maintenance();
            self.maintained();
            steps += 1;
            if self.engine.len() == expected || self.may_evict() {
                break;
            }
        }
        let len = self.engine.len();
        if self.may_evict() {
            if len > expected {
                return Err(format!("settled len {len} above the {expected} live model entries"));
            }
        } else if len != expected {
            return Err(format!(
                "after the clock passed every deadline and {steps} maintenance steps, len is \
                 {len}, the model holds {expected} live entries (expired/retired entries not \
                 reclaimed?)"
            ));
        }
        let stats = self.engine.stats();
        if stats.entries != len {
            return Err(format!("stats().entries {} != len {len}", stats.entries));
        }
        if !self.may_evict() && stats.evictions != 0 {
            return Err(format!("{} evictions below capacity", stats.evictions));
        }
        for key in 0..KEYS {
            let got = self.engine.get(key_name(key).as_str());
            self.check_lookup(key, got, "get after settle")?;
        }
        Ok(())
    }
}

/// Replays `ops` on a fresh engine and the model; returns how often the in-key cases came up.
pub(crate) fn run(cfg: Config, ops: &[Op]) -> Result<Counts, TestCaseError> {
    let mut h = Harness::new(cfg);
    for &op in ops {
        let r = h.apply(op).and_then(|()| {
            h.engine.validate().map_err(|e| format!("validate() after {op:?}: {e}"))
        });
        if let Err(e) = r {
            return Err(TestCaseError::fail(format!("{cfg:?}: {e}\nops applied: {:?}", h.log)));
        }
    }
    if let Err(e) = h.settle() {
        return Err(TestCaseError::fail(format!("{cfg:?}: {e}\nops applied: {:?}", h.log)));
    }
    Ok(h.counts)
}
