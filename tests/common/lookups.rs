//! Engine lookups of every kind, tallied by what they returned, for the tests of lookup
//! counting (`tests/engine_rev_s23*.rs`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use memokit_engine::{Engine, InsertOptions, ManualClock};

/// Leased stripes (the engine's `counters::STRIPES`).
pub(crate) const LEASES: usize = 16;

/// An engine on a manual clock (nothing expires), large enough that nothing is evicted, with
/// `resident` keys `0..resident` stored and applied.
pub(crate) fn engine_with(resident: u64) -> Engine<u64, u64> {
    let e = Engine::builder()
        .max_capacity(1 << 20)
        .shards(8)
        .workers(2)
        .clock(ManualClock::new())
        .build()
        .expect("engine");
    for k in 0..resident {
        e.insert(k, k * 10);
    }
    e.flush();
    e
}

/// Hits and misses of one engine, as a pair.
pub(crate) fn hm<K, V>(e: &Engine<K, V>) -> (u64, u64)
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let s = e.stats();
    (s.hits, s.misses)
}

/// Counted lookups made by one thread: (hits, misses) it expects the engine to have counted.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl Tally {
    pub(crate) fn found(&mut self, found: bool) {
        if found {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }
    pub(crate) fn plus(self, o: Tally) -> Tally {
        Tally { hits: self.hits + o.hits, misses: self.misses + o.misses }
    }
    pub(crate) fn pair(self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

/// Unique keys for misses that compute (never resident, never computed twice).
pub(crate) static FRESH: AtomicU64 = AtomicU64::new(1 << 40);

pub(crate) fn fresh_key() -> u64 {
    FRESH.fetch_add(1, SeqCst)
}

/// One round of every kind of lookup on `e` (resident keys `0..resident`), tallied by what it
/// returned: `get`, `get_map` and `contains_key` of a resident and an absent key,
/// `get_or_insert_with` of a resident key (a hit: it must not compute) and of a fresh key (a
/// miss: its caller leads and computes), and `get_or_try_insert_with_ref` of both.
pub(crate) fn every_lookup(e: &Engine<u64, u64>, resident: u64, j: u64, t: &mut Tally) {
    let hit = j % resident;
    let absent = (1 << 50) + j;
    t.found(e.get(&hit).is_some());
    t.found(e.get(&absent).is_some());
    t.found(e.get_map(&hit, |v| *v + 1).is_some());
    t.found(e.get_map(&absent, |v| *v + 1).is_some());
    t.found(e.contains_key(&hit));
    t.found(e.contains_key(&absent));
    let computed = Cell::new(false);
    let v = e.get_or_insert_with(hit, || {
        computed.set(true);
        0
    });
    assert_eq!(v, hit * 10, "a resident key's value");
    t.found(!computed.get());
    let k = fresh_key();
    let computed = Cell::new(false);
    e.get_or_insert_with(k, || {
        computed.set(true);
        k
    });
    assert!(computed.get(), "a fresh key is computed by its only caller");
    t.found(false);
    let computed = Cell::new(false);
    let r: Result<u64, ()> = e.get_or_try_insert_with_ref(
        &hit,
        InsertOptions::new(),
        |k: &u64| *k,
        || {
            computed.set(true);
            Ok(0)
        },
    );
    assert_eq!(r, Ok(hit * 10));
    t.found(!computed.get());
}
