//! Building an engine: its settings, their checks, and starting its threads.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::{Clock, ManualClock};
use crate::engine::{Engine, Inner};
use crate::shared::{Shared, Weigher};
use crate::worker;

/// Why an engine could not be built.
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
/// | `shards` | 4 × cores, a power of two | rounded up to a power of two |
/// | `workers` | cores / 2, at least 1 | threads that own the shards |
/// | `tick` | 1 s | how often workers expire and reclaim (pacing only, never correctness) |
/// | `clock_resolution` | 1 ms | how far behind real time the lookups' clock may be |
/// | `clock` | the real monotonic clock | a [`ManualClock`] for tests |
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
pub struct EngineBuilder<K, V> {
    capacity: u64,
    weigher: Option<Weigher<K, V>>,
    shards: Option<usize>,
    workers: Option<usize>,
    tick: Duration,
    resolution: Duration,
    clock: Option<ManualClock>,
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
        }
    }
}

impl<K, V> EngineBuilder<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The most entries (or total weight, with a weigher) kept at once. 0 stores nothing.
    pub fn max_capacity(mut self, n: u64) -> Self {
        self.capacity = n;
        self
    }

    /// Weighs each entry (on the inserting thread); an entry heavier than the capacity is not
    /// stored.
    pub fn weigher(mut self, f: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(f));
        self
    }

    /// Number of shards (rounded up to a power of two).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Number of worker threads (at most one per shard is used).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The wheel's tick: how often workers expire and reclaim entries.
    pub fn tick(mut self, d: Duration) -> Self {
        self.tick = d;
        self
    }

    /// How far behind real time the lookups' coarse clock may fall.
    pub fn clock_resolution(mut self, d: Duration) -> Self {
        self.resolution = d;
        self
    }

    /// Uses a manual clock (tests): no background timers; call
    /// [`Engine::run_maintenance`] to expire and reclaim.
    pub fn clock(mut self, c: ManualClock) -> Self {
        self.clock = Some(c);
        self
    }

    /// Builds the engine and starts its threads.
    ///
    /// # Errors
    /// [`BuildError::ZeroShards`], [`BuildError::ZeroWorkers`], [`BuildError::ZeroDuration`]
    /// for those settings, [`BuildError::Spawn`] if a thread cannot be started.
    pub fn build(self) -> Result<Engine<K, V>, BuildError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = self.shards.unwrap_or(4 * cores);
        if shards == 0 {
            return Err(BuildError::ZeroShards);
        }
        let shards = shards.checked_next_power_of_two().unwrap_or(1 << 16).min(1 << 16);
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
        let (txs, rxs): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| crossbeam_channel::unbounded()).unzip();
        let shared = Arc::new(Shared::new(
            shards,
            workers,
            self.capacity,
            self.weigher,
            clock,
            self.tick,
            self.resolution,
            txs,
        ));
        let inner = Inner {
            shared: shared.clone(),
            threads: Mutex::new(Vec::new()),
            stop_clock: Arc::new(AtomicBool::new(false)),
        };
        // From here on, dropping `inner` on an error stops what was started.
        for (i, rx) in rxs.into_iter().enumerate() {
            let s = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("memokit-worker-{i}"))
                .spawn(move || worker::run(s, i, rx))
                .map_err(BuildError::Spawn)?;
            inner.threads.lock().push(t);
        }
        if !shared.clock.is_manual() {
            let s = shared.clone();
            let stop = inner.stop_clock.clone();
            let t = std::thread::Builder::new()
                .name("memokit-clock".into())
                .spawn(move || s.clock.refresh_loop(s.resolution, &stop))
                .map_err(BuildError::Spawn)?;
            inner.threads.lock().push(t);
        }
        Ok(Engine { inner: Arc::new(inner) })
    }
}
