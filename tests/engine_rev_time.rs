//! Review of time: deadlines at their edges, against a model and by hand.
//!
//! Model (`time_model`): a `HashMap<key, deadline>` (`None`: no deadline) and the manual
//! clock's time (which saturates at `u64::MAX - 1` ns). A store sets the key's deadline to
//! `now + ttl` (no deadline for no TTL or one too large to represent: `now + ttl` past
//! `u64::MAX - 1`, `Duration::MAX`), a zero TTL or a remove drops the key; the last store
//! decides, whatever the earlier ones said and whether they were applied yet. With a manual
//! clock the lookups' clock is the manual one: a value is served exactly while
//! `now < deadline` (pending or resident, `get`, `contains_key`, `get_or_insert_with`), and
//! after `run_maintenance` the engine holds exactly the keys whose deadline has not passed
//! (`len()`), every entry expired since the last step counted once in `expirations`.
//! Ticks from 1 ns to centuries; deadlines on and next to tick boundaries, at the end of
//! time, just below and above the "too large" limit; clock jumps of any size.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use memokit_engine::{Engine, ManualClock};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Ttl {
    None,
    Zero,
    Nanos(u64),
    /// `k` ticks from the current tick's start, plus `delta` ns (a deadline on or next to a
    /// tick boundary).
    Ticks(u64, i8),
    /// The largest TTL with a deadline, plus `delta` ns (past it: no deadline).
    Limit(i8),
    Max,
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, Ttl),
    Remove(u8),
    Get(u8),
    Compute(u8, Ttl),
    Advance(u64),
    /// To `k` ticks from the current tick's start, plus `delta` ns.
    AdvanceTicks(u64, i8),
    /// To the key's deadline plus `delta` ns (if it has one still ahead).
    AdvanceToDeadline(u8, i8),
    Flush,
    Maintain,
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        1 => Just(Ttl::None),
        1 => Just(Ttl::Zero),
        3 => (1u64..3_000).prop_map(Ttl::Nanos),
        1 => any::<u64>().prop_map(Ttl::Nanos),
        3 => (0u64..70, -2i8..=2).prop_map(|(k, d)| Ttl::Ticks(k, d)),
        1 => (-2i8..=2).prop_map(Ttl::Limit),
        1 => Just(Ttl::Max),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, ttl()).prop_map(|(k, t)| Op::Insert(k, t)),
        1 => (0u8..8).prop_map(Op::Remove),
        4 => (0u8..8).prop_map(Op::Get),
        1 => (0u8..8, ttl()).prop_map(|(k, t)| Op::Compute(k, t)),
        2 => prop_oneof![(0u64..3_000), any::<u64>(), (0u32..64).prop_map(|b| 1u64 << b)]
            .prop_map(Op::Advance),
        2 => (0u64..70, -2i8..=2).prop_map(|(k, d)| Op::AdvanceTicks(k, d)),
        2 => (0u8..8, -1i8..=1).prop_map(|(k, d)| Op::AdvanceToDeadline(k, d)),
        1 => Just(Op::Flush),
        2 => Just(Op::Maintain),
    ]
}

fn tick() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1u64),
        Just(7),
        Just(1_000),
        Just(1_000_000_000),
        Just(100 * 365 * 86_400 * 1_000_000_000),
        Just(u64::MAX),
    ]
}

/// The end of the manual clock's time.
const END: u64 = u64::MAX - 1;

struct Model {
    now: u64,
    tick: u64,
    deadlines: HashMap<u8, Option<u64>>,
    expirations: u64,
}

impl Model {
    fn tick_time(&self, k: u64, delta: i8) -> u64 {
        let start = (self.now / self.tick).saturating_mul(self.tick);
        start.saturating_add(k.saturating_mul(self.tick)).saturating_add_signed(i64::from(delta))
    }

    /// The TTL as a `Duration` for the engine, and the deadline the model expects (`None`:
    /// not stored; `Some(None)`: no deadline).
    fn ttl(&self, t: &Ttl) -> (Option<Duration>, Option<Option<u64>>) {
        let nanos = |n: u64| {
            // A deadline past the clock's end cannot be reached: no deadline.
            let d = self.now.checked_add(n).filter(|&d| d < u64::MAX);
            (Some(Duration::from_nanos(n)), Some(d))
        };
        match *t {
            Ttl::None => (None, Some(None)),
            Ttl::Zero => (Some(Duration::ZERO), None),
            Ttl::Nanos(0) => (Some(Duration::ZERO), None),
            Ttl::Nanos(n) => nanos(n),
            Ttl::Ticks(k, delta) => match self.tick_time(k, delta).checked_sub(self.now) {
                Some(n) if n > 0 => nanos(n),
                _ => nanos(1),
            },
            Ttl::Limit(delta) => {
                nanos((u64::MAX - 1 - self.now).saturating_add_signed(delta.into()).max(1))
            }
            Ttl::Max => (Some(Duration::MAX), Some(None)),
        }
    }

    /// Moves the clock as `op` (`AdvanceTicks`, `AdvanceToDeadline`) says.
    fn advance(&self, op: &Op, clock: &ManualClock) {
        let to = match *op {
            Op::AdvanceTicks(k, delta) => self.tick_time(k, delta),
            Op::AdvanceToDeadline(key, delta) => match self.deadlines.get(&key) {
                Some(Some(d)) => d.saturating_add_signed(i64::from(delta)),
                _ => return,
            },
            _ => unreachable!(),
        };
        clock.advance(Duration::from_nanos(to.min(END).saturating_sub(self.now)));
    }

    fn live(&self, key: u8) -> bool {
        self.deadlines.get(&key).is_some_and(|d| d.is_none_or(|d| self.now < d))
    }
}

fn run(tick: u64, shards: usize, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    clock.advance(Duration::from_nanos(start));
    let engine: Engine<u8, u64> = Engine::builder()
        .max_capacity(1_000)
        .shards(shards)
        .workers(2)
        .tick(Duration::from_nanos(tick))
        .clock_resolution(Duration::from_secs(3600))
        .clock(clock.clone())
        .build()
        .unwrap();
    let now = || u64::try_from(clock.now().as_nanos()).unwrap();
    let mut m = Model { now: now(), tick, deadlines: HashMap::new(), expirations: 0 };
    let mut values: HashMap<u8, u64> = HashMap::new();
    for (step, op) in ops.iter().enumerate() {
        let v = step as u64;
        match op {
            Op::Insert(k, t) => {
                let (ttl, deadline) = m.ttl(t);
                match ttl {
                    Some(ttl) => engine.insert_with_ttl(*k, v, ttl),
                    None => engine.insert(*k, v),
                }
                match deadline {
                    Some(d) => {
                        m.deadlines.insert(*k, d);
                        values.insert(*k, v);
                    }
                    None => {
                        m.deadlines.remove(k);
                    }
                }
            }
            Op::Remove(k) => {
                engine.remove(k);
                m.deadlines.remove(k);
            }
            Op::Get(k) => {
                let want = m.live(*k).then(|| values[k]);
                prop_assert_eq!(
                    engine.get(k),
                    want,
                    "get {} at {} (step {}: {:?})",
                    k,
                    m.now,
                    step,
                    op
                );
                prop_assert_eq!(engine.contains_key(k), want.is_some());
            }
            Op::Compute(k, t) => {
                let (ttl, deadline) = m.ttl(t);
                let mut opts = memokit_engine::InsertOptions::new();
                if let Some(ttl) = ttl {
                    opts = opts.ttl(ttl);
                }
                let live = m.live(*k).then(|| values[k]);
                let got = engine.get_or_insert_with_options(*k, opts, || v);
                prop_assert_eq!(got, live.unwrap_or(v), "compute {} at {}", k, m.now);
                // A zero TTL stores nothing; the older value, dead already, is left to expire.
                if let (None, Some(d)) = (live, deadline) {
                    m.deadlines.insert(*k, d);
                    values.insert(*k, v);
                }
            }
            Op::Advance(n) => clock.advance(Duration::from_nanos(*n)),
            Op::AdvanceTicks(_, _) | Op::AdvanceToDeadline(_, _) => m.advance(op, &clock),
            Op::Flush => engine.flush(),
            Op::Maintain => {
                engine.run_maintenance();
                let now = m.now;
                let before = m.deadlines.len();
                m.deadlines.retain(|_, d| d.is_none_or(|d| now < d));
                m.expirations += (before - m.deadlines.len()) as u64;
                prop_assert_eq!(
                    engine.len(),
                    m.deadlines.len() as u64,
                    "len after maintenance at {}",
                    now
                );
                prop_assert_eq!(
                    engine.stats().expirations,
                    m.expirations,
                    "expirations at {}",
                    now
                );
            }
        }
        m.now = now();
        engine.validate().map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random stores, lookups and clock moves agree with the model (module docs).
    #[test]
    fn time_model(
        tick in tick(),
        shards in prop_oneof![Just(1usize), Just(4)],
        start in prop_oneof![Just(0u64), any::<u64>(), (0u64..3_000).prop_map(|x| END - x)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(tick, shards, start.min(END), &ops)?;
    }
}

/// The capacity rule with the same edge deadlines and ticks: while the live entries (per
/// the model) fit the capacity, none is evicted, whichever shard or worker holds the dead
/// ones and wherever their deadlines fall (on a tick boundary, exactly now, in the current
/// tick, at the clock's end). Stores that would take the live entries over the capacity are
/// skipped.
fn run_capacity(tick: u64, workers: usize, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    const CAPACITY: usize = 5;
    let clock = ManualClock::new();
    clock.advance(Duration::from_nanos(start));
    let engine: Engine<u8, u64> = Engine::builder()
        .max_capacity(CAPACITY as u64)
        .shards(4)
        .workers(workers)
        .tick(Duration::from_nanos(tick))
        .clock(clock.clone())
        .build()
        .unwrap();
    let now = || u64::try_from(clock.now().as_nanos()).unwrap();
    let mut m = Model { now: now(), tick, deadlines: HashMap::new(), expirations: 0 };
    for op in ops {
        match op {
            Op::Insert(k, t) | Op::Compute(k, t) => {
                let others = (0..u8::MAX).filter(|o| o != k && m.live(*o)).count();
                let (ttl, deadline) = m.ttl(t);
                if others + 1 > CAPACITY {
                    continue;
                }
                match ttl {
                    Some(ttl) => engine.insert_with_ttl(*k, u64::from(*k), ttl),
                    None => engine.insert(*k, u64::from(*k)),
                }
                match deadline {
                    Some(d) => m.deadlines.insert(*k, d),
                    None => m.deadlines.remove(k),
                };
                engine.flush();
                for o in 0..u8::MAX {
                    if m.live(o) {
                        prop_assert_eq!(
                            engine.get(&o),
                            Some(u64::from(o)),
                            "live {} lost at {}",
                            o,
                            m.now
                        );
                    }
                }
                prop_assert_eq!(engine.stats().evictions, 0);
            }
            Op::Advance(n) => clock.advance(Duration::from_nanos(*n)),
            Op::AdvanceTicks(_, _) | Op::AdvanceToDeadline(_, _) => m.advance(op, &clock),
            // Leaves the wheel with exact bounds (the next tick's entries pulled).
            Op::Maintain => engine.run_maintenance(),
            Op::Remove(_) | Op::Get(_) | Op::Flush => {}
        }
        m.now = now();
        engine.validate().map_err(TestCaseError::fail)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// See [`run_capacity`].
    #[test]
    fn dead_entries_go_before_live_ones_at_the_edges(
        tick in tick(),
        workers in 1usize..=3,
        start in prop_oneof![Just(0u64), any::<u64>(), (0u64..3_000).prop_map(|x| END - x)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run_capacity(tick, workers, start.min(END), &ops)?;
    }
}

/// An entry whose deadline is exactly the clock's time is dead: over capacity, it goes
/// before a live entry is evicted, whether its deadline falls inside the current tick or on
/// the tick's boundary, with one worker or several. A maintenance step inside the tick
/// first leaves the wheel with exact bounds (the entries of the next tick pulled, so the
/// shard's `dead_possible_from` is the dead entry's deadline itself, not the tick's start).
#[test]
fn an_entry_due_exactly_now_goes_before_a_live_one() {
    const MS: Duration = Duration::from_millis(1);
    for workers in [1, 2, 3] {
        for deadline in [700, 999, 1000] {
            let clock = ManualClock::new();
            let e: Engine<u64, u64> = Engine::builder()
                .max_capacity(2)
                .shards(1)
                .workers(workers)
                .tick(1000 * MS)
                .clock(clock.clone())
                .build()
                .unwrap();
            e.insert_with_ttl(1, 1, 500 * MS);
            e.insert_with_ttl(2, 2, deadline * MS);
            clock.advance(500 * MS);
            e.run_maintenance(); // key 1 expires; key 2 is pulled and scheduled again
            assert_eq!(e.len(), 1);
            e.insert(3, 3);
            clock.advance((deadline - 500) * MS); // exactly at key 2's deadline
            e.insert(4, 4);
            e.flush();
            let case = format!("{workers} workers, deadline {deadline} ms");
            assert_eq!((e.get(&3), e.get(&4)), (Some(3), Some(4)), "{case}");
            assert_eq!((e.stats().evictions, e.stats().expirations), (0, 2), "{case}");
            e.validate().unwrap();
        }
    }
}

/// The real clock at the extremes of `tick` and `clock_resolution` (1 ns to `Duration::MAX`):
/// the engine builds, serves, expires a zero-length stay as soon as the clock moves on, runs
/// maintenance and shuts down (every thread joined: no hang). Two engines with different
/// resolutions side by side: the coarse one's lagging clock is its own.
#[test]
fn real_clock_at_extreme_ticks_and_resolutions() {
    let ns = Duration::from_nanos(1);
    for (tick, resolution) in
        [(ns, ns), (Duration::MAX, Duration::MAX), (ns, Duration::MAX), (Duration::MAX, ns)]
    {
        common::no_hang("an engine at extreme settings", move || {
            let fine: Engine<u64, u64> =
                Engine::builder().tick(tick).clock_resolution(ns).build().unwrap();
            let coarse: Engine<u64, u64> =
                Engine::builder().tick(tick).clock_resolution(resolution).build().unwrap();
            for e in [&fine, &coarse] {
                e.insert_with_ttl(1, 1, Duration::from_secs(3600));
                e.insert_with_ttl(2, 2, Duration::MAX);
                e.insert(3, 3);
                e.flush();
                assert_eq!((e.get(&1), e.get(&2), e.get(&3)), (Some(1), Some(2), Some(3)));
            }
            // 1 ns to live: gone once the fine clock has moved on, whatever the other does.
            fine.insert_with_ttl(4, 4, ns);
            common::wait_until("a 1 ns stay over on the fine clock", || fine.get(&4).is_none());
            for e in [&fine, &coarse] {
                e.run_maintenance();
                assert_eq!(e.get(&3), Some(3));
                e.validate().unwrap();
            }
            coarse.shutdown();
            drop(fine);
        });
    }
}

static MEMO_CLOCK: std::sync::LazyLock<ManualClock> = std::sync::LazyLock::new(ManualClock::new);
static MEMO: std::sync::LazyLock<memokit::Memoizer> = std::sync::LazyLock::new(|| {
    memokit::Memoizer::builder().clock(MEMO_CLOCK.clone()).build().expect("memoizer")
});
static MEMO_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[memokit::memoize(timeout = 5, memoizer = &MEMO)]
fn memo_timed(x: u64) -> u64 {
    MEMO_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    x
}

/// The memoizer serves a result exactly until its timeout (the manual clock is the lookups'
/// clock), each result keeps the timeout it was stored with, and timeouts at the edges: 1 ns,
/// `u64::MAX` seconds and `Duration::MAX` (no deadline, even at the clock's end).
#[test]
fn memoizer_timeouts_at_the_edges() {
    let runs = || MEMO_RUNS.load(std::sync::atomic::Ordering::SeqCst);
    let clock = &*MEMO_CLOCK;
    let ns = Duration::from_nanos(1);
    let h = memo_timed_memo();
    memo_timed(1);
    clock.advance(Duration::from_secs(5) - ns);
    memo_timed(1);
    assert_eq!(runs(), 1, "served until the last nanosecond before the timeout");
    h.set_cache_timeout(ns);
    clock.advance(ns);
    memo_timed(1);
    assert_eq!(runs(), 2, "not served at the deadline (t = 5 s); stored again for 1 ns");
    memo_timed(1);
    assert_eq!(runs(), 2, "served within its nanosecond");
    memo_timed(2);
    clock.advance(ns);
    memo_timed(1);
    memo_timed(2);
    assert_eq!(runs(), 5, "both 1 ns results are gone a nanosecond later");
    h.set_cache_timeout(u64::MAX);
    memo_timed(3);
    h.set_cache_timeout(Duration::MAX);
    memo_timed(4);
    h.set_cache_timeout(5);
    clock.advance(Duration::MAX);
    memo_timed(3);
    memo_timed(4);
    assert_eq!(runs(), 7, "timeouts too large to represent never expire");
    MEMO.run_maintenance();
    memo_timed(3);
    memo_timed(4);
    assert_eq!(runs(), 7, "nor does maintenance reclaim them");
}

/// Never stale under concurrency, checked without timing: on a manual clock moved by another
/// thread, a value (named by a unique id) returned by `get` or `get_or_insert_with` must
/// still have been live when the lookup began: `now` read before the lookup is below the
/// value's deadline. The engine computes the deadline from a clock reading taken during the
/// store, so `now` read after the store returned, plus the TTL, bounds it from above. Stores,
/// replacements (with and without TTL, in place or not), maintenance and capacity pressure
/// run meanwhile.
#[test]
fn never_stale_under_concurrency() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    const IDS: usize = 1 << 20;
    let clock = ManualClock::new();
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(12)
        .shards(4)
        .workers(2)
        .tick(Duration::from_nanos(50))
        .clock(clock.clone())
        .build()
        .unwrap();
    let now = {
        let clock = clock.clone();
        move || u64::try_from(clock.now().as_nanos()).unwrap()
    };
    // Per id: an upper bound of its deadline (u64::MAX: no deadline, or not stored yet).
    let bounds: Arc<Vec<AtomicU64>> =
        Arc::new((0..IDS).map(|_| AtomicU64::new(u64::MAX)).collect());
    let next_id = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ttl_of = |id: u64| match id % 5 {
        0 => None,
        n => Some(n * 37),
    };
    let store = {
        let (e, bounds, next_id, now) = (e.clone(), bounds.clone(), next_id.clone(), now.clone());
        move |key: u64| {
            let id = next_id.fetch_add(1, SeqCst);
            if id as usize >= IDS {
                return false;
            }
            match ttl_of(id) {
                Some(t) => {
                    e.insert_with_ttl(key, id, Duration::from_nanos(t));
                    bounds[id as usize].store(now() + t, SeqCst);
                }
                None => e.insert(key, id),
            }
            true
        }
    };
    let check = {
        let bounds = bounds.clone();
        move |before: u64, got: Option<u64>, what: &str| {
            if let Some(id) = got {
                let bound = bounds[id as usize].load(SeqCst);
                assert!(
                    before < bound,
                    "{what}: value {id} served at {before}, its deadline <= {bound}"
                );
            }
        }
    };
    let mut threads = Vec::new();
    for t in 0..2u64 {
        let (store, stop, now) = (store.clone(), stop.clone(), now.clone());
        threads.push(std::thread::spawn(move || {
            // A store per move of the clock, so that stores, moves and lookups interleave.
            let (mut k, mut last) = (t, u64::MAX);
            while !stop.load(SeqCst) {
                if now() == last {
                    std::thread::yield_now();
                    continue;
                }
                last = now();
                if !store(k % 16) {
                    break;
                }
                k += 3;
            }
        }));
    }
    for t in 0..2u64 {
        let (e, check, stop, now, bounds, next_id) =
            (e.clone(), check.clone(), stop.clone(), now.clone(), bounds.clone(), next_id.clone());
        threads.push(std::thread::spawn(move || {
            let (mut k, mut last) = (t, u64::MAX);
            while !stop.load(SeqCst) {
                if now() == last {
                    std::thread::yield_now();
                    continue;
                }
                last = now();
                k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let key = (k >> 33) % 16;
                let before = now();
                check(before, e.get(&key), "get");
                let before = now();
                let mine = next_id.fetch_add(1, SeqCst);
                if mine as usize >= IDS {
                    break;
                }
                let opts = memokit_engine::InsertOptions::new().ttl(Duration::from_nanos(40));
                let got = e.get_or_insert_with_options(key, opts, || mine);
                if got == mine {
                    bounds[mine as usize].store(now() + 40, SeqCst);
                } else {
                    check(before, Some(got), "get_or_insert_with");
                }
            }
        }));
    }
    for steps in 0..5_000u64 {
        clock.advance(Duration::from_nanos(1 + steps % 29));
        if steps % 7 == 0 {
            e.run_maintenance();
        }
        std::thread::yield_now();
    }
    stop.store(true, SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    e.flush();
    let s = e.stats();
    // The lookups had something to check (not a property: a sanity check of the run).
    assert!(s.hits > 0 && s.expirations > 0, "{s:?}");
    e.validate().unwrap();
}
