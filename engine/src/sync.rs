//! Every synchronisation primitive the engine uses, named in one place, so that a model
//! checker can stand in for all of them.
//!
//! # What
//!
//! The rest of the engine takes its locks, condition variables, atomics, channels, threads,
//! thread-locals and spin hints from here, never from `parking_lot`, `std` or
//! `crossbeam-channel` directly:
//!
//! | normal builds (zero cost: plain re-exports) | `--cfg memokit_shuttle` |
//! |---|---|
//! | `parking_lot::{Mutex, RwLock, Condvar}` and guards | `shuttle::sync` locks behind the same API |
//! | `std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize}` | `shuttle::sync::atomic` |
//! | `crossbeam_channel::{unbounded, Sender, Receiver}` | `shuttle::sync::mpsc` behind the same API |
//! | `std::thread`, `std::thread_local!` | `shuttle::thread`, `shuttle::thread_local!` |
//! | `std::hint::spin_loop` | `shuttle::hint::spin_loop` (a scheduling point) |
//! | `ahash::RandomState::new()` for the keys (which shard a key falls in) | fixed seeds, so that a failing schedule replays |
//!
//! # Why
//!
//! The engine's correctness rests on a handful of cross-thread protocols: the hand-over of a
//! store from a caller to a worker (the pending table, its filter, `pending_len` and
//! `applied`), single flight, retirement against running computations, and shutdown.
//! Proptest and the stress tests run them on real threads, where the interesting
//! interleavings are rare. Built with `RUSTFLAGS="--cfg memokit_shuttle"`, the whole engine,
//! its worker threads included, runs under [shuttle](https://docs.rs/shuttle), which
//! schedules every thread at every operation listed above and explores many interleavings
//! per test, reporting a deadlock (every thread blocked) as a failure: see
//! `engine/tests/shuttle/`.
//!
//! # Limits of the model
//!
//! Shuttle runs threads one at a time under sequential consistency: it explores
//! interleavings, not weak-memory reorderings, and its timed waits never time out (a wait
//! that only a timeout would end shows up as a deadlock; the waits with timeouts are the real
//! clock's and the waits for a worker, whose give-up paths for a worker stuck in a user's
//! `Drop`, `pending::StuckWatch`, are not modelled: `tests/engine_rev_s21.rs` runs them on
//! real threads). Its reader-writer lock is
//! unfair and lets readers in while a writer waits, where parking_lot holds new readers back:
//! a deadlock that needs a reader queued behind a waiting writer would not be found (the lock
//! order in `shared.rs` and the debug-build check in `pending.rs` rule one out). The
//! generation registry's chunks (`OnceLock`, initialised under the registry's mutex) stay
//! std. A `static` must stay a std type (the
//! epoch counter in `generation.rs`): shuttle's primitives belong to one execution, and tests
//! run executions on several threads at once. Normal builds pay nothing for any of this.

#[cfg(not(memokit_shuttle))]
pub(crate) use real::*;

#[cfg(memokit_shuttle)]
pub(crate) use model::*;

#[cfg(not(memokit_shuttle))]
mod real {
    pub(crate) use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
    pub(crate) use parking_lot::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };
    pub(crate) use std::hint::spin_loop;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
    pub(crate) use std::thread;
    pub(crate) use std::thread_local;

    /// Lets go of a write lock fairly: a thread waiting meanwhile gets it first.
    #[inline]
    pub(crate) fn unlock_fair<T>(guard: RwLockWriteGuard<'_, T>) {
        RwLockWriteGuard::unlock_fair(guard);
    }

    /// This thread's id, kept in a thread-local: `thread::current()` clones a handle of the
    /// thread (two atomic operations on every miss that leads a computation). `ThreadId` has
    /// no `Drop`, so this works in any thread-local's destructor too.
    #[inline]
    pub(crate) fn current_thread_id() -> thread::ThreadId {
        thread_local! {
            static ID: thread::ThreadId = thread::current().id();
        }
        ID.with(|id| *id)
    }

    /// A write lock within `d`, queued (new readers wait meanwhile), or `None`.
    pub(crate) fn try_write_for<T>(
        lock: &RwLock<T>,
        d: std::time::Duration,
    ) -> Option<RwLockWriteGuard<'_, T>> {
        lock.try_write_for(d)
    }

    /// The hasher of an engine's keys: randomly seeded per engine.
    pub(crate) fn key_hasher() -> ahash::RandomState {
        ahash::RandomState::new()
    }
}

#[cfg(memokit_shuttle)]
mod model {
    use std::fmt;
    use std::ops::{Deref, DerefMut};
    use std::sync::{PoisonError, TryLockError};
    use std::time::{Duration, Instant};

    pub(crate) use shuttle::hint::spin_loop;
    pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
    pub(crate) use shuttle::sync::mpsc::RecvTimeoutError;
    pub(crate) use shuttle::sync::{RwLockReadGuard, RwLockWriteGuard};
    pub(crate) use shuttle::thread;
    pub(crate) use shuttle::thread_local;

    /// This thread's id (the real build keeps it in a thread-local).
    pub(crate) fn current_thread_id() -> thread::ThreadId {
        thread::current().id()
    }

    /// parking_lot has no poisoning: a lock whose holder panicked is simply free again.
    fn unpoison<G>(r: Result<G, PoisonError<G>>) -> G {
        r.unwrap_or_else(PoisonError::into_inner)
    }

    fn try_unpoison<G>(r: Result<G, TryLockError<G>>) -> Option<G> {
        match r {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// A mutex with parking_lot's API over shuttle's.
    #[derive(Default)]
    pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Mutex(shuttle::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(unpoison(self.0.lock())))
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Mutex { .. }")
        }
    }

    /// A held [`Mutex`]; `None` only inside [`Condvar::wait`].
    pub(crate) struct MutexGuard<'a, T>(Option<shuttle::sync::MutexGuard<'a, T>>);

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_deref().expect("held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_deref_mut().expect("held")
        }
    }

    /// A condition variable with parking_lot's API over shuttle's (whose timed waits never
    /// time out).
    #[derive(Default)]
    pub(crate) struct Condvar(shuttle::sync::Condvar);

    impl Condvar {
        pub(crate) const fn new() -> Self {
            Condvar(shuttle::sync::Condvar::new())
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let held = guard.0.take().expect("held");
            guard.0 = Some(unpoison(self.0.wait(held)));
        }

        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: Duration) {
            self.wait(guard);
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    impl fmt::Debug for Condvar {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Condvar")
        }
    }

    /// A reader-writer lock with parking_lot's API over shuttle's.
    #[derive(Default)]
    pub(crate) struct RwLock<T>(shuttle::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) const fn new(value: T) -> Self {
            RwLock(shuttle::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            unpoison(self.0.read())
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            unpoison(self.0.write())
        }

        pub(crate) fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
            try_unpoison(self.0.try_read())
        }

        /// A plain read: the model's tests run no user code under a lock, the only place the
        /// engine reads recursively (shuttle takes a second read of one thread for a deadlock).
        pub(crate) fn read_recursive(&self) -> RwLockReadGuard<'_, T> {
            self.read()
        }

        /// As [`Self::read_recursive`].
        pub(crate) fn try_read_recursive(&self) -> Option<RwLockReadGuard<'_, T>> {
            self.try_read()
        }

        pub(crate) fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
            try_unpoison(self.0.try_write())
        }

        /// Whether the lock is held in any way (shuttle has no such query: a write attempt
        /// that succeeds is let go at once).
        pub(crate) fn is_locked(&self) -> bool {
            self.try_write().is_none()
        }
    }

    impl<T> fmt::Debug for RwLock<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("RwLock { .. }")
        }
    }

    pub(crate) fn unlock_fair<T>(guard: RwLockWriteGuard<'_, T>) {
        drop(guard);
    }

    /// Shuttle has no timed lock: one attempt.
    pub(crate) fn try_write_for<T>(
        lock: &RwLock<T>,
        _d: std::time::Duration,
    ) -> Option<RwLockWriteGuard<'_, T>> {
        lock.try_write()
    }

    /// Fixed seeds: which shard a key falls in must not change from one execution to the
    /// next, or a failing schedule would not replay.
    pub(crate) fn key_hasher() -> ahash::RandomState {
        ahash::RandomState::with_seeds(1, 2, 3, 4)
    }

    /// An unbounded channel with crossbeam-channel's API over shuttle's `mpsc`.
    pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
        let (tx, rx) = shuttle::sync::mpsc::channel();
        (tx, Receiver(rx))
    }

    pub(crate) use shuttle::sync::mpsc::Sender;

    /// The receiving half of [`unbounded`].
    pub(crate) struct Receiver<T>(shuttle::sync::mpsc::Receiver<T>);

    impl<T> Receiver<T> {
        pub(crate) fn recv(&self) -> Result<T, shuttle::sync::mpsc::RecvError> {
            self.0.recv()
        }

        /// Shuttle's timed receive never times out.
        pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
            self.0.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        }
    }

    impl<T> fmt::Debug for Receiver<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Receiver { .. }")
        }
    }
}
