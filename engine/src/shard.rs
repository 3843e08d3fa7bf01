//! The single-threaded core of one shard: map + slab + policy + wheel + generation lists.
//!
//! Everything here takes `&mut self` (or `&self` for lookups) and knows nothing of threads:
//! the worker that owns the shard calls the mutating methods under the shard's write lock, and
//! readers call [`Shard::find`] under the read lock.
//!
//! Layout: `map` is a `hashbrown::HashTable<Entry>` holding what every hit reads (key, value,
//! access mark, flags) inline, so a hit on an entry without deadline or generations touches the
//! table and the value only. Each entry also names its *slot* in `metas`, a slab of what only
//! the worker reads (hash, queue, reuse count), in `weights` (allocated only for weights
//! other than 1), and in `stamps`, a slab of deadlines and
//! generations that exists only once an entry has either (read by a hit only when the entry's
//! flags say it has them; see [`Stamp`]); the intrusive lists (policy queue, timer
//! bucket, one list per generation and link kind) link slots in `links`. The worker finds an
//! entry from its slot by probing the table with the stored hash and comparing slots, so it
//! never calls the user's `Hash` or `Eq`. A [`Handle`] (slot + reuse count + hash bits) taken by
//! a caller is detected as stale, never dereferenced. A store that replaces a resident entry
//! updates it in its slot (`replace.rs`), keeping its place in the policy's queues. Victims
//! are named, set aside, kept or evicted in `evict.rs`.
//!
//! Cost per entry, `u64` keys and `Arc` values, as `benches/memory.rs` measures it (1M entries
//! in the default 9 shards of 111k; B/entry beyond the `Vec<(u64, Arc)>` floor, whose 16 B are
//! the key and the value):
//!
//! | part | bytes per slot | B/entry at 1M |
//! |---|--:|--:|
//! | table bucket: `Entry` 24 + control byte 1 | 25 | 29.5 (131,072 buckets a shard, 85% full) |
//! | `Meta`: hash (low half) 4, reuse 2, queue 1, occupied 1 | 8 | 8.2 |
//! | weights 4 (only once an entry weighs other than 1: never without a weigher) | 4 | 0 here |
//! | `Stamp`: deadline 8, gens 16 (only once an entry has a deadline or generations) | 24 | 0 here |
//! | queue links (timer, generation links: only once used, see [`crate::list`]) | 8 | 8.2 |
//! | policy: frequency sketch and ghost table (allocated at a shard's first eviction) | 8.5 | 2.7 (the shards that evicted) |
//!
//! The slab and the link arrays grow by [`reserve_slots`]: doubling up to the shard's share of the
//! capacity, never past it, then in small steps (plain doubling left a 125k shard with room for
//! 131,072). Measured: 32-33 B/entry of heap beyond the floor (quick_cache 36.5), 37-38 of RSS
//! (quick_cache 35; the allocator keeps the tables freed while growing). The hashbrown table is the
//! largest part: it has a power-of-two number of buckets and doubles at 7/8 load, so the default
//! shard count is chosen from the capacity to leave each shard's share just under a threshold (8
//! shards of 125k sat just over one: 48% full, 61-63 B/entry). A slot keeps only the low half of
//! its key's hash ([`slot_hash`]) and its weight only when it is not 1: `Meta` went from 16 to 8
//! bytes. An engine whose entries all have a deadline or generations (the memoizer's) pays the
//! 24-byte stamp per slot on top. The pending tables (`shared.rs`) keep their capacity between
//! batches.
//!
//! Under churn the table doubles once: each removal from a full probe window leaves a
//! tombstone, and when tombstones have used up the table's spare room hashbrown rehashes into
//! twice the buckets (in place only below half load). Measured after evicting twice the
//! capacity (`MEMOKIT_MEMORY_CHURN=3`): 70 B/entry of heap beyond the floor, 78 of RSS (the
//! table 59, the sketch 8); quick_cache's table doubles too (78 heap, 55 RSS). The rehash holds
//! the shard's write lock once per shard, 5-6 ms at 111k entries (growing while filling takes
//! 2.5-3 ms per doubling at 57k).
//!
//! Invariants ([`Shard::validate`]): the map holds exactly the occupied slots, each under its
//! stored hash; every occupied entry is in exactly one policy queue, in the wheel iff it has a
//! deadline, and in the list of each of its generations; no slot is linked in a list of any
//! kind outside those; no link array covers slots the slab does not have (so an engine that
//! never sets deadlines or generations has no timer or generation links at all); the link
//! arena itself is consistent ([`Links::validate`]); the weights add up.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use hashbrown::HashMap;
use hashbrown::HashTable;

use crate::entry::{
    gens_live, slot_hash, Entry, Gens, Meta, Queue, SparseSlab, Stamp, NEVER, TIMED, VERSIONED,
};
use crate::generation::{Generation, Registry};
use crate::list::{reserve_slots, Kind, Links, List};
use crate::policy::Policy;
use crate::wheel::Wheel;

mod evict;
mod replace;
mod validate;

/// A slab index with the slot's reuse count and 16 bits of the entry's hash at the time it was
/// taken. The count is 16 bits (to keep [`Meta`] at 8 bytes) and wraps, so the hash bits are
/// checked too: a stale handle passes for valid only if its slot was reused a multiple of
/// 65,536 times and now holds an entry whose hash has the same top 16 bits. Neither happens:
/// a handle waits in the pending table for one batch, a slot is reused only by an insert, and
/// inserts happen only when a batch is applied, so between a handle's capture and its use its
/// slot is reused at most once per insert of that batch, which holds fewer than
/// its shard's pending limit (at most `PENDING_LIMIT`, 4096) plus one per storing thread
/// (asserted below), callers being held back at the limit. Stores made on a worker thread (by
/// a user's `Drop` running there) or in user code run under a lock are not held back, nor
/// are any while the shard's worker has been stuck in a user's `Drop` for a second
/// (`pending::UserDrops`), so only a `Drop` that stores 65,536 values into one shard before
/// its worker applies them, or one blocked while callers store as many, could make a batch
/// that large; even then a handle mistaken for valid removes
/// the unrelated entry now in its slot (a spurious eviction), never serves a value. 8 bytes,
/// like the handle of a 32-bit count.
const _: () =
    assert!(crate::pending::PENDING_LIMIT <= 1 << 14, "handles rely on batches far below 2^16");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Handle {
    idx: u32,
    gen: u16,
    tag: u16,
}

impl Handle {
    /// The entry's slot.
    pub(crate) fn idx(self) -> u32 {
        self.idx
    }
}

/// The hash bits a [`Handle`] keeps.
fn tag(low: u32) -> u16 {
    (low >> 16) as u16
}

/// What a caller hands to the worker to store.
#[derive(Debug)]
pub(crate) struct NewEntry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) hash: u64,
    pub(crate) deadline: u64,
    pub(crate) gens: Gens,
    /// Whether lookups check `gens` (`InsertOptions::checks_generations`).
    pub(crate) checked: bool,
    pub(crate) weight: u32,
}

impl<K, V> NewEntry<K, V> {
    /// The entry flags the store calls for: [`TIMED`] with a deadline, [`VERSIONED`] when
    /// lookups check its generations.
    fn flags(&self) -> u8 {
        let timed = if self.deadline != NEVER { TIMED } else { 0 };
        timed | if self.checked { VERSIONED } else { 0 }
    }
}

/// Worker-side counters of one shard (read under the read lock by `stats()`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ShardCounts {
    pub(crate) inserts: u64,
    pub(crate) evictions: u64,
    pub(crate) expirations: u64,
    pub(crate) stale_reclaimed: u64,
}

/// Why an entry leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Removed,
    Evicted,
    Expired,
    Stale,
}

const GEN_KINDS: [Kind; 2] = [Kind::Gen0, Kind::Gen1];

/// Laid out (`repr(C)`) for the lookups: the shard follows its lock word in
/// [`crate::shared::Cell`], and readers spin on that word's cache line while the worker
/// applies a batch, so that line holds what a hit reads and a batch at capacity does not
/// write: the stamps' slice (read by a hit on an entry with a deadline or generations), then
/// the first bytes of the slot metadata's header. Both are written only while the shard takes
/// new slots (an insert with no freed slot to reuse: while the engine fills), once per such
/// insert. The table's header, which a hit reads too, is written by every insert and
/// eviction, at capacity too: in the lock word's line, each of those writes took the line
/// back from the spinning readers (6–11% more time per operation in the two-thread write
/// benches, `BENCHMARKS.md` session 27), so it sits further on. The test
/// `shard::tests::the_lock_words_line_holds_the_stamps_not_the_table` checks both.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Shard<K, V> {
    /// Deadlines and generations by slot; empty until the first entry that has either, then
    /// grown to cover every slot such an entry takes (see [`Stamp`]).
    stamps: SparseSlab<Stamp>,
    metas: Vec<Meta>,
    /// Weights by slot; empty while every entry weighs 1 (a [`SparseSlab`] defaulting to 1).
    weights: SparseSlab<u32>,
    free: Vec<u32>,
    links: Links,
    policy: Policy,
    wheel: Wheel,
    retired: VecDeque<u64>,
    map: HashTable<Entry<K, V>>,
    gen_lists: [HashMap<u64, List, ahash::RandomState>; 2],
    /// The shard's share of the capacity, in slots (see [`reserve_slots`]).
    share: usize,
    weight: u64,
    pub(crate) counts: ShardCounts,
    /// Entries with a deadline (in the wheel).
    timed: usize,
}

impl<K, V> Shard<K, V> {
    /// An empty shard whose policy is sized for `share` (its part of the capacity).
    pub(crate) fn new(share: u64, tick_nanos: u64, now: u64) -> Self {
        let slots = usize::try_from(share).unwrap_or(usize::MAX);
        let mut links = Links::with_share(slots);
        let policy = Policy::new(&mut links, share);
        let wheel = Wheel::new(&mut links, tick_nanos, now);
        Shard {
            map: HashTable::new(),
            metas: Vec::new(),
            weights: SparseSlab::new(1),
            stamps: SparseSlab::new(Stamp::NONE),
            free: Vec::new(),
            links,
            policy,
            wheel,
            gen_lists: Default::default(),
            retired: VecDeque::new(),
            share: slots,
            weight: 0,
            counts: ShardCounts::default(),
            timed: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Loads the lines that applying stores of keys with these hashes will touch (the table's
    /// control bytes, the policy's sketch block and ghost slot) and those of the next
    /// eviction candidates (slot metadata, table bucket and access mark), changing nothing:
    /// the worker calls it under the read lock before it takes the write lock for the batch,
    /// so that readers do not wait out those cache misses (`Cell::warm_batch`).
    pub(crate) fn warm(&self, hashes: &[u64]) {
        for &h in hashes {
            std::hint::black_box(self.map.find(slot_hash(h as u32), |_| false).is_some());
        }
        self.policy.warm(hashes);
        self.policy.candidates(&self.links, hashes.len(), |i| {
            if let Some(m) = self.metas.get(i as usize) {
                let e = self.map.find(m.slot_hash(), |e| e.idx == i);
                std::hint::black_box(e.map(|e| e.freq.load(Ordering::Relaxed)));
            }
        });
    }

    /// The slab that [`Entry::is_visible`] reads.
    #[inline]
    pub(crate) fn stamps(&self) -> &[Stamp] {
        self.stamps.as_slice()
    }

    /// Slot `idx`'s deadline and generations ([`Stamp::NONE`] beyond the stamp slab).
    fn stamp(&self, idx: u32) -> Stamp {
        self.stamps.get(idx)
    }

    /// Records slot `idx`'s stamp, growing the stamp slab only for a stamp other than `NONE`.
    fn set_stamp(&mut self, idx: u32, stamp: Stamp) {
        self.stamps.set(idx, stamp, self.share);
    }

    /// The entry stored for a key that `eq` accepts, visible or not (a lookup: no handle, so
    /// no read of the slot's metadata).
    #[inline]
    pub(crate) fn entry(&self, hash: u64, mut eq: impl FnMut(&K) -> bool) -> Option<&Entry<K, V>> {
        self.map.find(slot_hash(hash as u32), |e| eq(&e.key))
    }

    /// [`Shard::entry`] with the handle a store or remove records for the worker.
    #[inline]
    pub(crate) fn find(
        &self,
        hash: u64,
        eq: impl FnMut(&K) -> bool,
    ) -> Option<(Handle, &Entry<K, V>)> {
        let e = self.entry(hash, eq)?;
        let gen = self.metas[e.idx as usize].reuse;
        Some((Handle { idx: e.idx, gen, tag: tag(hash as u32) }, e))
    }

    /// The entry in slot `idx`.
    fn at(&self, idx: u32) -> Option<&Entry<K, V>> {
        let m = self.metas.get(idx as usize).filter(|m| m.occupied)?;
        self.map.find(m.slot_hash(), |e| e.idx == idx)
    }

    fn valid(&self, h: Handle) -> bool {
        let m = self.metas.get(h.idx as usize);
        m.is_some_and(|m| m.occupied && m.reuse == h.gen && tag(m.hash) == h.tag)
    }

    /// Removes the entry behind `h` if it is still the one the handle was taken for.
    pub(crate) fn remove_handle(&mut self, h: Handle, reg: &Registry, garbage: &mut Vec<(K, V)>) {
        if self.valid(h) {
            self.remove_idx(h.idx, Cause::Removed, reg, garbage);
        }
    }

    /// Stores `n`: in place of the entry behind `replaces` if that is still valid (the same
    /// slot, its place in the policy kept: `Shard::update`), as a new entry otherwise. `n`
    /// comes counted under its generations (by the caller that recorded it:
    /// [`Registry::acquire_all`]); the entry keeps those counts, or, when a generation was
    /// retired meanwhile, the store is refused, they are given back and the replaced entry is
    /// removed. Returns the entry's weight (0 when refused).
    pub(crate) fn insert(
        &mut self,
        n: NewEntry<K, V>,
        replaces: Option<Handle>,
        reg: &Registry,
        garbage: &mut Vec<(K, V)>,
    ) -> u64 {
        if let Some(h) = replaces {
            if self.valid(h)
                && gens_live(&n.gens, reg)
                && self.metas[h.idx as usize].hash == n.hash as u32
            {
                return self.update(h.idx, n, reg, garbage);
            }
            self.remove_handle(h, reg, garbage);
        }
        // `n`'s counts keep its generations' slots from being recycled: each slot still holds
        // this generation, live or retired. A retirement after this check is followed by a
        // `Retire` command, which finds the entry in its generation's list.
        if !gens_live(&n.gens, reg) {
            reg.release_all(&n.gens);
            garbage.push((n.key, n.value));
            return 0;
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let len = self.metas.len() + 1;
                reserve_slots(&mut self.metas, len, self.share);
                self.metas.push(Meta { hash: 0, reuse: 0, queue: Queue::Small, occupied: false });
                (self.metas.len() - 1) as u32
            }
        };
        let stamp = Stamp { deadline: n.deadline, gens: n.gens };
        self.set_stamp(idx, stamp);
        self.weights.set(idx, n.weight, self.share);
        let m = &mut self.metas[idx as usize];
        m.hash = n.hash as u32;
        m.occupied = true;
        self.policy.on_insert(&mut self.links, idx, m, n.weight);
        if n.deadline != NEVER {
            self.wheel.schedule(&mut self.links, idx, n.deadline);
            self.timed += 1;
        }
        for (k, &g) in n.gens.iter().enumerate() {
            self.link_gen(idx, k, g);
        }
        let flags = n.flags();
        let e = Entry { key: n.key, value: n.value, idx, freq: 0.into(), flags: flags.into() };
        let metas = &self.metas;
        self.map.insert_unique(slot_hash(n.hash as u32), e, |e| metas[e.idx as usize].slot_hash());
        self.weight += u64::from(n.weight);
        self.counts.inserts += 1;
        u64::from(n.weight)
    }

    /// Replaces the value of the visible entry for `kv`'s key in place when the store changes
    /// nothing else the worker keeps: no deadline before or after, the same generations
    /// (`gens`), the same `weight`. Counts an insert and an access. Returns whether it did:
    /// `kv` then holds the new key and the old value, to drop outside the lock, and is left
    /// untouched otherwise (the store goes through the worker). Calls the user's `Eq`, with
    /// `kv` borrowed: should it panic, the caller, who owns `kv`, drops it after its locks.
    pub(crate) fn replace_value(
        &mut self,
        hash: u64,
        kv: &mut (K, V),
        gens: &Gens,
        checked: bool,
        weight: u32,
    ) -> bool
    where
        K: Eq,
    {
        let Some(e) = self.map.find_mut(slot_hash(hash as u32), |e| e.key == kv.0) else {
            return false;
        };
        let same = *e.flags.get_mut() == if checked { VERSIONED } else { 0 }
            && self.weights.get(e.idx) == weight
            // Compared even for a store without generations: an entry whose primary is in
            // its key has no `VERSIONED` flag either, but its generation must not be kept.
            && self.stamps.get(e.idx).gens == *gens;
        if !same {
            return false;
        }
        std::mem::swap(&mut e.value, &mut kv.1);
        e.mark();
        self.counts.inserts += 1;
        true
    }

    /// Removes slot `idx` entirely; returns its weight.
    fn remove_idx(
        &mut self,
        idx: u32,
        cause: Cause,
        reg: &Registry,
        garbage: &mut Vec<(K, V)>,
    ) -> u64 {
        let Some(m) = self.metas.get(idx as usize).copied().filter(|m| m.occupied) else {
            return 0;
        };
        let Ok(found) = self.map.find_entry(m.slot_hash(), |e| e.idx == idx) else {
            return 0;
        };
        let (e, _) = found.remove();
        let weight = self.weights.get(idx);
        self.policy.on_remove(&mut self.links, idx, &m, weight);
        Wheel::cancel(&mut self.links, idx);
        let stamp = self.stamp(idx);
        if stamp.deadline != NEVER {
            self.timed -= 1;
        }
        for (k, &g) in stamp.gens.iter().enumerate() {
            self.unlink_gen(idx, k, g, reg);
        }
        let slot = &mut self.metas[idx as usize];
        slot.occupied = false;
        slot.reuse = slot.reuse.wrapping_add(1);
        self.free.push(idx);
        self.weight -= u64::from(weight);
        match cause {
            Cause::Removed => {}
            Cause::Evicted => self.counts.evictions += 1,
            Cause::Expired => self.counts.expirations += 1,
            Cause::Stale => self.counts.stale_reclaimed += 1,
        }
        garbage.push((e.key, e.value));
        u64::from(weight)
    }

    /// Links slot `idx` into the list of generation `g` (raw id; 0: none) as its `k`-th.
    fn link_gen(&mut self, idx: u32, k: usize, g: u64) {
        if g != 0 {
            let links = &mut self.links;
            let list = *self.gen_lists[k].entry(g).or_insert_with(|| links.new_list());
            links.push_back(GEN_KINDS[k], list, idx);
        }
    }

    /// Unlinks slot `idx` from the list of its `k`-th generation `g` (freeing the list when
    /// it empties) and gives back the entry's count under it.
    fn unlink_gen(&mut self, idx: u32, k: usize, g: u64, reg: &Registry) {
        if g == 0 {
            return;
        }
        self.links.unlink(GEN_KINDS[k], idx);
        if let Some(&list) = self.gen_lists[k].get(&g) {
            if self.links.is_empty(list) {
                self.gen_lists[k].remove(&g);
                self.links.free_list(list);
            }
        }
        if let Some(gen) = Generation::from_raw(g) {
            reg.release(gen);
        }
    }

    /// Advances the wheel to `now` and removes up to `budget` entries that are expired or whose
    /// generation was retired. Returns `(entries examined, weight freed, done)`.
    pub(crate) fn maintain(
        &mut self,
        now: u64,
        budget: usize,
        reg: &Registry,
        garbage: &mut Vec<(K, V)>,
    ) -> (usize, u64, bool) {
        self.wheel.advance(&mut self.links, now);
        let mut work = 0;
        let mut freed = 0;
        while work < budget {
            let Some(i) = self.wheel.pop_backlog(&mut self.links) else { break };
            work += 1;
            if !self.metas.get(i as usize).is_some_and(|m| m.occupied) {
                continue;
            }
            let d = self.stamp(i).deadline;
            if d <= now {
                freed += self.remove_idx(i, Cause::Expired, reg, garbage);
            } else {
                self.wheel.schedule(&mut self.links, i, d);
            }
        }
        while work < budget {
            let Some(&g) = self.retired.front() else { break };
            let next = (0..2).find_map(|k| {
                let list = *self.gen_lists[k].get(&g)?;
                self.links.front(GEN_KINDS[k], list)
            });
            match next {
                Some(i) => {
                    work += 1;
                    freed += self.remove_idx(i, Cause::Stale, reg, garbage);
                }
                None => {
                    self.retired.pop_front();
                }
            }
        }
        (work, freed, work < budget)
    }

    /// [`Shard::maintain`], and, when an entry of the wheel's next tick may have expired
    /// within the current one, those entries too: every entry dead at `now` is reclaimed (up
    /// to `budget`), not only those of the ticks that have ended. For reclaiming before an
    /// eviction, so that a live entry is not evicted while a dead one takes its place.
    pub(crate) fn reclaim_dead(
        &mut self,
        now: u64,
        budget: usize,
        reg: &Registry,
        garbage: &mut Vec<(K, V)>,
    ) -> (usize, u64, bool) {
        self.wheel.advance(&mut self.links, now);
        if self.timed > 0 && self.wheel.next_expiry_from() <= now {
            self.wheel.pull_next(&mut self.links, now);
        }
        self.maintain(now, budget, reg, garbage)
    }

    /// From when [`Shard::reclaim_dead`] could find an expired or stale entry (nanoseconds, as
    /// the clock): 0 (now) while retired generations or the wheel's backlog hold work, the
    /// earliest time an entry of the wheel's next tick may expire, or the next tick, while
    /// some entry has a deadline, never (`u64::MAX`) otherwise. Published by the
    /// worker for the others (`Cell::due_at`), so that a worker over capacity leaves live
    /// entries alone while another worker may still reclaim dead ones, and read by the shard's own
    /// worker to skip a shard with nothing to reclaim without taking its lock. O(1).
    pub(crate) fn dead_possible_from(&self) -> u64 {
        if !self.retired.is_empty() {
            0
        } else if self.timed > 0 {
            self.wheel.busy_from(&self.links).min(self.wheel.next_expiry_from())
        } else {
            NEVER
        }
    }

    /// Queues the entries stored under retired generation `g` for reclamation.
    pub(crate) fn schedule_reclaim(&mut self, g: u64) {
        if (self.gen_lists[0].contains_key(&g) || self.gen_lists[1].contains_key(&g))
            && !self.retired.contains(&g)
        {
            self.retired.push_back(g);
        }
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self, reg: &Registry, garbage: &mut Vec<(K, V)>) -> u64 {
        let mut freed = 0;
        for i in 0..self.metas.len() as u32 {
            if self.metas[i as usize].occupied {
                freed += self.remove_idx(i, Cause::Removed, reg, garbage);
            }
        }
        self.retired.clear();
        freed
    }
}

#[cfg(test)]
mod tests;
