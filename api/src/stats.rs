//! [`Stats`] and the striped per-function counters behind them.
//!
//! A hit must not touch a shared contended atomic, so each function counts into one of
//! [`STRIPES`] cache-line-padded stripes. A thread leases a stripe index for its lifetime;
//! while fewer than `STRIPES` threads hold leases, each stripe has one writer, which counts
//! with a relaxed load and store (about a nanosecond, no read-modify-write). Beyond that,
//! threads count on one extra shared stripe with `fetch_add`. No count is lost either way, and
//! `stats()` sums the stripes: every call that returned before `stats()` (in the
//! happens-before sense, e.g. a joined thread) is counted.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters of a memoizer or of one memoized function.
///
/// On a function's handle (`f_memo().stats()`), `hits`, `misses` and `single_flight_waits`
/// count that function's calls as they return (each cached call that returns is counted once,
/// in one of the three; calls bypassed by `unless` are not counted); `entries`, `evictions`,
/// `expirations` and `stale_reclaimed` are kept by the engine for the whole memoizer and read 0
/// there. On the memoizer ([`Memoizer::stats`](crate::Memoizer::stats)), `hits` and `misses`
/// are summed over its functions, and the other counters come from the engine; there
/// `single_flight_waits` is the larger of two counts: the times a caller *joined* another's
/// computation (counted as it joins, so it can be watched while they wait; a caller joins at
/// most one: after a computation gave up, its waiters compute), and the sum of the functions'
/// waits (which also counts a call that found the result another call had just stored, having
/// joined nothing). So every call that returned is counted, and one may be counted twice (a
/// caller that joined a computation that panicked runs the function itself: a miss too).
///
/// ```
/// use memokit::memoize;
///
/// #[memoize]
/// fn square(x: u64) -> u64 { x * x }
///
/// square(3);
/// square(3);
/// let s = square_memo().stats();
/// assert_eq!((s.hits, s.misses), (1, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that ran the function (including those whose result was not stored).
    pub misses: u64,
    /// Results held by the engine (memoizer only). A result deleted by its arguments stops
    /// counting when the engine applies the delete (at once after
    /// [`Memoizer::flush`](crate::Memoizer::flush)); the results of a delete of a whole
    /// function or receiver, and expired ones, count until the engine's workers reclaim them,
    /// within a few ticks ([`MemoizerBuilder::tick`](crate::MemoizerBuilder::tick), 1 s by
    /// default; with a [`ManualClock`](crate::ManualClock), at
    /// [`Memoizer::run_maintenance`](crate::Memoizer::run_maintenance)). They are never
    /// returned meanwhile. A result just stored may not count until the flush.
    pub entries: u64,
    /// Results evicted to stay within capacity (memoizer only).
    pub evictions: u64,
    /// Results removed because their timeout passed (memoizer only).
    pub expirations: u64,
    /// Results reclaimed after a delete retired their version (memoizer only). A result
    /// stored just before the delete and not yet applied by the engine's worker is dropped
    /// without being counted here.
    pub stale_reclaimed: u64,
    /// Calls that missed and did not run the function: they got the value of another
    /// caller's computation (on the memoizer: joins of one; see above). On a function's
    /// handle, this includes a call whose first lookup missed just before another call stored
    /// the result, which its second lookup then found.
    pub single_flight_waits: u64,
}

/// Number of counter stripes per function.
pub(crate) const STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(64))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
    waits: AtomicU64,
}

/// Striped call counters of one function.
#[derive(Default)]
pub(crate) struct Counters {
    /// One stripe per lease, plus a shared one (`fetch_add`) for threads without a lease.
    stripes: [Stripe; STRIPES + 1],
}

/// Stripe leases: a thread holding lease `i < STRIPES` is the only writer of stripe `i` of
/// every function, so it counts with a plain load and store (no read-modify-write). Leases
/// return to the pool when their thread exits. Threads beyond `STRIPES` count on the extra shared stripe with `fetch_add`.
static FREE: parking_lot::Mutex<Vec<usize>> = parking_lot::Mutex::new(Vec::new());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Returns the lease to the pool when its thread exits.
struct LeaseGuard(usize);

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Calls made later in this thread's teardown count on the shared stripe.
        let _ = LEASE.try_with(|l| l.set(STRIPES));
        FREE.lock().push(self.0);
    }
}

thread_local! {
    /// This thread's stripe: `usize::MAX` until first use, `STRIPES` for the shared stripe.
    /// No destructor, so reading it is a plain thread-local load.
    static LEASE: Cell<usize> = const { Cell::new(usize::MAX) };
    static GUARD: Cell<Option<LeaseGuard>> = const { Cell::new(None) };
}

#[cold]
#[inline(never)]
fn take_lease() -> usize {
    let popped = FREE.lock().pop();
    let i = match popped {
        Some(i) => i,
        None => NEXT.fetch_add(1, Relaxed).min(STRIPES),
    };
    if i < STRIPES && GUARD.try_with(|g| g.set(Some(LeaseGuard(i)))).is_err() {
        // The thread is being torn down: give the lease back at once.
        FREE.lock().push(i);
        return STRIPES;
    }
    let _ = LEASE.try_with(|l| l.set(i));
    i
}

/// Adds one to `c`: a plain load and store on a leased stripe (its only writer), an atomic add
/// on the shared one.
#[inline(always)]
fn bump(c: &AtomicU64, lease: usize) {
    if lease < STRIPES {
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
    } else {
        c.fetch_add(1, Relaxed);
    }
}

impl Counters {
    /// Counts one event in the calling thread's stripe. The common case (a leased stripe) is a
    /// thread-local load, one comparison and a plain increment; a thread's first count and
    /// threads without a lease take the cold path.
    #[inline(always)]
    fn count(&self, pick: impl Fn(&Stripe) -> &AtomicU64) {
        let lease = LEASE.try_with(Cell::get).unwrap_or(STRIPES);
        if lease < STRIPES {
            bump(pick(&self.stripes[lease]), lease);
        } else {
            self.count_cold(lease, pick);
        }
    }

    #[cold]
    #[inline(never)]
    fn count_cold(&self, lease: usize, pick: impl Fn(&Stripe) -> &AtomicU64) {
        let lease = if lease == usize::MAX { take_lease() } else { lease };
        bump(pick(&self.stripes[lease.min(STRIPES)]), lease);
    }

    #[inline(always)]
    pub(crate) fn hit(&self) {
        self.count(|s| &s.hits);
    }
    pub(crate) fn miss(&self) {
        self.count(|s| &s.misses);
    }
    pub(crate) fn wait(&self) {
        self.count(|s| &s.waits);
    }
    /// Adds this function's counts into `s`.
    pub(crate) fn add_to(&self, s: &mut Stats) {
        for st in &self.stripes {
            s.hits += st.hits.load(Relaxed);
            s.misses += st.misses.load(Relaxed);
            s.single_flight_waits += st.waits.load(Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// Model: the sum of the stripes equals the number of calls. Three times as many threads as
    /// stripes run at once, so most count on the shared stripe (and a racing plain store there
    /// would lose counts); leased threads count on their own.
    #[test]
    fn every_count_is_kept_with_more_threads_than_stripes() {
        const THREADS: usize = 3 * STRIPES;
        const HITS: u64 = 300_000;
        let c = Counters::default();
        let start = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..HITS {
                        c.hit();
                    }
                    c.miss();
                    c.wait();
                });
            }
        });
        let mut st = Stats::default();
        c.add_to(&mut st);
        assert_eq!(
            (st.hits, st.misses, st.single_flight_waits),
            (THREADS as u64 * HITS, THREADS as u64, THREADS as u64)
        );
    }
}
