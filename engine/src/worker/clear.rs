//! Emptying shards: a worker's share of [`Engine::clear`](crate::Engine::clear), the shutdown's
//! emptying, and the share of a worker that `clear` stopped waiting for.
//!
//! Why a claim: `clear` does not wait for ever for a worker that stays in one user `Drop`
//! (that `Drop` may wait for a lock its caller holds: `crate::pending::StuckWatch`). If the
//! `Drop` came from an earlier command, the worker's `Clear` is still in its mailbox: `clear`
//! returned with the values still found, and when the worker got to it, the late `Clear` wiped
//! what had been stored since (`tests/engine_rev_s22.rs`). So each `clear` carries a
//! [`ClearClaim`], one state per shard: whoever holds a shard's write lock claims it and
//! empties it, the worker as it serves its `Clear`, or a caller that stops waiting
//! ([`clear_for_stuck`]), which queues for each write lock for a while only (a reader inside
//! may be running user code that waits for the caller: `tests/engine_rev_s22b.rs`) and hands
//! what it took to the worker to drop ([`Command::DropLater`]), so that no user `Drop` runs on
//! the caller (it may need the lock the caller holds).
//!
//! Invariant: each shard is emptied once per `clear`, under its write lock, after every
//! operation issued before the `clear`. A worker given up on is in a `Drop` and holds no lock,
//! so the caller gets every shard's lock once the readers inside leave, unless one of them is
//! running user code that blocks: that shard's values are found until the worker, once its
//! `Drop` returns, empties it (and a value stored there meanwhile is emptied with them).
//! Cost: one atomic per shard per `clear`; nothing on any other path.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{drop_each, shards_of, write_lock, Command, WorkerLock};
use crate::shared::{Cell, Shared};
use crate::sync::AtomicU8;

/// Nobody has emptied the shard for this `clear` yet.
const OPEN: u8 = 0;
/// Emptied for this `clear` (by its worker, or by the caller).
const TAKEN: u8 = 1;

/// Who empties each shard for one `clear` (see the module docs): one state per shard.
#[derive(Clone)]
pub(crate) struct ClearClaim(Arc<[AtomicU8]>);

impl ClearClaim {
    /// A claim for an engine of `shards` shards, none emptied yet.
    pub(crate) fn new(shards: usize) -> Self {
        ClearClaim((0..shards).map(|_| AtomicU8::new(OPEN)).collect())
    }

    /// Claims shard `i`, whose write lock the claimer holds; false if it was emptied already.
    fn claim(&self, i: usize) -> bool {
        self.0[i].compare_exchange(OPEN, TAKEN, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// Worker `mine`'s share of a `clear`: each of its shards not emptied by the caller already,
/// taken under its write lock; returns what they held, to be dropped.
pub(super) fn take_claimed<K, V>(
    shared: &Shared<K, V>,
    mine: &[usize],
    claim: &ClearClaim,
) -> Vec<(K, V)> {
    let mut garbage = Vec::new();
    for &i in mine {
        let cell = &shared.cells[i];
        let mut core = write_lock(cell);
        if claim.claim(i) {
            garbage.extend(take_locked(shared, cell, &mut core));
        }
    }
    garbage
}

/// Keys and values handed to a worker to drop ([`Command::DropLater`]). Dropped each under a
/// `catch_unwind` of its own also when the command never runs (a mailbox dropped with it).
struct Garbage<K, V>(Vec<(K, V)>);

impl<K, V> Drop for Garbage<K, V> {
    fn drop(&mut self) {
        drop_each(std::mem::take(&mut self.0), || {});
    }
}

/// What a caller that stopped waiting for worker `w`'s `Clear` does (see the module docs):
/// empties each of that worker's shards that it can lock for writing within
/// [`PATIENCE_LOOK`](crate::pending::PATIENCE_LOOK) and that the worker has not emptied yet,
/// and sends the worker what they held to drop.
pub(crate) fn clear_for_stuck<K, V>(shared: &Shared<K, V>, w: usize, claim: &ClearClaim)
where
    K: Send + 'static,
    V: Send + 'static,
{
    let mut garbage = Vec::new();
    for i in shards_of(shared, w) {
        let cell = &shared.cells[i];
        // Queued for a while at most (new readers wait meanwhile, so those inside leave): not
        // for ever, since a reader inside may be running user code that waits for this caller.
        let guard = crate::sync::try_write_for(&cell.core, crate::pending::PATIENCE_LOOK);
        let Some(guard) = guard else { continue };
        let mut core = WorkerLock { cell, guard: Some(guard) };
        if claim.claim(i) {
            garbage.extend(take_locked(shared, cell, &mut core));
        }
    }
    if !garbage.is_empty() {
        let mut garbage = Garbage(garbage);
        let later = move |before: &dyn Fn()| drop_each(std::mem::take(&mut garbage.0), before);
        // A worker gone (shut down) leaves them to the command's drop, here.
        let _ = shared.mailboxes[w].send(Command::DropLater(Box::new(later)));
    }
}

/// Empties one shard, pending operations included; returns what it held, to be dropped.
pub(crate) fn take_all<K, V>(shared: &Shared<K, V>, cell: &Cell<K, V>) -> Vec<(K, V)> {
    take_locked(shared, cell, &mut write_lock(cell))
}

/// [`take_all`] with the shard's write lock held.
fn take_locked<K, V>(
    shared: &Shared<K, V>,
    cell: &Cell<K, V>,
    core: &mut WorkerLock<'_, K, V>,
) -> Vec<(K, V)> {
    let mut garbage = Vec::new();
    let inserts = {
        let mut p = cell.lock_pending();
        let inserts = std::mem::take(&mut p.inserts);
        p.removes.clear();
        p.gathered = 0;
        cell.hides.store(false, Ordering::SeqCst);
        let freed = core.clear(&shared.gens, &mut garbage);
        shared.weight.fetch_sub(freed, Ordering::AcqRel);
        cell.applied.fetch_add(1, Ordering::Release);
        cell.pending_len.store(0, Ordering::Release);
        cell.clear_pending_keys();
        cell.drained.notify_all();
        inserts
    };
    // Counted when they were recorded (`Registry::acquire_all`), and never applied.
    for (n, _) in inserts.iter() {
        shared.gens.release_all(&n.gens);
    }
    garbage.extend(inserts.into_iter().map(|(n, _)| (n.key, n.value)));
    garbage
}
