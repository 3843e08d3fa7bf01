//! When a worker with the real clock does its background work: the tick's drain of its shards'
//! pending tables, and maintenance bursts (expire, reclaim retired generations).
//!
//! Why a type of its own: the rule is easy to get subtly wrong and impossible to test through
//! real time. It is a pure function of instants, tested here with made-up ones.
//!
//! The rule: every `tick`, the worker drains its shards and starts a maintenance burst of at
//! most [`BURST`](super::BURST). While a burst leaves work behind, the next one waits for a
//! pause of [`PAUSE`](super::PAUSE) after it, whatever the tick: a tick shorter than the pause
//! still drains the shards, but starts no burst, so background work holds the shards' locks at
//! most `BURST / (BURST + PAUSE)` of the time, as the worker module promises.
//!
//! Cost: a few comparisons of instants per message the worker receives.

use std::time::{Duration, Instant};

/// A worker's background schedule.
pub(super) struct Pace {
    tick: Duration,
    next_tick: Instant,
    /// Set while maintenance has work left: when the next burst may start.
    resume: Option<Instant>,
}

/// What is due now.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Due {
    /// Drain every shard's pending table: applies the stores of new keys gathered below
    /// their shard's threshold, which no `Work` announced (`store::signal_threshold`).
    pub(super) drain: bool,
    /// Run a maintenance burst.
    pub(super) burst: bool,
}

impl Pace {
    /// A schedule whose first tick is one `tick` after `now`.
    pub(super) fn new(now: Instant, tick: Duration) -> Self {
        Pace { tick, next_tick: super::after(now, tick), resume: None }
    }

    /// Until when the worker may sleep on its mailbox.
    pub(super) fn wake_at(&self) -> Instant {
        self.resume.map_or(self.next_tick, |r| r.min(self.next_tick))
    }

    /// What is due at `now`; a due tick schedules the next one.
    pub(super) fn due(&mut self, now: Instant) -> Due {
        let drain = now >= self.next_tick;
        if drain {
            self.next_tick = super::after(now, self.tick);
        }
        // While paused, a tick drains but does not cut the pause short.
        let burst = match self.resume {
            Some(resume) => now >= resume,
            None => drain,
        };
        Due { drain, burst }
    }

    /// A burst ended at `now`; `finished` when it left no work.
    pub(super) fn burst_ended(&mut self, now: Instant, finished: bool) {
        self.resume = (!finished).then(|| super::after(now, super::PAUSE));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BURST, PAUSE};
    use super::*;

    /// Drives `pace` from `start` for `span`, waking when it asks and at every `extra` (a
    /// busy mailbox), with maintenance work that never runs out; returns the instants at
    /// which bursts started and the number of drains.
    fn drive(tick: Duration, extra: Option<Duration>, span: Duration) -> (Vec<Instant>, usize) {
        let start = Instant::now();
        let mut pace = Pace::new(start, tick);
        let (mut bursts, mut drains) = (Vec::new(), 0);
        let mut now = start;
        let mut next_msg = extra.map(|e| start + e);
        while now < start + span {
            // Time never goes back: a wake-up already due is taken at once.
            now = now.max(match next_msg {
                Some(m) if m < pace.wake_at() => {
                    next_msg = extra.map(|e| m + e);
                    m
                }
                _ => pace.wake_at(),
            });
            let due = pace.due(now);
            drains += usize::from(due.drain);
            if due.burst {
                bursts.push(now);
                // Every burst uses its whole budget and leaves work.
                now += BURST;
                pace.burst_ended(now, false);
            }
        }
        (bursts, drains)
    }

    #[test]
    fn bursts_keep_their_pause_whatever_the_tick() {
        for tick in [1, 10, 50, 500, 1_000, 3_000, 6_000, 7_000, 20_000, 1_000_000] {
            let tick = Duration::from_micros(tick);
            for extra in
                [None, Some(Duration::from_micros(100)), Some(Duration::from_micros(2_500))]
            {
                let (bursts, drains) = drive(tick, extra, Duration::from_millis(200));
                for w in bursts.windows(2) {
                    assert!(
                        w[1] - w[0] >= BURST + PAUSE,
                        "tick {tick:?}, mailbox every {extra:?}: bursts {:?} apart",
                        w[1] - w[0]
                    );
                }
                // Background work is not starved either: a burst every BURST + PAUSE, give
                // or take the tick's granularity.
                let period = (BURST + PAUSE).max(tick);
                let expected =
                    (Duration::from_millis(200).as_micros() / period.as_micros()) as usize;
                assert!(bursts.len() + 2 >= expected, "tick {tick:?}: {} bursts", bursts.len());
                // And the tick still drains on time, outside the bursts.
                let free = Duration::from_millis(200) - BURST * bursts.len() as u32;
                let ticks = (free.as_nanos() / tick.as_nanos()) as usize;
                assert!(drains + 2 >= ticks, "tick {tick:?}: {drains} drains");
            }
        }
    }

    #[test]
    fn finished_work_waits_for_the_next_tick() {
        let start = Instant::now();
        let tick = Duration::from_millis(1_000);
        let mut pace = Pace::new(start, tick);
        assert_eq!(pace.wake_at(), start + tick);
        assert_eq!(pace.due(start + Duration::from_millis(10)), Due { drain: false, burst: false });
        let t = start + tick;
        assert_eq!(pace.due(t), Due { drain: true, burst: true });
        pace.burst_ended(t + BURST, true);
        assert_eq!(pace.wake_at(), t + tick);
        assert_eq!(pace.due(t + PAUSE * 2), Due { drain: false, burst: false });
    }

    #[test]
    fn a_pause_ends_in_a_burst_before_the_next_tick() {
        let start = Instant::now();
        let tick = Duration::from_millis(1_000);
        let mut pace = Pace::new(start, tick);
        let t = start + tick;
        assert!(pace.due(t).burst);
        pace.burst_ended(t + BURST, false);
        assert_eq!(pace.wake_at(), t + BURST + PAUSE);
        assert_eq!(pace.due(t + BURST), Due { drain: false, burst: false });
        assert_eq!(pace.due(t + BURST + PAUSE), Due { drain: false, burst: true });
    }
}
