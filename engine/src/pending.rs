//! The pending table of a shard: stores and removes handed to the worker and not yet applied,
//! the filter of keys with a pending insert, how many operations a table may hold before its
//! callers wait for the worker ([`pending_limit`]; [`UserDrops`] says when they stop
//! waiting), and the lock-order check around them.
//!
//! Why: read-your-writes. A caller records its operation here (under the shard's `pending`
//! mutex) and returns; lookups consult this table before trusting a miss in the core, until
//! the worker swaps the table out and applies it within one hold of the core's write lock.
//!
//! Invariant (checked in debug builds by [`assert_may_wait_for_core`]): a thread holding a
//! pending table never waits for a core, because the worker takes `pending` while holding the
//! core's write lock. The check counts the pending tables each thread holds ([`PendingGuard`])
//! and runs wherever a thread may wait for a core. Cost: none in release builds (the guard is
//! the mutex guard); one thread-local counter update per lock in debug builds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sync::{AtomicU64, Condvar, Mutex, MutexGuard};

use crate::shard::{Handle, NewEntry};

/// Most operations a shard may hold pending before callers wait for the worker (a shard's
/// own limit is lower in proportion to its share of the capacity: [`pending_limit`]).
/// Under the model checker (`--cfg memokit_shuttle`) it is 4, so that its tests reach the
/// backpressure wait with a handful of stores.
pub(crate) const PENDING_LIMIT: usize = if cfg!(memokit_shuttle) { 4 } else { 4096 };
/// The least a shard's pending limit may be, whatever its share.
pub(crate) const PENDING_MIN: usize = if cfg!(memokit_shuttle) { 4 } else { 64 };
/// A shard's pending limit is at most its share of the capacity divided by this.
pub(crate) const PENDING_SHARE: u64 = 8;

/// The operations a shard whose share of the capacity is `share` may hold pending before
/// callers wait for its worker: an eighth of the share, at least [`PENDING_MIN`], at most
/// [`PENDING_LIMIT`].
///
/// Why: the pending stores of new keys are held beyond the capacity until the worker applies
/// them, so the limit is what bounds that excess while the workers are behind: an eighth of
/// the capacity, plus [`PENDING_MIN`] per shard for small ones (the flat 4,096 of earlier
/// versions let a 1,000-entry engine hold five times its capacity). With the default shards
/// a shard's share is at least a few thousand entries, and sustained two-thread writes keep
/// a few dozen operations pending (`BENCHMARKS.md`), so the limit rarely holds callers back
/// there. A weighted engine's share is in weight, but the limit still counts operations,
/// each of any weight: the excess it bounds is an eighth of the share in *entries*, which
/// may weigh far more than an eighth of the capacity (counting the pending weight instead
/// would hold back every store of an entry heavier than an eighth of the share).
pub(crate) fn pending_limit(share: u64) -> usize {
    let by_share = usize::try_from(share / PENDING_SHARE).unwrap_or(usize::MAX);
    by_share.clamp(PENDING_MIN, PENDING_LIMIT)
}

/// Words of a shard's pending-insert filter (256 bits).
pub(crate) const PENDING_WORDS: usize = 4;

/// The word and bit of a hash in the pending-insert filter (bits 24..32 of the hash: not the
/// ones that choose the shard).
#[inline]
pub(crate) fn pending_bit(hash: u64) -> (usize, u64) {
    let b = (hash >> 24) as usize & (PENDING_WORDS * 64 - 1);
    (b / 64, 1 << (b % 64))
}

/// Stores and removes handed to the worker, not yet applied.
pub(crate) struct Pending<K, V> {
    pub(crate) inserts: hashbrown::HashTable<(NewEntry<K, V>, Option<Handle>)>,
    pub(crate) removes: Vec<Handle>,
    /// The weight of the stores recorded since the worker last took the table (a key stored
    /// twice counts twice; a replacement wakes the worker anyway): with a weigher, what wakes
    /// it besides the count ([`crate::shared::store::signal_weight`]). Reset when the worker
    /// takes the table, or clears it; not when it finds it empty (a later wake-up at worst).
    pub(crate) gathered: u64,
}

impl<K, V> Default for Pending<K, V> {
    fn default() -> Self {
        Pending { inserts: hashbrown::HashTable::new(), removes: Vec::new(), gathered: 0 }
    }
}

impl<K, V> Pending<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.inserts.len() + self.removes.len()
    }
}

/// The pending table, locked. Debug builds count, per thread, the pending tables held, so that
/// the lock-order rule (never wait for a core while holding `pending`) is checked wherever a
/// thread may wait for a core: `Cell::read_core` and the worker's write lock.
pub(crate) struct PendingGuard<'a, K, V> {
    pub(crate) guard: MutexGuard<'a, Pending<K, V>>,
}

#[cfg(debug_assertions)]
crate::sync::thread_local! {
    static PENDING_HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Debug builds: panics if this thread holds a pending table (it is about to wait for a core,
/// which the worker may hold while it waits for that pending table). Except in user code run
/// under an engine's lock ([`crate::reentry`]): a lookup from a key's `Eq` during a slow
/// lookup holds the shard's pending table *and* its read lock, so the worker cannot hold that
/// core, and other shards' workers never wait for this pending table; the read is recursive.
#[inline]
pub(crate) fn assert_may_wait_for_core() {
    #[cfg(debug_assertions)]
    PENDING_HELD.with(|n| {
        assert!(
            n.get() == 0 || crate::reentry::under_lock(),
            "memokit-engine bug: waiting for a shard's core while holding its pending table"
        )
    });
}

impl<'a, K, V> PendingGuard<'a, K, V> {
    /// Locks a shard's pending table.
    #[inline]
    pub(crate) fn lock(m: &'a Mutex<Pending<K, V>>) -> Self {
        let guard = m.lock();
        #[cfg(debug_assertions)]
        PENDING_HELD.with(|n| n.set(n.get() + 1));
        PendingGuard { guard }
    }
}

impl<K, V> std::ops::Deref for PendingGuard<'_, K, V> {
    type Target = Pending<K, V>;
    fn deref(&self) -> &Pending<K, V> {
        &self.guard
    }
}

impl<K, V> std::ops::DerefMut for PendingGuard<'_, K, V> {
    fn deref_mut(&mut self) -> &mut Pending<K, V> {
        &mut self.guard
    }
}

impl<K, V> Drop for PendingGuard<'_, K, V> {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        PENDING_HELD.with(|n| n.set(n.get() - 1));
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use crate::{Engine, ManualClock};

    fn engine() -> Engine<u64, u64> {
        Engine::builder().clock(ManualClock::new()).build().expect("engine")
    }

    #[test]
    #[should_panic(expected = "while holding its pending table")]
    fn reading_a_core_while_holding_pending_is_caught() {
        let e = engine();
        let cell = &e.shared().cells[0];
        let _p = cell.lock_pending();
        drop(cell.read_core());
    }

    #[test]
    fn the_check_follows_the_guard() {
        let e = engine();
        let cell = &e.shared().cells[0];
        drop(cell.lock_pending());
        drop(cell.read_core());
        let (p, core) = cell.lock_pending_and_core();
        drop(core);
        drop(p);
        super::assert_may_wait_for_core();
    }
}

/// How long a thread waiting for a worker waits while the worker stays in one user `Drop`
/// ([`UserDrops`], [`StuckWatch`]) before it stops waiting: a caller held back by a full
/// pending table (`Shared::finish`), `flush`, `clear`, `run_maintenance`, and a shutdown
/// joining the workers.
pub(crate) const STUCK_PATIENCE: Duration = Duration::from_secs(1);

/// How often such a waiter looks at the worker again ([`StuckWatch::out_of_patience`]):
/// the timeout of each of its waits.
pub(crate) const PATIENCE_LOOK: Duration = Duration::from_millis(50);

/// A worker's sessions of user `Drop`s: `session` is odd while the worker drops keys and
/// values (the outermost drop of what one batch, maintenance slice or `Clear` displaced),
/// and moves on by 2 with each key and value it drops there ([`UserDropsGuard::next`]), so
/// a waiter that sees the same value for a while sees one `Drop` running that long, not a
/// long run of quick ones (a `clear` of many values gave up on a busy worker, and the
/// `flush` after it returned before applying a store: review of session 21); `given_up` is
/// the value a waiter stopped waiting at.
///
/// Why: a worker runs no user code but `Drop`s, and such a `Drop` may wait for a lock of the
/// user's (a pool, a registry) that the caller held back holds: neither the engine nor the
/// caller can tell that from a slow `Drop`. With a flat limit of 4,096 it took that many
/// stores under such a lock to hang; with a small shard's limit (64) it took a few dozen
/// (`tests/engine_rev_s19d.rs`). So a caller waits for a worker in one `Drop` for at most
/// [`STUCK_PATIENCE`], then records that `Drop` (the session's value), and no caller waits
/// for it again until the worker has left it. The cost: while a `Drop` on a worker blocks for longer than
/// that, its shards' callers are not held back (as before the limit existed). The same
/// holds for every other wait for a worker (`flush`, `clear`, `run_maintenance`, the
/// joins of a shutdown: `tests/engine_rev_s21.rs`), which then return without that
/// worker's answer.
pub(crate) struct UserDrops {
    session: AtomicU64,
    pub(crate) given_up: AtomicU64,
    /// Set (and notified) when the worker's thread is about to end, so that a shutdown can
    /// wait for it with the same patience ([`UserDrops::wait_for_end`]).
    ended: (Mutex<bool>, Condvar),
}

/// While alive on a worker of the engine it was entered for: that worker's session of user
/// `Drop`s ([`UserDrops`]). A nested session (entered from a `Drop` of the session, e.g. by an
/// inline `flush`) counts its drops in the outermost one and does not end it.
pub(crate) struct UserDropsGuard<'a> {
    drops: Option<&'a UserDrops>,
    outermost: bool,
}

impl UserDrops {
    pub(crate) fn new() -> Self {
        UserDrops {
            session: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            ended: (Mutex::new(false), Condvar::new()),
        }
    }

    /// Records that the worker's thread is about to end (its last step, also when it
    /// unwinds).
    pub(crate) fn end(&self) {
        *self.ended.0.lock() = true;
        self.ended.1.notify_all();
    }

    /// Waits until the worker has ended, or until it has stayed in one user `Drop` for
    /// [`STUCK_PATIENCE`] while this waits ([`StuckWatch`]): such a `Drop` may be waiting for a
    /// lock of the user's that the waiting thread holds (a shutdown, or the drop of the last
    /// handle, under that lock: `tests/engine_rev_s21.rs`). Returns whether it ended.
    pub(crate) fn wait_for_end(&self) -> bool {
        let mut watch = StuckWatch::default();
        let mut ended = self.ended.0.lock();
        while !*ended {
            if watch.out_of_patience(self) {
                return false;
            }
            self.ended.1.wait_for(&mut ended, PATIENCE_LOOK);
        }
        true
    }

    /// Starts a session of user `Drop`s if this thread is one of `shared`'s workers, or joins
    /// the one it is in (counting in it, not ending it); only that worker writes its counter.
    pub(crate) fn enter<K, V>(shared: &crate::shared::Shared<K, V>) -> UserDropsGuard<'_> {
        let Some(me) = crate::worker::worker_of(shared) else {
            return UserDropsGuard { drops: None, outermost: false };
        };
        shared.user_drops[me].enter_here()
    }

    /// Starts a session of user `Drop`s on these counters, or joins the one under way; the
    /// calling thread must be their only writer (a worker on its own, a first shutdown on the
    /// engine's `first_shutdown`).
    pub(crate) fn enter_here(&self) -> UserDropsGuard<'_> {
        if self.session.load(Ordering::Acquire) % 2 == 1 {
            return UserDropsGuard { drops: Some(self), outermost: false };
        }
        self.session.fetch_add(1, Ordering::AcqRel);
        UserDropsGuard { drops: Some(self), outermost: true }
    }

    /// The session the worker is in, if it is in one.
    pub(crate) fn current(&self) -> Option<u64> {
        let s = self.session.load(Ordering::Acquire);
        (s % 2 == 1).then_some(s)
    }
}

/// What a thread waiting for a worker has seen of the worker's user `Drop`s: the value of its
/// session counter (which names one `Drop`) when first seen, and since when.
#[derive(Default)]
pub(crate) struct StuckWatch(Option<(u64, std::time::Instant)>);

impl StuckWatch {
    /// Looks at the worker again: true (the waiter then stops waiting for it) once it has
    /// stayed in one user `Drop` (one value of its session counter) for [`STUCK_PATIENCE`] of
    /// this watch's looks, or at once if some waiter already gave up on that `Drop`
    /// (`given_up`: a `flush` asks its workers several times, and would otherwise wait a
    /// second each time).
    pub(crate) fn out_of_patience(&mut self, drops: &UserDrops) -> bool {
        let now = drops.current();
        if now.is_some_and(|s| drops.given_up.load(Ordering::Acquire) == s) {
            return true;
        }
        match (now, self.0) {
            (Some(s), Some((t, since))) if s == t => {
                let out = since.elapsed() >= STUCK_PATIENCE;
                if out {
                    drops.given_up.store(s, Ordering::Release);
                }
                out
            }
            (now, _) => {
                self.0 = now.map(|s| (s, std::time::Instant::now()));
                false
            }
        }
    }
}

impl UserDropsGuard<'_> {
    /// Marks the next key or value of the session (its `Drop` about to run): the session's
    /// value moves on by 2, staying odd. Only the worker writes it.
    #[inline]
    pub(crate) fn next(&self) {
        if let Some(d) = self.drops {
            d.session.store(d.session.load(Ordering::Relaxed) + 2, Ordering::Release);
        }
    }
}

impl Drop for UserDropsGuard<'_> {
    fn drop(&mut self) {
        if let (Some(d), true) = (self.drops, self.outermost) {
            d.session.fetch_add(1, Ordering::AcqRel);
        }
    }
}
