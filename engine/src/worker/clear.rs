//! Emptying shards: a worker's share of [`Engine::clear`](crate::Engine::clear), the shutdown's
//! emptying, and the share of a worker that `clear` stopped waiting for.
//!
//! Why a claim: `clear` does not wait for ever for a worker that stays in one user `Drop`
//! (that `Drop` may wait for a lock its caller holds: `crate::pending::StuckWatch`). If that
//! `Drop` came from an earlier command, the worker's `Clear` is still in its mailbox: `clear`
//! returned with the values still found, and when the `Drop` returned the late `Clear` wiped
//! what had been stored since (`tests/engine_rev_s22.rs`). So each worker's `Clear` carries a
//! [`ClearClaim`]: the worker empties its shards only if it claims it first; a caller that
//! stops waiting claims it instead ([`clear_for_stuck`]), empties that worker's shards itself
//! and hands what they held to the worker to drop ([`Command::DropLater`]), so that no user
//! `Drop` runs on the caller (it may need the lock the caller holds).
//!
//! Invariant: after a `clear` returns, each of its workers' shards has been emptied by exactly
//! one of them (the worker, or the caller), after every operation issued before the `clear`,
//! and nothing stored after it returned is removed by it. Cost: one atomic per worker per
//! `clear`; nothing on any other path.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{drop_each, shards_of, write_lock, Command};
use crate::shared::{Cell, Shared};
use crate::sync::AtomicU8;

/// Nobody has emptied the worker's shards for this `Clear` yet.
const OPEN: u8 = 0;
/// The worker is emptying them.
const WORKER: u8 = 1;
/// The caller that stopped waiting emptied them.
const CALLER: u8 = 2;
/// The worker has emptied them.
const DONE: u8 = 3;

/// Who empties one worker's shards for one `clear` (see the module docs).
#[derive(Clone, Default)]
pub(crate) struct ClearClaim(Arc<AtomicU8>);

impl ClearClaim {
    /// Claims the emptying for the worker; false if the caller did it already.
    pub(super) fn for_worker(&self) -> bool {
        self.0.compare_exchange(OPEN, WORKER, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Records that the worker has emptied its shards.
    pub(super) fn done(&self) {
        self.0.store(DONE, Ordering::Release);
    }
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
/// empties that worker's shards and sends it what they held to drop, unless the worker
/// claimed the emptying first. Returns whether the caller may stop waiting for the worker:
/// true unless the worker is emptying its shards right now (it holds no user code there).
pub(crate) fn clear_for_stuck<K, V>(shared: &Shared<K, V>, w: usize, claim: &ClearClaim) -> bool
where
    K: Send + 'static,
    V: Send + 'static,
{
    match claim.0.compare_exchange(OPEN, CALLER, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(now) => return now != WORKER,
    }
    let garbage: Vec<(K, V)> =
        shards_of(shared, w).into_iter().flat_map(|i| take_all(shared, &shared.cells[i])).collect();
    if !garbage.is_empty() {
        let mut garbage = Garbage(garbage);
        let later = move |before: &dyn Fn()| drop_each(std::mem::take(&mut garbage.0), before);
        // A worker gone (shut down) leaves them to the command's drop, here.
        let _ = shared.mailboxes[w].send(Command::DropLater(Box::new(later)));
    }
    true
}

/// Removes everything from one shard, pending operations included.
pub(crate) fn clear<K, V>(shared: &Shared<K, V>, cell: &Cell<K, V>) {
    super::drop_outside_now(take_all(shared, cell));
}

/// Empties one shard, pending operations included; returns what it held, to be dropped.
pub(super) fn take_all<K, V>(shared: &Shared<K, V>, cell: &Cell<K, V>) -> Vec<(K, V)> {
    let mut garbage = Vec::new();
    let inserts = {
        let mut core = write_lock(shared, cell);
        let mut p = cell.lock_pending();
        let inserts = std::mem::take(&mut p.inserts);
        p.removes.clear();
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
