//! User code that runs while the engine holds one of its own locks, and what that code may do
//! when it calls back into an engine.
//!
//! Where such code runs: a key's `Eq` (or `Equivalent`) in every probe, under a shard's read
//! lock (lookups), its pending table (slow lookups, stores, removes), its flights lock (single
//! flight, explicit stores and removes) or its write lock (an in-place replacement); a value's
//! `Clone` under the read lock (every hit) or the pending table; `to_owned` under the flights
//! lock. Nowhere else: the user's `Hash` runs before any lock (the tables rehash by the stored
//! hash), and the user's keys and values are dropped after the locks, by callers and workers
//! alike, also when a user's `Eq`, weigher or `to_owned` panics (see `shared::store`). And
//! the weigher, under the flights lock of the key's shard (`Shared::weigh`): it counts as
//! code under a read lock ([`UnderRead`]: it takes no pending table, so its lookups, even of
//! its own engine, work), and its own guard (`Shared::not_weighing`) makes a store, remove,
//! computation, `clear`, `flush` or maintenance of its own engine panic.
//!
//! Rules, so that a call back never waits for its own caller (a hang) but works or panics
//! with [`REENTRANT_USER_CODE`]:
//! - **Read locks:** a thread running such code takes a shard's read lock *recursively*
//!   once it would wait (`Cell::read_core`, `Cell::lock_pending_and_core`). parking_lot's lock
//!   is writer-preferring: a plain second read of a shard the thread already reads queues
//!   behind the worker waiting for the write lock, which waits for the first read. So does
//!   any thread holding a shard's flights lock (`crate::flight::flights_held`): code run
//!   under a read lock may store, remove or compute, waiting for that flights lock, and its
//!   holder, queued behind the worker, would never let it go (`tests/engine_rev_s17a.rs`).
//! - **Pending table, flights lock, write lock:** code run under one of these marks the engine
//!   ([`UserCode::enter`]). A call back into that engine that would take its pending table or
//!   flights lock panics (a store, remove, computation, or a lookup the fast path cannot
//!   answer), on any shard, so that the answer does not depend on where keys fall, and two
//!   threads cannot deadlock each other through two shards. A lookup of the shard whose write
//!   lock the thread holds panics too; other lookups work.
//! - **Waiting for the workers** (`flush`, `clear`, `run_maintenance`, `shutdown`) panics from
//!   such code of any engine, the weigher included: a worker may need the lock held (a
//!   shard's write lock, or the lock a key's `Drop` storing into the engine takes on the
//!   worker: a weigher's flights lock, `tests/engine_rev_s18h.rs`). A store's backpressure
//!   wait is skipped instead.
//! - **Waiting for another thread's computation** (a computation of a key being computed)
//!   panics from such code of any engine, read locks and the weigher included: the leader's
//!   store reads the shard, and a read queues behind a worker waiting for the write lock,
//!   which waits for the read lock this thread holds (`tests/engine_rev_s16d.rs`); or the
//!   leader's computation stores into the weigher's engine, waiting for its flights lock
//!   (`tests/engine_rev_s18h.rs`). Computing a key itself works from code under a read lock
//!   only (the rule above; a weigher, of another engine than its own).
//!
//! Cost: the hit path counts itself in and out of [`UNDER_LOCK`] (two thread-local writes,
//! no branch, no allocation), and so does each call of a weigher (none without one); the
//! marks and checks are on slow paths only.

use std::cell::{Cell, RefCell};

/// The panic message for user code that calls back into an engine in a way that would wait
/// for a lock its caller holds.
pub(crate) const REENTRANT_USER_CODE: &str = "memokit: user code that the engine runs while \
it holds a lock (a key's `Eq` or `Equivalent`, a value's `Clone` or `get_map`'s `read` during \
a lookup, which runs under the pending table's lock while the value is still being handed to \
the worker, `to_owned`, or a weigher) called back into the engine to store, remove, compute, \
look up through a lock, flush, clear, run maintenance, shut down or wait for another thread's \
computation; that call would wait for the lock its own caller holds, so it panics instead. \
Such code should only compare, clone, convert or weigh";

/// Marks recorded inline per thread; deeper nesting (user code of one engine calling into
/// another's, eight deep) goes to a vector.
const INLINE: usize = 8;

crate::sync::thread_local! {
    /// User code calls running on this thread under an engine's lock (any engine): while
    /// nonzero, read locks are taken recursively and waits for workers panic.
    static UNDER_LOCK: Cell<u32> = const { Cell::new(0) };
    /// How many [`UserCode`] marks this thread holds: the first [`INLINE`] in [`HELD`], the
    /// rest in [`MORE`]. Each is an engine ([`crate::worker::engine_id`]) whose pending table,
    /// flights lock or write lock this thread holds while it runs user code, innermost last,
    /// with the address of the shard whose write lock is held (0: none). Plain cells rather
    /// than a `RefCell<Vec>`: a store marks and unmarks two or three times, and the vector's
    /// borrow flag and length cost ~40 instructions each time (a tenth of a store).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    static HELD: [Cell<(usize, usize)>; INLINE] = const { [const { Cell::new((0, 0)) }; INLINE] };
    static MORE: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// Whether a mark of this thread satisfies `held`.
#[inline]
fn any_held(held: impl Fn((usize, usize)) -> bool) -> bool {
    let depth = DEPTH.with(Cell::get);
    if depth == 0 {
        return false;
    }
    HELD.with(|h| h[..depth.min(INLINE)].iter().any(|c| held(c.get())))
        || (depth > INLINE && MORE.with(|m| m.borrow().iter().any(|&e| held(e))))
}

/// Marks user code running under a shard's read lock, until dropped (also on unwinding); or
/// a weigher, under its engine's flights lock (`Shared::weigh`): both may take their engine's
/// pending tables and flights locks (a weigher is kept from its own engine's stores by
/// `Shared::not_weighing`), but not wait for workers or another thread's computation.
pub(crate) struct UnderRead(());

impl UnderRead {
    #[inline(always)]
    pub(crate) fn enter() -> Self {
        UNDER_LOCK.with(|n| n.set(n.get() + 1));
        UnderRead(())
    }
}

impl Drop for UnderRead {
    #[inline(always)]
    fn drop(&mut self) {
        UNDER_LOCK.with(|n| n.set(n.get() - 1));
    }
}

/// Marks user code running while this thread holds `engine`'s pending table, flights lock or
/// the write lock of the shard at address `write` (0: none), until dropped.
pub(crate) struct UserCode(usize);

impl UserCode {
    #[inline]
    pub(crate) fn enter(engine: usize, write: usize) -> Self {
        UNDER_LOCK.with(|n| n.set(n.get() + 1));
        let depth = DEPTH.with(Cell::get);
        if depth < INLINE {
            HELD.with(|h| h[depth].set((engine, write)));
        } else {
            MORE.with(|m| {
                let mut m = m.borrow_mut();
                m.truncate(depth - INLINE);
                m.push((engine, write));
            });
        }
        DEPTH.with(|d| d.set(depth + 1));
        UserCode(depth)
    }
}

impl Drop for UserCode {
    #[inline]
    fn drop(&mut self) {
        // Back to the depth this mark was taken at; a mark dropped after one it was nested in
        // (out of order) leaves the depth where that one left it.
        DEPTH.with(|d| d.set(d.get().min(self.0)));
        if self.0 >= INLINE {
            MORE.with(|m| m.borrow_mut().truncate(self.0 - INLINE));
        }
        UNDER_LOCK.with(|n| n.set(n.get() - 1));
    }
}

/// Whether this thread runs user code under an engine's lock.
#[inline]
pub(crate) fn under_lock() -> bool {
    UNDER_LOCK.with(|n| n.get() > 0)
}

/// Panics if this thread runs user code under `engine`'s pending table, flights lock or a
/// write lock: called before taking a pending table or flights lock of `engine`.
#[inline]
pub(crate) fn may_lock(engine: usize) {
    if any_held(|(e, _)| e == engine) {
        panic!("{REENTRANT_USER_CODE}");
    }
}

/// Panics if this thread runs user code under the write lock of the shard at `shard`:
/// called before waiting for that shard's read lock.
pub(crate) fn may_read(shard: usize) {
    if any_held(|(_, w)| w == shard) {
        panic!("{REENTRANT_USER_CODE}");
    }
}

/// Panics if this thread runs user code under any engine's lock: called before waiting for
/// an engine's workers.
pub(crate) fn may_wait_for_workers() {
    if under_lock() {
        panic!("{REENTRANT_USER_CODE}");
    }
}

/// Panics if this thread runs user code under any engine's lock: called before waiting for
/// another thread's computation. Its leader stores the value through the shard's read lock,
/// which queues behind a worker waiting for the write lock, which waits for a read lock this
/// thread may hold (a hit's `Clone`); nor can the wait-cycle walk see a lock.
pub(crate) fn may_wait_for_flight() {
    if under_lock() {
        panic!("{REENTRANT_USER_CODE}");
    }
}

#[cfg(test)]
mod tests {
    use super::{may_lock, may_read, under_lock, UserCode, INLINE};
    use std::panic::catch_unwind;

    /// Marks nested beyond the inline ones are found like the others, and each mark's drop
    /// takes back exactly its own and those nested in it.
    #[test]
    fn marks_nest_beyond_the_inline_ones() {
        let n = INLINE + 3;
        let mut marks: Vec<UserCode> = (1..=n).map(|e| UserCode::enter(e, 1000 + e)).collect();
        assert!(under_lock());
        for e in 1..=n {
            assert!(catch_unwind(|| may_lock(e)).is_err(), "engine {e} is marked");
            assert!(catch_unwind(|| may_read(1000 + e)).is_err(), "shard {e} is marked");
        }
        may_lock(n + 1);
        // Dropping the mark at depth INLINE (out of order) takes back the marks nested in it.
        drop(marks.split_off(INLINE));
        assert_eq!(super::DEPTH.with(std::cell::Cell::get), INLINE);
        assert!(catch_unwind(|| may_lock(INLINE)).is_err());
        for e in INLINE + 1..=n {
            may_lock(e);
        }
        while let Some(m) = marks.pop() {
            drop(m);
        }
        assert!(!under_lock());
        (1..=n).for_each(may_lock);
    }
}
