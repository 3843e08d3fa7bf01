//! Model-checked tests: the whole engine, its worker threads included, under
//! [shuttle](https://docs.rs/shuttle), which runs the threads one at a time and switches
//! between them at every lock, atomic, channel and spin operation of the engine
//! (`src/sync.rs`), exploring a different interleaving in each iteration. A thread that waits
//! forever fails the test as a deadlock.
//!
//! The tests are in `handoff`, `flight`, `counts` and `capacity`; this file holds their shared
//! helpers.
//!
//! Run with `RUSTFLAGS="--cfg memokit_shuttle" cargo test -p memokit-engine --test shuttle`
//! (`.ci/run` does, in its own target directory); ordinary builds compile nothing here.
//! `MEMOKIT_SHUTTLE_ITERATIONS` sets the iterations per scheduler (default 1000).
//!
//! What each test checks, against which model:
//! - the caller-to-worker hand-over: a value is visible to its writer at once and to every
//!   lookup that starts after its store returned (read-your-writes), on any thread, while the
//!   worker applies batches; overwrites of one key are never seen out of order; a remove that
//!   starts after a store returned is never undone;
//! - single flight: one computation per key, however the callers interleave; a panicking
//!   computation wakes its waiters, which then compute for themselves; a caller under a
//!   retired generation never displaces a live flight; two computations on two threads that
//!   ask for each other's keys never hang (the wait that closes the cycle panics, once) and a
//!   finished flight is never taken for a cycle;
//! - retirement: once `retire` returns, no lookup returns a value of that generation, even
//!   one whose computation was running during the retirement;
//! - eviction with several workers (the settle requests between them) and shutdown while
//!   callers store: never a wrong value, never over capacity after `flush`, never a hang;
//! - a generation's entry count: a store counts from the moment it returns, applied or not,
//!   and once only; racing removes, `clear`, retirement and shutdown leave it exact.
#![cfg(memokit_shuttle)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use memokit_engine::{Engine, InsertOptions, ManualClock};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::sync::Arc;
use shuttle::thread;

fn iterations() -> usize {
    std::env::var("MEMOKIT_SHUTTLE_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

/// Runs `f` under shuttle's random scheduler and under PCT (which favours the few
/// preemptions that most bugs need; depth 3), both seeded so that a failure replays.
fn check(f: impl Fn() + Send + Sync + 'static) {
    check_n(iterations(), f);
}

/// [`check`] with `n` iterations per scheduler (a race whose window is a few steps wide).
fn check_n(n: usize, f: impl Fn() + Send + Sync + 'static) {
    let f = std::sync::Arc::new(f);
    let mut config = shuttle::Config::new();
    // The engine's debug-build frames (hashbrown, the worker loop) outgrow shuttle's default
    // coroutine stacks.
    config.stack_size = 1 << 20;
    let g = f.clone();
    shuttle::Runner::new(RandomScheduler::new_from_seed(0x5eed, n), config.clone())
        .run(move || g());
    shuttle::Runner::new(PctScheduler::new_from_seed(0x5eed, 3, n), config).run(move || f());
}

fn engine(capacity: u64, shards: usize, workers: usize) -> Engine<u64, u64> {
    engine_and_clock(capacity, shards, workers).0
}

/// An engine on a manual clock (no timers: expiry and reclamation only when a test asks).
fn engine_and_clock(
    capacity: u64,
    shards: usize,
    workers: usize,
) -> (Engine<u64, u64>, ManualClock) {
    let clock = ManualClock::new();
    let e = Engine::builder()
        .max_capacity(capacity)
        .shards(shards)
        .workers(workers)
        .clock(clock.clone())
        .build()
        .expect("build");
    (e, clock)
}

/// Both outcomes of an [`observe`], counted over all the executions of one test.
#[derive(Default)]
struct Seen([std::sync::atomic::AtomicUsize; 2]);

impl Seen {
    /// Counts one execution's outcome.
    fn record(&self, yes: bool) {
        self.0[usize::from(yes)].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Fails unless both outcomes occurred, so that no conditional assertion goes untested.
    fn assert_both(&self) {
        let [no, yes] = [0, 1].map(|i| self.0[i].load(std::sync::atomic::Ordering::SeqCst));
        assert!(no > 0 && yes > 0, "outcomes seen: {yes} finished, {no} not: widen the test");
    }
}

/// Whether the other thread has set `flag` (finished its part), read after giving the
/// scheduler a few chances to run it: without them the random scheduler almost never lets it
/// finish first, and the assertions that depend on it would go unchecked.
fn observe(flag: &AtomicUsize, seen: &Seen) -> bool {
    for _ in 0..4 {
        thread::yield_now();
    }
    let done = flag.load(Ordering::SeqCst) == 1;
    seen.record(done);
    done
}

/// Runs `f` on a new thread with its own handle of `e`.
fn spawn_with<K, T>(
    e: &Engine<K, u64>,
    f: impl FnOnce(Engine<K, u64>) -> T + Send + 'static,
) -> thread::JoinHandle<T>
where
    K: Send + Sync + 'static,
    T: Send + 'static,
{
    let e = e.clone();
    thread::spawn(move || f(e))
}

/// Waits (yielding to the scheduler) until `flag` is set.
fn wait_for(flag: &AtomicUsize) {
    while flag.load(Ordering::SeqCst) == 0 {
        thread::yield_now();
    }
}

/// Spawns a caller computing key 7 (value 70) through single flight under `opts`; the returned
/// flag is set once its computation runs, which then yields twice before returning.
fn spawn_computation(
    e: &Engine<u64, u64>,
    opts: InsertOptions,
) -> (thread::JoinHandle<u64>, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let flag = started.clone();
    let handle = spawn_with(e, move |e| {
        e.get_or_insert_with_options(7, opts, || {
            flag.store(1, Ordering::SeqCst);
            thread::yield_now();
            thread::yield_now();
            70
        })
    });
    (handle, started)
}

mod capacity;
mod counts;
mod flight;
mod handoff;
