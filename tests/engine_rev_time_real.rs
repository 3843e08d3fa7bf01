//! Review of time with the real clock: background expiry keeps its pace.
mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use memokit_engine::Engine;
use parking_lot::Mutex;

/// The engine a [`Again`] stores into.
static ENGINE: Mutex<Option<Engine<u64, Arc<Again>>>> = Mutex::new(None);
/// While set, a dropped [`Again`] stores its successor.
static AGAIN: AtomicBool = AtomicBool::new(false);

/// A value whose drop on a worker stores the key's next value (when `.1`, the chaining
/// value of key 1): each batch the worker applies displaces one, whose drop sends the worker
/// more work before it is back at its mailbox. A stand-in, deterministic, for writers busy
/// enough that the mailbox never runs dry. The expiring value of key 2 does not chain: dropped
/// in the same batch as a link of the chain, its store displaced that link's pending store,
/// whose drop on the same thread stored again, displacing the other, without end (a stack
/// overflow on the worker, 1 run in 60).
struct Again(u64, bool);

impl Drop for Again {
    fn drop(&mut self) {
        let on_worker =
            std::thread::current().name().is_some_and(|n| n.starts_with("memokit-worker"));
        if !self.1 || !on_worker || !AGAIN.load(SeqCst) {
            return;
        }
        let engine = ENGINE.lock().clone();
        if let Some(e) = engine {
            e.insert_with_ttl(1, Arc::new(Again(self.0 + 1, true)), Duration::from_secs(3600));
        }
    }
}

/// Background expiry runs every tick even while the worker's mailbox never empties: an
/// entry that expired is reclaimed (counted, no longer resident) without any call to
/// `run_maintenance` or capacity pressure. The worker ran its tick's maintenance only when
/// waiting for a message timed out, so a steady stream of work postponed expiry for as long
/// as it lasted.
#[test]
fn expiry_keeps_its_pace_while_the_mailbox_is_busy() {
    let e: Engine<u64, Arc<Again>> =
        Engine::builder().shards(1).workers(1).tick(Duration::from_millis(1)).build().unwrap();
    *ENGINE.lock() = Some(e.clone());
    e.insert_with_ttl(2, Arc::new(Again(0, false)), Duration::from_millis(1));
    e.insert_with_ttl(1, Arc::new(Again(0, true)), Duration::from_secs(3600));
    e.flush();
    AGAIN.store(true, SeqCst);
    // Starts the chain: the worker drops the value this replaces.
    e.insert_with_ttl(1, Arc::new(Again(0, true)), Duration::from_secs(3600));
    common::wait_until("the expired entry reclaimed in the background", || {
        e.stats().expirations == 1
    });
    AGAIN.store(false, SeqCst);
    ENGINE.lock().take();
    e.flush();
    assert_eq!(e.len(), 1);
}
