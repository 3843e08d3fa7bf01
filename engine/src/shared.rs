//! The state every handle and worker shares, and the caller-side operations on it.
//!
//! Each shard is a [`Cell`]: the core ([`Shard`]) behind a `parking_lot::RwLock`, the *pending*
//! table of stores and removes handed to the worker but not yet applied, and the table of running
//! computations. Lock order: `flights` → `pending`, and `flights` → `core`; `pending` and
//! `core` are taken in either order, but never waited for in the wrong one: the worker takes
//! `pending` while holding the core's write lock, and a caller holding `pending` only *tries*
//! the core's read lock (letting go of `pending` to wait when the worker holds the core).
//!
//! - **Hit:** one hash, the core's read lock, one probe, one deadline comparison against the
//!   coarse clock, the generation check, the access mark, one value clone. Nothing else.
//! - **Miss:** unless the fast path's miss is definitive (nothing of the key pending, no batch
//!   applied since, the entry absent rather than hidden), the pending table and the core are
//!   probed together: the core under its read lock while `pending` is still held, so no store
//!   can move the key's value between the two. The worker swaps a batch out of the pending
//!   table and applies it within one hold of the core's write lock, so a key missing from the
//!   pending table is in the core by the time the core's read lock is granted.
//! - **Store / remove:** under `pending`, the current core entry for the key (if any) is hidden
//!   (its `HIDDEN` flag set, an atomic store under the read lock) and the operation is recorded;
//!   the worker is woken unless a wake-up is already outstanding, at once for a remove or a
//!   store that hid an entry, after a few operations for stores of new keys (up to 8, fewer
//!   in small shards: `store::signal_threshold`), and when a lookup finds a pending store. So
//!   a value handed over is visible at once to every later lookup (read-your-writes), and a
//!   superseded or removed one never again; the engine may hold more than its capacity until
//!   the workers catch up: by the pending stores of new keys (under 1% of the capacity,
//!   until the next tick at most) and, while the workers are behind, by what they have not
//!   applied yet (at most an eighth of each shard's share, or 64 operations, by the
//!   backpressure below; operations, of any weight, in a weighted engine).
//! - **Replacing a resident value** (an explicit insert of a key whose visible entry has no
//!   deadline, the same generations and the same weight as the new value, and nothing of the
//!   key pending): the caller swaps the value under the core's write lock itself. Nothing the
//!   worker keeps changes (slot, queue, wheel, generation lists, weight), so the worker's
//!   ownership of the structure stands, and such a store costs a write lock and a probe instead
//!   of a hand-over, a wake-up and a batch. A busy write lock sends the store the usual way.
//! - **Backpressure:** a caller (storing or removing) that finds more than its shard's limit
//!   of operations waiting ([`crate::pending::pending_limit`]: an eighth of the shard's share of the capacity,
//!   at least 64, at most `PENDING_LIMIT`) waits, once it holds no lock, until the worker has
//!   drained it (not on a worker thread, where a user's `Drop` may store); but not for a
//!   worker that has been running one session of user `Drop`s for a second
//!   ([`crate::pending::STUCK_PATIENCE`]): such a `Drop` may be waiting for a lock of the
//!   user's that this caller holds ([`UserDrops`]).
//!
//! The lookups are here; single flight in the `single_flight` submodule; stores and removes
//! (with in-place replacement, what they leave their caller to drop, and the backpressure
//! wait) in the `store` submodule.
//!
//! User code (`Hash`, `Eq`, the weigher) runs only on calling threads and before any mutation, so
//! its panics reach the caller, leave the engine consistent and drop no user's key or value under a
//! lock (`store`). The weigher runs under the flights lock: a store, remove, computation, `clear`,
//! `flush` or maintenance of the same engine from inside it panics (`Shared::not_weighing`) rather
//! than wait for its own caller (or for a worker whose `Drop` of a user's key waits for it); and,
//! counted as user code under a lock (`crate::reentry`), so does waiting for any engine's workers
//! or for another thread's computation.
//! Workers run only the user's `Drop`, outside every lock, under `catch_unwind`; a `Drop` there
//! that asks every worker for something (`flush`, `clear`, `run_maintenance`) does its own worker's
//! share on the spot (`worker::worker_of`) and does not wait for the others. `Eq`, `Clone` and
//! `to_owned` run under the shard's locks; what they may call back is in `crate::reentry` (the hit
//! path only counts itself in and out of a thread-local there).

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{
    spin_loop, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, RwLock, RwLockReadGuard, Sender,
};

use crate::clock::Clock;
use crate::counters::Striped;
use crate::entry::gens_live;
use crate::flight::{Flights, FlightsGuard};
use crate::generation::Registry;
use crate::options::Equivalent;
use crate::pending::{
    assert_may_wait_for_core, pending_bit, pending_limit, Pending, PendingGuard, UserDrops,
    PENDING_WORDS,
};
use crate::reentry::{UnderRead, UserCode};
use crate::shard::Shard;
use crate::worker::{engine_id, Command};

mod single_flight;
mod store;

/// Attempts a reader makes, with a spin hint between them, to take a shard's read lock while
/// the worker holds it, before it queues (and may sleep) like any reader.
const READ_SPINS: u32 = 1000;

/// Stores of new keys whose lines [`Cell::warm_batch`] loads before a batch is applied.
const WARM_MAX: usize = 32;
/// Smaller batches are applied without [`Cell::warm_batch`].
const WARM_MIN: usize = 4;

/// The pending table and a read lock of the core, held together.
pub(crate) type PendingAndCore<'a, K, V> =
    (PendingGuard<'a, K, V>, RwLockReadGuard<'a, Shard<K, V>>);

/// [`Shared::lookups`]' counter of hits.
pub(crate) const HITS: usize = 0;
/// [`Shared::lookups`]' counter of misses.
pub(crate) const MISSES: usize = 1;

pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// One shard with its concurrent wrapping.
///
/// Laid out (`repr(C)`) in groups that start on lines of their own ([`LineBreak`]), by who
/// writes them: a lookup's read lock, a store's pending table and a computation's flight
/// table are each one group, and the worker's own fields another. Left to the compiler, the
/// pending filter that every store sets shared a line with the read lock's word, so each
/// store invalidated that line for every reader of the shard, and the worker's `due_at` sat
/// among the store fields (the test `layout_groups` checks the grouping). The engine keeps
/// its cells side by side, each [`Padded`].
#[repr(C, align(128))]
pub(crate) struct Cell<K, V> {
    // Lookups: the lock word and the core's header.
    pub(crate) core: RwLock<Shard<K, V>>,
    // Stores: written by callers at each store, emptied by the worker at each batch.
    _stores: LineBreak,
    pub(crate) pending: Mutex<Pending<K, V>>,
    /// `pending.len()`, published after each change under the lock, and the number of batches
    /// the worker has applied (incremented before it publishes an empty pending table): a
    /// lookup that misses in the core while nothing is pending and no batch was applied since
    /// it started is a definitive miss, found without the pending mutex.
    pub(crate) pending_len: AtomicUsize,
    /// A filter of the keys with a pending insert: bit [`pending_bit`] of the key's hash, set
    /// under the pending lock when the insert is recorded, all cleared (after `applied` is
    /// counted) when the worker applies a batch. A lookup whose key's bit is clear misses
    /// without the pending mutex even while other keys are pending (pending removes set no
    /// bit: for them a miss is the right answer).
    pub(crate) pending_keys: [AtomicU64; PENDING_WORDS],
    pub(crate) applied: AtomicU64,
    pub(crate) signaled: AtomicBool,
    /// Whether an operation that hides a resident entry and may free weight is pending (a
    /// remove; a store replacing it with a lighter value, or with a deadline or generations,
    /// which may be dead by the time it is applied): set under the pending lock as it is
    /// recorded, cleared once the worker has applied the batch and counted its weight (under
    /// the write lock, which hiding an entry waits for), or has found the table empty (a later
    /// store or remove of the key took the operation out, its entry gone already). Until then
    /// the hidden entry still counts in the weight, so a worker over capacity applies (or asks
    /// for) it before evicting a live entry in its place (`worker::capacity`).
    pub(crate) hides: AtomicBool,
    /// The worker that owns this shard (read by stores to wake it).
    pub(crate) worker: usize,
    // Computations: callers only.
    _flights: LineBreak,
    pub(crate) flights: Mutex<Flights<K, V>>,
    // The worker's own.
    _worker: LineBreak,
    /// The batch the worker is applying: swapped with `pending` under the core's write lock,
    /// so the pending tables keep their capacity and `pending` is held only for the swap.
    /// Only the worker holding the write lock touches it.
    pub(crate) batch: Mutex<Pending<K, V>>,
    pub(crate) drained: Condvar,
    /// [`Shard::dead_possible_from`], published by the worker each time it lets go of the
    /// write lock: lets another worker see without a lock whether this shard may hold dead
    /// entries to reclaim.
    pub(crate) due_at: AtomicU64,
    /// [`Shard::weight`], published with `due_at`: how much of an excess this shard gives up
    /// when a worker settles (`worker::capacity::settle` cuts the heaviest shards first).
    pub(crate) weight: AtomicU64,
}

/// A [`Cell`] padded to an odd multiple of 128 bytes ([`CELL_SKEW`]), the stride at which the
/// engine keeps its cells side by side. At a power of two, the lock words and shard headers of
/// all the cells fell in the same few sets of the L1 cache (period 4 KiB, 8 to 12 lines per
/// set), and a hit missed L1 on its shard's own lines: session 26 added 8 bytes to
/// [`Pending`], the cell went from 1,920 to 2,048 bytes, and a hit took 1.4–2.2x as long
/// (`hit_1t`, 64 shards). Dereferences to the cell.
#[repr(C)]
pub(crate) struct Padded<K, V> {
    cell: Cell<K, V>,
    _skew: [u8; CELL_SKEW],
}

impl<K, V> std::ops::Deref for Padded<K, V> {
    type Target = Cell<K, V>;
    #[inline(always)]
    fn deref(&self) -> &Cell<K, V> {
        &self.cell
    }
}

/// 128 bytes of padding when a [`Cell`]'s own size is an even multiple of 128, none when it
/// is odd. Computed, not set by hand, so that no change of its fields, of a dependency's
/// headers or of the target (32-bit pointers) brings a power-of-two stride back. A cell's size
/// does not depend on `K` and `V` (its tables and vectors are headers; the test
/// `cell_stride_is_an_odd_multiple_of_128` checks several), so one pair decides for all.
const CELL_SKEW: usize = if std::mem::size_of::<Cell<(), ()>>() % 256 == 0 { 128 } else { 0 };

/// A zero-sized field that starts the next field of a `repr(C)` struct on a new 128-byte
/// boundary (a pair of cache lines: Intel's adjacent-line prefetcher moves lines in pairs).
#[repr(align(128))]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LineBreak;

/// A field on a cache line of its own, away from fields written by other threads: the
/// engine's `weight` (written by the workers at every batch and eviction) and `waits`
/// (written by callers that join a computation) sit among fields every lookup reads.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct OwnLine<T>(pub(crate) T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

pub(crate) struct Shared<K, V> {
    pub(crate) cells: Box<[Padded<K, V>]>,
    pub(crate) hasher: ahash::RandomState,
    pub(crate) clock: Clock,
    pub(crate) gens: Registry,
    /// Single-flight joins (see [`OwnLine`]).
    pub(crate) waits: OwnLine<AtomicU64>,
    /// The flight each waiting thread waits for (to refuse a wait that closes a cycle).
    pub(crate) waiting: crate::flight::Waits<V>,
    /// The engine's total weight (see [`OwnLine`]).
    pub(crate) weight: OwnLine<AtomicU64>,
    pub(crate) capacity: u64,
    pub(crate) weigher: Option<Weigher<K, V>>,
    /// Whether lookups count hits and misses ([`crate::EngineBuilder::count_lookups`]).
    pub(crate) count_lookups: bool,
    /// Hits and misses of lookups ([`HITS`], [`MISSES`]), striped by thread: a hit counts with
    /// a plain store, not a locked read-modify-write (see [`crate::counters`]).
    pub(crate) lookups: Striped<2>,
    pub(crate) mailboxes: Vec<Sender<Command>>,
    pub(crate) shut_down: AtomicBool,
    pub(crate) worker_died: AtomicBool,
    /// Per worker: `Retire` commands sent to it and not yet handled. Until it has handled
    /// them its shards' `due_at` does not show the retired entries, so a worker over capacity
    /// counts it as possibly holding dead entries (see `worker::ask_others_to_reclaim`).
    pub(crate) retires_pending: Box<[AtomicUsize]>,
    /// Held (read) by each `retire` while its counts in `retires_pending` are up and its
    /// `Retire` commands not sent yet (or the counts not taken back, when another caller
    /// retired the generation first). A `flush` left over capacity takes it (write) before its
    /// next round, so that the commands it waits for are in the mailboxes ahead of that
    /// round's: the workers defer to those counts, and a caller held in between used to keep
    /// them deferring through every round (see `Engine::flush`).
    pub(crate) retiring: RwLock<()>,
    /// Per worker: a `Settle` it has not begun yet was sent to it.
    pub(crate) settle_asked: Box<[AtomicBool]>,
    /// Per worker: the worker to pass an excess it cannot cover back to (`usize::MAX`: none),
    /// taken when it begins a `Settle`.
    pub(crate) settle_reply: Box<[AtomicUsize]>,
    /// `Settle` requests sent and not yet finished (a request sent while serving one is
    /// counted before that one finishes, so this is 0 only when none is left anywhere).
    pub(crate) settles_in_flight: AtomicUsize,
    pub(crate) tick: Duration,
    pub(crate) resolution: Duration,
    /// Pending operations after which a store of a new key wakes the shard's worker
    /// ([`store::signal_threshold`]).
    pub(crate) signal_at: usize,
    /// With a weigher, the weight of new keys after which a store wakes the shard's worker
    /// ([`store::signal_weight`]; `u64::MAX` without one).
    pub(crate) signal_weight: u64,
    /// Pending operations after which callers wait for the shard's worker ([`crate::pending::pending_limit`]).
    pub(crate) pending_limit: usize,
    /// Per worker: its sessions of user `Drop`s, which a caller held back stops waiting for
    /// ([`UserDrops`]).
    pub(crate) user_drops: Box<[UserDrops]>,
}

impl<K, V> Cell<K, V> {
    /// Whether a core search for a key with this `hash` that saw `applied` batches still holds:
    /// no insert of the key may be pending and no batch was applied since. Then a miss in that
    /// search is definitive, found without the pending mutex. `None` (the search found the
    /// entry hidden) never stands.
    #[inline]
    pub(crate) fn miss_stands(&self, hash: u64, applied: Option<u64>) -> bool {
        let Some(applied) = applied else { return false };
        (self.pending_len.load(Ordering::Acquire) == 0 || !self.may_be_pending(hash))
            && self.applied.load(Ordering::Acquire) == applied
    }

    /// Whether an operation on a key with this `hash` may be pending: its bit in the pending
    /// filter is set (false positives only).
    #[inline]
    fn may_be_pending(&self, hash: u64) -> bool {
        let (word, bit) = pending_bit(hash);
        self.pending_keys[word].load(Ordering::Acquire) & bit != 0
    }

    /// Locks the pending table.
    #[inline]
    pub(crate) fn lock_pending(&self) -> PendingGuard<'_, K, V> {
        PendingGuard::lock(&self.pending)
    }

    /// The pending table and a read lock of the core, both held. A thread holding `pending`
    /// never waits for the core (the worker takes `pending` while holding the core's write
    /// lock): when the core is write-locked, this lets go of `pending`, waits for the worker's
    /// batch to finish, and tries again.
    #[inline]
    pub(crate) fn lock_pending_and_core(&self) -> PendingAndCore<'_, K, V> {
        loop {
            let p = self.lock_pending();
            // Recursively from user code run under a lock: this thread may hold this core's
            // read lock already, and the worker may be queued for the write lock behind it.
            // And under a flights lock, which such user code may be waiting for
            // (`crate::flight::flights_held`).
            let core = if crate::reentry::under_lock() || crate::flight::flights_held() {
                self.core.try_read_recursive()
            } else {
                self.core.try_read()
            };
            if let Some(core) = core {
                return (p, core);
            }
            drop(p);
            drop(self.read_core());
        }
    }

    /// The core's read lock. While the worker holds the write lock (a batch: microseconds),
    /// this spins rather than sleeps: a sleep and a wake-up cost the reader and the worker
    /// more than the wait, and the worker's unlock a system call.
    #[inline]
    pub(crate) fn read_core(&self) -> RwLockReadGuard<'_, Shard<K, V>> {
        // Checked on every call (debug builds), not only when the lock is contended.
        assert_may_wait_for_core();
        match self.core.try_read() {
            Some(core) => core,
            None => self.read_core_slow(),
        }
    }

    /// Waits for the read lock. From user code run under an engine's lock
    /// ([`crate::reentry`]): panics if this thread holds this shard's write lock, and takes
    /// the lock recursively (this thread may already read this shard, and a plain read would
    /// queue behind the worker waiting for the write lock, which waits for that first read).
    /// Recursively too under a flights lock (`crate::flight::flights_held`).
    #[cold]
    #[inline(never)]
    fn read_core_slow(&self) -> RwLockReadGuard<'_, Shard<K, V>> {
        let user = crate::reentry::under_lock();
        if user {
            crate::reentry::may_read(self.address());
        }
        let recursive = user || crate::flight::flights_held();
        for _ in 0..READ_SPINS {
            spin_loop();
            if let Some(core) = self.core.try_read() {
                return core;
            }
        }
        if recursive {
            self.core.read_recursive()
        } else {
            self.core.read()
        }
    }

    /// Before a batch takes the write lock: reads the hashes of up to [`WARM_MAX`] pending
    /// stores (which also brings their entries, written by the callers, into this core's cache)
    /// and, under the read lock, loads the lines applying them will touch ([`Shard::warm`]).
    ///
    /// Why: the worker's cost per store is mostly cache misses (the table, the policy's sketch
    /// and ghost, the eviction candidates' slots and marks: 500–700 ns per store in a two-thread
    /// `get_or_insert_with` run, against 160 ns for the same work in a single-threaded
    /// simulation), and taken one after another inside the write lock they kept a shard locked
    /// 4–16 µs per batch, with readers of that shard spinning meanwhile. Loaded together up
    /// front, the misses overlap and happen while readers still get in. Measured (paired,
    /// `BENCHMARKS.md` session 15): `get_or_insert_with` from 0.78 to 0.83 of quick_cache's
    /// throughput (medians of four alternations, one of them the other way). Cost: one more
    /// hold of the pending mutex and of the read lock per batch, which batches of fewer than
    /// [`WARM_MIN`] stores skip (those of stores that replace a resident entry, which wake the
    /// worker at once: warming them cost the 50/50 mix 5-10%).
    pub(crate) fn warm_batch(&self) {
        if self.pending_len.load(Ordering::Acquire) < WARM_MIN {
            return;
        }
        let mut hashes = [0u64; WARM_MAX];
        let mut n = 0;
        for ((store, _), slot) in self.lock_pending().inserts.iter().zip(&mut hashes) {
            *slot = store.hash;
            n += 1;
        }
        if n > 0 {
            self.read_core().warm(&hashes[..n]);
        }
    }

    /// The address of this shard: names it for [`crate::reentry`].
    pub(crate) fn address(&self) -> usize {
        std::ptr::from_ref(self).cast::<()>() as usize
    }

    /// Clears the pending-insert filter (the worker, under the pending lock, after counting
    /// the batch in `applied`).
    pub(crate) fn clear_pending_keys(&self) {
        for w in &self.pending_keys {
            w.store(0, Ordering::Release);
        }
    }
}

impl<K, V> Shared<K, V> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shards: usize,
        workers: usize,
        capacity: u64,
        weigher: Option<Weigher<K, V>>,
        clock: Clock,
        tick: Duration,
        resolution: Duration,
        mailboxes: Vec<Sender<Command>>,
    ) -> Self {
        let share = capacity.div_ceil(shards as u64).max(1);
        let tick_nanos = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX);
        let now = clock.precise();
        let pending_limit = pending_limit(share);
        let signal_at = store::signal_threshold(share, pending_limit);
        let signal_weight = store::signal_weight(share, weigher.is_some());
        let cells = (0..shards)
            .map(|i| Padded {
                cell: Cell {
                    core: RwLock::new(Shard::new(share, tick_nanos, now)),
                    _stores: LineBreak,
                    pending: Mutex::new(Pending::default()),
                    pending_len: AtomicUsize::new(0),
                    pending_keys: Default::default(),
                    applied: AtomicU64::new(0),
                    signaled: AtomicBool::new(false),
                    hides: AtomicBool::new(false),
                    worker: i % workers,
                    _flights: LineBreak,
                    flights: Mutex::new(Flights::new()),
                    _worker: LineBreak,
                    batch: Mutex::new(Pending::default()),
                    drained: Condvar::new(),
                    due_at: AtomicU64::new(u64::MAX),
                    weight: AtomicU64::new(0),
                },
                _skew: [0; CELL_SKEW],
            })
            .collect();
        Shared {
            cells,
            hasher: crate::sync::key_hasher(),
            clock,
            gens: Registry::new(),
            waits: OwnLine(AtomicU64::new(0)),
            waiting: crate::flight::Waits::default(),
            weight: OwnLine(AtomicU64::new(0)),
            capacity,
            weigher,
            count_lookups: true,
            lookups: Striped::new(),
            mailboxes,
            shut_down: AtomicBool::new(false),
            worker_died: AtomicBool::new(false),
            retires_pending: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            retiring: RwLock::new(()),
            settle_asked: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            settle_reply: (0..workers).map(|_| AtomicUsize::new(usize::MAX)).collect(),
            settles_in_flight: AtomicUsize::new(0),
            tick,
            resolution,
            signal_at,
            signal_weight,
            pending_limit,
            user_drops: (0..workers).map(|_| UserDrops::new()).collect(),
        }
    }

    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, q: &Q) -> u64 {
        self.hasher.hash_one(q)
    }

    #[inline]
    pub(crate) fn cell(&self, hash: u64) -> &Cell<K, V> {
        &self.cells[self.cell_index(hash)]
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    pub(crate) fn signal(&self, cell: &Cell<K, V>, index: usize) {
        // A plain load first: while a wake-up is outstanding (a busy worker), no
        // read-modify-write on a cache line the worker writes too.
        if !cell.signaled.load(Ordering::Acquire) && !cell.signaled.swap(true, Ordering::AcqRel) {
            // A closed mailbox means the engine is shut down: nothing to do.
            let _ = self.mailboxes[cell.worker].send(Command::Work(index));
        }
    }

    /// The shard of a key: the hash's high half scaled to the shard count (a multiply and a
    /// shift, so any count works, not only powers of two). Inside a shard everything (table
    /// bucket and tags, handle tags, policy, the pending filter) uses the low half
    /// ([`crate::entry::slot_hash`]), so the two do not correlate.
    #[inline]
    pub(crate) fn cell_index(&self, hash: u64) -> usize {
        (((hash >> 32) * self.cells.len() as u64) >> 32) as usize
    }

    /// A shard's flights lock; panics instead when this thread runs user code under one of
    /// this engine's locks ([`crate::reentry`]).
    pub(crate) fn lock_flights<'a>(&self, cell: &'a Cell<K, V>) -> FlightsGuard<'a, K, V> {
        crate::reentry::may_lock(engine_id(self));
        FlightsGuard::lock(&cell.flights)
    }

    /// [`Cell::lock_pending_and_core`]; panics instead when this thread runs user code under
    /// one of this engine's locks ([`crate::reentry`]).
    pub(crate) fn pending_and_core<'a>(&self, cell: &'a Cell<K, V>) -> PendingAndCore<'a, K, V> {
        crate::reentry::may_lock(engine_id(self));
        cell.lock_pending_and_core()
    }
}

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The hit path: `read` sees the value in place, under the read lock. `Err` is not yet a
    /// miss: it gives `read` back with the number of batches applied to the core it searched
    /// (read under the read lock, so exact), for [`Cell::miss_stands`] to decide; `None` when
    /// the entry was found hidden. A store hides the core's entry before it publishes its
    /// pending insert (filter bit, `pending_len`), so a hidden entry may stand for a value
    /// that is being handed over right now: only the slow path, which sees both tables at one
    /// instant, may call that a miss.
    #[inline(always)]
    pub(crate) fn get_fast<Q: ?Sized + Equivalent<K>, R, F: FnOnce(&V) -> R>(
        &self,
        hash: u64,
        q: &Q,
        read: F,
    ) -> Result<R, (F, Option<u64>)> {
        let cell = self.cell(hash);
        let core = cell.read_core();
        // The user's `Eq` and `Clone` run under the read lock (see `crate::reentry`).
        let _user = UnderRead::enter();
        let Some(e) = core.entry(hash, |k| q.equivalent(k)) else {
            return Err((read, Some(cell.applied.load(Ordering::Acquire))));
        };
        if !e.is_visible(|| self.clock.coarse(), &self.gens, core.stamps()) {
            let searched = (!e.is_hidden()).then(|| cell.applied.load(Ordering::Acquire));
            return Err((read, searched));
        }
        e.mark();
        let r = read(&e.value);
        drop(core);
        if self.count_lookups {
            self.lookups.add(HITS);
        }
        Ok(r)
    }

    /// The lookup behind a fast-path miss: pending table first, then the core, seen together.
    #[cold]
    pub(crate) fn get_slow<Q: ?Sized + Equivalent<K>, R>(
        &self,
        hash: u64,
        q: &Q,
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let index = self.cell_index(hash);
        let cell = &self.cells[index];
        // Both tables at one instant: `pending` stays locked through the core probe, so a
        // store cannot move the key's value from the core (hidden) to the pending table
        // between the two probes and leave this lookup with neither. A batch the worker has
        // taken from the pending table is in the core by the time the read lock is granted
        // (the worker takes and applies it under one write lock).
        let (p, core) = self.pending_and_core(cell);
        let _user = UserCode::enter(engine_id(self), 0);
        let now = self.clock.coarse();
        if let Some((n, _)) = p.inserts.find(hash, |(n, _)| q.equivalent(&n.key)) {
            let live = now < n.deadline && gens_live(&n.gens, &self.gens);
            let r = live.then(|| read(&n.value));
            drop(core);
            drop(p);
            // A key read again: its store, which may be waiting for more in its shard (see
            // `store::signal_threshold`), goes to the core, where lookups take the fast path.
            self.signal(cell, index);
            return r;
        }
        let e = core.entry(hash, |k| q.equivalent(k))?;
        if !e.is_visible(|| now, &self.gens, core.stamps()) {
            return None;
        }
        e.mark();
        Some(read(&e.value))
    }

    #[inline(always)]
    pub(crate) fn get<Q: ?Sized + Hash + Equivalent<K>, R>(
        &self,
        q: &Q,
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let hash = self.hash(q);
        let (read, applied) = match self.get_fast(hash, q, read) {
            Ok(r) => return Some(r),
            Err(miss) => miss,
        };
        if self.cell(hash).miss_stands(hash, applied) {
            self.count(false);
            return None;
        }
        let r = self.get_slow(hash, q, read);
        self.count(r.is_some());
        r
    }

    /// Counts a lookup that went through the slow path.
    #[cold]
    fn count(&self, hit: bool) {
        if !self.count_lookups {
            return;
        }
        self.lookups.add(if hit { HITS } else { MISSES });
    }
}

#[cfg(test)]
mod tests;
