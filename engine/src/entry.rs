//! A stored entry and the pieces of it the hit path reads.

use crate::generation::{Generation, Registry};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Deadline of an entry with no deadline.
pub(crate) const NEVER: u64 = u64::MAX;
/// Deadline of an entry hidden by a later insert or a remove not yet applied.
pub(crate) const HIDDEN: u64 = 0;
/// The largest access count the policy tracks.
pub(crate) const MAX_FREQ: u8 = 3;

/// Which policy queue an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queue {
    Small,
    Main,
}

/// Generations an entry was written under (raw ids; 0 = none).
pub(crate) type Gens = [u64; 2];

/// What the hit path reads, stored inline in the shard's hash table so that a hit touches
/// the table and the value and nothing else.
#[derive(Debug)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// Absolute nanoseconds; [`NEVER`], or [`HIDDEN`] once superseded or removed.
    pub(crate) deadline: AtomicU64,
    pub(crate) gens: Gens,
    /// Access mark for the policy, written by readers under the read lock.
    pub(crate) freq: AtomicU8,
    /// The entry's slot in the shard's slab of [`Meta`].
    pub(crate) idx: u32,
}

/// What only the worker reads, in a slab indexed by the entry's slot. Lists (policy queue,
/// timer bucket, generations) link slots through [`crate::list::Links`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) hash: u64,
    pub(crate) weight: u32,
    /// Reuse count of the slot, so a stale [`crate::shard::Handle`] is detected.
    pub(crate) reuse: u32,
    pub(crate) queue: Queue,
    pub(crate) occupied: bool,
}

impl<K, V> Entry<K, V> {
    /// Whether a reader at coarse time `now` may return this entry.
    #[inline]
    pub(crate) fn is_visible(&self, now: u64, reg: &Registry) -> bool {
        now < self.deadline.load(Ordering::Acquire) && gens_live(&self.gens, reg)
    }

    /// Records an access; writes only when the mark changes.
    #[inline]
    pub(crate) fn mark(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }

    pub(crate) fn deadline(&self) -> u64 {
        self.deadline.load(Ordering::Acquire)
    }

    pub(crate) fn hide(&self) {
        self.deadline.store(HIDDEN, Ordering::Release);
    }
}

#[inline]
pub(crate) fn gens_live(gens: &Gens, reg: &Registry) -> bool {
    gens.iter().all(|&g| Generation::from_raw(g).is_none_or(|g| reg.is_live(g)))
}
