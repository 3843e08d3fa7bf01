//! [`Stats`] and the striped per-function counters behind them.
//!
//! A hit must not touch a shared contended atomic, so each function counts its calls with the
//! engine's striped counters: one cache-line-padded stripe per thread (up to 16 threads, then
//! 16 shared stripes), written by its thread alone with a relaxed load and store (about a
//! nanosecond, no read-modify-write); the shared stripes are written with `fetch_add`. No count
//! is lost either way, and `stats()` sums the stripes: every call that returned before
//! `stats()` (in the happens-before sense, e.g. a joined thread) is counted.

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

/// Striped call counters of one function: hits, misses and waits, counted in the calling
/// thread's stripe (a thread-local load, one comparison and a plain increment on a hit; see
/// the engine's `counters` module, which the engine's own lookups count with too).
#[derive(Default)]
pub(crate) struct Counters(memokit_engine::__Striped<3>);

const HITS: usize = 0;
const MISSES: usize = 1;
const WAITS: usize = 2;

impl Counters {
    #[inline(always)]
    pub(crate) fn hit(&self) {
        self.0.add(HITS);
    }
    pub(crate) fn miss(&self) {
        self.0.add(MISSES);
    }
    pub(crate) fn wait(&self) {
        self.0.add(WAITS);
    }
    /// Adds this function's counts into `s`.
    pub(crate) fn add_to(&self, s: &mut Stats) {
        let [hits, misses, waits] = self.0.sum();
        s.hits += hits;
        s.misses += misses;
        s.single_flight_waits += waits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// Model: the sum of the stripes equals the number of calls, each in its own counter. Three
    /// times as many threads as stripes (16) run at once, so most count on the shared stripes (and
    /// a racing plain store there would lose counts); leased threads count on their own.
    #[test]
    fn every_count_is_kept_with_more_threads_than_stripes() {
        const THREADS: usize = 48;
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
