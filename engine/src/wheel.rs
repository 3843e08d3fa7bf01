//! A hierarchical timer wheel over slab indices (in the manner of Kafka's and Caffeine's).
//!
//! Time is counted in ticks (the engine's `tick`, default 1 s). An entry due at tick `d`, seen
//! from the wheel's current tick `n`, sits in level `L = msb(d ^ n) / 6`, bucket
//! `(d >> 6L) & 63`; entries further out than the last level sit in `overflow`.
//!
//! | level | buckets | span of one bucket | reach (1 s tick) |
//! |-------|---------|--------------------|------------------|
//! | 0     | 64      | 1 tick             | ~1 minute        |
//! | 1     | 64      | 64 ticks           | ~1 hour          |
//! | 2     | 64      | 4 096 ticks        | ~3 days          |
//! | 3     | 64      | 262 144 ticks      | ~6 months        |
//! | overflow | 1    | beyond             |                  |
//!
//! Schedule and cancel are O(1) (buckets are intrusive lists, see [`crate::list`]). Advancing
//! from tick `n` to `m` splices, for each level, every bucket whose slot was crossed onto the
//! `backlog` list (at most 64 splices a level, O(1) each), whatever the number of entries. The
//! shard then drains the backlog under a budget: entries past their deadline are removed, the
//! others are rescheduled at a lower level. So a long pause or a clock jump of years costs a
//! bounded amount of work per step, never a scan.
//!
//! Invariants ([`Wheel::validate`]): every entry in a level-`L` bucket `b` is due at a tick `d`
//! with `d > now`, `(d >> 6L) & 63 == b` and `d - now < 64^(L+1)`; deadlines use
//! `d = ceil(deadline / tick)`, so an entry that is not yet expired is never due at or before the
//! current tick.
//!
//! Entries due at the next tick (their deadline lies inside the current tick) are the only
//! ones that may expire before the wheel advances again. Those scheduled since the last
//! advance sit in [`PARTS`] lists of their own, by where in the tick their deadline falls, so
//! that [`Wheel::pull_next`] (reclaiming before an eviction) fetches only the parts that have
//! begun: at capacity with short TTLs it runs after every batch, and pulling the whole tick's
//! entries each time cost a 50/50 mix with 2 s TTLs ~20% of its throughput (session 11).

use crate::list::{Kind, Links, List};

/// Parts of the next tick's list, equal spans of the current tick in deadline order
/// ([`Wheel::part_of`]).
pub(crate) const PARTS: usize = 64;

const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
const LEVELS: usize = 4;

#[derive(Debug)]
pub(crate) struct Wheel {
    buckets: Vec<List>,
    overflow: List,
    backlog: List,
    now_tick: u64,
    tick: u64,
    /// A lower bound on the deadline of every entry in the buckets that is due at the next tick
    /// (`now_tick + 1`): before it, no such entry can have expired (`u64::MAX` while those buckets
    /// are empty, or once [`Wheel::pull_next`] has emptied them). Entries due at the next tick are
    /// the only ones that may expire before the wheel advances again (their deadline lies inside
    /// the current tick); `pull_next` fetches them for a caller that must not leave dead entries in
    /// place (eviction).
    next_min: u64,
    /// Entries due at the next tick scheduled since the last advance (or since
    /// [`Wheel::pull_next`] emptied the buckets of the next tick), in [`PARTS`] parts by
    /// deadline ([`Wheel::part_of`]): kept apart, so that pulling them again within the same
    /// tick touches no later entries, and only the parts that have begun.
    next: [List; PARTS],
    /// No part below this one holds an entry ([`PARTS`]: none does).
    next_lo: usize,
    /// Per part, a lower bound on its entries' deadlines (the least scheduled there since it
    /// was last emptied; `u64::MAX` for none): exact enough that entries pulled and scheduled
    /// again, not yet expired, are not pulled again at the same `now`, so that reclaiming
    /// slice after slice ends.
    part_min: [u64; PARTS],
    /// Whether [`Wheel::pull_next`] has emptied the buckets of the next tick since the last
    /// advance (from then on, all entries due at the next tick are in `next`).
    pulled: bool,
}

impl Wheel {
    pub(crate) fn new(links: &mut Links, tick_nanos: u64, now: u64) -> Self {
        let tick = tick_nanos.max(1);
        Wheel {
            buckets: (0..LEVELS * SLOTS).map(|_| links.new_list()).collect(),
            overflow: links.new_list(),
            backlog: links.new_list(),
            now_tick: now / tick,
            tick,
            // Nothing is scheduled yet.
            next_min: u64::MAX,
            next: std::array::from_fn(|_| links.new_list()),
            next_lo: PARTS,
            part_min: [u64::MAX; PARTS],
            pulled: false,
        }
    }

    fn due_tick(&self, deadline: u64) -> u64 {
        deadline.div_ceil(self.tick)
    }

    /// The part of the next tick's list for `deadline`, due at the next tick: where its
    /// offset into the current tick falls, in [`PARTS`] equal spans.
    fn part_of(&self, deadline: u64) -> usize {
        let start = self.now_tick.saturating_mul(self.tick);
        let offset = deadline.saturating_sub(start).saturating_sub(1);
        let k = u128::from(offset) * PARTS as u128 / u128::from(self.tick);
        (k as usize).min(PARTS - 1)
    }

    fn place(&self, due: u64) -> List {
        if due <= self.now_tick {
            return self.backlog;
        }
        let level = ((63 - (due ^ self.now_tick).leading_zeros()) / BITS) as usize;
        if level >= LEVELS {
            return self.overflow;
        }
        self.buckets[level * SLOTS + ((due >> (BITS as usize * level)) as usize & (SLOTS - 1))]
    }

    /// Schedules detached entry `i` for its absolute `deadline` (nanoseconds).
    pub(crate) fn schedule(&mut self, links: &mut Links, i: u32, deadline: u64) {
        let due = self.due_tick(deadline);
        if Some(due) == self.now_tick.checked_add(1) {
            let k = self.part_of(deadline);
            self.next_lo = self.next_lo.min(k);
            self.part_min[k] = self.part_min[k].min(deadline);
            links.push_back(Kind::Timer, self.next[k], i);
            return;
        }
        links.push_back(Kind::Timer, self.place(due), i);
    }

    /// From when a scheduled entry (not on the backlog) may be expired (nanoseconds): the
    /// bound of those still in the buckets (`next_min`) or of the lowest part of the next
    /// tick's list that may hold one (parts are ordered by deadline). O(1).
    pub(crate) fn next_expiry_from(&self) -> u64 {
        let parts = self.part_min.get(self.next_lo).copied().unwrap_or(u64::MAX);
        self.next_min.min(parts)
    }

    /// Moves every list that may hold an entry due at the next tick and expired by `now`
    /// onto the backlog, so that draining it reclaims the entries whose deadline has passed
    /// within the current tick (the others are scheduled again). Those scheduled since the
    /// last advance are in the parts of `next` whose floor has come; the others, scheduled
    /// earlier, are in the level-0 bucket of the next tick or, when the next tick crosses a
    /// boundary of a higher level, in the bucket of that level holding it (or the overflow,
    /// past the last level), with later entries: those buckets are pulled once per tick
    /// (their entries due at the next tick then go to `next`). O(levels + parts).
    pub(crate) fn pull_next(&mut self, links: &mut Links, now: u64) {
        while self.next_lo < PARTS {
            let k = self.next_lo;
            let empty = links.is_empty(self.next[k]);
            if !empty && self.part_min[k] > now {
                break;
            }
            links.splice_back(Kind::Timer, self.backlog, self.next[k]);
            self.part_min[k] = u64::MAX;
            self.next_lo += 1;
        }
        if self.next_min > now {
            return;
        }
        if std::mem::replace(&mut self.pulled, true) {
            self.next_min = u64::MAX;
            return;
        }
        for list in self.next_tick_buckets() {
            links.splice_back(Kind::Timer, self.backlog, list);
        }
        // The buckets hold no entry due at the next tick any more: those pulled go to `next`
        // as they are scheduled again.
        self.next_min = u64::MAX;
    }

    /// The lists that may hold entries due at the next tick scheduled before the last
    /// advance: the level-0 bucket of the next tick and, where the next tick crosses a
    /// boundary of a higher level, the bucket of that level holding it (and the overflow,
    /// past the last level). None when the tick count cannot grow.
    fn next_tick_buckets(&self) -> impl Iterator<Item = List> + '_ {
        let (n, next) = (self.now_tick, self.now_tick.saturating_add(1));
        let levels = (0..LEVELS).take_while(move |&level| {
            let shift = BITS as usize * level;
            next != n && (level == 0 || next >> shift != n >> shift)
        });
        let top = BITS as usize * LEVELS;
        let overflow = (next != n && next >> top != n >> top).then_some(self.overflow);
        levels
            .map(move |level| {
                let slot = (next >> (BITS as usize * level)) as usize & (SLOTS - 1);
                self.buckets[level * SLOTS + slot]
            })
            .chain(overflow)
    }

    /// [`Wheel::next_min`] as the last advance leaves it: the start of the next tick's
    /// deadlines while a bucket that may hold one of its entries is not empty, `u64::MAX`
    /// when none holds anything (entries scheduled later for the next tick go to `next`).
    /// Before, it was always the tick's start: a shard holding any entry with a deadline
    /// then told the other workers, from the first nanosecond of each tick, that it might
    /// hold dead entries, and every batch over capacity went through `settle`'s cuts
    /// (`tests/engine_rev_s25c.rs`). O(levels).
    fn bound_next(&self, links: &Links) -> u64 {
        if self.next_tick_buckets().all(|list| links.is_empty(list)) {
            u64::MAX
        } else {
            self.now_tick.saturating_mul(self.tick).saturating_add(1)
        }
    }

    /// Cancels entry `i` (no-op when not scheduled).
    pub(crate) fn cancel(links: &mut Links, i: u32) {
        links.unlink(Kind::Timer, i);
    }

    /// Moves the wheel to `now` (nanoseconds): every bucket that may hold entries due by then
    /// goes onto the backlog. O(levels × 64) at most.
    pub(crate) fn advance(&mut self, links: &mut Links, now: u64) {
        let to = now / self.tick;
        let from = self.now_tick;
        if to <= from {
            return;
        }
        // Everything in `next` is due at `from + 1 <= to`.
        for k in self.next_lo..PARTS {
            links.splice_back(Kind::Timer, self.backlog, self.next[k]);
        }
        self.next_lo = PARTS;
        self.part_min = [u64::MAX; PARTS];
        self.pulled = false;
        for level in 0..LEVELS {
            let shift = BITS as usize * level;
            let (a, b) = (from >> shift, to >> shift);
            if a == b {
                break; // higher levels cannot have moved either
            }
            let n = (b - a).min(SLOTS as u64);
            for s in 0..n {
                let slot = (b - s) as usize & (SLOTS - 1);
                links.splice_back(Kind::Timer, self.backlog, self.buckets[level * SLOTS + slot]);
            }
        }
        if from >> (BITS as usize * LEVELS) != to >> (BITS as usize * LEVELS) {
            links.splice_back(Kind::Timer, self.backlog, self.overflow);
        }
        self.now_tick = to;
        // Entries due at the new next tick have deadlines after the new tick's start.
        self.next_min = self.bound_next(links);
    }

    /// From when advancing and draining the backlog could find something: the start of the
    /// next tick (nanoseconds), or 0 while the backlog holds entries. Before it, neither a tick
    /// boundary has passed since the last advance nor is the backlog holding work. O(1).
    pub(crate) fn busy_from(&self, links: &Links) -> u64 {
        if links.is_empty(self.backlog) {
            self.now_tick.saturating_add(1).saturating_mul(self.tick)
        } else {
            0
        }
    }

    /// Takes the next entry to look at (it may or may not be expired: the caller checks and
    /// either removes it or calls [`Wheel::schedule`] again).
    pub(crate) fn pop_backlog(&self, links: &mut Links) -> Option<u32> {
        links.pop_front(Kind::Timer, self.backlog)
    }

    /// Checks the wheel's invariants; `deadline(i)` gives entry `i`'s deadline (`None`: do not
    /// check its place). Returns the scheduled entries.
    pub(crate) fn validate(
        &self,
        links: &Links,
        deadline: impl Fn(u32) -> Option<u64>,
    ) -> Result<Vec<u32>, String> {
        let mut all = Vec::new();
        for level in 0..LEVELS {
            let shift = BITS as usize * level;
            for b in 0..SLOTS {
                for i in links.validate_list(Kind::Timer, self.buckets[level * SLOTS + b])? {
                    all.push(i);
                    let Some(d) = deadline(i) else { continue };
                    let due = self.due_tick(d);
                    if Some(due) == self.now_tick.checked_add(1)
                        && (self.pulled || d < self.next_min)
                    {
                        return Err(format!(
                            "wheel: entry {i} due at the next tick in a bucket (pulled: {}) or before its bound ({d} < {})",
                            self.pulled, self.next_min
                        ));
                    }
                    let ok = due > self.now_tick
                        && (due >> shift) as usize & (SLOTS - 1) == b
                        && (due - self.now_tick) >> (shift + BITS as usize) == 0;
                    if !ok {
                        return Err(format!(
                            "wheel: entry {i} due at tick {due} misplaced in level {level} bucket {b} (now {})",
                            self.now_tick
                        ));
                    }
                }
            }
        }
        for (k, &part) in self.next.iter().enumerate() {
            for i in links.validate_list(Kind::Timer, part)? {
                all.push(i);
                if k < self.next_lo {
                    return Err(format!("wheel: entry {i} in part {k} below {}", self.next_lo));
                }
                let Some(d) = deadline(i) else { continue };
                if Some(self.due_tick(d)) != self.now_tick.checked_add(1)
                    || self.part_of(d) != k
                    || d < self.part_min[k]
                {
                    return Err(format!(
                        "wheel: entry {i} (deadline {d}) in part {k} of the next tick's list, now tick {}",
                        self.now_tick
                    ));
                }
            }
        }
        all.extend(links.validate_list(Kind::Timer, self.overflow)?);
        all.extend(links.validate_list(Kind::Timer, self.backlog)?);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_order_after_jumps() {
        let mut links = Links::default();
        let mut w = Wheel::new(&mut links, 10, 0);
        let deadlines: Vec<u64> =
            vec![5, 10, 11, 700, 65_000, 4_000_000, 9_000_000_000, u64::MAX - 7];
        for (i, d) in deadlines.iter().enumerate() {
            w.schedule(&mut links, i as u32, *d);
        }
        w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
        let mut expired = Vec::new();
        for now in [0, 9, 10, 50, 699, 700, 100_000, 5_000_000, 9_000_000_000, u64::MAX] {
            w.advance(&mut links, now);
            while let Some(i) = w.pop_backlog(&mut links) {
                if deadlines[i as usize] <= now {
                    expired.push(i);
                } else {
                    w.schedule(&mut links, i, deadlines[i as usize]);
                    // rescheduled entries must not land in the backlog again
                    assert!(links.is_linked(Kind::Timer, i));
                }
                if expired.len() > 100 {
                    panic!("loop");
                }
            }
            w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
            for (i, d) in deadlines.iter().enumerate() {
                let gone = expired.contains(&(i as u32));
                // Never early; at the latest once the tick of its deadline has been reached.
                assert!(!gone || *d <= now, "entry {i} reclaimed early at {now}");
                assert!(gone || d.div_ceil(10) > now / 10, "entry {i} overdue at {now}");
            }
        }
    }

    /// `busy_from` is exact: before it, advancing and draining the backlog finds nothing; from
    /// it on, there is a tick boundary or a backlog to handle.
    #[test]
    fn before_busy_from_advance_finds_nothing() {
        let idle = |w: &Wheel, links: &Links, now: u64| now < w.busy_from(links);
        let mut links = Links::default();
        let mut w = Wheel::new(&mut links, 10, 0);
        assert!(idle(&w, &links, 9), "nothing scheduled, no boundary passed");
        w.schedule(&mut links, 0, 15);
        assert!(idle(&w, &links, 9));
        assert!(!idle(&w, &links, 10), "a tick boundary passed");
        w.advance(&mut links, 20);
        assert!(!idle(&w, &links, 20), "entry 0 is on the backlog");
        assert_eq!(w.pop_backlog(&mut links), Some(0));
        assert!(idle(&w, &links, 29));
        // Due now but already expired: still waits for the boundary, like `advance` does.
        w.schedule(&mut links, 1, 21);
        assert!(idle(&w, &links, 25));
        w.advance(&mut links, 25);
        assert_eq!(w.pop_backlog(&mut links), None);
        assert!(!idle(&w, &links, 30));
    }

    /// Within a tick, `pull_next(now)` fetches every entry of the next tick's list that has
    /// expired by `now`, and of the others only those sharing a part with one that may have
    /// (a part begun by `now`): not the whole tick's entries each time.
    #[test]
    fn pull_next_fetches_only_the_parts_begun() {
        let tick = 6_400;
        let mut links = Links::default();
        let mut w = Wheel::new(&mut links, tick, tick); // tick 1: the next tick spans (6400, 12800]
        let deadlines: Vec<u64> = (0..640).map(|i| tick + 1 + i * 10).collect();
        for (i, d) in deadlines.iter().enumerate() {
            w.schedule(&mut links, i as u32, *d);
        }
        w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
        assert_eq!(w.next_expiry_from(), tick + 1);
        let mut gone = vec![false; deadlines.len()];
        for now in [tick + 1, tick + 95, tick + 100, tick + 3_333, tick + 3_333, 2 * tick - 1] {
            w.pull_next(&mut links, now);
            let mut pulled = 0;
            while let Some(i) = w.pop_backlog(&mut links) {
                pulled += 1;
                let d = deadlines[i as usize];
                if d <= now {
                    gone[i as usize] = true;
                } else {
                    assert!(d < now + tick / PARTS as u64 + 10, "entry {i} ({d}) pulled at {now}");
                    w.schedule(&mut links, i, d);
                }
            }
            assert!(pulled <= 640 / PARTS + 1 + (now - tick) as usize / 10, "{pulled} at {now}");
            for (i, d) in deadlines.iter().enumerate() {
                assert_eq!(gone[i], *d <= now, "entry {i} ({d}) at {now}");
            }
            // Entries pulled and scheduled again are not pulled again at the same `now`.
            assert!(w.next_expiry_from() > now);
            w.pull_next(&mut links, now);
            assert_eq!(w.pop_backlog(&mut links), None, "pulled again at {now}");
            w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
        }
    }

    /// `pull_next` fetches every entry due at the next tick, also when that tick crosses a
    /// level boundary (the entries sit in a level-1 bucket then), and `next_expiry_from`
    /// bounds their deadlines from below.
    #[test]
    fn pull_next_finds_the_entries_of_the_next_tick() {
        let mut links = Links::default();
        let mut w = Wheel::new(&mut links, 10, 0);
        let deadlines: Vec<u64> = vec![640, 1000, 637, 655, 9_000_000];
        w.schedule(&mut links, 0, deadlines[0]); // tick 64, level 1 from tick 0
        w.schedule(&mut links, 1, deadlines[1]); // tick 100, the same level-1 bucket
        w.advance(&mut links, 635); // tick 63: the next tick crosses into level 1's slot 1
        assert_eq!(w.pop_backlog(&mut links), None);
        assert_eq!(w.next_expiry_from(), 631);
        w.schedule(&mut links, 2, deadlines[2]); // tick 64
        w.schedule(&mut links, 3, deadlines[3]); // tick 66
        w.schedule(&mut links, 4, deadlines[4]);
        assert_eq!(w.next_expiry_from(), 631, "bound from the tick's start");
        w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
        let now = 638;
        w.pull_next(&mut links, now);
        let mut expired = Vec::new();
        while let Some(i) = w.pop_backlog(&mut links) {
            if deadlines[i as usize] <= now {
                expired.push(i);
            } else {
                w.schedule(&mut links, i, deadlines[i as usize]);
            }
        }
        assert_eq!(expired, vec![2]);
        assert_eq!(w.next_expiry_from(), 640, "the earliest left for tick 64");
        w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
        // Pulled again within the tick: nothing before the floor of entry 0's part (640);
        // then only the entries due at the next tick come, not the later ones that shared the
        // level-1 bucket with them.
        w.pull_next(&mut links, 639);
        assert_eq!(w.pop_backlog(&mut links), None, "no part had begun");
        w.pull_next(&mut links, 640);
        let mut again = Vec::new();
        while let Some(i) = w.pop_backlog(&mut links) {
            again.push(i);
            w.schedule(&mut links, i, deadlines[i as usize]);
        }
        assert_eq!(again, vec![0]);
        assert_eq!(w.next_expiry_from(), 640);
        w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
        // At the next tick, entry 0 is due (the others come along as candidates only).
        w.advance(&mut links, 640);
        let mut due = Vec::new();
        while let Some(i) = w.pop_backlog(&mut links) {
            if deadlines[i as usize] <= 640 {
                due.push(i);
            } else {
                w.schedule(&mut links, i, deadlines[i as usize]);
            }
        }
        assert_eq!(due, vec![0]);
        w.validate(&links, |i| Some(deadlines[i as usize])).unwrap();
    }

    /// An entry beyond the last level (in the overflow) that comes due at the next tick when
    /// that tick starts a new span of the last level: `pull_next` within the tick before
    /// fetches it once its deadline has passed.
    #[test]
    fn pull_next_finds_an_overflow_entry_of_the_next_tick() {
        let tick = 10;
        let top = 1u64 << (BITS as usize * LEVELS); // ticks spanned by all the levels
        let mut links = Links::default();
        let mut w = Wheel::new(&mut links, tick, 0);
        let d = top * tick - 2; // due at tick `top`: in the overflow, seen from tick 0
        w.schedule(&mut links, 0, d);
        w.advance(&mut links, (top - 1) * tick); // the tick before
        assert_eq!(w.pop_backlog(&mut links), None);
        w.validate(&links, |_| Some(d)).unwrap();
        assert!(w.next_expiry_from() <= d);
        w.pull_next(&mut links, d);
        assert_eq!(w.pop_backlog(&mut links), Some(0), "expired, in the overflow");
    }

    /// A model test of the wheel alone (extreme ticks, deadlines and clock jumps).
    mod model;

    /// The bound from which an entry may be due before the next advance is exact enough
    /// that a shard holding only far deadlines never looks as if it might hold dead entries
    /// within a tick (it was the tick's start whatever the wheel held).
    #[test]
    fn the_next_tick_has_no_bound_while_nothing_can_be_due_in_it() {
        let deadlines = [36_000, 18, 35];
        let mut links = Links::default();
        let mut w = Wheel::new(&mut links, 10, 0);
        w.schedule(&mut links, 0, deadlines[0]); // tick 3,600: a level-1 bucket
        assert_eq!(w.next_expiry_from(), u64::MAX);
        w.advance(&mut links, 15); // tick 1
        assert_eq!(w.next_expiry_from(), u64::MAX);
        w.schedule(&mut links, 1, deadlines[1]); // due at the next tick (2): its deadline
        assert_eq!(w.next_expiry_from(), 18);
        // Scheduled at tick 1 for tick 4 (a level-0 bucket), then the wheel reaches tick 3:
        // that bucket may hold entries of the next tick, bounded by the tick's start.
        w.schedule(&mut links, 2, deadlines[2]);
        w.advance(&mut links, 30);
        while let Some(i) = w.pop_backlog(&mut links) {
            if deadlines[i as usize] > 30 {
                w.schedule(&mut links, i, deadlines[i as usize]);
            }
        }
        assert_eq!(w.next_expiry_from(), 31);
        w.validate(&links, |i| (i != 1).then(|| deadlines[i as usize])).unwrap();
    }
}
