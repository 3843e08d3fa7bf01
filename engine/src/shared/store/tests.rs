//! Unit tests of the store path: the wake-up thresholds (by count and, with a weigher, by
//! weight) and the pending limit that holds callers back while the worker is behind.

use super::{signal_threshold, signal_weight, SIGNAL_BATCH_MAX, SIGNAL_SHARE};
use crate::pending::{pending_limit, PENDING_LIMIT, PENDING_MIN, PENDING_SHARE};
use crate::{Engine, ManualClock};
use std::sync::atomic::Ordering;

const SHARES: [u64; 12] = [0, 1, 127, 128, 255, 256, 513, 1_000, 1_024, 1_562, 100_000, u64::MAX];

#[test]
fn the_threshold_keeps_gathered_stores_under_a_percent_of_the_share() {
    for share in SHARES {
        let limit = pending_limit(share);
        let t = signal_threshold(share, limit);
        assert!((1..=SIGNAL_BATCH_MAX.min(limit / 2)).contains(&t), "share {share}: {t}");
        // The stores that may wait: one fewer than the threshold.
        assert!((t as u64 - 1) * SIGNAL_SHARE <= share, "share {share}: {t}");
        // With a weigher, the weight that may wait (below the bound) is under 1% too.
        let w = signal_weight(share, true);
        assert!(w >= 1 && (w - 1) * SIGNAL_SHARE <= share, "weighted, share {share}: {w}");
        assert_eq!(signal_weight(share, false), u64::MAX);
    }
    let limit = pending_limit(1_562);
    assert_eq!(signal_threshold(1_562, limit), SIGNAL_BATCH_MAX.min(limit / 2));
    // Never above half the limit, however small (the backpressure wait relies on it).
    for limit in 1..=16 {
        assert!(signal_threshold(100_000, limit) <= (limit / 2).max(1), "{limit}");
    }
}

/// The pending limit: an eighth of the share, within its bounds, so the stores a shard
/// holds beyond its share while its worker is behind are at most an eighth of it (or
/// `PENDING_MIN` for a small one).
#[test]
fn the_pending_limit_follows_the_share() {
    for share in SHARES {
        let limit = pending_limit(share);
        assert!((PENDING_MIN..=PENDING_LIMIT).contains(&limit), "share {share}: {limit}");
        assert!(limit == PENDING_MIN || limit as u64 <= share / PENDING_SHARE, "{share}");
        assert!(limit == PENDING_LIMIT || limit as u64 >= share / PENDING_SHARE, "{share}");
    }
    if !cfg!(memokit_shuttle) {
        assert_eq!((pending_limit(1_000), pending_limit(8_000)), (125, 1_000));
        assert_eq!((pending_limit(10), pending_limit(1 << 20)), (64, 4_096));
    }
}

/// Below the threshold nothing is sent: the stores wait in the pending table (the
/// integration tests in `tests/engine_signal.rs` check what does wake the worker).
#[test]
fn new_keys_below_the_threshold_wait_without_a_wake_up() {
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(100_000)
        .shards(1)
        .clock(ManualClock::new())
        .build()
        .expect("engine");
    let (cell, at) = (&e.shared().cells[0], e.shared().signal_at);
    assert_eq!(at, SIGNAL_BATCH_MAX.min(pending_limit(100_000) / 2));
    for k in 1..at as u64 {
        e.insert(k, k);
        assert!(!cell.signaled.load(Ordering::Acquire), "store {k} woke the worker");
        assert_eq!(cell.pending_len.load(Ordering::Acquire), k as usize);
    }
    e.flush();
    assert_eq!(e.len(), at as u64 - 1);
}

/// With a weigher, light new keys are gathered as without one, until they weigh a
/// [`SIGNAL_SHARE`]th of the share: the store that reaches it wakes the worker.
#[test]
fn light_weighted_keys_wait_until_they_weigh_a_percent_of_the_share() {
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(100_000)
        .shards(1)
        .weigher(|_, v| u32::try_from(*v).unwrap_or(u32::MAX))
        .clock(ManualClock::new())
        .build()
        .expect("engine");
    let (cell, at) = (&e.shared().cells[0], e.shared().signal_at);
    assert_eq!(e.shared().signal_weight, 100_000 / SIGNAL_SHARE);
    for k in 1..at as u64 {
        e.insert(k, 1);
        assert!(!cell.signaled.load(Ordering::Acquire), "store {k} woke the worker");
    }
    e.flush();
    assert_eq!(e.len(), at as u64 - 1);
    e.insert(100, 700);
    assert!(!cell.signaled.load(Ordering::Acquire), "700 of 781 woke the worker");
    e.insert(101, 81);
    // Woken, the worker applies both (and clears the signal meanwhile): no flush.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cell.pending_len.load(Ordering::Acquire) != 0 && std::time::Instant::now() < give_up {
        std::thread::yield_now();
    }
    assert_eq!(e.len(), at as u64 + 1, "781 of 781 did not wake the worker");
}

/// A value whose `Drop` (run on the worker) waits until `open` is set: holds the worker.
#[derive(Clone)]
struct Stall(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Drop for Stall {
    fn drop(&mut self) {
        let (open, cv) = &*self.0;
        let mut g = open.lock().unwrap_or_else(|p| p.into_inner());
        while !*g {
            g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// While the worker is behind, a small engine's callers wait once its pending table
/// holds the shard's limit (an eighth of its 1,000-entry share, 125), not 4,096: the
/// stores of new keys held beyond the capacity are bounded in proportion to it.
#[test]
fn a_small_shard_holds_back_its_callers_at_its_own_limit() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    if cfg!(memokit_shuttle) {
        return;
    }
    let e: Engine<u64, Option<Stall>> = Engine::builder()
        .max_capacity(1_000)
        .shards(1)
        .clock(ManualClock::new())
        .build()
        .expect("engine");
    let limit = 125;
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    e.insert(u64::MAX, Some(Stall(gate.clone())));
    e.flush();
    // The worker drops the removed value, and waits in its `Drop`.
    e.remove(&u64::MAX);
    let (done, stored) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (e, done, stored) = (e.clone(), done.clone(), stored.clone());
        std::thread::spawn(move || {
            for k in 0..1_000 {
                e.insert(k, None);
                stored.fetch_add(1, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    // The writer either finishes (the table took all 1,000) or stops at the limit; half
    // the patience it has with a worker in a `Drop` (`UserDrops`) to show it stays there.
    let cell = &e.shared().cells[0];
    let start = std::time::Instant::now();
    while !done.load(Ordering::SeqCst) && start.elapsed() < crate::pending::STUCK_PATIENCE / 2 {
        std::thread::yield_now();
    }
    let (pending, finished) =
        (cell.pending_len.load(Ordering::SeqCst), done.load(Ordering::SeqCst));
    *gate.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    gate.1.notify_all();
    writer.join().expect("writer");
    assert!(!finished, "the writer stored all 1,000 keys while the worker was held");
    assert!(pending <= limit, "{pending} operations pending, the limit is {limit}");
    assert_eq!(stored.load(Ordering::SeqCst), 1_000);
    assert_eq!(e.shared().pending_limit, limit);
    e.flush();
    assert_eq!(e.len(), 1_000);
}
