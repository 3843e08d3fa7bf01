//! Worker threads: each owns a set of shards and is the only one to change their structure.
//!
//! A worker sleeps on its crossbeam-channel mailbox. `Work(shard)` says that shard has pending
//! operations (a caller sends it unless one is already outstanding: at once for a remove or a
//! store that hides a resident entry, and once a few stores of new keys have gathered, see
//! `shared::store::signal_threshold`; a lookup that finds a pending store sends it too). The
//! worker also drains every shard at each tick, and at each `Flush` and `Maintain`, which is
//! how stores gathered below the threshold get applied when nothing else wakes it (with a
//! manual clock, no tick: only those requests, lookups and the threshold do). Either way,
//! under the shard's write lock, the worker swaps them all out of the
//! `pending` table (held only for the swap) and applies them (removes first, then stores) before
//! releasing the lock, and drops the displaced keys and values after. If the engine is then over
//! capacity it first reclaims expired and stale entries of its shards, and only then lets the
//! policy evict live ones (`settle`); if another worker's shards may still hold dead entries (each
//! worker publishes, per shard, from when that can be: `Cell::due_at`), it asks that worker to
//! settle instead, so live entries never make room for dead ones. With the real clock, a worker
//! also wakes every `tick` for maintenance: advance the wheel (expire) and reclaim entries of
//! retired generations, in slices of [`SLICE`] entries per write lock, each released fairly so that
//! readers waiting meanwhile go first. Background maintenance is paced by time: a burst of at most
//! [`BURST`], then, while work is left, a pause of [`PAUSE`] (the mailbox is served meanwhile, and
//! a tick shorter than the pause drains the shards without cutting it short: `pace`), so
//! reclaiming a large retired generation takes at most a seventh of a core and leaves the shards'
//! locks free to readers six sevenths of the time: 1M stale entries are reclaimed in about 3 s (3
//! ticks) while a reader keeps ~87% of its throughput (`benches/retire.rs`). With a manual clock
//! the worker never wakes on its own; `run_maintenance` sends `Maintain`, which works up to
//! [`TICK_BUDGET`] entries per shard, unpaced.
//!
//! Workers never wait on callers beyond a lock hold: they block only on their mailbox and,
//! briefly, for a shard's write lock while readers finish; they take a shard's locks only for a
//! bounded batch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{spin_loop, Receiver, RecvTimeoutError, Sender};

use crate::shard::Shard;

mod capacity;
mod clear;
mod pace;

use crate::shared::{Cell, Shared};
use capacity::{apply_and_settle, settle};
pub(crate) use clear::{clear_for_stuck, take_all, ClearClaim};
use pace::Pace;

/// Entries handled per write-lock hold during maintenance: a hold of a few microseconds, short
/// enough that a reader arriving meanwhile spins instead of sleeping (`benches/retire.rs`: read
/// throughput during reclamation 4% of normal with slices of 256 and no pacing; slices of 4
/// with a yield between them made reclamation several times slower under load; with the
/// pacing below, slices of 8 and 16 measure alike).
pub(crate) const SLICE: usize = 8;
/// Attempts to take a shard's write lock, with a spin hint between them, before the worker
/// queues for it (see `write_lock`).
const WRITE_SPINS: u32 = 64;
/// Expired or stale entries a shard reclaims per write-lock hold when the engine is over
/// capacity (slice after slice, until within capacity or none is left, before its policy
/// evicts a live entry).
pub(crate) const RECLAIM_BEFORE_EVICT: usize = 1024;
/// Entries handled per shard by one explicit maintenance step (`Maintain`).
pub(crate) const TICK_BUDGET: usize = 256 * 1024;
/// Longest a background maintenance burst runs.
pub(crate) const BURST: Duration = Duration::from_millis(1);
/// Pause between background bursts while maintenance work is left: the worker holds its
/// shards' locks at most `BURST / (BURST + PAUSE)` of the time for background work. Measured
/// on two cores (reads during reclamation of 1M entries / time to reclaim them): 3 ms pauses
/// 60-72% / 1.7 s, 6 ms 83-97% / 3.0-3.4 s, 9 ms 55-132% (noisy) / 4.5-6.5 s.
pub(crate) const PAUSE: Duration = Duration::from_millis(6);
/// How much one maintenance step may do.
#[derive(Clone, Copy)]
enum Budget {
    /// Up to this many entries per shard (explicit `Maintain`).
    Entries(usize),
    /// Until this instant (background bursts).
    Until(Instant),
}

/// What a worker can be asked to do.
pub(crate) enum Command {
    /// A shard has pending operations.
    Work(usize),
    /// A generation was retired: reclaim its entries.
    Retire(u64),
    /// Apply everything pending, then acknowledge (with the worker's index).
    Flush(Sender<usize>),
    /// Apply everything pending, run one maintenance step, then acknowledge.
    Maintain(Sender<usize>),
    /// Another worker is over capacity while this one may hold dead entries, or this one's
    /// shards have a cut of the excess: reclaim dead entries, then evict if still over; if
    /// this worker's shards cannot cover the excess, pass it back to the asker recorded in
    /// `Shared::settle_reply` (see `settle`).
    Settle,
    /// Remove everything (unless the caller did: [`ClearClaim`]), then acknowledge. Boxed, so
    /// that a `Command` is 24 bytes (see [`COMMAND_SIZE`]).
    Clear(Box<(Sender<usize>, ClearClaim)>),
    /// Drop these keys and values, which a caller took out of this worker's shards
    /// ([`clear_for_stuck`]), calling the argument ahead of each `Drop`.
    DropLater(DropLater),
    /// Stop; with the engine's thread handles, left by a drop of its last handle that may not
    /// wait, for the first worker to read this to join (`crate::engine::finish_left`).
    Shutdown(Option<crate::engine::Left>),
}

/// The size a [`Command`] keeps to: the mailboxes are crossbeam's unbounded list channels,
/// which allocate their slots 31 at a time, on a caller's store of a new key (`Work`). At 24
/// bytes a block of slots is 1,000 bytes, an allocation glibc serves from its small bins; at
/// 40 (`Clear` unboxed) it was 1,496, a large-bin request, for which glibc first consolidates
/// the calling thread's fast bins: 1.3% of all samples of `get_or_insert_with` at capacity
/// (`BENCHMARKS.md`, session 24).
// Under shuttle, whose channel's `Sender` differs in size, the size is not checked.
#[cfg_attr(memokit_shuttle, allow(dead_code))]
pub(crate) const COMMAND_SIZE: usize = 24;
#[cfg(not(memokit_shuttle))]
const _: () = assert!(std::mem::size_of::<Command>() <= COMMAND_SIZE);

/// Dropped as worker `.1` ends: flags a death by panic, and records the end for a shutdown
/// waiting for it ([`crate::pending::UserDrops::wait_for_end`]).
struct DeathNotice<'a, K, V>(&'a Shared<K, V>, usize);

impl<K, V> Drop for DeathNotice<'_, K, V> {
    fn drop(&mut self) {
        if crate::sync::thread::panicking() {
            event!(error, "an engine worker died (a bug): its shards are no longer maintained");
            self.0.worker_died.store(true, Ordering::Release);
        }
        self.0.user_drops[self.1].end();
    }
}

/// Takes a shard's write lock: a few tries with a spin hint, then queued like any writer
/// (parking_lot lets the readers inside finish and holds back new ones meanwhile, which spin
/// in `Cell::read_core` while the worker works). Readers hold the lock for tens of
/// nanoseconds, so the queued wait is short. The previous rule, up to 4,096 tries with a
/// `sched_yield` between them so as never to hold back a reader, cost more than it saved: in a
/// sustained two-thread 50/50 run the worker yielded ~12 times per batch (3.5M yields for 297k
/// batches), and criterion (sustained) gave 50/50 274-283 -> 162-172 ns/op,
/// `get_or_insert_with` 348-389 -> 252-326 ns/op, 95/5 and the retirement bench unchanged.
///
/// The queued wait does not count as a session of user `Drop`s (`pending::UserDrops`), though
/// a reader may hold the lock while running a user's `Eq` or `Clone` that waits for a lock of
/// a thread waiting for this worker: tried in session 22, giving up on a worker queued here
/// let `clear` return with the shard's old values still to be found and a later store wiped
/// by its late `Clear`, and a shutdown that gave up deadlocked emptying the shard itself
/// (`tests/engine_rev_s22c.rs`, ignored: such a lock cycle through a user's `Eq` hangs, as
/// the crate docs say of user code that waits under the engine's locks).
fn write_lock<K, V>(cell: &Cell<K, V>) -> WorkerLock<'_, K, V> {
    crate::pending::assert_may_wait_for_core();
    for _ in 0..WRITE_SPINS {
        if let Some(guard) = cell.core.try_write() {
            return WorkerLock { cell, guard: Some(guard) };
        }
        spin_loop();
    }
    WorkerLock { cell, guard: Some(cell.core.write()) }
}

/// The worker's write lock of a shard. Letting go of it publishes the shard's
/// [`Shard::dead_possible_from`] in `Cell::due_at`, for the other workers, and its weight in
/// `Cell::weight` (see `settle`).
struct WorkerLock<'a, K, V> {
    cell: &'a Cell<K, V>,
    guard: Option<crate::sync::RwLockWriteGuard<'a, Shard<K, V>>>,
}

impl<K, V> WorkerLock<'_, K, V> {
    /// Lets go fairly: a reader waiting meanwhile gets the lock before this worker can take
    /// it again.
    fn unlock_fair(mut self) {
        if let Some(g) = self.guard.take() {
            self.cell.due_at.store(g.dead_possible_from(), Ordering::Release);
            self.cell.weight.store(g.weight(), Ordering::Release);
            crate::sync::unlock_fair(g);
        }
    }
}

impl<K, V> std::ops::Deref for WorkerLock<'_, K, V> {
    type Target = Shard<K, V>;
    fn deref(&self) -> &Shard<K, V> {
        self.guard.as_deref().expect("held until dropped")
    }
}

impl<K, V> std::ops::DerefMut for WorkerLock<'_, K, V> {
    fn deref_mut(&mut self) -> &mut Shard<K, V> {
        self.guard.as_deref_mut().expect("held until dropped")
    }
}

impl<K, V> Drop for WorkerLock<'_, K, V> {
    fn drop(&mut self) {
        if let Some(g) = &self.guard {
            self.cell.due_at.store(g.dead_possible_from(), Ordering::Release);
            self.cell.weight.store(g.weight(), Ordering::Release);
        }
    }
}

crate::sync::thread_local! {
    /// On a worker thread: its engine ([`engine_id`]) and its index.
    static ON_WORKER: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

/// The address of an engine's shared state: names the engine a thread works for.
pub(crate) fn engine_id<K, V>(shared: &Shared<K, V>) -> usize {
    // The address only, as an integer: compared, never turned back into a pointer.
    std::ptr::from_ref(shared).cast::<()>() as usize
}

/// Whether the current thread is an engine's worker (a caller's backpressure wait would be a
/// worker waiting for itself: a user's `Drop` that stores runs on workers).
pub(crate) fn on_worker_thread() -> bool {
    ON_WORKER.with(|w| w.get().is_some())
}

/// The index of the current thread among `shared`'s workers, if it is one of them: a user's
/// `Drop` running there that asks every worker to do something (`flush`, `clear`,
/// `run_maintenance`) must do this worker's share itself ([`serve_inline`]) rather than wait
/// for a reply that this thread, busy running the `Drop`, would never send.
pub(crate) fn worker_of<K, V>(shared: &Shared<K, V>) -> Option<usize> {
    let here = ON_WORKER.with(|w| w.get())?;
    (here.0 == engine_id(shared)).then_some(here.1)
}

/// Drops of keys and values done later, calling the argument ahead of each key's and value's
/// `Drop` (so that the worker's session of user `Drop`s moves on: `pending::UserDrops`).
pub(crate) type DropLater = Box<dyn FnOnce(&dyn Fn()) + Send>;

/// A drop left for later by an inline serve ([`DEFERRED`]), as [`DropLater`] but on the thread
/// that made it.
type Later = Box<dyn FnOnce(&dyn Fn())>;

/// Drops left for later by an inline serve.
type Deferred = Vec<Later>;

crate::sync::thread_local! {
    /// While a worker serves a request inline ([`serve_inline`], from a user's `Drop` running
    /// on it): the keys and values that serve, and those nested in the `Drop`s it runs, would
    /// drop, left to the outermost inline serve to drop one batch after another. Without it,
    /// each inline flush dropped on the spot what it evicted, whose `Drop` could flush again,
    /// one level deeper, for as long as writers kept the worker busy (found 32 deep in well
    /// under a second: `tests/engine_rev_reentry.rs`), until the worker's stack overflowed.
    /// `None` outside an inline serve.
    static DEFERRED: std::cell::RefCell<Option<Deferred>> =
        const { std::cell::RefCell::new(None) };
}

/// Drops what a worker of `shared` displaced, outside its locks: at once, counted as a
/// session of user `Drop`s on this worker (`pending::UserDrops`, for callers held back), or
/// left to an inline serve under way ([`DEFERRED`]).
fn drop_outside<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    garbage: impl IntoIterator<Item = (K, V)>,
) {
    let deferred = DEFERRED.with(|d| d.borrow().is_some());
    if deferred {
        let garbage: Vec<(K, V)> = garbage.into_iter().collect();
        if !garbage.is_empty() {
            let later: Later = Box::new(move |before: &dyn Fn()| drop_each(garbage, before));
            DEFERRED.with(|d| d.borrow_mut().as_mut().map(|v| v.push(later)));
        }
        return;
    }
    let session = crate::pending::UserDrops::enter(shared);
    drop_each(garbage, || session.next());
}

/// Drops the user's keys and values at once, each under a `catch_unwind` of its own, calling
/// `before` ahead of each key's and each value's `Drop`.
pub(crate) fn drop_each<K, V>(garbage: impl IntoIterator<Item = (K, V)>, before: impl Fn()) {
    // A panicking `Drop` of a user's key or value must not kill the worker, nor abort the
    // process: each key and each value is dropped under a `catch_unwind` of its own (dropping
    // them all in one would drop the rest while unwinding from the first panic, and a second
    // panic there aborts).
    for (k, v) in garbage {
        before();
        forget_panic(catch_unwind(AssertUnwindSafe(move || drop(k))));
        before();
        forget_panic(catch_unwind(AssertUnwindSafe(move || drop(v))));
    }
}

/// Drops a caught panic's payload, whose own `Drop` may panic in turn: that panic is caught
/// too and its payload dropped the same way, up to [`PAYLOAD_LEVELS`] deep, then forgotten
/// (a payload that panics for ever must not hold the thread). A panic of a payload's `Drop`
/// escaped here before and ended a shutdown's emptying halfway (`tests/engine_rev_s23f.rs`);
/// forgetting the first such payload leaked what it held (`tests/engine_rev_s23g.rs`).
fn forget_panic(r: std::thread::Result<()>) {
    let mut next = r.err();
    for _ in 0..PAYLOAD_LEVELS {
        let Some(payload) = next.take() else { return };
        next = catch_unwind(AssertUnwindSafe(move || drop(payload))).err();
    }
    std::mem::forget(next);
}

/// How many payloads of panicking payload `Drop`s [`forget_panic`] drops before it forgets one.
const PAYLOAD_LEVELS: usize = 8;

/// `now + d`, or far in the future (about 34 years) when `d` is too large for an `Instant`
/// (the builder refuses only a zero tick).
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(1 << 30))
}

pub(crate) fn run<K, V>(shared: Arc<Shared<K, V>>, me: usize, rx: Receiver<Command>)
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    let _notice = DeathNotice(&shared, me);
    ON_WORKER.with(|w| w.set(Some((engine_id(&shared), me))));
    // Forgotten when the worker returns: a thread that outlives the engine (a `shutdown`
    // called on this worker, which cannot join it, or the worker that joined the others after
    // the last handle was dropped where it could not wait: `engine::lifecycle`) must not pass
    // for a worker of a later engine allocated at the same address.
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            let _ = ON_WORKER.try_with(|w| w.set(None));
        }
    }
    let _forget = Forget;
    let mine = shards_of(&shared, me);
    let auto = !shared.clock.is_manual();
    let mut pace = Pace::new(Instant::now(), shared.tick);
    // The shard the next burst starts with, so that every shard gets its turn.
    let mut cursor = 0usize;
    loop {
        let msg = if auto {
            match rx.recv_deadline(pace.wake_at()) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        };
        match msg {
            None => {}
            Some(Command::Work(i)) => apply_and_settle(&shared, me, &mine, i),
            Some(Command::Settle) => {
                shared.settle_asked[me].store(false, Ordering::SeqCst);
                let asker = shared.settle_reply[me].swap(usize::MAX, Ordering::SeqCst);
                let reply_to = (asker != usize::MAX).then_some(asker);
                settle(&shared, me, &mine, reply_to);
                shared.settles_in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Some(Command::Retire(g)) => {
                for &i in &mine {
                    write_lock(&shared.cells[i]).schedule_reclaim(g);
                }
                // After the shards' `due_at` show the retired entries (published as each write
                // lock above was let go).
                shared.retires_pending[me].fetch_sub(1, Ordering::SeqCst);
                // A batch over capacity before it left the excess to this `Retire` (`settle`
                // evicts nothing while this worker's own retirement is pending).
                settle(&shared, me, &mine, None);
            }
            Some(cmd @ (Command::Flush(_) | Command::Maintain(_) | Command::Clear(..))) => {
                serve(&shared, me, &mine, &mut cursor, cmd);
            }
            Some(Command::DropLater(later)) => {
                let session = crate::pending::UserDrops::enter(&shared);
                later(&|| session.next());
            }
            Some(Command::Shutdown(left)) => {
                if let Some(left) = left {
                    crate::engine::finish_left(&shared, &left);
                }
                return;
            }
        }
        // The tick's work when its time has come, also after a message: waiting for one
        // timing out was the only way here, so a mailbox that never ran dry (writers busy
        // enough, or a `Drop` on this worker that stores) postponed expiry for as long as
        // that lasted (`tests/engine_rev_time_real.rs`).
        if !auto {
            continue;
        }
        let now = Instant::now();
        let due = pace.due(now);
        if due.drain {
            drain(&shared, me, &mine);
        }
        if due.burst {
            let finished = maintain(&shared, me, &mine, &mut cursor, Budget::Until(now + BURST));
            pace.burst_ended(Instant::now(), finished);
        }
    }
}

/// The shards worker `me` owns.
fn shards_of<K, V>(shared: &Shared<K, V>, me: usize) -> Vec<usize> {
    (0..shared.cells.len()).filter(|&i| shared.cells[i].worker == me).collect()
}

/// Serves a request that every worker answers (`Flush`, `Maintain`, `Clear`), then
/// acknowledges it.
fn serve<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    me: usize,
    mine: &[usize],
    cursor: &mut usize,
    cmd: Command,
) {
    match cmd {
        Command::Flush(ack) => {
            drain(shared, me, mine);
            let _ = ack.send(me);
        }
        Command::Maintain(ack) => {
            drain(shared, me, mine);
            maintain(shared, me, mine, cursor, Budget::Entries(TICK_BUDGET));
            let _ = ack.send(me);
        }
        Command::Clear(request) => {
            let (ack, claim) = *request;
            // Each shard the caller has not emptied already (`clear`). Every shard emptied
            // before anything they held is dropped: a caller that stops waiting for this
            // worker while a `Drop` here waits for a lock of the caller's
            // (`crate::pending::StuckWatch`) finds every shard empty all the same.
            let garbage = clear::take_claimed(shared, mine, &claim);
            drop_outside(shared, garbage);
            let _ = ack.send(me);
        }
        _ => unreachable!("only requests every worker answers are served here"),
    }
}

/// Serves, on worker `me`'s own thread, the share of a request to every worker that `me`
/// would answer ([`worker_of`]): called from a user's `Drop` running on that worker, which
/// holds none of the engine's locks there (workers drop user data outside them). Settle
/// requests queued in `me`'s mailbox wait until the `Drop` returns.
///
/// Only the outermost inline serve on the thread drops what it displaced, after serving:
/// a `Drop` it runs that flushes again serves inline one level deeper, and leaves its own
/// garbage to this loop ([`DEFERRED`]), so the nesting stays two `Drop`s deep.
pub(crate) fn serve_inline<K: 'static, V: 'static>(shared: &Shared<K, V>, me: usize, cmd: Command) {
    struct Outermost;
    impl Drop for Outermost {
        fn drop(&mut self) {
            // Also on unwinding: a later inline serve starts afresh.
            let rest = DEFERRED.with(|d| d.borrow_mut().take());
            drop(rest);
        }
    }
    let outermost = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        d.is_none().then(|| *d = Some(Vec::new())).is_some()
    });
    // Only the outermost owns the list (a guard made and dropped at once would reset it).
    let _outermost = if outermost { Some(Outermost) } else { None };
    serve(shared, me, &shards_of(shared, me), &mut 0, cmd);
    if outermost {
        // Counted like the worker's own drops, in the session of the `Drop` this runs in: a
        // caller waiting for this worker sees each of them (uncounted, a long run of quick
        // `Drop`s read as one stuck `Drop`, and a `flush` gave up on a busy worker:
        // `tests/engine_rev_s22.rs`).
        let session = crate::pending::UserDrops::enter(shared);
        loop {
            let batch = DEFERRED.with(|d| d.borrow_mut().as_mut().map(std::mem::take));
            let batch = batch.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            batch.into_iter().for_each(|later| later(&|| session.next()));
        }
    }
}

/// Applies the pending operations of every shard of worker `me`, each followed by the
/// evictions its batch calls for (its own growth in that shard, any other excess from the
/// heaviest shards), as a `Work` does ([`apply_and_settle`]).
/// Stores of new keys may wait in a shard below its threshold with no `Work` sent
/// (`store::signal_threshold`); a flush, a maintenance step or the tick applies them.
/// (Applying them all and then settling once from the worker's first shard evicted only
/// there: that shard emptied while the others overflowed, `capacity::tests`.)
fn drain<K: 'static, V: 'static>(shared: &Shared<K, V>, me: usize, mine: &[usize]) {
    for &i in mine {
        apply_and_settle(shared, me, mine, i);
    }
}

/// Applies a shard's pending operations in one batch, then runs `then` on the core within
/// the same hold of the write lock, with the weight the batch added, not yet added to the
/// engine's total (`apply_and_settle` evicts there); `then` returns what is left of it, which
/// is added before the lock is let go. The write lock comes first, without holding
/// `pending` (so callers are not held up while the worker waits for readers to leave); the
/// batch is then swapped out of `pending` and applied before the write lock is released, so
/// a lookup that misses the pending table finds the batch in the core.
fn apply_then<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    cell: &Cell<K, V>,
    then: impl FnOnce(&mut Shard<K, V>, &mut Vec<(K, V)>, u64) -> u64,
) {
    // Nothing pending and no wake-up to reset (every tick and flush comes here for every
    // shard): no lock at all. A store publishes `pending_len` before it returns and signals
    // after, so one that this check misses sends a `Work` of its own.
    if cell.pending_len.load(Ordering::Acquire) == 0 && !cell.signaled.load(Ordering::Acquire) {
        return;
    }
    cell.warm_batch();
    let mut core = write_lock(cell);
    let mut batch = cell.batch.lock();
    {
        let mut p = cell.lock_pending();
        cell.signaled.store(false, Ordering::Release);
        if p.len() == 0 {
            // Nothing pending hides anything: an operation that did was taken out by a later
            // store or remove of its key that found no entry to hide (this worker had
            // reclaimed or evicted it meanwhile). Set, the flag told every other worker that
            // this one may hold dead entries, for good: each deferred to the other and `flush`
            // gave up over capacity (`capacity::tests`). Always seen here: the store that set
            // it signaled, and only this, under `pending`, clears the signal.
            cell.hides.store(false, Ordering::SeqCst);
            return;
        }
        std::mem::swap(&mut *p, &mut *batch);
        p.gathered = 0;
        // Lookups that started before this batch must not take an empty pending table for a
        // definitive miss: count the batch first, then publish the empty table.
        cell.applied.fetch_add(1, Ordering::Release);
        cell.pending_len.store(0, Ordering::Release);
        cell.clear_pending_keys();
        cell.drained.notify_all();
    }
    let b = &mut *batch;
    // Room for what the batch displaces and, at capacity, one eviction per new key. Grown one
    // push at a time from empty, its reallocations took ~10% of the worker's time under
    // `get_or_insert_with` at capacity (`BENCHMARKS.md`, session 24).
    let mut garbage = Vec::with_capacity(b.removes.len() + 2 * b.inserts.len());
    let before = core.weight();
    // Drained in place: the tables keep their capacity for a later batch.
    for h in b.removes.drain(..) {
        core.remove_handle(h, &shared.gens, &mut garbage);
    }
    for (n, replaces) in b.inserts.drain() {
        core.insert(n, replaces, &shared.gens, &mut garbage);
    }
    let after = core.weight();
    if after < before {
        shared.weight.fetch_sub(before - after, Ordering::AcqRel);
    }
    // Only once the weight shows what the batch freed: a worker that finds the flag clear
    // must not see the entries the batch removes or shrinks still weighing. No caller can set
    // it meanwhile (hiding an entry takes the read lock this worker holds for writing).
    cell.hides.store(false, Ordering::SeqCst);
    drop(batch);
    // The batch's growth is published only after `then`, which may evict for it first, and
    // before the write lock is let go. Published before, it showed other workers an excess
    // that this one was about to evict: settling at the same time, they evicted for it too,
    // and entries that would still fit were lost (`tests/engine_weighted_eviction.rs`).
    let growth = then(&mut core, &mut garbage, after.saturating_sub(before));
    if growth > 0 {
        // The shard's weight first (published again as the lock is let go): another worker
        // that reads the excess must not read the shard's weight from before the batch, take
        // another shard for the heaviest and evict there while this one's growth is evicted
        // here too (`tests/engine_rev_s26.rs`).
        cell.weight.store(core.weight(), Ordering::Release);
        shared.weight.fetch_add(growth, Ordering::AcqRel);
    }
    drop(core);
    drop_outside(shared, garbage);
}

/// One maintenance step on the given shards, starting with `mine[*cursor]`; returns whether
/// every shard finished its work (nothing expired or stale is left to reclaim).
fn maintain<K: 'static, V: 'static>(
    shared: &Shared<K, V>,
    me: usize,
    mine: &[usize],
    cursor: &mut usize,
    budget: Budget,
) -> bool {
    let now = shared.clock.precise();
    let mut all_finished = true;
    let n = mine.len();
    for step in 0..n {
        let at = (*cursor + step) % n;
        let cell = &shared.cells[mine[at]];
        let mut done = 0;
        let mut garbage = Vec::with_capacity(SLICE);
        let finished = loop {
            let (work, _, finished) = {
                let mut core = write_lock(cell);
                // An explicit step expires every entry the clock says is dead, also those whose
                // deadline fell inside the current tick; the background bursts leave those to
                // the next tick (reclaimed within a tick or two) rather than look at them twice.
                let r = match budget {
                    Budget::Entries(_) => core.reclaim_dead(now, SLICE, &shared.gens, &mut garbage),
                    Budget::Until(_) => core.maintain(now, SLICE, &shared.gens, &mut garbage),
                };
                // The weight freed is given back before the lock (and with it the shard's
                // `due_at`, maybe clean now) is published: another worker that then sees the
                // shard clean must not also see the engine still over capacity by what this
                // slice reclaimed, and evict a live entry for it.
                shared.weight.fetch_sub(r.1, Ordering::AcqRel);
                // Hand the lock to waiting readers before taking it again for the next slice.
                core.unlock_fair();
                r
            };
            drop_outside(shared, garbage.drain(..));
            done += work;
            if finished {
                break true;
            }
            let out = match budget {
                Budget::Entries(max) => done >= max,
                Budget::Until(t) => Instant::now() >= t,
            };
            if out {
                break false;
            }
        };
        #[cfg(feature = "tracing")]
        if done > 0 {
            tracing::debug!(
                target: "memokit_engine",
                shard = mine[at],
                entries = done,
                finished,
                "maintenance: expired or stale entries handled"
            );
        }
        if !finished {
            all_finished = false;
            if let Budget::Until(t) = budget {
                if Instant::now() >= t {
                    // Out of time: the next burst starts with this shard.
                    *cursor = at;
                    break;
                }
            }
        }
    }
    // The engine still over capacity (a batch applied by this step, or an excess a batch left
    // to a pending `Retire`): settled like a batch, so nothing live goes while dead entries
    // may be left anywhere (a bare eviction here evicted live entries while this worker's own
    // `Retire` waited behind the `Maintain`: `tests/engine_rev_s12.rs`).
    settle(shared, me, mine, None);
    all_finished
}
