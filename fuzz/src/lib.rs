//! The naive model the fuzz targets replay operations against, and the pieces they share.
//!
//! The model is a plain `HashMap` from key to the last value stored for it, with its absolute
//! deadline (nanoseconds on the manual clock, `NEVER` for none) and its generations, plus the set
//! of retired generations and the clock. It mirrors the engine's documented semantics:
//!
//! - a store replaces whatever was stored for the key, visible or not; a store that cannot be
//!   kept (zero TTL, a retired generation, heavier than the capacity) drops the previous value
//!   all the same;
//! - a value is visible while `now < deadline` and every generation it carries is live;
//! - `run_maintenance` removes entries of retired generations, and entries whose deadline tick
//!   (`ceil(deadline / tick)`) is at or before the current tick (`floor(now / tick)`);
//! - `clear` removes everything.
//!
//! `entries` holds what the engine physically stores. It is exact when the capacity is larger
//! than anything the run can store (`exact`); with a small capacity the engine may have evicted
//! some of them, so a lookup may miss, but it may never return anything but the model's value.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;

/// Deadline of a value with none (the engine's own sentinel).
pub const NEVER: u64 = u64::MAX;
/// The wheel tick the targets build their engines with.
pub const TICK: Duration = Duration::from_secs(1);
/// The manual clock is never advanced past this (far from saturation at `u64::MAX`).
pub const CLOCK_LIMIT: u64 = 1 << 62;

/// A cached value: a unique id (every computation and insert makes a fresh one), a weight for
/// weighers, and a token whose reference count tells how many values are alive.
#[derive(Clone, Debug)]
pub struct Val {
    /// Unique per insert or computation.
    pub id: u64,
    /// Added to the key's length by the weigher of the targets that use one.
    pub weight: u8,
    _live: Arc<()>,
}

impl Val {
    /// A fresh value counted by `token`.
    pub fn new(id: u64, weight: u8, token: &Arc<()>) -> Self {
        Val { id, weight, _live: token.clone() }
    }
}

/// A time to live, as the fuzzer picks it.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Ttl {
    /// No deadline.
    Never,
    /// `Duration::ZERO`: do not store.
    Zero,
    /// Up to ~65 s, in milliseconds (crosses ticks and level-0 buckets).
    Millis(u16),
    /// Up to ~136 years, in seconds (the wheel's higher levels and its overflow list).
    Secs(u32),
}

impl Ttl {
    /// The duration to pass to the engine, `None` for "no TTL option at all".
    pub fn duration(self) -> Option<Duration> {
        match self {
            Ttl::Never => None,
            Ttl::Zero => Some(Duration::ZERO),
            Ttl::Millis(ms) => Some(Duration::from_millis(u64::from(ms))),
            Ttl::Secs(s) => Some(Duration::from_secs(u64::from(s))),
        }
    }
}

/// A clock advance, as the fuzzer picks it.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Step {
    /// Up to ~65 s, in milliseconds.
    Millis(u16),
    /// Up to ~18 h, in seconds.
    Secs(u16),
    /// Up to 255 days.
    Days(u8),
}

impl Step {
    /// The duration to advance by.
    pub fn duration(self) -> Duration {
        match self {
            Step::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Step::Secs(s) => Duration::from_secs(u64::from(s)),
            Step::Days(d) => Duration::from_secs(u64::from(d) * 86_400),
        }
    }
}

/// One value the model says is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The value's id.
    pub value: u64,
    /// Absolute deadline in nanoseconds, [`NEVER`] for none.
    pub deadline: u64,
    /// Raw generation ids, 0 for none (as the engine records them).
    pub gens: [u64; 2],
    /// Its weight.
    pub weight: u64,
    /// Expired and possibly reclaimed already: a maintenance step may reclaim an expired entry
    /// before the tick of its deadline (the wheel checks the deadline of everything it
    /// cascades), so from then on the engine may or may not still hold it.
    pub maybe_gone: bool,
}

/// The model of an engine (see the module docs).
#[derive(Debug)]
pub struct Model<K> {
    /// Manual clock, nanoseconds.
    pub now: u64,
    /// Wheel tick, nanoseconds.
    pub tick: u64,
    /// The engine's capacity (entries, or weight with a weigher).
    pub capacity: u64,
    /// What the engine stores (exactly, when `exact`; a superset otherwise).
    pub entries: HashMap<K, Stored>,
    /// Retired generation ids.
    pub retired: HashSet<u64>,
    /// Every generation id ever issued (ids are never reissued).
    pub issued: HashSet<u64>,
    /// Whether nothing can be evicted in this run (then every lookup is exact).
    pub exact: bool,
    /// Lookups that should have hit / missed (exact runs only).
    pub hits: u64,
    /// See `hits`.
    pub misses: u64,
    /// Lookups made, hits and misses together.
    pub lookups: u64,
}

impl<K: Hash + Eq + Clone + Debug> Model<K> {
    /// An empty model at time zero.
    pub fn new(capacity: u64, exact: bool) -> Self {
        Model {
            now: 0,
            tick: TICK.as_nanos() as u64,
            capacity,
            entries: HashMap::new(),
            retired: HashSet::new(),
            issued: HashSet::new(),
            exact,
            hits: 0,
            misses: 0,
            lookups: 0,
        }
    }

    /// Whether every generation in `gens` is live.
    pub fn gens_live(&self, gens: &[u64; 2]) -> bool {
        gens.iter().all(|g| *g == 0 || !self.retired.contains(g))
    }

    /// The value a lookup of `k` must see, if any.
    pub fn visible(&self, k: &K) -> Option<u64> {
        let s = self.entries.get(k)?;
        (self.now < s.deadline && self.gens_live(&s.gens)).then_some(s.value)
    }

    /// The deadline the engine computes for `ttl` at the current time (`None`: do not store).
    pub fn deadline(&self, ttl: Option<Duration>) -> Option<u64> {
        match ttl {
            None => Some(NEVER),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(match u64::try_from(d.as_nanos()) {
                Ok(n) => self.now.checked_add(n).unwrap_or(NEVER),
                Err(_) => NEVER,
            }),
        }
    }

    /// Mirrors `insert_with_options`: stores or, when it cannot be kept, drops the old value.
    pub fn store(&mut self, k: K, value: u64, ttl: Option<Duration>, gens: [u64; 2], weight: u64) {
        let deadline = self.deadline(ttl);
        match deadline {
            Some(deadline) if weight <= self.capacity && self.gens_live(&gens) => {
                self.entries.insert(k, Stored { value, deadline, gens, weight, maybe_gone: false });
            }
            _ => {
                self.entries.remove(&k);
            }
        }
    }

    /// Checks a lookup's answer against the model, and counts it. `what` names the operation
    /// in the panic message.
    pub fn check_lookup(&mut self, k: &K, got: Option<u64>, what: &dyn Debug) {
        let want = self.visible(k);
        self.lookups += 1;
        if want.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        match (want, got) {
            (w, g) if w == g => {}
            (Some(_), None) if !self.exact => {} // evicted: allowed with a small capacity
            (w, g) => panic!(
                "divergence on {what:?}: key {k:?}: the model says {w:?} ({}), the engine returned \
                 {g:?} at t={}ns, stored: {:?}, retired: {:?}",
                if w.is_some() { "a visible value" } else { "nothing visible" },
                self.now,
                self.entries.get(k),
                self.retired,
            ),
        }
    }

    /// Mirrors one `run_maintenance`: entries of retired generations go, entries whose deadline
    /// tick has been reached go, other expired entries may go, unexpired ones stay.
    pub fn maintain(&mut self) {
        let (now, tick) = (self.now, self.tick);
        let now_tick = now / tick;
        let retired = &self.retired;
        self.entries.retain(|_, s| {
            let live = s.gens.iter().all(|g| *g == 0 || !retired.contains(g));
            let due = s.deadline.div_ceil(tick) <= now_tick;
            s.maybe_gone |= s.deadline <= now;
            live && !due
        });
    }

    /// Whether the engine surely still holds `s` after a flush.
    fn surely_held(&self, s: &Stored) -> bool {
        !s.maybe_gone && self.gens_live(&s.gens)
    }

    /// How many entries the engine may hold after a flush: `(at least, at most)`. A store under
    /// a generation retired before the worker applied it is refused, and whether the worker got
    /// to it first is a race, so entries of retired generations count only in the upper bound
    /// until maintenance reclaims them; so do entries marked `maybe_gone`.
    pub fn len_bounds(&self) -> (u64, u64) {
        let sure = self.entries.values().filter(|s| self.surely_held(s)).count();
        (sure as u64, self.entries.len() as u64)
    }

    /// The total weight the engine may hold after a flush, as bounds like
    /// [`Model::len_bounds`].
    pub fn weight_bounds(&self) -> (u64, u64) {
        let sure = self.entries.values().filter(|s| self.surely_held(s)).map(|s| s.weight).sum();
        (sure, self.entries.values().map(|s| s.weight).sum())
    }

    /// Entries stored under generation `g` (each once, also one carrying `g` as both primary
    /// and secondary), as bounds like
    /// [`Model::len_bounds`].
    pub fn generation_entries(&self, g: u64) -> (u64, u64) {
        let mut bounds = (0, 0);
        for s in self.entries.values() {
            let n = u64::from(s.gens.contains(&g));
            if self.surely_held(s) {
                bounds.0 += n;
            }
            bounds.1 += n;
        }
        bounds
    }

    /// Advances the clock (never past [`CLOCK_LIMIT`]); returns the duration actually applied.
    pub fn advance(&mut self, d: Duration) -> Option<Duration> {
        let n = u64::try_from(d.as_nanos()).ok()?;
        let to = self.now.checked_add(n)?;
        if to > CLOCK_LIMIT {
            return None;
        }
        self.now = to;
        Some(d)
    }
}

/// Panics unless `got` is within `(lo, hi)`.
pub fn check_within(got: u64, (lo, hi): (u64, u64), what: &str, step: usize, op: &dyn Debug) {
    if got < lo || got > hi {
        panic!(
            "divergence after step {step} ({op:?}): {what}: engine {got}, model between {lo} \
             and {hi}"
        );
    }
}

/// Panics with `what` if the engine's own invariant checker fails.
pub fn validate(r: Result<(), String>, step: usize, what: &dyn Debug) {
    if let Err(e) = r {
        panic!("engine.validate() failed after step {step} ({what:?}): {e}");
    }
}

/// Asserts an equality with a message naming the step.
#[macro_export]
macro_rules! check_eq {
    ($got:expr, $want:expr, $step:expr, $op:expr, $what:literal) => {{
        let (got, want) = ($got, $want);
        if got != want {
            panic!(
                "divergence after step {} ({:?}): {}: engine {:?}, model {:?}",
                $step, $op, $what, got, want
            );
        }
    }};
}
