//! A stored entry and the pieces of it the hit path reads.

use crate::generation::{Generation, Registry};
use crate::sync::AtomicU8;
use std::sync::atomic::Ordering;

/// Deadline of an entry with no deadline.
pub(crate) const NEVER: u64 = u64::MAX;
/// The largest access count the policy tracks.
pub(crate) const MAX_FREQ: u8 = 3;

/// `Entry::flags`: hidden by a later insert or a remove not yet applied.
pub(crate) const HIDDEN: u8 = 1;
/// `Entry::flags`: has a deadline (in its [`Stamp`]).
pub(crate) const TIMED: u8 = 2;
/// `Entry::flags`: lookups check its generations (in its [`Stamp`]); not set for an entry
/// stored under a primary generation alone that is in its key (`InsertOptions::primary_in_key`).
pub(crate) const VERSIONED: u8 = 4;

/// Which policy queue an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queue {
    Small,
    Main,
}

/// Generations an entry was written under (raw ids; 0 = none).
pub(crate) type Gens = [u64; 2];

/// What every hit reads, stored inline in the shard's hash table: the key, the value, the
/// entry's slot, its access mark and three flags (24 bytes for `u64` keys and `Arc` values, so
/// the table stays small and a hit touches little memory). An entry with a deadline or
/// generations keeps them in its [`Stamp`], which a hit reads only when the flags say so.
#[derive(Debug)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// The entry's slot in the shard's slab of [`Meta`].
    pub(crate) idx: u32,
    /// Access mark for the policy, written by readers under the read lock.
    pub(crate) freq: AtomicU8,
    /// [`HIDDEN`], [`TIMED`], [`VERSIONED`]; only `HIDDEN` changes after insertion (set by a
    /// caller under the read lock).
    pub(crate) flags: AtomicU8,
}

/// The hash a shard's table, policy and handles use: the low 32 bits of the key's hash,
/// repeated in both halves. A slot keeps only those 4 bytes ([`Meta::hash`]); repeating them
/// gives the table's bucket index (low bits) and its 7-bit tags (top bits) from different
/// bits, as long as a shard has fewer than 2^25 buckets. The shard index comes from the hash's
/// high half, so it does not correlate with either.
#[inline]
pub(crate) fn slot_hash(low: u32) -> u64 {
    u64::from(low) | (u64::from(low) << 32)
}

/// Per-slot data in a slab, read by the worker only (8 bytes). Written only by the worker,
/// under the write lock. A slot's weight is in a [`SparseSlab`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    /// The key's hash, low 32 bits (see [`slot_hash`]).
    pub(crate) hash: u32,
    /// Reuse count of the slot (wrapping), so a stale [`crate::shard::Handle`] is detected.
    pub(crate) reuse: u16,
    pub(crate) queue: Queue,
    pub(crate) occupied: bool,
}

impl Meta {
    /// The slot's key hash as the table and the policy use it ([`slot_hash`]).
    #[inline]
    pub(crate) fn slot_hash(&self) -> u64 {
        slot_hash(self.hash)
    }
}

/// A slab of per-slot values that most slots leave at a default, allocated only once a slot
/// holds something else; slots beyond its length read as the default. A shard keeps two: the
/// [`Stamp`]s (so an engine used without deadlines or generations pays nothing for them) and
/// the weights (default 1: an engine without a weigher never allocates it). Written only by
/// the worker, under the write lock.
#[derive(Debug)]
#[repr(C)] // `slots` first: a lookup reads it, not `default` (see `Shard`'s layout).
pub(crate) struct SparseSlab<T> {
    slots: Vec<T>,
    default: T,
}

impl<T> SparseSlab<T> {
    /// Where the slice a lookup reads ends in the slab.
    #[cfg(test)]
    pub(crate) const SLOTS_END: usize =
        std::mem::offset_of!(Self, slots) + std::mem::size_of::<Vec<T>>();
}

impl<T: Copy + PartialEq> SparseSlab<T> {
    /// An empty slab whose slots read as `default`.
    pub(crate) fn new(default: T) -> Self {
        SparseSlab { slots: Vec::new(), default }
    }

    /// Slot `i`'s value.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> T {
        self.slots.get(i as usize).copied().unwrap_or(self.default)
    }

    /// Records slot `i`'s value, growing the slab (as [`crate::list::reserve_slots`] does, up
    /// to `share` slots) only for a value other than the default.
    pub(crate) fn set(&mut self, i: u32, value: T, share: usize) {
        let i = i as usize;
        if i < self.slots.len() {
            self.slots[i] = value;
        } else if value != self.default {
            crate::list::reserve_slots(&mut self.slots, i + 1, share);
            self.slots.resize(i + 1, self.default);
            self.slots[i] = value;
        }
    }

    /// The allocated slots (the hit path reads stamps through this).
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        &self.slots
    }

    /// Slots the slab covers.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// A slot's deadline and generations, in a second slab that a shard allocates only once an
/// entry with a deadline or generations arrives (24 bytes a slot, then): an engine used
/// without timeouts or generations pays nothing for them. Slots beyond its length, and slots
/// of entries without them, read as [`Stamp::NONE`]. Written only by the worker, under the
/// write lock; read by a hit when the entry's flags say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Absolute nanoseconds, or [`NEVER`].
    pub(crate) deadline: u64,
    pub(crate) gens: Gens,
}

impl Stamp {
    /// No deadline, no generations.
    pub(crate) const NONE: Stamp = Stamp { deadline: NEVER, gens: [0; 2] };
}

impl<K, V> Entry<K, V> {
    /// Whether a reader at coarse time `now()` may return this entry; `stamps` is its shard's
    /// slab of [`Stamp`]s (read only for entries with a deadline or checked generations:
    /// [`TIMED`], [`VERSIONED`]). `now` is called only for an entry with a deadline, so a hit
    /// on one without reads no clock.
    #[inline(always)]
    pub(crate) fn is_visible(
        &self,
        now: impl FnOnce() -> u64,
        reg: &Registry,
        stamps: &[Stamp],
    ) -> bool {
        let f = self.flags.load(Ordering::Acquire);
        if f & HIDDEN != 0 {
            return false;
        }
        if f & (TIMED | VERSIONED) == 0 {
            return true;
        }
        let Some(m) = stamps.get(self.idx as usize) else { return false };
        (f & TIMED == 0 || now() < m.deadline) && (f & VERSIONED == 0 || gens_live(&m.gens, reg))
    }

    /// Records an access; writes only when the mark changes.
    #[inline]
    pub(crate) fn mark(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }

    /// Whether a store or remove has hidden the entry.
    #[inline]
    pub(crate) fn is_hidden(&self) -> bool {
        self.flags.load(Ordering::Acquire) & HIDDEN != 0
    }

    /// Hides the entry from lookups until the worker replaces or removes it.
    pub(crate) fn hide(&self) {
        self.flags.fetch_or(HIDDEN, Ordering::Release);
    }
}

#[inline(always)]
pub(crate) fn gens_live(gens: &Gens, reg: &Registry) -> bool {
    gens.iter().all(|&g| Generation::from_raw(g).is_none_or(|g| reg.is_live(g)))
}
