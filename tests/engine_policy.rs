//! The eviction policy seen through the engine (`engine/src/policy.rs`): S3-FIFO queues with
//! TinyLFU admission and an adaptive window.
//!
//! Each test drives one shard the way the hit-ratio bench does (`get`; on a miss `insert` and
//! `flush`, so the policy sees every insert before the next request) and checks a property of
//! the policy, with thresholds well away from the measured values (the hash seed differs per
//! run; measured values in each test's doc). Three of them fail with the plain S3-FIFO this
//! policy replaced (loop 0.48, short reuse 0.32, refill 0.42); two guard against what frequency
//! admission risks (stale counts, one-time keys), and one runs weights, removals and clears.
//! `Engine::validate` (which runs `Policy::validate`) is checked along the way.

use memokit_engine::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn one_shard(capacity: u64) -> Engine<u64, u64> {
    Engine::builder().max_capacity(capacity).shards(1).workers(1).build().unwrap()
}

/// `get`; on a miss, `insert` and `flush`. Returns whether it was a hit.
fn access(e: &Engine<u64, u64>, k: u64) -> bool {
    if e.get(&k).is_some() {
        return true;
    }
    e.insert(k, k);
    e.flush();
    false
}

/// Hits over `rounds` passes of `keys`.
fn hit_ratio(e: &Engine<u64, u64>, keys: &[u64], rounds: usize) -> f64 {
    let mut hits = 0;
    for _ in 0..rounds {
        hits += keys.iter().filter(|&&k| access(e, k)).count();
    }
    hits as f64 / (keys.len() * rounds) as f64
}

fn valid(e: &Engine<u64, u64>) {
    e.flush();
    e.validate().unwrap();
}

/// A loop over 1.5 × the capacity: every key recurs only after more misses than the cache
/// holds, so LRU and FIFO never hit. Frequency admission keeps a stable subset (the best
/// possible is 2/3; measured 0.63).
#[test]
fn a_loop_larger_than_the_cache_still_hits() {
    let e = one_shard(1_000);
    let keys: Vec<u64> = (0..1_500).collect();
    hit_ratio(&e, &keys, 10);
    let r = hit_ratio(&e, &keys, 10);
    valid(&e);
    assert!(r > 0.55, "loop hit ratio {r:.3}");
}

/// A long loop over 1.5 × the capacity keeps its hits lap after lap. Once the loop's keys
/// are counted at the sketch's ceiling (15) every competition is a tie, which keeps main as it
/// is. Two things eroded that:
/// - Aging the sketch then (halving every counter) made the candidates, counted again at
///   their insert, beat main's victims, counted again only when main's CLOCK passes them
///   after their hit: for a lap or two after each halving many misses evicted the very entry
///   the loop read next (laps 34 and 50 hit 0.40 and 0.22, the best 0.66, and each halving
///   left the laps after it lower, 0.62). Increments that change no counter no longer count
///   toward the aging (as in Caffeine), so a sketch saturated by a loop does not age.
/// - The window grew on the rare small-tagged ghost hits (a fingerprint that survives a lap),
///   and small follows its target up but never down: in about one engine of three the laps
///   slipped to 0.648–0.653 by the 60th (on 13 shards, `benches/hit_ratio.rs`, from ~1% of
///   the share to ~2%). A ghost hit of a key counted at the ceiling no longer grows the
///   window (it lost a tie, which a larger window does not settle).
///
/// Three one-shard engines (the hash seeds differ). The bound, 2% under the best lap, catches
/// the halving's dips in every run; the window's drift stayed within it on one shard in most
/// runs (it shows in the bench: 10k loop 64.2–64.4 → 64.8–65.0), so this test does not tell
/// the second fix apart. Measured with both fixes: every lap from the 5th at the best (0.66)
/// in 25 of 26 runs, just under 0.99 of it in the other.
#[test]
fn a_long_loop_keeps_its_hits_lap_after_lap() {
    let keys: Vec<u64> = (0..1_500).collect();
    let runs: Vec<Vec<f64>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let e = one_shard(1_000);
                    let laps: Vec<f64> = (0..60).map(|_| hit_ratio(&e, &keys, 1)).collect();
                    valid(&e);
                    laps
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for laps in runs {
        let best = laps.iter().copied().fold(0.0, f64::max);
        assert!(best > 0.6, "best lap {best:.3}");
        for (i, &r) in laps.iter().enumerate().skip(5) {
            assert!(r > 0.98 * best, "lap {i} hit {r:.3}, the best lap {best:.3}: {laps:.3?}");
        }
    }
}

/// Keys read again and again keep their place while a stream of one-time keys ten times the
/// capacity flows through (scan resistance).
#[test]
fn one_time_keys_do_not_displace_frequent_ones() {
    let e = one_shard(1_000);
    let hot: Vec<u64> = (0..500).collect();
    let mut next_cold = 1 << 40;
    for _ in 0..20 {
        hit_ratio(&e, &hot, 1);
        for _ in 0..500 {
            access(&e, next_cold);
            next_cold += 1;
        }
    }
    valid(&e);
    let resident = hot.iter().filter(|&&k| e.contains_key(&k)).count();
    assert!(resident >= 450, "{resident} of 500 hot keys resident");
    assert!(e.len() <= 1_000);
}

/// After the popular set changes, the new keys take over even though the old ones have far
/// higher counts in the sketch: the window grows on the misses it regrets, and the counts
/// decay.
#[test]
fn a_new_popular_set_takes_over() {
    let e = one_shard(1_000);
    let old: Vec<u64> = (0..800).collect();
    let new: Vec<u64> = (10_000..10_800).collect();
    hit_ratio(&e, &old, 30);
    hit_ratio(&e, &new, 30);
    let r = hit_ratio(&e, &new, 5);
    valid(&e);
    assert!(r > 0.8, "hit ratio on the new set {r:.3}");
}

/// With recency only (each key read a second time 1 to 300 misses later, never again), a
/// window of the initial size (1%) misses most second reads: main admits none of these keys
/// (each is counted once, like its victim). The window grows on the regretted misses until
/// they hit (measured 1.0 over the last third).
#[test]
fn the_window_grows_for_short_reuse() {
    let e = one_shard(1_000);
    let mut rng = StdRng::seed_from_u64(3);
    let mut due: Vec<Vec<u64>> = vec![Vec::new(); 301];
    let (mut hits, mut seconds) = (0, 0);
    for i in 0..30_000u64 {
        access(&e, i);
        due[((i + rng.gen_range(1..=300)) % 301) as usize].push(i);
        for k in std::mem::take(&mut due[(i % 301) as usize]) {
            let hit = access(&e, k);
            if i >= 20_000 {
                seconds += 1;
                hits += usize::from(hit);
            }
        }
    }
    valid(&e);
    let r = hits as f64 / seconds as f64;
    assert!(r > 0.8, "second reads hit {r:.3}");
}

/// After `clear` the shard fills again from nothing: its entries move to main without
/// competing, and frequency admission works again once it is full (measured 0.63–0.66).
#[test]
fn refilling_after_clear() {
    let e = one_shard(1_000);
    let keys: Vec<u64> = (0..1_500).collect();
    hit_ratio(&e, &keys, 5);
    e.clear();
    valid(&e);
    assert!(e.is_empty());
    hit_ratio(&e, &keys, 10);
    let r = hit_ratio(&e, &keys, 10);
    valid(&e);
    assert!(r > 0.55, "loop hit ratio after clear {r:.3}");
}

/// Weighted entries, removals, clears and several shards, with the invariants checked after
/// every batch: queue weights, the window's bounds, the sketch and the ghost's counts.
#[test]
fn weights_removals_and_clears_keep_the_policy_valid() {
    let mut rng = StdRng::seed_from_u64(7);
    for shards in [1, 4] {
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(2_000)
            .shards(shards)
            .workers(1)
            .weigher(|_, v| (*v % 8 + 1) as u32)
            .build()
            .unwrap();
        for step in 0..30_000u64 {
            let k =
                if rng.gen_bool(0.5) { rng.gen_range(0..500) } else { rng.gen_range(0..20_000) };
            match rng.gen_range(0..100) {
                0..=69 => {
                    if e.get(&k).is_none() {
                        e.insert(k, rng.gen());
                    }
                }
                70..=89 => e.insert(k, rng.gen()),
                _ => e.remove(&k),
            }
            if step % 7_000 == 6_999 {
                e.clear();
            }
            if step % 97 == 0 {
                valid(&e);
                assert!(e.weighted_size() <= 2_000, "over capacity after flush");
            }
        }
        valid(&e);
    }
}
