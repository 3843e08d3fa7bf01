//! The caches under test behind one trait, so every workload runs the same code on each.
//!
//! | name          | what                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | `memokit`     | `memokit_engine::Engine`, the engine's default shards (not `shards()`) and workers (`memokit_ttl`: every store with a TTL) |
//! | `rwlock_map`  | baseline: `shards()` × `parking_lot::RwLock<HashMap<u64, V, ahash>>`, unbounded, no policy |
//! | `quick_cache` | `quick_cache::sync::Cache` with its default options                    |
//! | `moka`        | `moka::sync::Cache` with its default options (`moka_ttl`: with `time_to_live`) |
//!
//! Each has a `weighted` constructor too: its capacity is then a total weight, each entry
//! weighing [`weight_of`] its key (the same function for the three caches).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use memokit_engine::{Engine, InsertOptions};
use parking_lot::RwLock;

use super::shards;

/// The weight of key `k` in the weighted workloads: 1 to 16 by key (8.5 on average over a
/// range of keys).
pub(crate) fn weight_of(k: u64) -> u32 {
    1 + (k % 16) as u32
}

/// What the benches need of a cache. Keys are `u64`.
pub(crate) trait BenchCache<V>: Send + Sync {
    fn name(&self) -> &'static str;
    fn get(&self, key: u64) -> Option<V>;
    fn insert(&self, key: u64, value: V);
    fn get_or_insert_with(&self, key: u64, compute: impl FnOnce() -> V) -> V;
    /// Applies pending work (memokit: `flush`, and with a TTL `run_maintenance`, which also
    /// expires what is due; moka: `run_pending_tasks`, which expires what is due as well;
    /// quick_cache: nothing, it defers no work).
    fn sync(&self) {}
    /// Resident entries (after `sync`).
    fn len(&self) -> u64;
}

/// The memokit engine (with its name in the report); with a TTL, every store carries it
/// (`insert_with_ttl`).
pub(crate) struct Memokit<V>(pub(crate) Engine<u64, V>, Option<Duration>, &'static str);

impl<V: Clone + Send + Sync + 'static> Memokit<V> {
    pub(crate) fn new(capacity: u64) -> Self {
        let e = Engine::builder().max_capacity(capacity).build().expect("build the memokit engine");
        Memokit(e, None, "memokit")
    }

    /// Every store expires `ttl` after it.
    pub(crate) fn with_ttl(capacity: u64, ttl: Duration) -> Self {
        Memokit(Self::new(capacity).0, Some(ttl), "memokit_ttl")
    }

    /// `capacity` is a total weight, each entry weighing [`weight_of`] its key. With
    /// `entries`, the shard count the `shards` docs advise for that many entries (one per
    /// 1,024, a power of two, 4 to 32 per core: 64 for 100k on 2 cores), named
    /// `memokit_shards`; without, the engine's default for a weigher (4 per core).
    pub(crate) fn weighted(capacity: u64, entries: Option<u64>) -> Self {
        let b = Engine::builder().max_capacity(capacity).weigher(|k: &u64, _: &V| weight_of(*k));
        let Some(entries) = entries else {
            return Memokit(b.build().expect("build the memokit engine"), None, "memokit");
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_1024 = usize::try_from(entries / 1024).unwrap_or(usize::MAX).max(1);
        let shards = (1 << per_1024.ilog2()).clamp(4 * cores, 32 * cores);
        let e = b.shards(shards).build().expect("build the memokit engine");
        Memokit(e, None, "memokit_shards")
    }
}

impl<V: Clone + Send + Sync + 'static> BenchCache<V> for Memokit<V> {
    fn name(&self) -> &'static str {
        self.2
    }
    #[inline]
    fn get(&self, key: u64) -> Option<V> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: V) {
        match self.1 {
            Some(ttl) => self.0.insert_with_ttl(key, value, ttl),
            None => self.0.insert(key, value),
        }
    }
    #[inline]
    fn get_or_insert_with(&self, key: u64, compute: impl FnOnce() -> V) -> V {
        match self.1 {
            Some(ttl) => {
                self.0.get_or_insert_with_options(key, InsertOptions::new().ttl(ttl), compute)
            }
            None => self.0.get_or_insert_with(key, compute),
        }
    }
    /// `flush`; with a TTL, `run_maintenance` (a flush, then every worker expires what is due
    /// now), so that a timed sync charges memokit_ttl for the expiry its stores made due, as
    /// moka's `run_pending_tasks` charges moka_ttl (see `engine_hit`'s docs).
    fn sync(&self) {
        match self.1 {
            Some(_) => self.0.run_maintenance(),
            None => self.0.flush(),
        }
    }
    fn len(&self) -> u64 {
        self.0.len()
    }
}

/// quick_cache's sync cache; `W` weighs its entries (by default each weighs 1).
pub(crate) struct Quick<V, W = quick_cache::UnitWeighter>(
    pub(crate) quick_cache::sync::Cache<u64, V, W>,
);

impl<V: Clone> Quick<V> {
    pub(crate) fn new(capacity: u64) -> Self {
        Quick(quick_cache::sync::Cache::new(capacity as usize))
    }
}

/// quick_cache's weigher for [`weight_of`].
#[derive(Clone)]
pub(crate) struct KeyWeighter;

impl<V> quick_cache::Weighter<u64, V> for KeyWeighter {
    fn weight(&self, key: &u64, _: &V) -> u64 {
        weight_of(*key).into()
    }
}

impl<V: Clone> Quick<V, KeyWeighter> {
    /// `capacity` is a total weight, each entry weighing [`weight_of`] its key; `entries`:
    /// quick_cache's estimate of how many entries that makes.
    pub(crate) fn weighted(capacity: u64, entries: u64) -> Self {
        Quick(quick_cache::sync::Cache::with_weighter(entries as usize, capacity, KeyWeighter))
    }
}

impl<V, W> BenchCache<V> for Quick<V, W>
where
    V: Clone + Send + Sync,
    W: quick_cache::Weighter<u64, V> + Clone + Send + Sync,
{
    fn name(&self) -> &'static str {
        "quick_cache"
    }
    #[inline]
    fn get(&self, key: u64) -> Option<V> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: V) {
        self.0.insert(key, value);
    }
    #[inline]
    fn get_or_insert_with(&self, key: u64, compute: impl FnOnce() -> V) -> V {
        match self.0.get_or_insert_with(&key, || Ok::<V, Infallible>(compute())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// moka's sync cache; with a TTL, built with `time_to_live`.
pub(crate) struct Moka<V>(pub(crate) moka::sync::Cache<u64, V>, bool);

impl<V: Clone + Send + Sync + 'static> Moka<V> {
    pub(crate) fn new(capacity: u64) -> Self {
        Moka(moka::sync::Cache::new(capacity), false)
    }

    /// Every entry expires `ttl` after its store.
    pub(crate) fn with_ttl(capacity: u64, ttl: Duration) -> Self {
        Moka(moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build(), true)
    }

    /// `capacity` is a total weight, each entry weighing [`weight_of`] its key.
    pub(crate) fn weighted(capacity: u64) -> Self {
        let b = moka::sync::Cache::builder().max_capacity(capacity);
        Moka(b.weigher(|k: &u64, _: &V| weight_of(*k)).build(), false)
    }
}

impl<V: Clone + Send + Sync + 'static> BenchCache<V> for Moka<V> {
    fn name(&self) -> &'static str {
        if self.1 {
            "moka_ttl"
        } else {
            "moka"
        }
    }
    #[inline]
    fn get(&self, key: u64) -> Option<V> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: V) {
        self.0.insert(key, value);
    }
    #[inline]
    fn get_or_insert_with(&self, key: u64, compute: impl FnOnce() -> V) -> V {
        self.0.get_with(key, compute)
    }
    fn sync(&self) {
        self.0.run_pending_tasks();
    }
    fn len(&self) -> u64 {
        self.0.run_pending_tasks();
        self.0.entry_count()
    }
}

/// The baseline: a plain sharded `parking_lot::RwLock<HashMap>` with ahash. Unbounded, no
/// eviction policy, no single flight. The key is hashed once to pick the shard and once more by
/// the `HashMap` (as a straightforward implementation does).
pub(crate) struct RwLockMap<V> {
    shards: Box<[RwLock<HashMap<u64, V, ahash::RandomState>>]>,
    hasher: ahash::RandomState,
}

impl<V> RwLockMap<V> {
    pub(crate) fn new(capacity: u64) -> Self {
        let n = shards();
        let per_shard = capacity as usize / n;
        let shards = (0..n)
            .map(|_| RwLock::new(HashMap::with_capacity_and_hasher(per_shard, Default::default())))
            .collect();
        RwLockMap { shards, hasher: ahash::RandomState::new() }
    }

    #[inline]
    fn shard(&self, key: u64) -> &RwLock<HashMap<u64, V, ahash::RandomState>> {
        let h = self.hasher.hash_one(key);
        // A power-of-two count; take high bits (the low ones feed the map's buckets).
        &self.shards[(h >> 32) as usize & (self.shards.len() - 1)]
    }
}

impl<V: Clone + Send + Sync> BenchCache<V> for RwLockMap<V> {
    fn name(&self) -> &'static str {
        "rwlock_map"
    }
    #[inline]
    fn get(&self, key: u64) -> Option<V> {
        self.shard(key).read().get(&key).cloned()
    }
    #[inline]
    fn insert(&self, key: u64, value: V) {
        let old = self.shard(key).write().insert(key, value);
        drop(old); // outside the lock
    }
    #[inline]
    fn get_or_insert_with(&self, key: u64, compute: impl FnOnce() -> V) -> V {
        if let Some(v) = self.get(key) {
            return v;
        }
        let v = compute();
        self.insert(key, v.clone());
        v
    }
    fn len(&self) -> u64 {
        self.shards.iter().map(|s| s.read().len() as u64).sum()
    }
}
