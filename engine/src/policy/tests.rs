//! Unit tests of the sketch's aging (the policy's behaviour through the engine is tested in
//! `tests/engine_policy.rs`).

use super::{Sketch, SAMPLE_FACTOR};

/// A key counted at the ceiling stays there: increments that change no counter do not count
/// toward the halving (before, `sample` of them halved every counter, 15 to 7).
#[test]
fn increments_at_the_ceiling_do_not_age_the_sketch() {
    let mut s = Sketch::new(64);
    assert_eq!(s.sample, SAMPLE_FACTOR * 64);
    let h = 0x1234_5678_9abc_def0;
    for _ in 0..15 {
        s.increment(h);
    }
    assert_eq!(s.estimate(h), 15);
    for _ in 15..s.sample {
        s.increment(h);
    }
    assert_eq!(s.estimate(h), 15);
    assert_eq!(s.adds, 15, "only the increments that changed a counter count");
    s.validate().unwrap();
}

/// Increments that do change counters still age it: after `sample` of them every counter is
/// halved (and the count of increments with it).
#[test]
fn counted_increments_halve_the_sketch() {
    let mut s = Sketch::new(64);
    let h = 7;
    for _ in 0..10 {
        s.increment(h);
    }
    assert_eq!(s.estimate(h), 10);
    // Distinct keys, each counted once (almost all change a counter), until the halving.
    let mut k = 1u64 << 32;
    while s.adds >= 10 && s.estimate(h) == 10 {
        s.increment(k);
        k += 1;
    }
    assert_eq!(s.estimate(h), 5, "halved once the count of increments reached the sample");
    assert!(s.adds < s.sample);
    s.validate().unwrap();
}
