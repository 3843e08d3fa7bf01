//! Single flight: one computation per (key, generations), waited on by the others.
//!
//! A shard keeps a table of running computations (`Flights`), keyed like the cache and holding
//! the owned key, so the key moves into the cache when the computation ends. A caller that misses
//! registers a [`Flight`] (it becomes the *leader*) or joins the one registered for its key if
//! that flight was started under the same, still live, generations. A flight started under
//! generations that were retired since is never joined: the newcomer replaces it in the table,
//! and the old leader, finding itself unregistered, hands its value to its own waiters only. A
//! caller whose own generations were retired neither joins nor registers: it computes for
//! itself (its value could not be stored), leaving a live flight in place for later callers.
//! `remove` and `clear` unregister flights the same way, so a computation that began before a
//! delete is never stored or handed to a caller that arrived after it. An explicit `insert`
//! does too, and it always takes the flights lock: a leader checks for the key, registers, and
//! later unregisters and stores, each under that lock, so an insert either detaches the flight
//! or lands after the leader's store, never under it (the model-checked tests in
//! `tests/shuttle/` found both ways it once could: an insert that skipped the lock while no
//! flight was registered, and a leader that published "no flight" before its store).
//!
//! Waiting is the only blocking operation: [`Flight::wait`] parks on a condition variable. The
//! state machine (`Running` → `Done(v)` | `Abandoned`) is independent of how one waits, so an
//! async adapter can add a waker list next to the condition variable without a second engine.
//! A flight nobody waits for is never completed: its leader, holding the only handle once the
//! flight is out of the table, keeps its value (waiters hold handles; see
//! `crate::shared::single_flight`), so most computations clone their value once, for the store.
//! A leader that panics or returns an error abandons the flight: waiters wake and retry, without
//! waiting again (one of them leads a new flight, the others compute for themselves). Joining a flight led by the current thread would deadlock, so
//! it panics with a message instead ([`SELF_WAIT_PANIC`]).
//!
//! The same deadlock can take several threads: the computation of `f(1)` on one thread asks
//! for `g(1)`, whose computation on another thread asks for `f(1)` (on one thread, the same
//! code asks for its own key). [`Waits`] records, per engine, which flight each waiting thread
//! waits for; a thread about to wait follows the chain from the flight's leader (the flight
//! that leader waits for, that flight's leader, ...) and, if it comes back to itself, panics
//! with [`WAIT_CYCLE_PANIC`] instead of waiting. The chain follows only flights still running (a
//! leader finishes its flight before its waiters wake and leave the table), so a cycle found is
//! one that no thread in it can leave: no false alarm. No lock is held while the user's
//! `Clone` runs on a waiter (the value is cloned after the state lock is let go), and the walk
//! reads each flight's `finished` flag, never its state lock: that `Clone` may itself wait for
//! a flight, whose leader may be another waiter of the first on its way to its own copy. Cost:
//! one mutex and a table insert and removal per wait, never on a hit or a computation nobody
//! waits for. Cycles through two engines (two memoizers) or through the user's own locks are
//! not seen. A wait from user code the engine runs under one of its locks (a hit's `Clone`)
//! panics instead: see `crate::reentry`.

use std::sync::{Arc, OnceLock};

use crate::sync::thread::ThreadId;
use crate::sync::{AtomicBool, Condvar, Mutex, MutexGuard};
use std::sync::atomic::Ordering;

use crate::entry::Gens;
use crate::options::InsertOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// The value is in `Flight::value`.
    Done,
    Abandoned,
}

/// One running computation.
#[derive(Debug)]
pub(crate) struct Flight<V> {
    state: Mutex<State>,
    /// The value, set before `state` becomes `Done`, and cloned by each waiter after it lets
    /// go of `state`: the user's `Clone` may wait for another flight, whose leader may be a
    /// waiter of this one on its way to its own copy (`tests/engine_rev_s16d.rs`: cloning
    /// under the lock hung both).
    value: OnceLock<V>,
    /// Set as `state` leaves `Running`: read by [`Waits`] without the state lock (taking it
    /// under the table of waits deadlocked against a waiter's `Clone` that waited in turn,
    /// `tests/engine_rev_s16c.rs`).
    finished: AtomicBool,
    cv: Condvar,
    pub(crate) leader: ThreadId,
    pub(crate) gens: Gens,
}

impl<V: Clone> Flight<V> {
    pub(crate) fn new(gens: Gens) -> Arc<Self> {
        Arc::new(Flight {
            state: Mutex::new(State::Running),
            value: OnceLock::new(),
            finished: AtomicBool::new(false),
            cv: Condvar::new(),
            leader: crate::sync::current_thread_id(),
            gens,
        })
    }

    /// Blocks until the leader finishes: `Some(value)`, or `None` if it gave up (retry). The
    /// caller clones the value, with no lock held (see `value`) and after it has left the
    /// table of waits (the `Clone` may wait for a flight in turn).
    pub(crate) fn wait(&self) -> Option<&V> {
        let mut s = self.state.lock();
        while *s == State::Running {
            self.cv.wait(&mut s);
        }
        let done = *s == State::Done;
        drop(s);
        // Set before `Done` was, under the lock just released.
        self.value.get().filter(|_| done)
    }

    /// Whether the leader is still computing (neither done nor abandoned). Takes no lock.
    fn running(&self) -> bool {
        !self.finished.load(Ordering::SeqCst)
    }

    /// Hands `v` to the waiters. Called once, by the leader (`v` is dropped if the flight was
    /// completed already).
    pub(crate) fn complete(&self, v: V) {
        let _ = self.value.set(v);
        let mut s = self.state.lock();
        *s = State::Done;
        self.finished.store(true, Ordering::SeqCst);
        drop(s);
        self.cv.notify_all();
    }

    pub(crate) fn abandon(&self) {
        let mut s = self.state.lock();
        if *s == State::Running {
            *s = State::Abandoned;
            self.finished.store(true, Ordering::SeqCst);
        }
        drop(s);
        self.cv.notify_all();
    }
}

/// The flights the threads of one engine are waiting for, by thread (see the module docs).
pub(crate) struct Waits<V>(Mutex<hashbrown::HashMap<ThreadId, Arc<Flight<V>>>>);

impl<V> Default for Waits<V> {
    fn default() -> Self {
        Waits(Mutex::new(hashbrown::HashMap::new()))
    }
}

impl<V: Clone> Waits<V> {
    /// Records that this thread is about to wait for `flight`, until the returned guard is
    /// dropped.
    ///
    /// # Panics
    /// With [`WAIT_CYCLE_PANIC`] when `flight`'s leader waits, directly or through other threads'
    /// flights, for a flight this thread leads: the wait would never end.
    pub(crate) fn enter(&self, flight: &Arc<Flight<V>>, opts: &InsertOptions) -> Waiting<'_, V> {
        let me = crate::sync::current_thread_id();
        let mut waits = self.0.lock();
        // Each thread waits for one flight at a time: the chain has at most one step per
        // entry, and ends at a flight that has finished (this one included: its leader may
        // have finished it and gone on to wait for a flight of this thread since it was
        // found, and then `wait` returns at once) or at a leader that is not waiting.
        let mut next = Some(flight);
        for _ in 0..=waits.len() {
            let Some(f) = next.take().filter(|f| f.running()) else { break };
            if f.leader == me {
                drop(waits);
                opts.deadlock_panic(WAIT_CYCLE_PANIC);
            }
            next = waits.get(&f.leader);
        }
        // A flight replaced (none: a thread's wait ends before it waits again) is dropped
        // after the lock, as is the one `Waiting` removes: the last handle of a flight drops
        // its value, and the user's `Drop` may wait for a flight in turn.
        let replaced = waits.insert(me, flight.clone());
        drop(waits);
        drop(replaced);
        Waiting { waits: self, me }
    }
}

/// A thread's entry in [`Waits`], removed when dropped (also when the wait unwinds).
pub(crate) struct Waiting<'a, V> {
    waits: &'a Waits<V>,
    me: ThreadId,
}

impl<V> Drop for Waiting<'_, V> {
    fn drop(&mut self) {
        // The lock is released at the end of this statement, before `flight` is dropped.
        let flight = self.waits.0.lock().remove(&self.me);
        drop(flight);
    }
}

/// A registered flight with the owned key it will be stored under.
#[derive(Debug)]
pub(crate) struct Slot<K, V> {
    pub(crate) key: K,
    pub(crate) hash: u64,
    pub(crate) flight: Arc<Flight<V>>,
}

/// The running computations of one shard.
pub(crate) type Flights<K, V> = hashbrown::HashTable<Slot<K, V>>;

/// Drops the running computations `shutdown` or `clear` detached from a shard, outside every
/// lock, as workers drop what they remove ([`crate::worker::drop_each`]: each key and
/// each handle under a `catch_unwind` of its own). A key whose `Drop` panicked used to end the
/// emptying there: `shutdown` left the shards after it full, their values found by lookups
/// after it and after a second `shutdown` that waited for it (`tests/engine_rev_s18g.rs`).
/// `before` runs ahead of each key's and each handle's `Drop` (a first shutdown counts them:
/// `engine::lifecycle`).
pub(crate) fn drop_detached<K, V>(flights: Flights<K, V>, before: impl Fn()) {
    crate::worker::drop_each(flights.into_iter().map(|s| (s.key, s.flight)), before);
}

crate::sync::thread_local! {
    /// How many flights locks this thread holds (see [`flights_held`]).
    static FLIGHTS_HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this thread holds a shard's flights lock: its reads of a core are then recursive
/// (`Cell::read_core`, `Cell::lock_pending_and_core`), never queued behind a worker waiting
/// for the write lock. That worker may be waiting for a read lock held by a thread running
/// user code (a hit's `Clone`) that stores, removes or computes through the engine, which
/// waits for this flights lock: queued, the three would wait for each other
/// (`tests/engine_rev_s17a.rs`). A worker never takes a flights lock, so a thread holding
/// one waits for the core only while the worker holds the write lock, which it lets go.
#[inline]
pub(crate) fn flights_held() -> bool {
    FLIGHTS_HELD.with(|n| n.get() > 0)
}

/// A shard's table of running computations, locked; counted in [`flights_held`].
pub(crate) struct FlightsGuard<'a, K, V> {
    guard: MutexGuard<'a, Flights<K, V>>,
}

impl<'a, K, V> FlightsGuard<'a, K, V> {
    /// Locks a shard's table of running computations.
    #[inline]
    pub(crate) fn lock(m: &'a Mutex<Flights<K, V>>) -> Self {
        let guard = m.lock();
        FLIGHTS_HELD.with(|n| n.set(n.get() + 1));
        FlightsGuard { guard }
    }
}

impl<K, V> std::ops::Deref for FlightsGuard<'_, K, V> {
    type Target = Flights<K, V>;
    fn deref(&self) -> &Flights<K, V> {
        &self.guard
    }
}

impl<K, V> std::ops::DerefMut for FlightsGuard<'_, K, V> {
    fn deref_mut(&mut self) -> &mut Flights<K, V> {
        &mut self.guard
    }
}

impl<K, V> Drop for FlightsGuard<'_, K, V> {
    fn drop(&mut self) {
        FLIGHTS_HELD.with(|n| n.set(n.get() - 1));
    }
}

/// The message of the panic that a computation asking for its own key on the same thread
/// gets ([`Engine::get_or_insert_with`](crate::Engine::get_or_insert_with) and the other
/// computing lookups: `get_or_insert_with_options`, `get_or_try_insert_with_ref`): instead of a
/// deadlock, a panic with this message (its payload a `String`). Exported so that a layer
/// above (memokit's memoizer, which names the function) can recognise it.
///
/// ```
/// use memokit_engine::{Engine, SELF_WAIT_PANIC};
/// use std::panic::{catch_unwind, AssertUnwindSafe};
///
/// let cache: Engine<u64, u64> = Engine::new(10);
/// let payload = catch_unwind(AssertUnwindSafe(|| {
///     cache.get_or_insert_with(1, || cache.get_or_insert_with(1, || 1))
/// }))
/// .unwrap_err();
/// assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some(SELF_WAIT_PANIC));
/// ```
pub const SELF_WAIT_PANIC: &str = "memokit: a computation asked for its own key on the same \
thread (direct recursion with the same key); this would deadlock, so it panics instead. Break \
the recursion or compute the inner value without the cache";

/// The message of the panic that a computation gets when its wait for another thread's
/// computation would close a cycle of computations waiting for each other on several threads
/// (instead of a deadlock; its payload a `String`). Exported, like [`SELF_WAIT_PANIC`], so
/// that memokit's memoizer can name the function.
pub const WAIT_CYCLE_PANIC: &str = "memokit: computations on different threads wait for each \
other's keys (the computation of one key asks for a second key, whose computation on another \
thread is waiting, directly or through others, for the first); they would deadlock, so this \
one panics instead. The same calls on one thread would ask for a key from its own \
computation: break the cycle between the functions";

#[cfg(all(test, not(memokit_shuttle)))]
mod tests {
    use super::*;

    /// A flight that has finished is no wait at all, whatever its leader does since: thread A
    /// led `f` and finished it, then went on to wait for `g`, led by this thread. This thread,
    /// having found `f` registered just before A finished it, now waits for it: `wait` returns
    /// at once, so no cycle may be reported. (Before: the walk started at `f`'s leader without
    /// asking whether `f` still runs, and panicked with `WAIT_CYCLE_PANIC`.)
    #[test]
    fn a_finished_flight_waited_for_is_no_cycle() {
        let waits = Arc::new(Waits::<u64>::default());
        let g = Flight::<u64>::new([0, 0]);
        let (tx, rx) = std::sync::mpsc::channel();
        let (go, release) = std::sync::mpsc::channel::<()>();
        let a = {
            let (waits, g) = (waits.clone(), g.clone());
            std::thread::spawn(move || {
                let f = Flight::<u64>::new([0, 0]);
                f.complete(1);
                let waiting = waits.enter(&g, &InsertOptions::new());
                tx.send(f).unwrap();
                release.recv().unwrap();
                drop(waiting);
            })
        };
        let f = rx.recv().unwrap();
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let waiting = waits.enter(&f, &InsertOptions::new());
            let v = f.wait().copied();
            drop(waiting);
            v
        }));
        go.send(()).unwrap();
        a.join().unwrap();
        g.complete(2);
        assert_eq!(waited.ok(), Some(Some(1)), "a finished flight taken for a cycle");
        assert!(waits.0.lock().is_empty(), "entries left behind");
    }
}
