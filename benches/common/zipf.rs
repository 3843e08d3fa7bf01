//! Seeded Zipf key streams.
//!
//! Rank `r` (0-based, 0 the most popular) has probability proportional to `1 / (r + 1)^s`. The
//! sampler inverts a precomputed CDF by binary search: O(n) memory, O(log n) per draw. Benches
//! draw their whole key stream up front, so the sampling cost never enters a timed loop.

use rand::Rng;

/// A Zipf distribution over ranks `0..n` with exponent `s`.
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: u64, s: f64) -> Self {
        assert!(n > 0, "zipf over an empty key space");
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0f64;
        for r in 1..=n {
            sum += (r as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// One draw: a rank in `0..n`.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.gen();
        let i = self.cdf.partition_point(|&c| c < u);
        i.min(self.cdf.len() - 1) as u64
    }

    /// `len` draws.
    pub(crate) fn stream(&self, rng: &mut impl Rng, len: usize) -> Vec<u64> {
        (0..len).map(|_| self.sample(rng)).collect()
    }
}

/// The flag bit that marks a write in an operation stream (keys stay below it).
pub(crate) const WRITE: u64 = 1 << 63;

/// An operation stream: Zipf keys, each a write (`key | WRITE`) with probability `write_ratio`.
pub(crate) fn op_stream(zipf: &Zipf, seed: u64, len: usize, write_ratio: f64) -> Vec<u64> {
    let mut rng = super::rng(seed);
    (0..len)
        .map(|_| {
            let k = zipf.sample(&mut rng);
            if rng.gen_bool(write_ratio) {
                k | WRITE
            } else {
                k
            }
        })
        .collect()
}
