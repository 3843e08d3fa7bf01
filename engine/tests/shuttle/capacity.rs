//! The capacity rule across two workers racing a retirement: a live entry is never evicted
//! while an entry of a retired generation is resident, also while `retire` is still running
//! (its generation already refused to lookups, its `Retire` commands not counted or sent yet).

use super::*;

static SEEN: Seen = Seen([const { std::sync::atomic::AtomicUsize::new(0) }; 2]);

/// A store that begins once `retire(g)` has made `g` dead (`is_live` says so) pushes the
/// engine over capacity; the excess is made of `g`'s entries, so nothing live may go. `retire`
/// used to mark the generation retired before it counted its `Retire` commands as pending
/// (`retires_pending`): a worker over capacity in between took every shard for free of dead
/// entries, and its policy evicted live entries (the oldest, never read) while the retired
/// ones, read often, stayed.
#[test]
fn a_store_after_a_retirement_began_never_evicts_live_entries() {
    check(|| {
        let e = engine(6, 2, 2);
        let g = e.new_generation();
        for k in 0..3u64 {
            e.insert(k, k);
        }
        for k in 10..13u64 {
            e.insert_with_options(k, k, InsertOptions::new().generations(g, None));
        }
        e.flush();
        for k in 10..13u64 {
            assert_eq!(e.get(&k), Some(k));
            assert_eq!(e.get(&k), Some(k));
        }
        let retirer = spawn_with(&e, move |e| e.retire(g));
        // Whether the store began after `g` was dead: only then must nothing live go (before,
        // every entry was live and any may be the victim).
        let writer = spawn_with(&e, move |e| {
            let mut dead = false;
            for _ in 0..4 {
                dead = !e.is_live(g);
                if dead {
                    break;
                }
                thread::yield_now();
            }
            e.insert(3, 3);
            dead
        });
        retirer.join().unwrap();
        let dead = writer.join().unwrap();
        SEEN.record(dead);
        e.flush();
        let s = e.stats();
        if dead {
            let missing: Vec<u64> = (0..4).filter(|k| e.get(k).is_none()).collect();
            assert!(missing.is_empty(), "live keys {missing:?} evicted for retired ones: {s:?}");
            assert_eq!(s.evictions, 0, "{s:?}");
        }
        assert!(s.weight <= 6, "{s:?}");
        e.validate().unwrap();
    });
    SEEN.assert_both();
}

/// Two callers retire one generation at once while a third stores past the capacity and
/// flushes: `flush` returns within the capacity, whatever the retirements' progress. The
/// caller that loses the race to retire counts a `Retire` of its own as pending
/// (`retires_pending`) until it finds the generation retired already and takes the count back;
/// the workers leave the excess to that `Retire` meanwhile, which never comes. `flush` went
/// round after round while the losing caller was held in between, gave up after its last
/// round, and returned over capacity.
#[test]
fn flush_racing_two_retirements_of_one_generation_returns_within_capacity() {
    check(|| {
        let e = engine(4, 2, 2);
        let g = e.new_generation();
        for k in 10..14u64 {
            e.insert_with_options(k, k, InsertOptions::new().generations(g, None));
        }
        e.flush();
        let a = spawn_with(&e, move |e| e.retire(g));
        let b = spawn_with(&e, move |e| e.retire(g));
        for k in 0..2u64 {
            e.insert(k, k);
        }
        e.flush();
        let s = e.stats();
        assert!(s.weight <= 4, "over capacity after flush: {s:?}");
        a.join().unwrap();
        b.join().unwrap();
        e.flush();
        assert!((0..2).all(|k| e.get(&k) == Some(k)), "a live key evicted: {:?}", e.stats());
        e.validate().unwrap();
    });
}

/// As [`flush_racing_two_retirements_of_one_generation_returns_within_capacity`], with one
/// `retire`: held between counting its `Retire` commands and sending them, it kept the workers
/// deferring through every round of a `flush` under way just the same.
#[test]
fn flush_racing_one_retirement_returns_within_capacity() {
    check(|| {
        let e = engine(4, 2, 2);
        let g = e.new_generation();
        for k in 10..14u64 {
            e.insert_with_options(k, k, InsertOptions::new().generations(g, None));
        }
        e.flush();
        let a = spawn_with(&e, move |e| e.retire(g));
        for k in 0..2u64 {
            e.insert(k, k);
        }
        e.flush();
        let s = e.stats();
        assert!(s.weight <= 4, "over capacity after flush: {s:?}");
        a.join().unwrap();
        e.flush();
        assert!((0..2).all(|k| e.get(&k) == Some(k)), "a live key evicted: {:?}", e.stats());
        e.validate().unwrap();
    });
}

/// One round of two heavy stores racing a `flush` on a weighted engine (`capacity`, 3 shards,
/// `workers`): `light` keys `1..=light` of weight 2 and an expired one (weight 1) first, then
/// keys 20 and 21 of weight `heavy` stored by two callers at once while the main thread
/// flushes. Each value is `100 * key + weight`, weighed by its last two digits. Never a hang,
/// within capacity after a `flush` that follows both stores, no wrong value, accounts exact.
fn two_heavy_stores_racing_a_flush(capacity: u64, workers: usize, light: u64, heavy: u64) {
    let clock = ManualClock::new();
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(capacity)
        .shards(3)
        .workers(workers)
        .weigher(|_, v: &u64| u32::try_from(*v % 100).unwrap_or(u32::MAX))
        .clock(clock.clone())
        .build()
        .expect("build");
    for k in 1..=light {
        e.insert(k, 100 * k + 2);
    }
    e.insert_with_ttl(9, 901, Duration::from_secs(1));
    e.flush();
    clock.advance(Duration::from_secs(2));
    let a = spawn_with(&e, move |e| e.insert(20, 2000 + heavy));
    let b = spawn_with(&e, move |e| e.insert(21, 2100 + heavy));
    e.flush();
    a.join().unwrap();
    b.join().unwrap();
    e.flush();
    let s = e.stats();
    assert!(s.weight <= capacity, "over capacity after flush: {s:?}");
    for k in (1..=light).chain([20, 21]) {
        let v = e.get(&k);
        assert!(v.is_none_or(|v| v / 100 == k), "key {k} holds {v:?}");
    }
    assert_eq!(e.get(&9), None);
    e.validate().unwrap();
}

/// With a weigher, one worker settles each excess (the worker of the heaviest shard among
/// those that hold it; the others pass it on), two workers.
#[test]
fn weighted_excesses_passed_to_one_worker_end_within_capacity() {
    check(|| two_heavy_stores_racing_a_flush(10, 2, 4, 5));
}

/// With a weigher and three workers, an excess no worker's shards hold alone (usually: a panic
/// put in that branch fails this test): one worker evicts the shortfall, then asks the worker
/// holding the most to evict the rest (`capacity::weighted_turn`).
#[test]
fn weighted_shortfalls_passed_between_three_workers_end_within_capacity() {
    check(|| two_heavy_stores_racing_a_flush(14, 3, 6, 7));
}
