//! User code that waits for a lock of the user's while the engine runs it: a value's `Drop`
//! on a worker ([`Locker`]), a key's `Eq` under a shard's read lock ([`GateKey`]). The tests of
//! the engine's patience with such code (`tests/engine_rev_s22*.rs`) share them.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
