//! The policy's side tables: the frequency sketch and the ghost of recent victims (see the
//! parent module's design brief for what they hold, their sizes and why).

use super::{Tag, SAMPLE_FACTOR};

/// A count-min sketch of 4-bit counters, 16 to a `u64` word, in 64-byte blocks of 8 words. A
/// key's 4 counters are in one block (one cache line): counter `k` in word `2k` or `2k + 1`
/// of it, at a position from the hash. Conservative update (only the counters at the minimum
/// grow) keeps one-time keys from inflating shared counters; every `sample` increments that
/// raise a counter all counters are halved, so the counts follow recent frequency (an
/// increment of a key already at the ceiling, 15, changes nothing and is not counted).
/// Caffeine's `FrequencySketch` has the same block layout and the same rule.
#[derive(Debug, Default)]
pub(super) struct Sketch {
    pub(super) words: Vec<u64>,
    pub(super) adds: u64,
    pub(super) sample: u64,
}

impl Sketch {
    /// The most a counter counts.
    pub(super) const CEILING: u8 = 15;

    pub(super) fn new(entries: usize) -> Self {
        let words = entries.div_ceil(8).max(1) * 8;
        Sketch { words: vec![0; words], adds: 0, sample: SAMPLE_FACTOR * words as u64 }
    }

    pub(super) fn is_ready(&self) -> bool {
        !self.words.is_empty()
    }

    /// The (word, bit offset) of the key's 4 counters.
    pub(super) fn counters(&self, hash: u64) -> [(usize, u32); 4] {
        let x = (hash ^ (hash >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let blocks = (self.words.len() / 8) as u128;
        let block = ((u128::from(x) * blocks) >> 64) as usize;
        let y = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD) ^ (x >> 32);
        let mut out = [(0, 0); 4];
        for (k, c) in out.iter_mut().enumerate() {
            let bits = (y >> (k * 8)) as u32;
            *c = (block * 8 + k * 2 + (bits & 1) as usize, ((bits >> 1) & 15) * 4);
        }
        out
    }

    pub(super) fn estimate(&self, hash: u64) -> u8 {
        if !self.is_ready() {
            return 0;
        }
        let words = &self.words;
        self.counters(hash).iter().map(|&(w, s)| ((words[w] >> s) & 15) as u8).min().unwrap_or(0)
    }

    pub(super) fn increment(&mut self, hash: u64) {
        if !self.is_ready() {
            return;
        }
        let counters = self.counters(hash);
        let words = &mut self.words;
        let min = counters.iter().map(|&(w, s)| ((words[w] >> s) & 15) as u8).min().unwrap_or(0);
        if min == Self::CEILING {
            // Counts no event: a sketch that a loop or a hot set holds at its ceiling does
            // not age, which would hand the candidates, counted again first, a lead of one.
            return;
        }
        for (w, s) in counters {
            if ((words[w] >> s) & 15) as u8 == min {
                words[w] += 1 << s;
            }
        }
        self.adds += 1;
        if self.adds >= self.sample {
            self.adds /= 2;
            for w in &mut self.words {
                *w = (*w >> 1) & 0x7777_7777_7777_7777;
            }
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.is_ready()
            && (self.words.len() % 8 != 0
                || self.sample != SAMPLE_FACTOR * self.words.len() as u64
                || self.adds >= self.sample)
        {
            return Err("policy: sketch size or sample count inconsistent".into());
        }
        Ok(())
    }
}

/// Fingerprints of recent victims, tagged with the queue that evicted them, in a direct-mapped
/// table: O(1) insert and lookup, 4 bytes a slot. A newer victim overwrites an older one in its
/// slot (random replacement instead of FIFO order); a lookup that finds its key clears the slot.
/// A false positive (1 in 2^30 per lookup) only nudges the window's target. `small` and `main`
/// count the slots holding each tag.
#[derive(Debug, Default)]
pub(super) struct Ghost {
    pub(super) slots: Vec<u32>,
    pub(super) small: u64,
    pub(super) main: u64,
}

impl Ghost {
    pub(super) fn new(slots: usize) -> Self {
        Ghost { slots: vec![0; slots.next_power_of_two()], small: 0, main: 0 }
    }

    /// Slot index (the hash's low bits) and fingerprint (the high half of the mixed hash, so
    /// that neither the slot nor the shard, chosen by bits 32 and up, fixes any of its bits;
    /// bit 0 set: never 0, which marks an empty slot; bit 1 is the tag's place).
    pub(super) fn place(&self, hash: u64) -> (usize, u32) {
        let fp = (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 | 1;
        (hash as usize & self.slots.len().wrapping_sub(1), fp)
    }

    fn count(&mut self, tag: Tag) -> &mut u64 {
        match tag {
            Tag::Small => &mut self.small,
            Tag::Main => &mut self.main,
        }
    }

    fn tag_of(slot: u32) -> Tag {
        if slot & 2 == 0 {
            Tag::Small
        } else {
            Tag::Main
        }
    }

    pub(super) fn add(&mut self, hash: u64, tag: Tag) {
        if self.slots.is_empty() {
            return;
        }
        let (i, fp) = self.place(hash);
        let old = std::mem::replace(&mut self.slots[i], (fp & !2) | ((tag as u32) << 1));
        if old != 0 {
            *self.count(Self::tag_of(old)) -= 1;
        }
        *self.count(tag) += 1;
    }

    /// Whether `hash` is a recent victim, and which queue evicted it; forgets it.
    pub(super) fn take(&mut self, hash: u64) -> Option<Tag> {
        if self.slots.is_empty() {
            return None;
        }
        let (i, fp) = self.place(hash);
        let slot = self.slots[i];
        if slot == 0 || slot | 2 != fp | 2 {
            return None;
        }
        self.slots[i] = 0;
        let tag = Self::tag_of(slot);
        *self.count(tag) -= 1;
        Some(tag)
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if !self.slots.is_empty() && !self.slots.len().is_power_of_two() {
            return Err("policy: ghost table has the wrong size".into());
        }
        let used = self.slots.iter().filter(|&&s| s != 0);
        let main = used.clone().filter(|&&s| Self::tag_of(s) == Tag::Main).count() as u64;
        let small = used.count() as u64 - main;
        if (small, main) != (self.small, self.main) {
            return Err(format!(
                "policy: ghost holds {small} small and {main} main victims, counted {} and {}",
                self.small, self.main
            ));
        }
        Ok(())
    }
}
