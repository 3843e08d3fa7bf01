//! [`Shard::validate`]: the shard's structural invariants, checked by property tests, fuzz
//! targets and `Engine::validate` (a full scan: for tests, never on a hot path).

use super::{Shard, GEN_KINDS};
use crate::entry::{NEVER, TIMED, VERSIONED};
use crate::list::Kind;

impl<K, V> Shard<K, V> {
    /// Checks every structural invariant; `Err` describes the first one broken.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.links.validate()?;
        for kind in [Kind::Queue, Kind::Timer, Kind::Gen0, Kind::Gen1] {
            // Link arrays grow only to cover slots that are linked, so never past the slab.
            if self.links.covered(kind) > self.metas.len() {
                return Err(format!("{kind:?} links cover slots the slab does not have"));
            }
        }
        if self.stamps.len() > self.metas.len() || self.weights.len() > self.metas.len() {
            return Err("the stamp or weight slab covers slots the slab does not have".into());
        }
        let occupied = self.metas.iter().filter(|m| m.occupied).count();
        if self.map.len() != occupied {
            return Err(format!("map has {} entries, slab {occupied}", self.map.len()));
        }
        if occupied + self.free.len() != self.metas.len() {
            return Err("free list does not match the free slots".into());
        }
        let mut weight = 0;
        for e in self.map.iter() {
            let i = e.idx;
            let m = self.metas.get(i as usize).filter(|m| m.occupied);
            let Some(m) = m else { return Err(format!("entry names free slot {i}")) };
            if !self.map.find(m.slot_hash(), |x| x.idx == i).is_some_and(|x| std::ptr::eq(x, e)) {
                return Err(format!("entry {i} not found in the map under its stored hash"));
            }
            weight += u64::from(self.weights.get(i));
            let m = self.stamp(i);
            if self.links.is_linked(Kind::Timer, i) != (m.deadline != NEVER) {
                return Err(format!("entry {i}: wheel membership does not match its deadline"));
            }
            let flags = e.flags.load(std::sync::atomic::Ordering::Relaxed);
            // Lookups check the generations of every entry with a secondary, and of none
            // without generations (a primary alone may be in the key: unchecked).
            let checked = flags & VERSIONED != 0;
            if (flags & TIMED != 0) != (m.deadline != NEVER)
                || (checked && m.gens == [0; 2])
                || (!checked && m.gens[1] != 0)
            {
                return Err(format!("entry {i}: flags do not match its deadline or generations"));
            }
            for (k, &g) in m.gens.iter().enumerate() {
                if self.links.is_linked(GEN_KINDS[k], i) != (g != 0) {
                    return Err(format!("entry {i}: generation list membership wrong"));
                }
            }
        }
        let timed = self.map.iter().filter(|e| self.stamp(e.idx).deadline != NEVER).count();
        if timed != self.timed {
            return Err(format!(
                "{} entries counted as timed, {timed} have a deadline",
                self.timed
            ));
        }
        if weight != self.weight {
            return Err(format!("weight {} but entries sum to {weight}", self.weight));
        }
        let queued = self.policy.validate(&self.links, &self.metas, &self.weights)?;
        if queued != occupied {
            return Err(format!("{queued} entries queued, {occupied} stored"));
        }
        let scheduled = self.wheel.validate(&self.links, |i| {
            ((i as usize) < self.metas.len()).then(|| self.stamp(i).deadline)
        })?;
        if scheduled.len() != self.links.linked(Kind::Timer) {
            return Err("timer links outside the wheel".into());
        }
        for i in scheduled {
            if self.at(i).is_none() {
                return Err(format!("wheel holds free slot {i}"));
            }
        }
        if self.links.linked(Kind::Queue) != occupied {
            return Err("queue links outside the policy's queues".into());
        }
        for (k, lists) in self.gen_lists.iter().enumerate() {
            let mut linked = 0;
            for (&g, &list) in lists {
                let members = self.links.validate_list(GEN_KINDS[k], list)?;
                linked += members.len();
                if members.is_empty() {
                    return Err(format!("empty generation list kept for {g}"));
                }
                for i in members {
                    let occupied = self.metas.get(i as usize).is_some_and(|m| m.occupied);
                    if !occupied || self.stamp(i).gens[k] != g {
                        return Err(format!("entry {i} in the list of generation {g} wrongly"));
                    }
                }
            }
            if linked != self.links.linked(GEN_KINDS[k]) {
                return Err(format!("{:?} links outside the generation lists", GEN_KINDS[k]));
            }
        }
        Ok(())
    }
}
