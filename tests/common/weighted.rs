//! Helpers of the weighted-eviction tests: values that carry their weight, the accounts
//! checked after `flush`, and values that record which worker dropped them (to learn the
//! worker of a key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use memokit_engine::{Engine, ManualClock};

/// Values carry their weight: `(id, weight)`.
pub(crate) type V = (u64, u32);

/// An engine weighing each [`V`] by its weight, on a manual clock.
pub(crate) fn weighted(cap: u64, shards: usize, workers: usize) -> (Engine<u64, V>, ManualClock) {
    let b = Engine::builder().max_capacity(cap).shards(shards).workers(workers);
    super::manual_engine_with(b.weigher(|_, v: &V| v.1))
}

/// After `flush` (and with nothing dead left): the engine's total equals the weights of the
/// values it serves for `keys`, `stats` agrees with it and with `len`, the total is within
/// capacity, and every shard is consistent. Returns the values served.
pub(crate) fn check_accounts(
    e: &Engine<u64, V>,
    keys: impl Iterator<Item = u64>,
) -> HashMap<u64, V> {
    let held: HashMap<u64, V> = keys.filter_map(|k| e.get(&k).map(|v| (k, v))).collect();
    let sum: u64 = held.values().map(|v| u64::from(v.1)).sum();
    let st = e.stats();
    assert_eq!(e.validate(), Ok(()));
    assert_eq!((e.weighted_size(), st.weight), (sum, sum), "total vs values held: {st:?}");
    assert_eq!((e.len(), st.entries), (held.len() as u64, held.len() as u64), "{st:?}");
    assert!(sum <= e.max_capacity(), "over capacity after flush: {st:?}");
    held
}

/// Which worker dropped each value, by id (drops on other threads are not recorded).
pub(crate) type Log = Arc<Mutex<HashMap<u64, usize>>>;

/// A value of weight `w` that records, when a worker drops it, that worker under `id`.
#[derive(Clone)]
pub(crate) struct Val {
    pub(crate) id: u64,
    pub(crate) w: u32,
    pub(crate) log: Log,
}

impl Drop for Val {
    fn drop(&mut self) {
        let name = std::thread::current().name().map(str::to_owned).unwrap_or_default();
        if let Some(w) = name.strip_prefix("memokit-worker-").and_then(|n| n.parse().ok()) {
            self.log.lock().unwrap_or_else(|p| p.into_inner()).insert(self.id, w);
        }
    }
}
