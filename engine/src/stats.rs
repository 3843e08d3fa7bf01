//! Counters without a shared atomic on the hit path.
//!
//! [`StripedCounters`] gives every thread its own block of counters (cache-line padded, found
//! through a thread-local cache keyed by the counter set's id). A thread increments its own block
//! with a relaxed load and store: no read-modify-write, no contention. [`StripedCounters::sum`]
//! adds up every block under a mutex; blocks of threads that have exited are folded into a base
//! total so the registry does not grow with thread churn. Every increment that happened before
//! `sum` (in the happens-before sense) is counted.

use parking_lot::Mutex;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many counters one [`StripedCounters`] holds.
pub const STRIPED_COUNTERS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Block {
    c: [AtomicU64; STRIPED_COUNTERS],
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static LOCAL: RefCell<Vec<(u64, Arc<Block>)>> = const { RefCell::new(Vec::new()) };
}

/// A set of [`STRIPED_COUNTERS`] `u64` counters, striped per thread.
///
/// Used by the engine for hits and misses and by the memoizer for per-function statistics.
///
/// # Example
/// ```
/// use memokit_engine::StripedCounters;
/// let c = StripedCounters::new();
/// c.add(0, 2);
/// std::thread::scope(|s| { s.spawn(|| c.add(0, 1)); });
/// assert_eq!(c.sum()[0], 3);
/// ```
#[derive(Debug)]
pub struct StripedCounters {
    id: u64,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    blocks: Vec<Arc<Block>>,
    base: [u64; STRIPED_COUNTERS],
}

impl Default for StripedCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl StripedCounters {
    /// A new set of counters, all zero.
    pub fn new() -> Self {
        StripedCounters { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), registry: Mutex::default() }
    }

    /// Adds `n` to counter `i` (an index at or above [`STRIPED_COUNTERS`] is ignored).
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        if i >= STRIPED_COUNTERS {
            return;
        }
        let done = LOCAL
            .try_with(|l| {
                let l = l.try_borrow();
                match l.as_deref().ok().and_then(|l| l.first()) {
                    Some((id, b)) if *id == self.id => {
                        let c = &b.c[i];
                        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
                        true
                    }
                    _ => false,
                }
            })
            .unwrap_or(false);
        if !done {
            self.add_slow(i, n);
        }
    }

    #[cold]
    fn add_slow(&self, i: usize, n: u64) {
        let ok = LOCAL.try_with(|l| {
            let Ok(mut l) = l.try_borrow_mut() else { return false };
            // Forget blocks of counter sets that no longer exist.
            l.retain(|(_, b)| Arc::strong_count(b) > 1);
            let pos = match l.iter().position(|(id, _)| *id == self.id) {
                Some(p) => p,
                None => {
                    let b = Arc::new(Block::default());
                    self.registry.lock().blocks.push(b.clone());
                    l.push((self.id, b));
                    l.len() - 1
                }
            };
            l.swap(0, pos);
            let c = &l[0].1.c[i];
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
            true
        });
        if ok != Ok(true) {
            // Thread-local storage is being torn down: count in the shared base.
            self.registry.lock().base[i] += n;
        }
    }

    /// The totals of every counter.
    pub fn sum(&self) -> [u64; STRIPED_COUNTERS] {
        let mut r = self.registry.lock();
        let Registry { blocks, base } = &mut *r;
        let mut out = *base;
        blocks.retain(|b| {
            let gone = Arc::strong_count(b) == 1;
            for (i, c) in b.c.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                out[i] = out[i].wrapping_add(v);
                if gone {
                    base[i] = base[i].wrapping_add(v);
                }
            }
            !gone
        });
        out
    }
}
