//! A store that replaces a resident entry, applied by the worker where the entry is.
//!
//! # What
//!
//! A store of a key whose entry is resident hides that entry and reaches the worker with a
//! [`Handle`](super::Handle) to it, unless the caller could swap the value in place itself
//! ([`Shard::replace_value`]: same generations and weight, no deadline before or after, the
//! write lock free). The worker then updates the entry in its slot: new key and value in the
//! table (the old ones go to the garbage, dropped after the lock), flags, stamp, timer, the
//! lists and counts of its generations, weight; the entry keeps its slot, its reuse count (it
//! is the same entry: a handle to it stays valid), its place in the policy's queues and its
//! access mark, which counts the store as one more access.
//!
//! # Why
//!
//! Every store with a deadline takes this path (the memoizer gives every result one: 300 s
//! unless told otherwise), and so does any store while the write lock is busy. Removing the
//! entry and inserting a new one cost the worker two probes of the table, a slot freed and
//! taken again, the policy's unlink and push, a sketch count and a ghost probe, and sent the
//! key back to the probation queue (small) with its mark cleared, as if it were new: a key
//! stored again, hot by that alone, then competed for admission with keys seen once. In place,
//! the two paths agree: the caller's own swap already kept the entry's place and marked it.
//!
//! # Invariants
//!
//! Afterwards the slot describes the new store exactly as an insert would have
//! ([`Shard::validate`]): flags match the stamp, the entry is in the wheel iff it has a
//! deadline, in the list of each of its generations and of no other, the weights add up.
//!
//! # Cost
//!
//! One probe of the table (the slot's entry, by its stored hash), a timer cancel and
//! schedule only when a deadline is involved, generation lists touched only when they change.

use super::{Cause, Entry, NewEntry, Shard, Stamp, NEVER};
use crate::entry::slot_hash;
use crate::generation::{Generation, Registry};
use crate::wheel::Wheel;

impl<K, V> Shard<K, V> {
    /// Applies store `n` to the valid entry in slot `idx` (same key and stored hash, its
    /// generations live), in place; returns the weight it now has. `n` comes counted under
    /// its generations; the entry's counts under its old ones are given back.
    pub(super) fn update(
        &mut self,
        idx: u32,
        n: NewEntry<K, V>,
        reg: &Registry,
        garbage: &mut Vec<(K, V)>,
    ) -> u64 {
        let flags = n.flags();
        let Some(e) = self.map.find_mut(slot_hash(n.hash as u32), |e: &Entry<K, V>| e.idx == idx)
        else {
            // A valid slot is always in the table; should that ever not hold, the store is
            // still applied, as a new entry.
            self.remove_idx(idx, Cause::Removed, reg, garbage);
            return self.insert(n, None, reg, garbage);
        };
        let key = std::mem::replace(&mut e.key, n.key);
        let value = std::mem::replace(&mut e.value, n.value);
        // Clears `HIDDEN`, which the store set.
        *e.flags.get_mut() = flags;
        e.mark();
        garbage.push((key, value));
        let old = self.stamp(idx);
        if old.deadline != NEVER {
            Wheel::cancel(&mut self.links, idx);
            self.timed -= 1;
        }
        if n.deadline != NEVER {
            self.wheel.schedule(&mut self.links, idx, n.deadline);
            self.timed += 1;
        }
        for (k, (&was, &now)) in old.gens.iter().zip(&n.gens).enumerate() {
            if was == now {
                if let Some(g) = Generation::from_raw(was) {
                    reg.release(g);
                }
            } else {
                self.unlink_gen(idx, k, was, reg);
                self.link_gen(idx, k, now);
            }
        }
        self.set_stamp(idx, Stamp { deadline: n.deadline, gens: n.gens });
        let was = self.weights.get(idx);
        if was != n.weight {
            self.weights.set(idx, n.weight, self.share);
            let m = self.metas[idx as usize];
            self.policy.reweigh(&m, was, n.weight);
            self.weight = self.weight - u64::from(was) + u64::from(n.weight);
        }
        self.counts.inserts += 1;
        u64::from(n.weight)
    }
}

#[cfg(test)]
mod tests {
    use crate::entry::{Queue, NEVER};
    use crate::generation::Registry;
    use crate::shard::tests::store;
    use crate::shard::{NewEntry, Shard};

    /// Stores `n` over the resident entry of its key, as the worker applies a store that hid it.
    fn restore(s: &mut Shard<u64, u64>, n: NewEntry<u64, u64>, reg: &Registry) -> Vec<(u64, u64)> {
        let (h, _) = s.find(n.hash, |&k| k == n.key).expect("resident");
        let mut garbage = Vec::new();
        s.insert(n, Some(h), reg, &mut garbage);
        assert!(s.valid(h), "the handle to the replaced entry still names it");
        s.validate().unwrap();
        garbage
    }

    #[test]
    fn a_replacement_keeps_the_slot_and_the_place_in_main() {
        let reg = Registry::new();
        let mut garbage = Vec::new();
        let mut s = Shard::<u64, u64>::new(10, 10, 0);
        for k in 0..10 {
            s.insert(store(k, k, NEVER, [0; 2], 1), None, &reg, &mut garbage);
        }
        // Choosing a victim while filling moves small's overflow to main.
        s.victim().expect("a victim");
        let n = store(0, 100, NEVER, [0; 2], 1);
        let (h, _) = s.find(n.hash, |&k| k == 0).unwrap();
        assert_eq!(s.metas[h.idx as usize].queue, Queue::Main);
        let inserts = s.counts.inserts;
        assert_eq!(restore(&mut s, n, &reg), vec![(0, 0)], "the old key and value, to drop");
        assert_eq!(s.metas[h.idx as usize].queue, Queue::Main, "not sent back to small");
        assert_eq!(
            s.entry(store(0, 0, NEVER, [0; 2], 1).hash, |&k| k == 0).map(|e| e.value),
            Some(100)
        );
        assert_eq!((s.len(), s.counts.inserts), (10, inserts + 1));
    }

    #[test]
    fn a_replacement_takes_the_new_deadline_generations_and_weight() {
        let reg = Registry::new();
        let mut garbage = Vec::new();
        let mut s = Shard::<u64, u64>::new(100, 10, 0);
        let (g1, g2) = (reg.allocate(), reg.allocate());
        // Counted as the callers recording the stores do.
        assert!(reg.acquire_all(&[g1.id(), 0]));
        s.insert(store(7, 1, 50, [g1.id(), 0], 1), None, &reg, &mut garbage);
        assert!(reg.acquire_all(&[g2.id(), 0]));
        restore(&mut s, store(7, 2, NEVER, [g2.id(), 0], 3), &reg);
        assert_eq!((reg.live_entries(g1), reg.live_entries(g2)), (0, 1), "counts moved to g2");
        assert_eq!(s.weight(), 3);
        // No deadline any more: the old one does not expire it.
        assert_eq!(s.maintain(100, 10, &reg, &mut garbage).1, 0);
        assert_eq!(s.len(), 1);
        // g1 retired: not this entry's generation any more.
        assert!(reg.retire(g1));
        s.schedule_reclaim(g1.id());
        assert_eq!(s.maintain(200, 10, &reg, &mut garbage).1, 0);
        // The same generation again, a deadline again, weight 1: expires at the new deadline.
        assert!(reg.acquire_all(&[g2.id(), 0]));
        restore(&mut s, store(7, 3, 300, [g2.id(), 0], 1), &reg);
        assert_eq!((reg.live_entries(g2), s.weight()), (1, 1));
        assert_eq!(s.maintain(400, 10, &reg, &mut garbage).1, 1);
        assert_eq!((s.len(), reg.live_entries(g2)), (0, 0));
        s.validate().unwrap();
    }
}
