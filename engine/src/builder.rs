//! Building an engine: its settings, their checks, and starting its threads.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{unbounded, AtomicBool, Mutex};

use crate::clock::{Clock, ManualClock};
use crate::engine::{Engine, Inner};
use crate::shared::{Shared, Weigher};
use crate::worker;

/// Why an engine could not be built.
///
/// ```
/// use memokit_engine::{BuildError, Engine};
///
/// match Engine::<u64, u64>::builder().workers(0).build() {
///     Err(BuildError::ZeroWorkers) => {}
///     other => panic!("expected ZeroWorkers, got {:?}", other.err()),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// `shards(0)`: an engine needs at least one shard.
    ZeroShards,
    /// `workers(0)`: an engine needs at least one worker thread.
    ZeroWorkers,
    /// `tick` or `clock_resolution` was zero; the named one must be positive.
    ZeroDuration(&'static str),
    /// The operating system refused to start a thread.
    Spawn(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroShards => f.write_str("shards must be at least 1, got 0"),
            BuildError::ZeroWorkers => f.write_str("workers must be at least 1, got 0"),
            BuildError::ZeroDuration(what) => write!(f, "{what} must be positive, got zero"),
            BuildError::Spawn(e) => write!(f, "could not start an engine thread: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Configures an [`Engine`]. Obtained from [`Engine::builder`].
///
/// | option | default | meaning |
/// |---|---|---|
/// | `max_capacity` | 10 000 | entries (or total weight with a weigher); 0 stores nothing |
/// | `weigher` | none (every entry weighs 1) | `Fn(&K, &V) -> u32`, run on the inserting thread |
/// | `shards` | one per 1,024 entries, 4–64 × cores (a power of two from 4 to 32 per core, then up to twice that where it fills the tables better at capacity) | at most 65,536 |
/// | `workers` | half the cores rounded up, at least 1, at most one per shard | threads that own the shards |
/// | `tick` | 1 s | how often workers expire and reclaim (pacing only, never correctness) |
/// | `clock_resolution` | 1 ms | how far behind real time the lookups' clock may be |
/// | `clock` | the real monotonic clock | a [`ManualClock`] for tests |
/// | `count_lookups` | true | count hits and misses in [`Engine::stats`] |
///
/// # Example
/// ```
/// use memokit_engine::Engine;
/// use std::time::Duration;
/// let e: Engine<String, Vec<u8>> = Engine::builder()
///     .max_capacity(64 * 1024 * 1024)
///     .weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()) as u32)
///     .tick(Duration::from_millis(500))
///     .build()?;
/// # Ok::<(), memokit_engine::BuildError>(())
/// ```
#[must_use = "a builder's methods return the changed builder, and nothing is built until `build`"]
pub struct EngineBuilder<K, V> {
    capacity: u64,
    weigher: Option<Weigher<K, V>>,
    shards: Option<usize>,
    workers: Option<usize>,
    tick: Duration,
    resolution: Duration,
    clock: Option<ManualClock>,
    count_lookups: bool,
}

impl<K, V> fmt::Debug for EngineBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("max_capacity", &self.capacity)
            .field("weigher", &self.weigher.is_some())
            .field("shards", &self.shards)
            .field("workers", &self.workers)
            .field("tick", &self.tick)
            .field("clock_resolution", &self.resolution)
            .field("manual_clock", &self.clock.is_some())
            .field("count_lookups", &self.count_lookups)
            .finish()
    }
}

impl<K, V> Default for EngineBuilder<K, V> {
    fn default() -> Self {
        EngineBuilder {
            capacity: 10_000,
            weigher: None,
            shards: None,
            workers: None,
            tick: Duration::from_secs(1),
            resolution: Duration::from_millis(1),
            clock: None,
            count_lookups: true,
        }
    }
}

impl<K, V> EngineBuilder<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The most entries (or total weight, with a weigher) kept at once. 0 stores nothing.
    ///
    /// Applied by the workers: stores handed over and not yet applied are held besides, so
    /// the engine may hold more for a moment while its workers catch up (at most an eighth
    /// of the capacity, or 64 entries a shard for a small one: callers storing beyond that
    /// wait for the worker, unless it has been in a key's or value's `Drop` for a second,
    /// which may be waiting for them; with a weigher, that many *entries*, each of any
    /// weight, not an eighth of the weight), and a few stores of new keys per shard that wait
    /// for more to be applied with them (under 1% of the capacity, in entries or, with a
    /// weigher, in weight besides the store that reaches it; until the next tick at most;
    /// see [`Engine::flush`]).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::builder().max_capacity(2).build()?;
    /// (0..5).for_each(|k| cache.insert(k, k));
    /// cache.flush();
    /// assert_eq!(cache.len(), 2);
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    pub fn max_capacity(mut self, n: u64) -> Self {
        self.capacity = n;
        self
    }

    /// Weighs each entry (on the inserting thread); an entry heavier than the capacity is not
    /// stored, and its store still removes the value the key held. A weighted engine has 4 shards
    /// per core unless told otherwise: with many entries, see [`shards`](EngineBuilder::shards). An
    /// entry weighing 0 takes no room, so nothing bounds how many such entries are kept (a weigher
    /// like `v.len()` keeps every empty value), but while the engine is over capacity the policy
    /// may still choose one as a victim like any other (evicting it frees nothing; the next victim
    /// is taken); a capacity of 0 stores nothing, not even those. Weights are `u32` while the
    /// capacity is `u64`: for a budget beyond 4 GiB, weigh in larger units (KiB) rather than
    /// capping at `u32::MAX`, which counts a larger value short.
    ///
    /// The entries evicted for an excess are chosen together, by one worker, so that none goes that
    /// would still fit beside what stays. Two workers may together evict more than the excess, an
    /// entry that would still fit included, only when no worker's shards hold the whole excess (one
    /// evicts what the other's cannot cover, then the other evicts the rest, which may be all its
    /// shards hold), or when two settle excesses at the same moment (batches of both over capacity
    /// while expired or retired entries wait to be reclaimed); `workers(1)` rules both out.
    ///
    /// # Panics
    /// The weigher runs while the engine holds a lock of the key's shard (its flights lock).
    /// It may look values up, in this engine or any other, and store into, remove from or
    /// compute in another engine. But an insert, remove or computation of the same engine
    /// from inside it would wait for its own caller, and so would a `clear`, `flush`,
    /// `run_maintenance` or `shutdown` of *any* engine, or waiting for another thread's
    /// computation of a key (any engine's `get_or_insert_with` of a key being computed): a
    /// worker's `Drop` of a user's key, or that computation, may store into this engine and
    /// wait for that lock. Those panic instead, with a message starting with `memokit:` (the
    /// engines stay usable); see
    /// [the crate docs](crate#user-code-calling-back-into-the-engine).
    ///
    /// # Example
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let e: Engine<u32, String> = Engine::builder()
    ///     .max_capacity(10)
    ///     .weigher(|_, v: &String| u32::try_from(v.len()).unwrap_or(u32::MAX))
    ///     .build()
    ///     .unwrap();
    /// e.insert(1, "hello".to_string());
    /// e.insert(2, "a value longer than the capacity".to_string()); // not stored
    /// e.flush();
    /// assert_eq!(e.stats().weight, 5);
    /// assert_eq!(e.get(&2), None);
    /// ```
    pub fn weigher(mut self, f: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(f));
        self
    }

    /// Number of shards (at most 65,536; more are treated as 65,536). More shards mean less
    /// contention on each shard's locks, which callers and the shard's worker share; each costs
    /// ~7 KB even when empty, and its eviction policy sees only its share of the keys. The
    /// default: one shard per 1,024 entries of `max_capacity`, from 4 to 32 per core (powers of
    /// two), then, up to twice that count, the one whose share fills its hash table best once
    /// the engine is full (a table has a power-of-two number of buckets and grows at 7/8 load,
    /// so a share just past a threshold leaves it half empty: on 2 cores, 1M entries in 64
    /// shards fill 48% of their buckets, in 73 shards 84%). With a weigher, 4 per core, as the
    /// engine cannot tell how many entries its capacity holds: if you expect thousands of
    /// entries per core, set about one shard per 1,024 expected entries (a power of two, up to
    /// 32 per core). At 100k entries on 2 cores, 64 shards instead of the default 8 took
    /// 18–25% less time per operation for two threads storing half the time (`BENCHMARKS.md`,
    /// sessions 26–27); with only a few entries per shard, each shard's policy sees too few keys,
    /// and the hit ratio suffers (1–2 points at 1,000–5,000 entries in 64 shards). Without a
    /// bound, 32 per core.
    ///
    /// ```
    /// use memokit_engine::{BuildError, Engine};
    ///
    /// let cache: Engine<u64, u64> = Engine::builder().shards(16).build()?;
    /// cache.insert(1, 1);
    /// assert!(matches!(Engine::<u64, u64>::builder().shards(0).build(), Err(BuildError::ZeroShards)));
    /// # Ok::<(), BuildError>(())
    /// ```
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Number of worker threads (at most one per shard is used).
    ///
    /// ```
    /// use memokit_engine::{BuildError, Engine};
    ///
    /// let cache: Engine<u64, u64> = Engine::builder().workers(2).build()?;
    /// cache.insert(1, 1);
    /// assert!(matches!(Engine::<u64, u64>::builder().workers(0).build(), Err(BuildError::ZeroWorkers)));
    /// # Ok::<(), BuildError>(())
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The wheel's tick: how often workers expire and reclaim entries.
    ///
    /// ```
    /// use memokit_engine::Engine;
    /// use std::time::Duration;
    ///
    /// let cache: Engine<u64, u64> = Engine::builder().tick(Duration::from_millis(250)).build()?;
    /// cache.insert_with_ttl(1, 1, Duration::from_secs(1));
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    pub fn tick(mut self, d: Duration) -> Self {
        self.tick = d;
        self
    }

    /// How far behind real time the lookups' coarse clock may fall.
    ///
    /// ```
    /// use memokit_engine::Engine;
    /// use std::time::Duration;
    ///
    /// // A value may be served up to 10 ms past its deadline; the clock thread wakes less often.
    /// let cache: Engine<u64, u64> =
    ///     Engine::builder().clock_resolution(Duration::from_millis(10)).build()?;
    /// cache.insert_with_ttl(1, 1, Duration::from_secs(1));
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    pub fn clock_resolution(mut self, d: Duration) -> Self {
        self.resolution = d;
        self
    }

    /// Uses a manual clock (tests): no background timers; call
    /// [`Engine::run_maintenance`] to expire and reclaim.
    ///
    /// ```
    /// use memokit_engine::{Engine, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Engine<u64, u64> = Engine::builder().clock(clock.clone()).build()?;
    /// cache.insert_with_ttl(1, 1, Duration::from_secs(1));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&1), None);
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    pub fn clock(mut self, c: ManualClock) -> Self {
        self.clock = Some(c);
        self
    }

    /// Whether lookups are counted in [`EngineStats::hits`](crate::EngineStats::hits) and
    /// [`misses`](crate::EngineStats::misses) (default `true`). A caller that counts its own
    /// lookups turns this off and saves a thread-local read and an increment per lookup (the memoizer counts per
    /// function, so its engine does not); both fields then stay 0. Nothing else changes.
    ///
    /// # Example
    /// ```
    /// use memokit_engine::Engine;
    /// let e: Engine<u32, u32> = Engine::builder().count_lookups(false).build()?;
    /// e.insert(1, 10);
    /// assert_eq!(e.get(&1), Some(10));
    /// assert_eq!(e.get(&2), None);
    /// assert_eq!((e.stats().hits, e.stats().misses), (0, 0));
    /// # Ok::<(), memokit_engine::BuildError>(())
    /// ```
    pub fn count_lookups(mut self, on: bool) -> Self {
        self.count_lookups = on;
        self
    }

    /// Builds the engine and starts its threads.
    ///
    /// # Errors
    /// [`BuildError::ZeroShards`], [`BuildError::ZeroWorkers`], [`BuildError::ZeroDuration`]
    /// for those settings, [`BuildError::Spawn`] if a thread cannot be started.
    ///
    /// ```
    /// use memokit_engine::{BuildError, Engine};
    /// use std::time::Duration;
    ///
    /// let cache: Result<Engine<u64, u64>, BuildError> = Engine::builder().max_capacity(10).build();
    /// assert!(cache.is_ok());
    /// let bad = Engine::<u64, u64>::builder().tick(Duration::ZERO).build();
    /// assert_eq!(bad.err().map(|e| e.to_string()), Some("tick must be positive, got zero".into()));
    /// ```
    pub fn build(self) -> Result<Engine<K, V>, BuildError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = match self.shards {
            Some(0) => return Err(BuildError::ZeroShards),
            Some(n) => n.min(MAX_SHARDS),
            None => default_shards(cores, self.capacity, self.weigher.is_some()),
        };
        let workers = self.workers.unwrap_or(cores.div_ceil(2));
        if workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        if self.tick.is_zero() {
            return Err(BuildError::ZeroDuration("tick"));
        }
        if self.resolution.is_zero() {
            return Err(BuildError::ZeroDuration("clock_resolution"));
        }
        let workers = workers.min(shards);
        let clock = match &self.clock {
            Some(m) => Clock::manual(m),
            None => Clock::real(),
        };
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| unbounded()).unzip();
        let mut shared = Shared::new(
            shards,
            workers,
            self.capacity,
            self.weigher,
            clock,
            self.tick,
            self.resolution,
            txs,
        );
        shared.count_lookups = self.count_lookups;
        let shared = Arc::new(shared);
        let inner = Inner {
            shared: shared.clone(),
            threads: Mutex::new(Vec::new()),
            stop_clock: Arc::new(AtomicBool::new(false)),
            first_shutdown: crate::pending::UserDrops::new(),
            handed_over: crate::sync::Mutex::new(Vec::new()),
        };
        // From here on, dropping `inner` on an error stops what was started.
        for (i, rx) in rxs.into_iter().enumerate() {
            let s = shared.clone();
            let t = crate::sync::thread::Builder::new()
                .name(format!("memokit-worker-{i}"))
                .spawn(move || worker::run(s, i, rx))
                .map_err(BuildError::Spawn)?;
            inner.threads.lock().push(t);
        }
        if !shared.clock.is_manual() {
            let s = shared.clone();
            let stop = inner.stop_clock.clone();
            let t = crate::sync::thread::Builder::new()
                .name("memokit-clock".into())
                .spawn(move || s.clock.refresh_loop(s.resolution, &stop))
                .map_err(BuildError::Spawn)?;
            inner.threads.lock().push(t);
        }
        Ok(Engine::from_inner(inner))
    }
}

/// The most shards an engine has.
const MAX_SHARDS: usize = 1 << 16;

/// Shards per core an engine has by default at least (rounded up to a power of two).
const MIN_SHARDS_PER_CORE: usize = 4;
/// Shards per core an engine has by default at most, where its capacity allows (rounded up to
/// a power of two).
const MAX_SHARDS_PER_CORE: usize = 32;
/// Entries per shard at least, for a default count above the minimum.
const MIN_SHARE: u64 = 1024;

/// The default shard count for `cores` cores and `capacity` entries (see
/// [`EngineBuilder::shards`]). More shards mean less contention: a shard's locks are taken by
/// every caller of its keys and, for each batch, by its worker, which on a busy machine shares
/// the cores with the callers (two threads, 50% stores: 64 shards instead of 8 gave 1.3x the
/// throughput, `BENCHMARKS.md`). But each shard costs ~7 KB even empty, and its policy sees
/// only its share of the keys. So: `capacity / MIN_SHARE` shards, rounded down to a power of
/// two and kept within `lo` (4 per core) and `hi` (32 per core); then, from there to twice as
/// many, the count with the fullest tables at capacity, keeping room for shards that get a few
/// more entries than their share (four standard deviations of a uniform spread); a larger
/// count only for a table at least 15% fuller. Weighted capacities say nothing about entries:
/// `lo`. An unbounded engine: `hi`.
fn default_shards(cores: usize, capacity: u64, weighted: bool) -> usize {
    let per_core = |n: usize| {
        n.saturating_mul(cores).checked_next_power_of_two().unwrap_or(MAX_SHARDS).min(MAX_SHARDS)
    };
    let (lo, hi) = (per_core(MIN_SHARDS_PER_CORE), per_core(MAX_SHARDS_PER_CORE));
    if weighted || capacity == 0 {
        return lo;
    }
    // Beyond 2^40 entries the capacity only means "unbounded".
    if capacity > 1 << 40 {
        return hi;
    }
    // `capacity / MIN_SHARE` rounded down to a power of two, within `lo..=hi`.
    let wanted = usize::try_from(capacity / MIN_SHARE).unwrap_or(usize::MAX);
    let base = wanted.checked_ilog2().map_or(lo, |b| (1usize << b).clamp(lo, hi));
    let load = |n: usize| {
        let share = capacity.div_ceil(n as u64);
        let crowded = share + 4 * (share as f64).sqrt() as u64;
        // hashbrown: 7/8 of a power-of-two bucket count (at least 8 buckets) is usable.
        let buckets = crowded.saturating_mul(8).div_ceil(7).max(8).checked_next_power_of_two();
        buckets.map_or(0, |b| share.saturating_mul(1 << 20) / b)
    };
    // Each shard has fixed costs (its locks, wheel, policy): more shards only for a table at
    // least 15% fuller.
    let mut best = base;
    for n in base..(2 * base).min(MAX_SHARDS + 1) {
        if load(n) > load(best) + load(best) * 15 / 100 {
            best = n;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::default_shards;

    #[test]
    fn default_shards_fill_the_tables() {
        // 1M entries on 2 cores: 64 shards (the most, 32 per core) of 15.6k need 2^15 buckets
        // each (48% full), 73 shards of 13.7k fit 2^14 (84% full).
        assert_eq!(default_shards(2, 1_000_000, false), 73);
        // Already well filled at 64: stays.
        assert_eq!(default_shards(2, 800_000, false), 64);
        assert_eq!(default_shards(2, 100_000, false), 64);
        // Fewer where the capacity gives each shard fewer than 1024 entries.
        assert_eq!(default_shards(2, 50_000, false), 32);
        // 10k (the memoizer's default): 8 shards of 1250 need 2048 buckets (61% full), 13 of
        // 770 fit 1024 (75% full).
        assert_eq!(default_shards(2, 10_000, false), 13);
        assert_eq!(default_shards(2, 1_000, false), 13, "as 10k: 77 entries fill 128 buckets best");
        assert_eq!(default_shards(2, 1_000_000, true), 8, "weighted: entries unknown");
        assert_eq!(default_shards(2, 0, false), 8);
        assert_eq!(default_shards(3, u64::MAX, false), 128, "unbounded: the most");
        for cores in [1usize, 2, 3, 8, 64] {
            let lo = (4 * cores).next_power_of_two();
            let hi = (32 * cores).next_power_of_two();
            for cap in [1, 10, 1_000, 10_000, 100_000, 123_457, 1 << 20, 50_000_000] {
                let n = default_shards(cores, cap, false);
                assert!((lo..2 * hi).contains(&n), "{cores} cores, {cap}: {n}");
                if n > 2 * lo {
                    assert!(cap / n as u64 >= 512, "{cores} cores, {cap}: {n} shards too small");
                }
            }
        }
    }

    /// Extreme core counts and capacities (1 to `usize::MAX` cores; capacity 0, 1, around 2^40,
    /// `u64::MAX`): no panic or overflow, and the count stays within the documented bounds:
    /// from 4 to 32 per core (powers of two, at most `MAX_SHARDS`), up to twice that, at most
    /// `MAX_SHARDS`; `lo` when weighted or of capacity 0, `hi` past 2^40 entries.
    #[test]
    fn default_shards_of_extreme_inputs() {
        use super::MAX_SHARDS;
        let per_core = |n: usize, cores: usize| {
            n.checked_mul(cores)
                .and_then(usize::checked_next_power_of_two)
                .map_or(MAX_SHARDS, |p| p.min(MAX_SHARDS))
        };
        let t = 1u64 << 40;
        for cores in [1usize, 2, 3, 1024, 1 << 14, 1 << 16, 1 << 20, usize::MAX / 4, usize::MAX] {
            let (lo, hi) = (per_core(4, cores), per_core(32, cores));
            for cap in [
                0,
                1,
                2,
                1023,
                1024,
                1025,
                4096,
                1 << 20,
                t - 1,
                t,
                t + 1,
                u64::MAX / 1024,
                u64::MAX,
            ] {
                let n = default_shards(cores, cap, false);
                assert!((1..=MAX_SHARDS).contains(&n), "{cores} cores, {cap}: {n}");
                assert!(
                    n >= lo && n <= (2 * hi - 1).max(hi).min(MAX_SHARDS),
                    "{cores} cores, {cap}: {n}"
                );
                if cap == 0 {
                    assert_eq!(n, lo, "{cores} cores, capacity 0");
                }
                if cap > t {
                    assert_eq!(n, hi, "{cores} cores, {cap}: unbounded");
                }
                assert_eq!(default_shards(cores, cap, true), lo, "{cores} cores, {cap}: weighted");
            }
        }
        assert_eq!(default_shards(1, 1, false), 4);
        assert_eq!(default_shards(1024, u64::MAX, false), 32_768);
        assert_eq!(default_shards(usize::MAX, u64::MAX, false), MAX_SHARDS);
    }
}
