//! Generations: O(1) retirement of everything stored under a version.
//!
//! A [`Generation`] is a `(slot, epoch)` pair packed in a `u64` (24 bits of slot, 40 bits of
//! epoch). Epochs come from one process-wide counter, so an id is never issued twice in the
//! process, whichever engine issues it (and a generation passed to another engine is simply not
//! live there). The registry keeps one cell per slot holding the slot's current state: the live
//! epoch, or an epoch with the `RETIRED` bit. An entry records the generations it was written under; it
//! is visible only while every one of them is live, so retiring a generation is one
//! compare-and-swap, whatever the number of entries.
//!
//! A slot is recycled only once it is retired *and* no entry refers to it, so the per-slot entry
//! count always belongs to one generation. When all 2^24 slots are in use, or after 2^40
//! generations in one process, [`Registry::allocate`] hands out a generation that is born
//! retired: values stored under it are simply not kept (correct, never stale).
//!
//! `live` counts the entries under the slot's generation from the moment a caller records the
//! store in a shard's pending table ([`Registry::acquire_all`]), not only once the worker has
//! applied it, so [`Engine::generation_entries`](crate::Engine::generation_entries) never
//! reports 0 for a generation whose value is on its way to the worker (the memoizer drops the
//! versions of receivers whose count is 0). Whoever discards a counted store or entry gives
//! the count back ([`Registry::release`]): the caller whose store or remove supersedes a
//! pending store, the worker refusing a store whose generation was retired before it applied
//! it, the worker removing a resident entry (remove, eviction, expiry, reclamation, clear),
//! and `clear` or shutdown emptying a pending table.
//!
//! The cells sit in a segmented array (chunk `k` holds `64 << k` cells) so that readers index it
//! without a lock while it grows; chunk 0 is inline in the registry.
//!
//! Cost: `is_live` is one atomic load for the first 64 slots (the hit path reads the cell at a
//! fixed place: ~1 ns of a versioned hit in `benches/memoize.rs`), plus a shift and a
//! `OnceLock` load beyond; `retire` one CAS plus a mutex only when the slot can be freed at
//! once.

use crate::entry::Gens;
use crate::sync::{AtomicU64, Mutex};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const MAX_EPOCH: u64 = (1 << (64 - SLOT_BITS)) - 1;
const RETIRED: u64 = 1 << 63;
const CHUNKS: usize = 19; // 64 * (2^19 - 1) >= 2^24 slots
const FIRST_CHUNK: u64 = 64;

/// The next epoch to issue, process-wide (0 is never issued: it marks "no generation").
/// Always a std atomic, even under the model checker (`crate::sync`): a unique counter shared
/// by every engine of the process, not part of any engine's protocol, and a model checker's
/// atomic must not outlive the one execution it belongs to.
static NEXT_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A version under which entries are stored; retiring it hides them all at once.
///
/// Obtained from [`Engine::new_generation`](crate::Engine::new_generation) and passed to
/// inserts through [`InsertOptions::generations`](crate::InsertOptions::generations).
/// `Copy`, compared by id; ids are unique for the life of the process.
///
/// # Example
/// ```
/// use memokit_engine::{Engine, InsertOptions};
/// let engine: Engine<u32, u32> = Engine::new(100);
/// let v1 = engine.new_generation();
/// engine.insert_with_options(1, 10, InsertOptions::new().generations(v1, None));
/// assert_eq!(engine.get(&1), Some(10));
/// engine.retire(v1);
/// assert_eq!(engine.get(&1), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(u64);

impl Generation {
    /// The generation's id (unique for the life of the process, never zero).
    ///
    /// ```
    /// use memokit_engine::Engine;
    ///
    /// let cache: Engine<u64, u64> = Engine::new(10);
    /// let g = cache.new_generation();
    /// assert_ne!(g.id(), 0);
    /// ```
    pub fn id(&self) -> u64 {
        self.0
    }

    pub(crate) fn from_raw(raw: u64) -> Option<Self> {
        (raw != 0).then_some(Generation(raw))
    }

    fn slot(self) -> u64 {
        self.0 & SLOT_MASK
    }

    fn epoch(self) -> u64 {
        self.0 >> SLOT_BITS
    }

    fn new(slot: u64, epoch: u64) -> Self {
        Generation(epoch << SLOT_BITS | slot)
    }
}

#[derive(Debug, Default)]
struct Cell {
    /// The live epoch, or an epoch with `RETIRED`.
    state: AtomicU64,
    /// Entries (in any shard) that carry this slot's current epoch: resident, or recorded in a
    /// pending table and not yet applied or discarded.
    live: AtomicU64,
}

/// The registry's inline chunk 0, on cache lines of its own: callers and workers write a cell's
/// `live` count at every versioned store and removal, which must not invalidate the line of the
/// read-mostly fields around the registry (the hasher, the clock) that every lookup reads.
#[derive(Debug)]
#[repr(align(128))]
struct FirstChunk([Cell; FIRST_CHUNK as usize]);

/// The engine's generation registry.
#[derive(Debug)]
pub(crate) struct Registry {
    /// Chunk 0 (the first [`FIRST_CHUNK`] slots), inline: the generations a process keeps
    /// live at once are mostly these (slots are recycled), and the hit path then reads one
    /// cell at a fixed place instead of a chunk pointer first.
    first: FirstChunk,
    /// Chunks 1.. (`chunks[0]` stays empty).
    chunks: [OnceLock<Box<[Cell]>>; CHUNKS],
    alloc: Mutex<Alloc>,
}

#[derive(Debug, Default)]
struct Alloc {
    next_slot: u64,
    free: Vec<u64>,
}

/// A retired generation not yet freed (a freed slot's state is `RETIRED` with epoch 0).
fn is_retired(state: u64) -> bool {
    state & RETIRED != 0 && state != RETIRED
}

#[inline]
fn locate(slot: u64) -> (usize, usize) {
    let s = slot + FIRST_CHUNK;
    let k = 63 - s.leading_zeros() as usize - FIRST_CHUNK.trailing_zeros() as usize;
    (k, (s - (FIRST_CHUNK << k)) as usize)
}

impl Registry {
    pub(crate) fn new() -> Self {
        Registry {
            first: FirstChunk(std::array::from_fn(|_| Cell::default())),
            chunks: std::array::from_fn(|_| OnceLock::new()),
            alloc: Mutex::default(),
        }
    }

    #[inline]
    fn cell(&self, slot: u64) -> Option<&Cell> {
        if let Some(c) = self.first.0.get(slot as usize) {
            return Some(c);
        }
        let (k, i) = locate(slot);
        self.chunks.get(k)?.get().map(|c| &c[i])
    }

    fn cell_or_init(&self, slot: u64) -> &Cell {
        if let Some(c) = self.cell(slot) {
            return c;
        }
        let (k, i) = locate(slot);
        let chunk = self.chunks[k].get_or_init(|| {
            (0..(FIRST_CHUNK << k)).map(|_| Cell::default()).collect::<Vec<_>>().into_boxed_slice()
        });
        &chunk[i]
    }

    /// A fresh, live generation.
    pub(crate) fn allocate(&self) -> Generation {
        let mut a = self.alloc.lock();
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed).min(MAX_EPOCH);
        // Born retired (stores under it are dropped): the last slot is never handed out, so
        // its cell never holds a live epoch; the id stays unique while epochs last.
        let dead = Generation::new(SLOT_MASK, epoch);
        if epoch == MAX_EPOCH {
            return dead;
        }
        let slot = match a.free.pop() {
            Some(s) => s,
            None if a.next_slot < SLOT_MASK => {
                a.next_slot += 1;
                a.next_slot - 1
            }
            None => return dead, // every slot is in use
        };
        self.cell_or_init(slot).state.store(epoch, Ordering::SeqCst);
        Generation::new(slot, epoch)
    }

    /// Whether `g` is still live. The hit path calls this.
    #[inline(always)]
    pub(crate) fn is_live(&self, g: Generation) -> bool {
        match self.cell(g.slot()) {
            Some(c) => c.state.load(Ordering::Acquire) == g.epoch(),
            None => false,
        }
    }

    /// Retires `g`; returns whether this call did it (false when it already was).
    pub(crate) fn retire(&self, g: Generation) -> bool {
        let Some(c) = self.cell(g.slot()) else { return false };
        if c.state
            .compare_exchange(g.epoch(), g.epoch() | RETIRED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        if c.live.load(Ordering::SeqCst) == 0 {
            self.try_free(g.slot());
        }
        true
    }

    /// Counts an entry under `g`, or refuses when `g` is retired (then nothing is counted).
    pub(crate) fn acquire(&self, g: Generation) -> bool {
        let Some(c) = self.cell(g.slot()) else { return false };
        c.live.fetch_add(1, Ordering::SeqCst);
        if c.state.load(Ordering::SeqCst) == g.epoch() {
            true
        } else {
            self.release(g);
            false
        }
    }

    /// Gives back the count of an entry under `g` that leaves: a pending store discarded, an
    /// entry removed from a shard (and a refused [`Registry::acquire`], whose `g` may be an
    /// older generation of the same slot).
    pub(crate) fn release(&self, g: Generation) {
        let Some(c) = self.cell(g.slot()) else { return };
        if c.live.fetch_sub(1, Ordering::SeqCst) == 1 && is_retired(c.state.load(Ordering::SeqCst))
        {
            self.try_free(g.slot());
        }
    }

    /// Called by a caller as it records a store under `gens` in a pending table: counts it
    /// under each of them (one atomic add each; none without generations) and returns true,
    /// or, when one is retired, counts nothing and returns false. Every store in a pending
    /// table holds these counts until it is applied (the entry then keeps them) or discarded
    /// ([`Registry::release_all`]).
    pub(crate) fn acquire_all(&self, gens: &Gens) -> bool {
        for (taken, &g) in gens.iter().enumerate() {
            if let Some(gen) = Generation::from_raw(g) {
                if !self.acquire(gen) {
                    self.release_all(&gens[..taken]);
                    return false;
                }
            }
        }
        true
    }

    /// Gives back the counts of a store or entry under `gens` (see [`Registry::acquire_all`]).
    pub(crate) fn release_all(&self, gens: &[u64]) {
        for gen in gens.iter().filter_map(|&g| Generation::from_raw(g)) {
            self.release(gen);
        }
    }

    /// Frees `slot` if its generation is retired and nothing refers to it any more.
    fn try_free(&self, slot: u64) {
        let mut a = self.alloc.lock();
        let Some(c) = self.cell(slot) else { return };
        if !is_retired(c.state.load(Ordering::SeqCst)) || c.live.load(Ordering::SeqCst) != 0 {
            return; // freed already, or entries came back meanwhile
        }
        c.state.store(RETIRED, Ordering::SeqCst);
        a.free.push(slot);
    }

    /// Entries under `g` right now (all shards), the stores still on their way to a worker
    /// included.
    pub(crate) fn live_entries(&self, g: Generation) -> u64 {
        // The slot's count belongs to `g` only while the slot holds `g`'s epoch (live or
        // retired): once freed and reissued, it counts the new generation's entries.
        self.cell(g.slot()).map_or(0, |c| {
            let state = c.state.load(Ordering::SeqCst);
            if state & !RETIRED == g.epoch() {
                c.live.load(Ordering::SeqCst)
            } else {
                0
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_is_dense() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(63), (0, 63));
        assert_eq!(locate(64), (1, 0));
        assert_eq!(locate(64 + 127), (1, 127));
        assert_eq!(locate(192), (2, 0));
        assert!(locate(SLOT_MASK).0 < CHUNKS);
    }

    /// Model: a set of live generations. Slots on both sides of the inline first chunk and of
    /// the next chunk boundaries stay independent: retiring one never retires another.
    #[test]
    fn slots_across_chunk_boundaries_are_independent() {
        let r = Registry::new();
        let gens: Vec<Generation> = (0..300).map(|_| r.allocate()).collect();
        let slots: Vec<u64> = gens.iter().map(|g| g.slot()).collect();
        assert_eq!(slots, (0..300).collect::<Vec<_>>(), "fresh slots are dense");
        for g in gens.iter().step_by(3) {
            assert!(r.retire(*g));
        }
        for (i, g) in gens.iter().enumerate() {
            assert_eq!(r.is_live(*g), i % 3 != 0, "generation in slot {i}");
            assert_eq!(r.acquire(*g), i % 3 != 0, "acquire in slot {i}");
        }
    }

    #[test]
    fn retire_and_recycle_never_reissues() {
        let r = Registry::new();
        let a = r.allocate();
        assert!(r.is_live(a));
        assert!(r.acquire(a));
        assert!(r.retire(a));
        assert!(!r.retire(a));
        assert!(!r.is_live(a));
        assert!(!r.acquire(a));
        // Not recycled while an entry refers to it.
        let b = r.allocate();
        assert_ne!(a.slot(), b.slot());
        r.release(a);
        let c = r.allocate();
        assert_eq!(c.slot(), a.slot());
        assert_ne!(c, a);
        assert!(r.is_live(c) && !r.is_live(a));
    }

    /// A caller recording a store under two generations counts it under both or neither, and
    /// a count held by a pending store keeps a retired generation's slot from being recycled.
    #[test]
    fn acquire_all_counts_every_generation_or_none() {
        let r = Registry::new();
        let (a, b) = (r.allocate(), r.allocate());
        assert!(r.acquire_all(&[a.id(), b.id()]));
        assert_eq!((r.live_entries(a), r.live_entries(b)), (1, 1));
        assert!(r.acquire_all(&[0, 0]), "no generation: nothing to count");
        assert!(r.retire(b));
        assert!(!r.acquire_all(&[a.id(), b.id()]), "b is retired");
        assert_eq!((r.live_entries(a), r.live_entries(b)), (1, 1), "nothing more counted");
        assert_ne!(r.allocate().slot(), b.slot(), "b's slot is held by the count");
        r.release_all(&[a.id(), b.id()]);
        assert_eq!((r.live_entries(a), r.live_entries(b)), (0, 0));
        assert_eq!(r.allocate().slot(), b.slot(), "freed with its last count");
    }

    #[test]
    fn a_refused_acquire_of_an_old_generation_does_not_leak_the_slot() {
        let r = Registry::new();
        let old = r.allocate();
        assert!(r.retire(old)); // freed at once: nothing refers to it
        let new = r.allocate();
        assert_eq!(new.slot(), old.slot());
        // A store under `old` reaches `acquire` while `new` is being retired: its count lands
        // on the slot in between.
        let c = r.cell(old.slot()).unwrap();
        c.live.fetch_add(1, Ordering::SeqCst);
        assert!(r.retire(new)); // not freed: the stray count
        r.release(old); // the refused acquire gives its count back
        let next = r.allocate();
        assert_eq!(next.slot(), old.slot(), "the slot must be free again");
    }
}
