//! User code that waits for a lock of the user's while the engine runs it: a value's `Drop`
//! on a worker ([`Locker`]), a key's `Eq` under a shard's read lock ([`GateKey`]), a lock any
//! thread may let go ([`UserLock`]). The tests of the engine's patience with such code
//! (`tests/engine_rev_s22*.rs`, `tests/engine_rev_s23d.rs`, `tests/engine_rev_s23e.rs`) share
//! them.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use memokit_engine::{Engine, ManualClock};

/// A value whose `Drop`, when armed, takes a lock of the user's (as a pool giving a
/// connection back would), after recording that it started, and records that it finished.
/// Copies dropped while disarmed do nothing.
#[derive(Clone)]
pub(crate) struct Locker {
    pub(crate) lock: Arc<Mutex<()>>,
    pub(crate) armed: Arc<AtomicBool>,
    pub(crate) entered: Arc<AtomicBool>,
    pub(crate) left: Arc<AtomicBool>,
}

impl Locker {
    pub(crate) fn new() -> Self {
        Locker {
            lock: Arc::new(Mutex::new(())),
            armed: Arc::new(AtomicBool::new(false)),
            entered: Arc::new(AtomicBool::new(false)),
            left: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        self.entered.store(true, Ordering::SeqCst);
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
        self.left.store(true, Ordering::SeqCst);
    }
}

/// Where a key's `Eq` waits: when both sides have id 1 and the gate is armed, it records that it
/// entered, then takes the user's lock.
#[derive(Default)]
pub(crate) struct EqGate {
    pub(crate) lock: Mutex<()>,
    pub(crate) armed: AtomicBool,
    pub(crate) entered: AtomicBool,
}

/// A key hashed by `id`, whose `Eq` may wait for a user's lock ([`EqGate`]).
#[derive(Clone)]
pub(crate) struct GateKey {
    pub(crate) id: u64,
    pub(crate) gate: Option<Arc<EqGate>>,
}

/// A key without a gate.
pub(crate) fn gk(id: u64) -> GateKey {
    GateKey { id, gate: None }
}

impl Hash for GateKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
    }
}

impl PartialEq for GateKey {
    fn eq(&self, other: &Self) -> bool {
        let gate = self.gate.as_ref().or(other.gate.as_ref());
        if let (Some(g), 1, 1) = (gate, self.id, other.id) {
            if g.armed.load(Ordering::SeqCst) {
                g.entered.store(true, Ordering::SeqCst);
                drop(g.lock.lock().unwrap_or_else(|p| p.into_inner()));
            }
        }
        self.id == other.id
    }
}

impl Eq for GateKey {}

/// How long a test of a second `shutdown` (`tests/engine_rev_s23d.rs`, `..._s23e.rs`) waits for a `shutdown` that should return (it should within the engine's
/// patience of a second, plus what is left to drop) before it calls it hung.
pub(crate) const RETURN_LIMIT: Duration = Duration::from_secs(5);

pub(crate) fn engine_of<K, V>(shards: usize) -> Engine<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Engine::builder()
        .max_capacity(10_000)
        .shards(shards)
        .workers(1)
        .clock(ManualClock::new())
        .build()
        .expect("build the engine")
}

/// A lock of the user's that any thread may let go (a pool's lock modelled as a flag), so
/// that a test can free it from outside once it has seen a thread deadlock on it.
#[derive(Default)]
pub(crate) struct UserLock {
    held: Mutex<bool>,
    cv: Condvar,
}

impl UserLock {
    pub(crate) fn lock(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held {
            held = self.cv.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held = true;
    }

    pub(crate) fn unlock(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.cv.notify_all();
    }
}
