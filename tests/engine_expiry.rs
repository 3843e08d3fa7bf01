//! Deadlines, the coarse clock's resolution and the expiry wheel, on a `ManualClock`.
//!
//! engine.md: an entry is served before its deadline and never more than `clock_resolution`
//! after it, even before the wheel has reclaimed it; the wheel (paced by `tick`) reclaims
//! expired entries within a tick or two; a zero TTL stores nothing; a TTL too large to
//! represent means no deadline.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::no_hang;
use memokit_engine::{Engine, InsertOptions, ManualClock};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

fn engine(tick: Duration, resolution: Duration) -> (Engine<u64, u64>, ManualClock) {
    let clock = ManualClock::new();
    let engine = Engine::builder()
        .max_capacity(100_000)
        .shards(4)
        .workers(2)
        .tick(tick)
        .clock_resolution(resolution)
        .clock(clock.clone())
        .build()
        .unwrap();
    (engine, clock)
}

/// Served strictly before the deadline, never once `deadline + clock_resolution` is reached,
/// without any maintenance in between (the hit path checks the deadline itself).
#[test]
fn served_before_deadline_and_never_after_resolution() {
    for resolution in [MS, 10 * MS] {
        for ttl in [2 * MS, 10 * MS, 20 * MS, SEC, 3600 * SEC] {
            let ttl = ttl.max(2 * resolution);
            let (e, clock) = engine(SEC, resolution);
            e.insert_with_ttl(1, 10, ttl);
            assert_eq!(e.get(&1), Some(10), "at insert time, ttl {ttl:?}");
            clock.advance(ttl - resolution);
            assert_eq!(e.get(&1), Some(10), "{resolution:?} before the deadline, ttl {ttl:?}");
            clock.advance(2 * resolution);
            assert_eq!(e.get(&1), None, "resolution {resolution:?} after a ttl of {ttl:?}");
            assert!(!e.contains_key(&1));
            e.run_maintenance();
            assert_eq!(e.get(&1), None, "after maintenance");
        }
    }
}

/// The default `clock_resolution` (1 ms) bounds staleness the same way.
#[test]
fn default_resolution_bounds_staleness() {
    let clock = ManualClock::new();
    let e: Engine<u64, u64> = Engine::builder().clock(clock.clone()).build().unwrap();
    e.insert_with_ttl(7, 70, 50 * MS);
    clock.advance(49 * MS);
    assert_eq!(e.get(&7), Some(70));
    clock.advance(2 * MS);
    assert_eq!(e.get(&7), None, "51 ms after a 50 ms ttl with the default 1 ms resolution");
}

#[test]
fn zero_ttl_stores_nothing() {
    let (e, _clock) = engine(SEC, MS);
    e.insert_with_ttl(1, 10, Duration::ZERO);
    e.insert_with_options(2, 20, InsertOptions::new().ttl(Duration::ZERO));
    assert_eq!(e.get(&1), None);
    assert_eq!(e.get(&2), None);
    e.flush();
    assert_eq!(e.len(), 0);

    // get_or_insert_with hands the value back but does not keep it.
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let v = e.get_or_insert_with_options(3, InsertOptions::new().ttl(Duration::ZERO), || {
            calls.fetch_add(1, Ordering::SeqCst);
            30
        });
        assert_eq!(v, 30);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a zero-ttl value must not be stored");
    e.flush();
    assert_eq!(e.len(), 0);
}

/// A zero-TTL insert supersedes the key's older value: the older value is no longer the last
/// one inserted for that key, so it must not be served (issue 2, Proof).
#[test]
fn zero_ttl_insert_hides_the_older_value() {
    let (e, _clock) = engine(SEC, MS);
    e.insert(1, 10);
    assert_eq!(e.get(&1), Some(10));
    e.insert_with_ttl(1, 11, Duration::ZERO);
    assert_eq!(e.get(&1), None, "value 10 was superseded by a zero-ttl insert of 11");
    e.flush();
    assert_eq!(e.get(&1), None, "after flush");
}

/// TTLs too large to represent mean "no deadline"; nothing overflows, even late in time.
#[test]
fn huge_ttl_means_no_deadline() {
    let (e, clock) = engine(SEC, MS);
    let huge = [Duration::MAX, Duration::from_secs(u64::MAX), Duration::from_nanos(u64::MAX)];
    for (i, ttl) in huge.iter().enumerate() {
        e.insert_with_ttl(i as u64, i as u64, *ttl);
    }
    clock.advance(100 * YEAR);
    // Inserted late in time: `now + ttl` overflows any representation.
    for (i, ttl) in huge.iter().enumerate() {
        e.insert_with_ttl(10 + i as u64, i as u64, *ttl);
    }
    clock.advance(100 * YEAR);
    no_hang("run_maintenance after 200 years", {
        let e = e.clone();
        move || e.run_maintenance()
    });
    for i in 0..huge.len() as u64 {
        assert_eq!(e.get(&i), Some(i), "huge ttl {:?} inserted at 0", huge[i as usize]);
        assert_eq!(e.get(&(10 + i)), Some(i), "huge ttl {:?} inserted at 100y", huge[i as usize]);
    }
    assert_eq!(e.stats().expirations, 0);
}

/// The wheel reclaims expired entries on maintenance: `len()` drops and `expirations` counts
/// them; entries whose deadline is still ahead stay.
#[test]
fn wheel_reclaims_expired_entries() {
    let tick = 10 * MS;
    let (e, clock) = engine(tick, MS);
    // 100 entries with deadlines 10 ms .. 1 s, 50 without.
    for i in 0..100u64 {
        e.insert_with_ttl(i, i, 10 * MS * (i as u32 + 1));
    }
    for i in 100..150u64 {
        e.insert(i, i);
    }
    e.run_maintenance();
    assert_eq!(e.len(), 150);
    assert_eq!(e.stats().expirations, 0);

    // Half way: deadlines at least two ticks in the past are gone, future ones stay.
    clock.advance(500 * MS);
    e.run_maintenance();
    let len = e.len();
    let due = 48; // deadlines <= 480 ms = now - 2 ticks
    let pending = 50; // deadlines > 500 ms
    assert!(
        (50 + pending..=150 - due).contains(&len),
        "len {len} after 500 ms: expected the {due} entries due two ticks ago gone and the \
         {pending} with a later deadline still there"
    );
    for i in 50..100u64 {
        assert_eq!(e.get(&i), Some(i), "deadline {} ms not reached yet", 10 * (i + 1));
    }

    clock.advance(500 * MS + 3 * tick);
    e.run_maintenance();
    assert_eq!(e.len(), 50, "every ttl entry is past its deadline by 3 ticks");
    let s = e.stats();
    assert_eq!(s.expirations, 100);
    assert_eq!(s.entries, 50);
    for i in 0..150u64 {
        assert_eq!(e.get(&i), (i >= 100).then_some(i));
    }
}

/// Long deadlines live in the wheel's coarse levels and cascade down: they must neither fire
/// early nor be lost.
#[test]
fn long_deadlines_cascade_without_firing_early() {
    let (e, clock) = engine(SEC, MS);
    e.insert_with_ttl(1, 1, 2 * 3600 * SEC);
    e.insert_with_ttl(2, 2, 30 * DAY);
    e.insert_with_ttl(3, 3, 400 * DAY);
    e.insert(4, 4);
    for (step, alive) in
        [(3600 * SEC, [1, 2, 3]), (2 * 3600 * SEC, [2, 3, 0]), (29 * DAY, [2, 3, 0])]
    {
        clock.advance(step);
        e.run_maintenance();
        for k in alive.into_iter().filter(|&k| k != 0) {
            assert_eq!(e.get(&k), Some(k), "key {k} after +{step:?} (now {:?})", clock.now());
        }
    }
    assert_eq!(e.get(&1), None);
    clock.advance(2 * DAY);
    e.run_maintenance();
    assert_eq!(e.get(&2), None);
    assert_eq!(e.get(&3), Some(3));
    clock.advance(400 * DAY);
    e.run_maintenance();
    assert_eq!(e.get(&3), None);
    assert_eq!(e.get(&4), Some(4));
    assert_eq!(e.len(), 1);
    assert_eq!(e.stats().expirations, 3);
}

/// Jumping the clock by years with a 1 ms tick (about 3e11 ticks) must not walk tick by tick.
#[test]
fn long_clock_jumps_do_not_hang() {
    let (e, clock) = engine(MS, MS);
    for i in 0..1000u64 {
        e.insert_with_ttl(i, i, MS * (i as u32 % 97 + 1) + DAY * (i as u32 % 5));
    }
    e.insert(5000, 5000);
    for round in 0..3u64 {
        clock.advance(10 * YEAR);
        no_hang("run_maintenance after a 10-year jump", {
            let e = e.clone();
            move || e.run_maintenance()
        });
        assert_eq!(e.len(), 1, "round {round}: every ttl entry expired");
        assert_eq!(e.get(&5000), Some(5000));
        e.insert_with_ttl(round, round, SEC);
        assert_eq!(e.get(&round), Some(round), "insert after the jump");
        clock.advance(2 * SEC);
        e.run_maintenance();
        assert_eq!(e.get(&round), None);
    }
    assert_eq!(e.stats().expirations, 1003);
}

/// A timer of a replaced or removed entry must not expire the entry that replaced it.
#[test]
fn stale_timers_do_not_touch_replacements() {
    let tick = 10 * MS;
    let (e, clock) = engine(tick, MS);
    e.insert_with_ttl(1, 10, 20 * MS);
    e.insert(1, 11); // replaced before its deadline, no deadline now
    e.insert_with_ttl(2, 20, 20 * MS);
    e.insert_with_ttl(2, 21, 3600 * SEC); // later deadline
    e.insert_with_ttl(3, 30, 20 * MS);
    e.remove(&3);
    e.insert(3, 31); // removed then inserted again
    e.insert_with_ttl(4, 40, 3600 * SEC);
    e.insert_with_ttl(4, 41, 20 * MS); // earlier deadline now
    clock.advance(20 * MS + 3 * tick);
    e.run_maintenance();
    assert_eq!(e.get(&1), Some(11));
    assert_eq!(e.get(&2), Some(21));
    assert_eq!(e.get(&3), Some(31));
    assert_eq!(e.get(&4), None, "the replacement's own, earlier deadline applies");
    assert_eq!(e.len(), 3);
    assert_eq!(e.stats().expirations, 1, "only key 4's entry expired");
}

#[test]
fn get_or_insert_with_recomputes_after_expiry() {
    let (e, clock) = engine(SEC, MS);
    let calls = AtomicUsize::new(0);
    let opts = InsertOptions::new().ttl(10 * MS);
    let get =
        || e.get_or_insert_with_options(1, opts, || calls.fetch_add(1, Ordering::SeqCst) as u64);
    assert_eq!(get(), 0);
    clock.advance(5 * MS);
    assert_eq!(get(), 0, "cached before the deadline");
    clock.advance(6 * MS);
    assert_eq!(get(), 1, "recomputed past deadline + resolution");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Removed entries are not counted as expirations when their deadline passes.
#[test]
fn removed_entries_are_not_expirations() {
    let (e, clock) = engine(10 * MS, MS);
    for i in 0..10u64 {
        e.insert_with_ttl(i, i, 50 * MS);
    }
    for i in 0..5u64 {
        e.remove(&i);
    }
    clock.advance(SEC);
    e.run_maintenance();
    assert_eq!(e.len(), 0);
    assert_eq!(e.stats().expirations, 5);
}

mod wheel_model {
    //! Property test of the expiry wheel against a model: a map from key to absolute deadline.
    //! TTLs and clock steps span many magnitudes (so entries land in every wheel level and the
    //! overflow list, and advances cross many buckets at once). After each maintenance step at
    //! time `now`: every entry whose deadline is after `now` is still served; `len()` lies
    //! between the number of entries with a deadline after `now` and the number with a deadline
    //! after `now - 2 ticks` (reclaimed within a tick or two); `validate()` holds.
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Insert { key: u8, ttl: Duration },
        Advance(Duration),
        Maintain,
    }

    /// `mantissa × 10^exp` nanoseconds: from 1 µs to ~1000 days.
    fn span() -> impl Strategy<Value = Duration> {
        (1u64..1000, 3u32..=14).prop_map(|(m, e)| Duration::from_nanos(m * 10u64.pow(e) / 100))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..40, span()).prop_map(|(key, ttl)| Op::Insert { key, ttl }),
            2 => span().prop_map(Op::Advance),
            2 => Just(Op::Maintain),
        ]
    }

    fn run(tick: Duration, ops: &[Op]) -> Result<(), TestCaseError> {
        let (e, clock) = engine(tick, MS);
        let mut model: HashMap<u8, Duration> = HashMap::new();
        for op in ops {
            let now = clock.now();
            match *op {
                Op::Insert { key, ttl } => {
                    e.insert_with_ttl(u64::from(key), u64::from(key), ttl);
                    model.insert(key, now + ttl);
                }
                Op::Advance(d) => clock.advance(d),
                Op::Maintain => {
                    e.run_maintenance();
                    e.validate().map_err(TestCaseError::fail)?;
                    for (&k, &d) in &model {
                        if d > now {
                            prop_assert_eq!(
                                e.get(&u64::from(k)),
                                Some(u64::from(k)),
                                "deadline {:?} not reached at {:?}",
                                d,
                                now
                            );
                        }
                    }
                    let late = now.saturating_sub(2 * tick);
                    let lower = model.values().filter(|&&d| d > now).count() as u64;
                    let upper = model.values().filter(|&&d| d > late).count() as u64;
                    let len = e.len();
                    prop_assert!(
                        (lower..=upper).contains(&len),
                        "len {} outside [{}, {}] at {:?}",
                        len,
                        lower,
                        upper,
                        now
                    );
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::common::proptest_cases(64),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn wheel_agrees_with_deadline_model(
            tick in prop_oneof![Just(MS), Just(SEC)],
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            run(tick, &ops)?;
        }
    }
}

/// A manual clock can be pushed to its end (`advance(Duration::MAX)` saturates): entries
/// without a deadline must still be served there ("no deadline" means the entry leaves only by
/// eviction, removal or its generation), and entries with one must not.
#[test]
fn no_deadline_outlives_a_saturated_clock() {
    let (e, clock) = engine(SEC, MS);
    e.insert(1, 1);
    e.insert_with_ttl(2, 2, Duration::MAX);
    // 100 years is representable in nanoseconds (1000 would be "too large": no deadline).
    e.insert_with_ttl(3, 3, 100 * YEAR);
    clock.advance(Duration::MAX);
    clock.advance(Duration::MAX);
    no_hang("maintenance at the end of time", {
        let e = e.clone();
        move || e.run_maintenance()
    });
    assert_eq!(e.get(&3), None, "100 years have passed");
    assert_eq!(e.get(&1), Some(1), "no ttl: no deadline");
    assert_eq!(e.get(&2), Some(2), "Duration::MAX ttl: no deadline");
    e.insert(4, 4);
    assert_eq!(e.get(&4), Some(4), "inserted at the end of time without a deadline");
}

/// Expired entries the wheel has not reclaimed yet still weigh on the capacity; when a store
/// takes the engine over it, the dead entries of *every* shard are reclaimed before the policy
/// evicts a live one: a worker reclaims its own shards', and asks any other worker whose shards
/// may hold dead ones to reclaim them (and evict if still needed) instead of evicting itself.
/// So while fewer live entries than the capacity are held, none is evicted (engine.md: nothing
/// is evicted below capacity), whichever shard or worker the dead ones are in. The manual
/// clock runs no timers: only that rule reclaims them. With 2 workers this failed (live keys
/// lost) while a worker reclaimed only its own shards.
#[test]
fn expired_entries_in_any_shard_go_before_live_ones() {
    for workers in [1, 2, 3] {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(100)
            .shards(8)
            .workers(workers)
            .clock(clock.clone())
            .build()
            .unwrap();
        for k in 1000..1060 {
            e.insert_with_ttl(k, k, SEC);
        }
        e.flush();
        clock.advance(2 * SEC);
        for k in 0..99 {
            e.insert(k, k);
            e.flush();
        }
        for k in 0..99 {
            assert_eq!(e.get(&k), Some(k), "live key {k} evicted ({workers} workers)");
        }
        assert_eq!(e.stats().evictions, 0, "{workers} workers");
        e.validate().unwrap();
    }
}

/// The same rule within a tick: an entry whose deadline has passed but whose tick of the
/// wheel has not ended yet is dead too, and must go before a live entry is evicted. With a
/// 1 s tick, entries that expired 200 ms ago used to stay (the wheel only reclaims entries
/// due by the current tick) and the policy evicted live keys in their place, below capacity.
#[test]
fn entries_expired_within_the_current_tick_go_before_live_ones() {
    for workers in [1, 2] {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(20)
            .shards(2)
            .workers(workers)
            .tick(SEC)
            .clock(clock.clone())
            .build()
            .unwrap();
        clock.advance(100 * MS);
        for k in 1000..1010 {
            e.insert_with_ttl(k, k, 500 * MS);
        }
        e.flush();
        // t = 800 ms: the ten are dead (deadline 600 ms), their tick (0) is not over.
        clock.advance(700 * MS);
        for k in 1000..1010 {
            assert_eq!(e.get(&k), None);
        }
        for k in 0..19 {
            e.insert(k, k);
            e.flush();
        }
        for k in 0..19 {
            assert_eq!(e.get(&k), Some(k), "live key {k} evicted ({workers} workers)");
        }
        assert_eq!(e.stats().evictions, 0, "{workers} workers");
        e.validate().unwrap();
    }
}

mod reclaim_model {
    //! Property test: however deadlines fall against the wheel's ticks, a store that takes the
    //! engine over capacity evicts nothing while the live entries (deadline after now) fit:
    //! every dead entry goes first. Stores that would take the live entries over the capacity
    //! are skipped, so no eviction is ever due; after each store (and flush) every live key is
    //! served and the engine has evicted nothing.
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const CAPACITY: usize = 16;

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Insert { key: u8, ttl: Option<Duration> },
        Advance(Duration),
    }

    /// `mantissa × 10^exp` nanoseconds: from 10 µs to ~100 s.
    fn span() -> impl Strategy<Value = Duration> {
        (1u64..1000, 4u32..=11).prop_map(|(m, e)| Duration::from_nanos(m * 10u64.pow(e) / 100))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..48, proptest::option::weighted(0.8, span()))
                .prop_map(|(key, ttl)| Op::Insert { key, ttl }),
            2 => span().prop_map(Op::Advance),
        ]
    }

    fn run(tick: Duration, workers: usize, ops: &[Op]) -> Result<(), TestCaseError> {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(CAPACITY as u64)
            .shards(4)
            .workers(workers)
            .tick(tick)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut model: HashMap<u8, Option<Duration>> = HashMap::new();
        for op in ops {
            let now = clock.now();
            match *op {
                Op::Insert { key, ttl } => {
                    let live = |d: &Option<Duration>| d.is_none_or(|d| d > now);
                    let others = model.iter().filter(|&(k, d)| *k != key && live(d)).count();
                    if others + 1 > CAPACITY {
                        continue;
                    }
                    match ttl {
                        Some(t) => e.insert_with_ttl(u64::from(key), u64::from(key), t),
                        None => e.insert(u64::from(key), u64::from(key)),
                    }
                    model.insert(key, ttl.map(|t| now + t));
                    e.flush();
                    for (&k, d) in &model {
                        if live(d) {
                            prop_assert_eq!(
                                e.get(&u64::from(k)),
                                Some(u64::from(k)),
                                "live key {} (deadline {:?}) lost at {:?}",
                                k,
                                d,
                                now
                            );
                        }
                    }
                    prop_assert_eq!(e.stats().evictions, 0);
                    e.validate().map_err(TestCaseError::fail)?;
                }
                Op::Advance(d) => clock.advance(d),
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::common::proptest_cases(64),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn dead_entries_go_before_live_ones(
            tick in prop_oneof![Just(MS), Just(SEC), Just(64 * SEC)],
            workers in 1usize..=2,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            run(tick, workers, &ops)?;
        }
    }
}

/// `run_maintenance` expires what the clock says is due, including entries whose deadline
/// fell inside the current tick (it used to leave them until the tick had ended, so a test
/// that advanced past a deadline still saw the entry resident and no expiration counted).
#[test]
fn run_maintenance_expires_within_the_current_tick() {
    let (e, clock) = engine(SEC, MS);
    clock.advance(300 * MS);
    e.insert_with_ttl(1, 1, SEC); // deadline 1.3 s
    e.insert_with_ttl(2, 2, 2 * SEC); // deadline 2.3 s
    clock.advance(1100 * MS); // t = 1.4 s
    e.run_maintenance();
    assert_eq!(e.stats().expirations, 1);
    assert_eq!(e.len(), 1);
    assert_eq!(e.get(&2), Some(2));
    e.validate().unwrap();
}

/// Over capacity with more live entries than one reclaim slice (1,024) whose deadlines fall
/// where the clock is inside the current tick: reclaiming before evicting looks at them once
/// and evicts, instead of pulling the same live entries again slice after slice without end
/// (it did, in an intermediate version of the wheel that bounded a part of the next tick by
/// its start only).
#[test]
fn live_entries_due_within_the_tick_do_not_stall_eviction() {
    let clock = ManualClock::new();
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(2_000)
        .shards(1)
        .tick(SEC)
        .clock_resolution(MS)
        .clock(clock.clone())
        .build()
        .expect("build");
    clock.advance(985 * MS);
    for k in 0..3_000 {
        e.insert_with_ttl(k, k, 5 * MS); // deadlines at 0.990 s, inside the current tick
    }
    let e2 = e.clone();
    no_hang("eviction with live entries due within the tick", move || e2.flush());
    assert_eq!(e.len(), 2_000);
    assert_eq!(e.stats().expirations, 0);
    e.validate().unwrap();
}
