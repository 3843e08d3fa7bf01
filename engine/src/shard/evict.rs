//! Choosing victims and evicting them, for the worker keeping the engine within its capacity
//! (`crate::worker::capacity`).
//!
//! [`Shard::victim`] names the entry the policy would evict next. A weighted eviction pass
//! sets victims aside ([`Shard::set_aside`]: out of the policy's queues, still resident and
//! readable) until the excess is covered, then keeps each that still fits
//! ([`Shard::keep`]: back at the front of its queue) or evicts it ([`Shard::evict`]); both
//! happen within the same hold of the write lock, since a victim set aside is in no queue and
//! [`Shard::validate`] fails until then. Settling through several shards' cuts names their
//! victims first ([`Shard::name_victims`]: set aside and put back in order, nothing evicted,
//! handles returned), lets the lock go, and then evicts or keeps each by handle
//! ([`Shard::current_weight`], [`Shard::evict`], [`Shard::keep_named`]). O(1) per victim
//! beyond the policy's own choice.

use super::{tag, Cause, Entry, Handle, Shard};
use crate::generation::Registry;
use crate::list::Kind;

impl<K, V> Shard<K, V> {
    /// The entry the policy would evict next, with its weight (`None` when empty). Choosing
    /// may reorder the queues (promotions, second chances) but removes nothing.
    pub(crate) fn victim(&mut self) -> Option<(u32, u64)> {
        let Shard { map, metas, weights, links, policy, .. } = self;
        let freq = |i, hash| map.find(hash, |e: &Entry<K, V>| e.idx == i).map(|e| &e.freq);
        let i = policy.victim(links, metas, weights, freq)?;
        Some((i, u64::from(self.weights.get(i))))
    }

    /// Takes victim `idx` (named by [`Shard::victim`]) out of the policy's queues, so that
    /// more victims can be chosen before deciding about this one. [`Shard::keep`] or
    /// [`Shard::evict`] must follow within the same hold of the write lock: until then the
    /// entry is resident (and readable) but in no queue, and [`Shard::validate`] fails.
    pub(crate) fn set_aside(&mut self, idx: u32) {
        let (m, w) = (&self.metas[idx as usize], self.weights.get(idx));
        // Out of its queue as if it left the shard; `Policy::put_back` undoes it.
        self.policy.on_remove(&mut self.links, idx, m, w);
    }

    /// Keeps a victim set aside: back at the front of its queue, the next the policy considers.
    pub(crate) fn keep(&mut self, idx: u32) {
        let (m, w) = (&self.metas[idx as usize], self.weights.get(idx));
        self.policy.put_back(&mut self.links, idx, m, w);
        self.policy.forget_victim(m);
    }

    /// Names the next victims, in the policy's order, until their weight reaches `quota` (or
    /// the shard has no more), calling `f` with each one's handle and weight; evicts nothing
    /// and leaves them next in line, in that order. Choosing may reorder the queues as
    /// [`Shard::victim`] does. Each is then evicted ([`Shard::current_weight`], [`Shard::evict`])
    /// or kept ([`Shard::keep_named`]). Returns their weight.
    pub(crate) fn name_victims(&mut self, quota: u64, mut f: impl FnMut(Handle, u64)) -> u64 {
        let (mut aside, mut total) = (Vec::new(), 0u64);
        while total < quota {
            let Some((i, w)) = self.victim() else { break };
            self.set_aside(i);
            aside.push(i);
            total = total.saturating_add(w);
            let m = self.metas[i as usize];
            f(Handle { idx: i, gen: m.reuse, tag: tag(m.hash) }, w);
        }
        for &i in aside.iter().rev() {
            let (m, w) = (&self.metas[i as usize], self.weights.get(i));
            self.policy.put_back(&mut self.links, i, m, w);
        }
        total
    }

    /// The weight of a victim named by [`Shard::name_victims`] now, or `None` if it is gone (a
    /// caller's `clear` may have emptied the shard since, while its lock was let go).
    pub(crate) fn current_weight(&self, h: Handle) -> Option<u64> {
        self.valid(h).then(|| u64::from(self.weights.get(h.idx)))
    }

    /// A victim named by [`Shard::name_victims`] stays, if still there.
    pub(crate) fn keep_named(&mut self, h: Handle) {
        if self.valid(h) {
            self.policy.forget_victim(&self.metas[h.idx as usize]);
        }
    }

    /// Evicts slot `idx` (a victim named by [`Shard::victim`], set aside or not, or by
    /// [`Shard::name_victims`] and [`Shard::current_weight`]); returns the weight freed.
    pub(crate) fn evict(&mut self, idx: u32, reg: &Registry, garbage: &mut Vec<(K, V)>) -> u64 {
        let aside = self.metas.get(idx as usize).filter(|m| m.occupied);
        if let Some(m) = aside.filter(|_| !self.links.is_linked(Kind::Queue, idx)) {
            self.policy.put_back(&mut self.links, idx, m, self.weights.get(idx));
        }
        self.remove_idx(idx, Cause::Evicted, reg, garbage)
    }
}
