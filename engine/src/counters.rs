//! Striped event counters: counting on a hit without a read-modify-write.
//!
//! What: [`Striped<N>`] keeps `N` counters in [`STRIPES`] leased cache-line-sized stripes and
//! [`SHARED`] shared ones. A thread leases a stripe index for its lifetime (the first time it
//! counts); while fewer than `STRIPES` threads hold leases, stripe `i` of *every* `Striped` has
//! one writer, the thread holding lease `i`, which counts with a relaxed load and a relaxed
//! store. Threads beyond that are spread over the shared stripes (round robin, for life) and
//! count there with `fetch_add`, so a server with many more threads than leases does not put
//! them all on one contended line. Leases go back to the pool when their thread exits.
//!
//! Why: an engine's hit used to add one to a per-shard `AtomicU64` with `fetch_add`. Uncontended
//! as that is, it is a locked instruction: on the Intel machine of session 23 it was a sixth of
//! a hit (40 → 34 ns with counting off, `BENCHMARKS.md`). A leased stripe costs a thread-local
//! load, a comparison and a plain increment. The memoizer counts each function's calls with the
//! same type.
//!
//! Invariants: no count is lost (a leased stripe has exactly one writer; the shared stripes are
//! only written with `fetch_add`), and [`Striped::sum`] sees every count made before it in the
//! happens-before sense (e.g. by a joined thread). A sum taken while threads count may miss
//! counts made meanwhile, as any snapshot of concurrent counters does.
//!
//! Cost: `(STRIPES + SHARED) * 64` bytes per `Striped` (2 KiB), one stripe's line touched per
//! count, a sum reads all of them. Under the model checker (`memokit_shuttle`) every thread
//! counts on the first shared stripe (no leases, no global state).

use std::sync::atomic::Ordering::Relaxed;

use crate::sync::AtomicU64;

/// Leased stripes per [`Striped`]: indices `0..STRIPES`.
pub(crate) const STRIPES: usize = 16;
/// Shared stripes per [`Striped`], for threads beyond the leases: indices
/// `STRIPES..STRIPES + SHARED`.
pub(crate) const SHARED: usize = 16;

#[repr(align(64))]
struct Stripe<const N: usize>([AtomicU64; N]);

/// `N` event counters, striped by thread (see the module docs). Not part of the API: shared
/// by the engine and the memoizer, which counts its functions' calls with it.
///
/// ```
/// # use memokit_engine::__Striped as Striped;
/// let c: Striped<2> = Striped::new();
/// c.add(0);
/// c.add(0);
/// c.add(1);
/// assert_eq!(c.sum(), [2, 1]);
/// ```
pub struct Striped<const N: usize> {
    /// Inline, not boxed: a count follows no pointer but its owner's.
    stripes: [Stripe<N>; STRIPES + SHARED],
}

impl<const N: usize> Default for Striped<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for Striped<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Striped").field(&self.sum()).finish()
    }
}

impl<const N: usize> Striped<N> {
    /// `N` counters at zero.
    pub fn new() -> Self {
        let stripes = std::array::from_fn(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0))));
        Striped { stripes }
    }

    /// Adds one to counter `i` in the calling thread's stripe.
    ///
    /// # Panics
    /// If `i >= N`.
    #[inline(always)]
    pub fn add(&self, i: usize) {
        let lease = lease::current();
        if lease < STRIPES {
            let c = &self.stripes[lease].0[i];
            c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
        } else {
            self.add_cold(lease, i);
        }
    }

    #[cold]
    #[inline(never)]
    fn add_cold(&self, lease: usize, i: usize) {
        let lease = if lease == lease::NONE { lease::take() } else { lease };
        if lease < STRIPES {
            let c = &self.stripes[lease].0[i];
            c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
        } else {
            self.stripes[lease.min(STRIPES + SHARED - 1)].0[i].fetch_add(1, Relaxed);
        }
    }

    /// The counters, summed over the stripes.
    pub fn sum(&self) -> [u64; N] {
        let mut out = [0u64; N];
        for s in &self.stripes {
            for (o, c) in out.iter_mut().zip(&s.0) {
                *o = o.wrapping_add(c.load(Relaxed));
            }
        }
        out
    }
}

/// The stripe a thread counts on.
#[cfg(not(memokit_shuttle))]
mod lease {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use super::{SHARED, STRIPES};

    /// A thread that has not counted yet.
    pub(super) const NONE: usize = usize::MAX;

    /// Leases given back by threads that exited.
    static FREE: parking_lot::Mutex<Vec<usize>> = parking_lot::Mutex::new(Vec::new());
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    /// The shared stripe the next thread without a lease gets (round robin).
    static NEXT_SHARED: AtomicUsize = AtomicUsize::new(0);

    /// A shared stripe for a thread without a lease.
    fn shared() -> usize {
        STRIPES + NEXT_SHARED.fetch_add(1, Relaxed) % SHARED
    }

    /// Returns the lease to the pool when its thread exits.
    struct Guard(usize);

    impl Drop for Guard {
        fn drop(&mut self) {
            // Counts made later in this thread's teardown go to a shared stripe.
            let _ = LEASE.try_with(|l| l.set(STRIPES + self.0 % SHARED));
            FREE.lock().push(self.0);
        }
    }

    std::thread_local! {
        /// This thread's stripe: [`NONE`] until it first counts, a leased one below `STRIPES`,
        /// a shared one from there. No destructor, so reading it is a plain thread-local load.
        static LEASE: Cell<usize> = const { Cell::new(NONE) };
        static GUARD: Cell<Option<Guard>> = const { Cell::new(None) };
    }

    #[inline(always)]
    pub(super) fn current() -> usize {
        LEASE.try_with(Cell::get).unwrap_or(STRIPES)
    }

    /// Leases a stripe to the calling thread (a shared one when all are taken).
    #[cold]
    pub(super) fn take() -> usize {
        let popped = FREE.lock().pop();
        let i = match popped {
            Some(i) => i,
            None => match NEXT.fetch_add(1, Relaxed) {
                i if i < STRIPES => i,
                _ => shared(),
            },
        };
        if i < STRIPES && GUARD.try_with(|g| g.set(Some(Guard(i)))).is_err() {
            // The thread is being torn down: give the lease back at once.
            FREE.lock().push(i);
            let s = shared();
            let _ = LEASE.try_with(|l| l.set(s));
            return s;
        }
        let _ = LEASE.try_with(|l| l.set(i));
        i
    }
}

/// Under the model checker every thread counts on the first shared stripe.
#[cfg(memokit_shuttle)]
mod lease {
    pub(super) const NONE: usize = usize::MAX;

    pub(super) fn current() -> usize {
        super::STRIPES
    }

    pub(super) fn take() -> usize {
        super::STRIPES
    }
}

#[cfg(all(test, not(memokit_shuttle)))]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// Model: each counter's sum equals the number of adds made to it, the threads that found
    /// no lease are spread over every shared stripe, and a thread that exited has given its
    /// lease back.
    ///
    /// First, three times as many threads as stripes count at once, so most count on the shared
    /// stripe (where a racing plain store would lose counts) while the leased ones count on
    /// their own. Then threads come and go one at a time, many more than there are stripes:
    /// after them, a new thread still gets a leased stripe. (One test, so that no other test of
    /// this file holds leases meanwhile.)
    #[test]
    fn every_count_is_kept_and_leases_return() {
        const THREADS: usize = 3 * STRIPES;
        const ADDS: u64 = 100_000;
        let c: Striped<3> = Striped::new();
        let start = Barrier::new(THREADS);
        let stripes: Vec<usize> = std::thread::scope(|s| {
            let counting: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        for _ in 0..ADDS {
                            c.add(0);
                        }
                        c.add(2);
                        let stripe = lease::current();
                        // Keep the lease until every thread has counted.
                        start.wait();
                        stripe
                    })
                })
                .collect();
            counting.into_iter().map(|t| t.join().expect("a counting thread")).collect()
        });
        assert_eq!(c.sum(), [THREADS as u64 * ADDS, 0, THREADS as u64]);
        // At least 32 threads found no lease: they are spread over the shared stripes.
        let mut shared: Vec<usize> = stripes.into_iter().filter(|&i| i >= STRIPES).collect();
        assert!(shared.len() >= THREADS - STRIPES, "{} threads without a lease", shared.len());
        assert!(shared.iter().all(|&i| i < STRIPES + SHARED));
        shared.sort_unstable();
        shared.dedup();
        assert_eq!(
            shared.len(),
            SHARED,
            "threads without a lease on {} shared stripes",
            shared.len()
        );

        // Joined, not scoped: `join` returns after the thread's thread-local destructors (the
        // lease's return) have run; a scope may end before.
        let c = std::sync::Arc::new(c);
        for _ in 0..4 * STRIPES {
            let c = c.clone();
            std::thread::spawn(move || c.add(1)).join().expect("a counting thread");
        }
        let leased = {
            let c = c.clone();
            std::thread::spawn(move || {
                c.add(1);
                lease::current() < STRIPES
            })
            .join()
            .expect("the counting thread")
        };
        assert!(leased, "a thread started after the others exited got no lease");
        assert_eq!(c.sum()[1], 4 * STRIPES as u64 + 1);
    }
}
