//! Time: one monotonic clock, read coarsely on the hit path.
//!
//! Deadlines are absolute nanoseconds since the engine's origin. The hit path never reads a
//! clock: it loads [`Coarse::now`], an atomic that a small refresher thread keeps within
//! `clock_resolution` (default 1 ms) of the real monotonic clock (quanta). So an entry is never
//! returned more than `clock_resolution` after its deadline (plus whatever delay the OS scheduler
//! puts on the refresher when the machine is overloaded).
//!
//! Idle cost: while readers are active the refresher wakes once per resolution (1000 wake-ups a
//! second at the default). A reader marks `touched`; when a whole second passes without a read,
//! the refresher parks until the next reader wakes it, so an idle engine costs nothing here. The
//! first reader after a pause reads the real clock itself and publishes it, so it never sees
//! stale time. Readers are stores (for their deadline), lookups that take the slow path, and
//! hits on entries with a deadline: a hit on an entry without one reads no time, so an engine
//! whose traffic is only such hits lets its refresher park as well.
//!
//! With a [`ManualClock`] there is no refresher: the manual clock's cell *is* the coarse clock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::thread::{self, Thread};
use crate::sync::{AtomicBool, AtomicU64, Mutex};

/// A clock that moves only when told to, for deterministic tests of deadlines.
///
/// Give it to [`EngineBuilder::clock`](crate::EngineBuilder::clock); keep a clone to advance
/// it. Time starts at zero. With a manual clock the engine runs no background timers: expiry and
/// reclamation happen when [`Engine::run_maintenance`](crate::Engine::run_maintenance) is called.
///
/// # Example
/// ```
/// use memokit_engine::{Engine, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// let engine: Engine<u32, u32> = Engine::builder().clock(clock.clone()).build().unwrap();
/// engine.insert_with_ttl(1, 10, Duration::from_secs(5));
/// clock.advance(Duration::from_secs(4));
/// assert_eq!(engine.get(&1), Some(10));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(engine.get(&1), None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    cell: Arc<Coarse>,
}

impl ManualClock {
    /// A manual clock at time zero.
    ///
    /// ```
    /// use memokit_engine::ManualClock;
    ///
    /// assert_eq!(ManualClock::new().now(), std::time::Duration::ZERO);
    /// ```
    pub fn new() -> Self {
        ManualClock::default()
    }

    /// Moves the clock forward by `d`, saturating about 584 years in (where it stops, so that
    /// "no deadline" stays later than any time it can show).
    ///
    /// ```
    /// use memokit_engine::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// clock.advance(Duration::from_secs(3));
    /// clock.advance(Duration::MAX); // saturates
    /// assert!(clock.now() > Duration::from_secs(3));
    /// ```
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let step = |t: u64| Some(t.saturating_add(add).min(u64::MAX - 1));
        let _ = self.cell.now.fetch_update(Ordering::SeqCst, Ordering::SeqCst, step);
    }

    /// The time elapsed since the clock was made, as advanced so far.
    ///
    /// ```
    /// use memokit_engine::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let other = clock.clone(); // clones share the time
    /// clock.advance(Duration::from_millis(1500));
    /// assert_eq!(other.now(), Duration::from_millis(1500));
    /// ```
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.cell.now.load(Ordering::SeqCst))
    }
}

/// How long the refresher keeps refreshing without a reader before it parks.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// The coarse clock cell the hit path reads.
#[derive(Debug)]
pub(crate) struct Coarse {
    now: AtomicU64,
    /// Set by readers; cleared by the refresher once a second to detect idleness.
    touched: AtomicBool,
    /// How many times the refresher has parked for want of readers (tests watch it).
    parks: AtomicU64,
}

impl Default for Coarse {
    fn default() -> Self {
        Coarse { now: AtomicU64::new(0), touched: AtomicBool::new(true), parks: AtomicU64::new(0) }
    }
}

/// The engine's clock: coarse reads for lookups, precise reads for workers.
#[derive(Debug)]
pub(crate) struct Clock {
    cell: Arc<Coarse>,
    source: Source,
}

#[derive(Debug)]
// Shuttle's mutex (`--cfg memokit_shuttle` only) is large; this enum is made once per engine.
#[cfg_attr(memokit_shuttle, allow(clippy::large_enum_variant))]
enum Source {
    Manual,
    Real { clock: quanta::Clock, origin: u64, refresher: Mutex<Option<Thread>> },
}

impl Clock {
    pub(crate) fn manual(m: &ManualClock) -> Self {
        Clock { cell: m.cell.clone(), source: Source::Manual }
    }

    pub(crate) fn real() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        let c = Clock {
            cell: Arc::new(Coarse::default()),
            source: Source::Real { clock, origin, refresher: Mutex::new(None) },
        };
        c.cell.now.store(c.precise(), Ordering::Relaxed);
        c
    }

    pub(crate) fn is_manual(&self) -> bool {
        matches!(self.source, Source::Manual)
    }

    /// Nanoseconds since the origin, lagging the real time by at most the resolution.
    #[inline]
    pub(crate) fn coarse(&self) -> u64 {
        // Acquire: a reader that finds `touched` set by `wake` also finds the time `wake`
        // published before setting it.
        if !self.cell.touched.load(Ordering::Acquire) {
            self.wake();
        }
        self.cell.now.load(Ordering::Acquire)
    }

    /// Nanoseconds since the origin, read from the real clock now.
    pub(crate) fn precise(&self) -> u64 {
        match &self.source {
            Source::Manual => self.cell.now.load(Ordering::SeqCst),
            Source::Real { clock, origin, .. } => {
                // Never zero. Nothing depends on that any more: zero once marked a removed
                // entry's deadline, which the entry's `HIDDEN` flag does now.
                clock.delta_as_nanos(*origin, clock.raw()).saturating_add(1)
            }
        }
    }

    #[cold]
    fn wake(&self) {
        // Fresh time first, then the mark: a reader that finds `touched` set skips this and
        // loads `now`, so `now` must already be fresh then (the refresher may have been
        // parked for a long time, leaving `now` that far behind).
        self.cell.now.fetch_max(self.precise(), Ordering::AcqRel);
        self.cell.touched.store(true, Ordering::Release);
        if let Source::Real { refresher, .. } = &self.source {
            if let Some(t) = refresher.lock().as_ref() {
                t.unpark();
            }
        }
    }

    /// The refresher's loop; returns when `stop` is set (and the thread unparked).
    pub(crate) fn refresh_loop(&self, resolution: Duration, stop: &AtomicBool) {
        self.refresh_loop_idle_after(resolution, IDLE_AFTER, stop);
    }

    /// [`Clock::refresh_loop`], parking once nobody has read for `idle` (tests shorten it).
    fn refresh_loop_idle_after(&self, resolution: Duration, idle: Duration, stop: &AtomicBool) {
        if let Source::Real { refresher, .. } = &self.source {
            *refresher.lock() = Some(thread::current());
        }
        // Idleness is judged by the clock, not by counting wake-ups: a wake-up takes at least
        // tens of microseconds whatever the resolution asks for, so "idle / resolution"
        // wake-ups lasted far longer than `idle` with a fine resolution (with 1 ns, 10^9
        // wake-ups: the refresher of an idle engine never parked).
        let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        let mut check_at = self.precise().saturating_add(idle);
        while !stop.load(Ordering::Acquire) {
            let now = self.precise();
            self.cell.now.fetch_max(now, Ordering::AcqRel);
            if now >= check_at {
                if !self.cell.touched.swap(false, Ordering::AcqRel) {
                    // Nobody read for `idle`: sleep until a reader (or shutdown) wakes us.
                    self.cell.parks.fetch_add(1, Ordering::SeqCst);
                    while !self.cell.touched.load(Ordering::Acquire)
                        && !stop.load(Ordering::Acquire)
                    {
                        thread::park();
                    }
                }
                check_at = self.precise().saturating_add(idle);
            }
            thread::park_timeout(resolution);
        }
    }

    /// Wakes the refresher so it can see a stop request.
    pub(crate) fn unpark_refresher(&self) {
        if let Source::Real { refresher, .. } = &self.source {
            if let Some(t) = refresher.lock().as_ref() {
                t.unpark();
            }
        }
    }
}

/// A reader that finds the clock already marked as read must also find the time that the
/// reader who marked it published: after the refresher has parked (`now` far behind), two
/// readers arriving together both see fresh time, never the parked-era value. The first
/// reader used to mark `touched` before publishing the time, so a second reader between the
/// two got the stale value (and a hit served an entry past its deadline).
#[cfg(all(test, not(memokit_shuttle)))]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::time::Instant;

    /// Turns a hang into a failure (a correct refresher parks within a few idle periods).
    const HANG_LIMIT: Duration = Duration::from_secs(20);

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < HANG_LIMIT, "never happened: {what}");
            std::thread::yield_now();
        }
    }

    /// Nobody reads for the idle period: the refresher parks (no wake-ups while idle), also
    /// with a resolution far finer than the OS can sleep (a wake-up takes tens of
    /// microseconds, not 1 ns), and whatever the resolution. The first reader after that sees
    /// fresh time and the refresher resumes; shutdown of a parked refresher ends its thread.
    /// The idle period was counted in wake-ups (one period = period / resolution of them),
    /// so with a 1 ns resolution the refresher would have parked only after 10^9 wake-ups
    /// (about 16 hours with the default second).
    #[test]
    fn the_refresher_parks_when_idle_whatever_the_resolution() {
        for resolution in
            [Duration::from_nanos(1), Duration::from_micros(3), Duration::from_millis(2)]
        {
            let clock = Arc::new(Clock::real());
            let stop = Arc::new(AtomicBool::new(false));
            let t = {
                let (clock, stop) = (clock.clone(), stop.clone());
                std::thread::spawn(move || {
                    clock.refresh_loop_idle_after(resolution, Duration::from_millis(20), &stop)
                })
            };
            let parks = || clock.cell.parks.load(Ordering::SeqCst);
            for round in 0..3 {
                // Parked again after each read (it resumed): nobody reads meanwhile.
                wait_until(&format!("parked, idle ({resolution:?}, round {round})"), || {
                    parks() > round
                });
                if round < 2 {
                    let before = clock.precise();
                    assert!(clock.coarse() >= before, "a reader after the pause saw stale time");
                }
            }
            stop.store(true, Ordering::SeqCst);
            clock.unpark_refresher();
            wait_until("the refresher ended", || t.is_finished());
            t.join().unwrap();
        }
    }

    #[test]
    fn readers_after_a_pause_see_fresh_time() {
        const READERS: usize = 4;
        let clock = Clock::real();
        for _ in 0..10_000 {
            // As after the refresher parked: stale time, nobody has read since.
            clock.cell.now.store(1, Ordering::SeqCst);
            clock.cell.touched.store(false, Ordering::SeqCst);
            let before = clock.precise();
            let start = Barrier::new(READERS);
            let seen: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..READERS)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            clock.coarse()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for t in seen {
                assert!(t >= before, "a reader saw the parked-era time {t} (fresh: {before})");
            }
        }
    }
}

/// The same under shuttle: every interleaving of two readers arriving after a pause.
#[cfg(all(test, memokit_shuttle))]
mod shuttle_tests {
    use super::*;

    #[test]
    fn readers_after_a_pause_see_fresh_time() {
        let mut config = shuttle::Config::new();
        config.stack_size = 1 << 20;
        shuttle::Runner::new(
            shuttle::scheduler::RandomScheduler::new_from_seed(0x5eed, 1000),
            config,
        )
        .run(|| {
            let clock = Arc::new(Clock::real());
            clock.cell.now.store(1, Ordering::SeqCst);
            clock.cell.touched.store(false, Ordering::SeqCst);
            let before = clock.precise();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let c = clock.clone();
                    thread::spawn(move || c.coarse())
                })
                .collect();
            for h in hs {
                let t = h.join().unwrap();
                assert!(t >= before, "a reader saw the parked-era time {t} (fresh: {before})");
            }
        });
    }
}
