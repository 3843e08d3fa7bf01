//! Stopping an engine: an explicit [`Engine::shutdown`](super::Engine::shutdown), and the drop
//! of its last handle.
//!
//! Both stop the threads, join them and empty the shards (dropping every key and value, each
//! under its own `catch_unwind`). Joining waits: for a worker to finish what it is doing,
//! which may be a user's `Drop` that calls into another engine and waits for one of its
//! locks. So where waiting is not allowed, the drop of the last handle does not wait
//! ([`must_not_wait`]): on a worker thread of any engine, and in user code that any engine
//! runs under one of its locks (a key's `Eq`, a value's `Clone` on a hit, `to_owned`, a
//! weigher). There, it marks the engine shut down, stops the clock thread, and sends every
//! worker a [`Command::Shutdown`] carrying the engine's thread handles ([`Left`]); the first
//! worker to read it joins the other threads (the clock thread included) and empties the
//! shards, then ends itself, unjoined: the one thread that outlives the engine, for the few
//! instructions it has left. (It hung before: engine E2's key's `Eq` or weigher, run under
//! E2's pending table, write lock or flights lock, dropped engine E1's last handle while E1's
//! worker, in a user's `Drop`, waited for that lock to store into E2:
//! `tests/engine_rev_s19a.rs`.) If no worker can take the handles (every worker died: an
//! engine bug), the shards are emptied on the spot and the threads left unjoined.
//!
//! An explicit `shutdown` on a worker thread (a user's `Drop`) does not join either: two
//! workers each shutting the other's engine down joined each other (`tests/engine_rev_s19d.rs`).
//! It hands the threads to the engine's first worker to stop likewise, but empties the shards
//! itself before it returns, so lookups after it miss.
//!
//! | where the last handle goes, or `shutdown` is called | threads | keys and values dropped |
//! |---|---|---|
//! | anywhere else | joined before the drop returns (but a worker that stays in one user `Drop` for a second meanwhile: left to end on its own, [`join_patiently`]) | before the drop returns, on this thread (but what such a worker was dropping: by it, once that `Drop` returns) |
//! | last handle: a worker thread, or user code under a lock | joined by the first worker to stop, which then ends | by that worker, shortly after |
//! | `shutdown` on a worker thread | joined by the first worker to stop, which then ends | before `shutdown` returns, on this thread |
//! | a second `shutdown` while a first is under way | joined by the first; this call waits for it to finish (not on a worker thread, nor in a `Drop` a shutdown runs) | by the first; but once the first has stayed in one user `Drop` for a second as it empties the shards, this call takes what is left out of the shards (so lookups miss), leaves it to the first to drop once that `Drop` returns, and returns |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::pending::UserDrops;
use crate::sync::thread::JoinHandle;
use crate::sync::Mutex;

use super::Inner;
use crate::shared::Shared;
use crate::worker::{self, Command};

/// An engine's thread handles, left by a drop of its last handle that may not wait, for the
/// first worker that reads its `Shutdown` to join ([`finish_left`]).
pub(crate) type Left = Arc<Mutex<Option<Vec<JoinHandle<()>>>>>;

impl<K, V> Drop for Inner<K, V> {
    /// The last handle is gone: stops the engine, waiting for its threads unless
    /// [`must_not_wait`] (see the module docs).
    fn drop(&mut self) {
        if must_not_wait() {
            shutdown_without_waiting(self);
        } else {
            shutdown(self);
        }
        // What a `clear` or later `shutdown` took out after the first had dropped what was
        // handed to it (a race), or after that first unwound.
        drop_handed_over(self, None);
    }
}

/// Whether this thread may not wait for an engine's threads: a worker thread (of any engine:
/// the threads to join may include this one, or wait for it), or user code run under any
/// engine's lock (a thread to join may wait for that lock).
fn must_not_wait() -> bool {
    worker::on_worker_thread() || crate::reentry::under_lock()
}

crate::sync::thread_local! {
    /// First shutdowns (of any engine) under way on this thread: a later call made from there
    /// (a key's or value's `Drop` that a first shutdown runs as it empties the shards) does
    /// not wait. Waiting there hung when the first was this very call (waiting for itself),
    /// and when two threads shut two engines down at once, each dropping a key that shut the
    /// other engine down (each waited for the other: `tests/engine_rev_s18g.rs`).
    static SHUTTING_DOWN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts a first shutdown under way on this thread ([`SHUTTING_DOWN`]) until dropped.
struct ShuttingDown;

impl ShuttingDown {
    fn enter() -> Self {
        let _ = SHUTTING_DOWN.try_with(|n| n.set(n.get() + 1));
        ShuttingDown
    }
}

impl Drop for ShuttingDown {
    fn drop(&mut self) {
        let _ = SHUTTING_DOWN.try_with(|n| n.set(n.get() - 1));
    }
}

/// Stops and joins the engine's threads (on a worker thread: leaves them to the first worker
/// to stop, see the module docs), then empties its shards; the first call does it. A
/// later call waits until the first has finished (it returned at once, and a lookup right
/// after it still found values the first had not dropped yet: `tests/engine_rev_s18b.rs`),
/// or until the first has stayed in one key's or value's `Drop` for
/// [`STUCK_PATIENCE`](crate::pending::STUCK_PATIENCE) as it empties the shards (that `Drop`
/// may wait for a lock of the user's this caller holds: it waited for ever,
/// `tests/engine_rev_s23b.rs`; this caller then takes what is left out of the shards, so that
/// lookups miss once it returns, and leaves the dropping and the joins to the first:
/// `tests/engine_rev_s23d.rs`),
/// except on a worker thread (of any engine, as for `flush`: the first may be joining that
/// very thread) and on a thread running a first shutdown of any engine ([`SHUTTING_DOWN`]).
/// From user code run under a lock, a weigher included, `Engine::shutdown` panics before it
/// gets here (`crate::reentry::may_wait_for_workers`: `tests/engine_rev_s18g.rs`,
/// `tests/engine_rev_s18h.rs`), and the last handle dropped there does not come here
/// ([`shutdown_without_waiting`]).
pub(super) fn shutdown<K, V>(inner: &Inner<K, V>) {
    let (shared, threads, stop) = (&*inner.shared, &inner.threads, &*inner.stop_clock);
    let first = &inner.first_shutdown;
    if shared.shut_down.swap(true, Ordering::AcqRel) {
        let shutting_down = SHUTTING_DOWN.try_with(|n| n.get()).unwrap_or(0) > 0;
        if !worker::on_worker_thread() && !shutting_down && !first.wait_for_end() {
            // Empties the shards the first has not reached, so that lookups miss once this
            // returns, but drops nothing here: the stuck `Drop` may wait for a lock this
            // thread holds, and so may every other value's (a pool's connections).
            take_what_is_left(inner);
        }
        return;
    }
    let _shutting_down = ShuttingDown::enter();
    // Also when something below unwinds: a waiter must not wait for ever.
    struct Finish<'a>(&'a UserDrops);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.end();
        }
    }
    let _finish = Finish(first);
    stop.store(true, Ordering::Release);
    shared.clock.unpark_refresher();
    if worker::on_worker_thread() {
        // Joining here could wait for a worker that waits for this one: another engine's
        // worker, in a `Drop`, shutting this thread's engine down in turn (each joined the
        // other: `tests/engine_rev_s19d.rs`). The first worker to stop joins the threads, as
        // after a drop of the last handle that may not wait; the shards are emptied here all
        // the same (taking each write lock from workers that may still be running is fine:
        // no store is taken once the flag is set).
        hand_over_threads(inner);
    } else {
        for tx in &shared.mailboxes {
            let _ = tx.send(Command::Shutdown(None));
        }
        let threads: Vec<_> = threads.lock().drain(..).collect();
        join_patiently(shared, threads);
    }
    empty_shards(shared, Some(first));
    // What later calls took out of the shards while this one was stuck in a `Drop`.
    drop_handed_over(inner, Some(first));
}

/// Joins the engine's threads (its workers first, in order, then the clock thread), but not
/// a worker that stays in one user `Drop` for
/// [`STUCK_PATIENCE`](crate::pending::STUCK_PATIENCE) meanwhile
/// ([`UserDrops::wait_for_end`](crate::pending::UserDrops::wait_for_end)): its `Drop` may be
/// waiting for a lock of the user's that this thread holds, and joining it hung
/// (`tests/engine_rev_s21.rs`). Such a worker is left unjoined; it holds no engine lock in a
/// `Drop`, finds its `Shutdown` once the `Drop` returns, and ends.
fn join_patiently<K, V>(shared: &Shared<K, V>, threads: Vec<JoinHandle<()>>) {
    for (i, t) in threads.into_iter().enumerate() {
        let ended = shared.user_drops.get(i).is_none_or(|d| d.wait_for_end());
        if ended {
            let _ = t.join();
        }
    }
}

/// Sends every worker a `Shutdown` carrying the engine's thread handles ([`Left`]), for the
/// first to read it to join ([`finish_left`]); returns whether a worker can take them.
fn hand_over_threads<K, V>(inner: &Inner<K, V>) -> bool {
    let left: Left = Arc::new(Mutex::new(Some(std::mem::take(&mut *inner.threads.lock()))));
    let mut taken = false;
    for tx in &inner.shared.mailboxes {
        taken |= tx.send(Command::Shutdown(Some(left.clone()))).is_ok();
    }
    taken
}

/// The drop of the last handle where it may not wait (see the module docs): stops the engine
/// and leaves the joining and emptying to its first worker to stop. A shutdown already done
/// (an explicit one: none can be under way, its caller holds a handle) leaves nothing to do.
fn shutdown_without_waiting<K, V>(inner: &Inner<K, V>) {
    let shared = &*inner.shared;
    if shared.shut_down.swap(true, Ordering::AcqRel) {
        return;
    }
    inner.stop_clock.store(true, Ordering::Release);
    shared.clock.unpark_refresher();
    if !hand_over_threads(inner) {
        // No worker left to do it (every one died: a bug). Nothing to join for: the clock
        // thread ends on its own, and a dead worker holds no lock.
        let _shutting_down = ShuttingDown::enter();
        empty_shards(shared, None);
    }
}

/// Called by a worker on its `Shutdown`: if it is the first to take `left`, joins the
/// engine's other threads and empties its shards (see the module docs).
pub(crate) fn finish_left<K, V>(shared: &Shared<K, V>, left: &Left) {
    let Some(threads) = left.lock().take() else { return };
    let _shutting_down = ShuttingDown::enter();
    join_all_but_this(threads);
    empty_shards(shared, None);
}

/// Joins every thread but the current one (a shutdown run on a worker cannot join itself).
fn join_all_but_this(threads: impl IntoIterator<Item = JoinHandle<()>>) {
    let me = crate::sync::thread::current().id();
    for t in threads {
        if t.thread().id() != me {
            let _ = t.join();
        }
    }
}

/// Takes the entries left in the shards of an engine that is shut down (those a first
/// shutdown stuck in a user `Drop` has not reached yet) and leaves them to be dropped by that
/// first shutdown once it has emptied the shards, or, if it has already, by the drop of the
/// last handle ([`Inner::handed_over`](super::Inner::handed_over)). Nothing is dropped on
/// this thread: a later `shutdown` or a `clear` made while the first is stuck may hold a lock
/// those `Drop`s wait for (`tests/engine_rev_s23d.rs`, `tests/engine_rev_s23f.rs`). Running
/// computations are left alone: they store nothing now, and end by themselves.
pub(crate) fn take_what_is_left<K, V>(inner: &Inner<K, V>) {
    let shared = &*inner.shared;
    let mut entries = Vec::new();
    for cell in shared.cells.iter() {
        entries.extend(worker::take_all(shared, cell));
    }
    if !entries.is_empty() {
        inner.handed_over.lock().append(&mut entries);
    }
}

/// Drops what [`take_what_is_left`] left in `inner` (see there), counted in `watch`.
fn drop_handed_over<K, V>(inner: &Inner<K, V>, watch: Option<&UserDrops>) {
    let entries = std::mem::take(&mut *inner.handed_over.lock());
    drop_counted(watch, |next| worker::drop_each(entries, next));
}

/// Runs `drops` (which drops keys, values and computation handles, each under its own
/// `catch_unwind`, calling its argument ahead of each `Drop`), counting those drops in
/// `watch` (the first shutdown's `first_shutdown`) if given: a later call can then tell one
/// `Drop` that does not end from a slow emptying. The session is open only while dropping, not
/// while the first waits for a lock (a wait for a shard's lock is not a stuck `Drop`: review
/// s23d).
fn drop_counted(watch: Option<&UserDrops>, drops: impl FnOnce(&dyn Fn())) {
    let session = watch.map(UserDrops::enter_here);
    drops(&|| session.as_ref().map_or((), |s| s.next()));
}

/// Empties every shard and detaches every computation (their values go to the callers waiting
/// and are not stored), its threads stopped, dropping what it took on this thread, shard by
/// shard (see [`drop_counted`] for `watch`).
fn empty_shards<K, V>(shared: &Shared<K, V>, watch: Option<&UserDrops>) {
    for cell in shared.cells.iter() {
        let mut fl = crate::flight::FlightsGuard::lock(&cell.flights);
        let flights = std::mem::take(&mut *fl);
        drop(fl);
        let entries = worker::take_all(shared, cell);
        drop_counted(watch, |next| {
            worker::drop_each(entries, next);
            crate::flight::drop_detached(flights, next);
        });
    }
}
