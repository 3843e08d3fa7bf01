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
//! A leader that panics or returns an error abandons the flight: waiters wake and retry (one of
//! them becomes the next leader). Joining a flight led by the current thread would deadlock, so
//! it panics with a message instead.

use std::sync::Arc;

use crate::sync::thread::ThreadId;
use crate::sync::{Condvar, Mutex};

use crate::entry::Gens;

#[derive(Debug)]
enum State<V> {
    Running,
    Done(V),
    Abandoned,
}

/// One running computation.
#[derive(Debug)]
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    cv: Condvar,
    pub(crate) leader: ThreadId,
    pub(crate) gens: Gens,
}

impl<V: Clone> Flight<V> {
    pub(crate) fn new(gens: Gens) -> Arc<Self> {
        Arc::new(Flight {
            state: Mutex::new(State::Running),
            cv: Condvar::new(),
            leader: crate::sync::thread::current().id(),
            gens,
        })
    }

    /// Blocks until the leader finishes: `Some(value)`, or `None` if it gave up (retry).
    pub(crate) fn wait(&self) -> Option<V> {
        let mut s = self.state.lock();
        loop {
            match &*s {
                State::Running => self.cv.wait(&mut s),
                State::Done(v) => return Some(v.clone()),
                State::Abandoned => return None,
            }
        }
    }

    pub(crate) fn complete(&self, v: V) {
        *self.state.lock() = State::Done(v);
        self.cv.notify_all();
    }

    pub(crate) fn abandon(&self) {
        let mut s = self.state.lock();
        if matches!(*s, State::Running) {
            *s = State::Abandoned;
        }
        drop(s);
        self.cv.notify_all();
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

/// The panic message for a computation that asks for its own key.
pub(crate) const SELF_WAIT: &str = "memokit: a computation asked for its own key on the same \
thread (direct recursion with the same key); this would deadlock, so it panics instead. Break \
the recursion or compute the inner value without the cache";
