//! Intrusive doubly linked lists over slab indices.
//!
//! Every list used by a shard (the policy's FIFO queues, the wheel's buckets, the per-generation
//! lists) links entries through `u32` slab indices stored in one arena, never through pointers.
//! A list is a circular ring through a *sentinel* node, so unlinking a node needs neither the
//! list's identity nor its head: it is O(1) and touches only the two neighbours. Splicing a whole
//! list onto another is O(1) as well (the wheel's cascade relies on it).
//!
//! Each entry has [`KINDS`] independent link pairs (8 bytes each), one per kind of list it can
//! belong to at the same time, each kind in its own array that is allocated lazily: it grows
//! only when a slot is linked in that kind beyond what the array covers, to cover that slot
//! (a slot it does not cover reads as detached). So an engine that never sets deadlines or
//! generations has no timer or generation arrays and pays 8 bytes of links per entry, not 32;
//! the first entry with a deadline makes the timer array cover the slots up to its own. Arrays
//! grow by [`reserve_slots`], which doubles up to the shard's share of the capacity and then
//! steps, so a shard holding its share has no doubling slack (measured in `crate::shard`).
//! Sentinels live in their own array (indices with the [`SENTINEL`] bit set) and are recycled
//! through a free list.
//!
//! Invariants (checked by [`Links::validate_list`] per list and [`Links::validate`] over the
//! whole arena): following `next` from a sentinel returns to it, `prev` mirrors `next`, a
//! detached node has both links equal to [`NIL`], every link names a live sentinel or a node
//! its array covers, and a free sentinel is detached.

/// No node.
pub(crate) const NIL: u32 = u32::MAX;
/// Marks an index as a sentinel (list head) rather than an entry.
const SENTINEL: u32 = 1 << 31;
/// Kinds of list an entry can be in at once.
pub(crate) const KINDS: usize = 4;

/// Which link pair of an entry a list uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The eviction policy's queues.
    Queue = 0,
    /// The timer wheel's buckets.
    Timer = 1,
    /// The list of the entry's first generation.
    Gen0 = 2,
    /// The list of the entry's second generation.
    Gen1 = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    prev: u32,
    next: u32,
}

const DETACHED: Link = Link { prev: NIL, next: NIL };

/// A list handle: the index of its sentinel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct List(u32);

/// The link arena of one shard.
#[derive(Debug, Default)]
pub(crate) struct Links {
    nodes: [Vec<Link>; KINDS],
    sentinels: Vec<Link>,
    free_sentinels: Vec<u32>,
    /// The shard's share of the capacity, in slots: where [`reserve_slots`] stops doubling.
    share: usize,
}

/// The smallest allocation of a slot array.
const MIN_SLOTS: usize = 16;

/// Makes room in `v` for `len` items, growing in steps fit for a shard that will hold about
/// `share` items: doubling up to the share but never past it, then steps of 1/32 of the share
/// up to twice the share (a shard holds its share give or take a few hundred entries, so a
/// shard just over it must not double), then doubling again (a capacity counted in weight can
/// hold many more entries than its share). Never allocates ahead of the slots actually used
/// beyond one step, so a huge capacity costs nothing up front. Amortized O(1) per slot.
pub(crate) fn reserve_slots<T>(v: &mut Vec<T>, len: usize, share: usize) {
    let cap = v.capacity();
    if len <= cap {
        return;
    }
    let step = if cap < share {
        cap.max(MIN_SLOTS).min(share - cap)
    } else if cap < share.saturating_mul(2) {
        (share / 32).max(MIN_SLOTS)
    } else {
        cap.max(MIN_SLOTS)
    };
    v.reserve_exact(cap.saturating_add(step).max(len) - v.len());
}

impl Links {
    /// An empty arena for a shard whose share of the capacity is `share` slots.
    pub(crate) fn with_share(share: usize) -> Self {
        Links { share, ..Links::default() }
    }

    /// How many slots the link array of `kind` covers (0 until a slot is first linked in it).
    pub(crate) fn covered(&self, kind: Kind) -> usize {
        self.nodes[kind as usize].len()
    }

    #[inline]
    fn get(&self, kind: Kind, i: u32) -> Link {
        if i & SENTINEL != 0 {
            self.sentinels[(i & !SENTINEL) as usize]
        } else {
            self.nodes[kind as usize].get(i as usize).copied().unwrap_or(DETACHED)
        }
    }

    #[inline]
    fn get_mut(&mut self, kind: Kind, i: u32) -> &mut Link {
        if i & SENTINEL != 0 {
            &mut self.sentinels[(i & !SENTINEL) as usize]
        } else {
            if i as usize >= self.nodes[kind as usize].len() {
                self.cover(kind, i);
            }
            &mut self.nodes[kind as usize][i as usize]
        }
    }

    /// Grows the link array of `kind` to cover slot `i` (out of line: the hot paths above
    /// stay small enough to inline).
    #[cold]
    #[inline(never)]
    fn cover(&mut self, kind: Kind, i: u32) {
        let v = &mut self.nodes[kind as usize];
        reserve_slots(v, i as usize + 1, self.share);
        v.resize(i as usize + 1, DETACHED);
    }

    /// A new, empty list.
    pub(crate) fn new_list(&mut self) -> List {
        let s = match self.free_sentinels.pop() {
            Some(s) => s,
            None => {
                self.sentinels.push(DETACHED);
                (self.sentinels.len() - 1) as u32
            }
        };
        let id = s | SENTINEL;
        self.sentinels[s as usize] = Link { prev: id, next: id };
        List(id)
    }

    /// Gives an empty list's sentinel back.
    pub(crate) fn free_list(&mut self, list: List) {
        debug_assert!(self.is_empty(list));
        let s = list.0 & !SENTINEL;
        self.sentinels[s as usize] = DETACHED;
        self.free_sentinels.push(s);
    }

    pub(crate) fn is_empty(&self, list: List) -> bool {
        self.sentinels[(list.0 & !SENTINEL) as usize].next == list.0
    }

    pub(crate) fn is_linked(&self, kind: Kind, i: u32) -> bool {
        self.get(kind, i).next != NIL
    }

    /// Appends detached node `i` at the back of `list`.
    pub(crate) fn push_back(&mut self, kind: Kind, list: List, i: u32) {
        debug_assert!(!self.is_linked(kind, i));
        let head = list.0;
        let tail = self.get(kind, head).prev;
        *self.get_mut(kind, i) = Link { prev: tail, next: head };
        self.get_mut(kind, tail).next = i;
        self.get_mut(kind, head).prev = i;
    }

    /// Puts detached node `i` at the front of `list`.
    pub(crate) fn push_front(&mut self, kind: Kind, list: List, i: u32) {
        debug_assert!(!self.is_linked(kind, i));
        let head = list.0;
        let first = self.get(kind, head).next;
        *self.get_mut(kind, i) = Link { prev: head, next: first };
        self.get_mut(kind, first).prev = i;
        self.get_mut(kind, head).next = i;
    }

    /// Unlinks node `i` from whatever list of this kind it is in; a detached node is left alone.
    pub(crate) fn unlink(&mut self, kind: Kind, i: u32) {
        let Link { prev, next } = self.get(kind, i);
        if next == NIL {
            return;
        }
        self.get_mut(kind, prev).next = next;
        self.get_mut(kind, next).prev = prev;
        *self.get_mut(kind, i) = DETACHED;
    }

    /// The node after `i` in `list` (`None` at its end).
    pub(crate) fn next_in(&self, kind: Kind, list: List, i: u32) -> Option<u32> {
        let n = self.get(kind, i).next;
        (n != list.0 && n != NIL).then_some(n)
    }

    /// The first node of `list`.
    pub(crate) fn front(&self, kind: Kind, list: List) -> Option<u32> {
        let n = self.get(kind, list.0).next;
        (n != list.0).then_some(n)
    }

    /// Unlinks and returns the first node of `list`.
    pub(crate) fn pop_front(&mut self, kind: Kind, list: List) -> Option<u32> {
        let n = self.front(kind, list)?;
        self.unlink(kind, n);
        Some(n)
    }

    /// Moves every node of `src` to the back of `dst` in O(1); `src` is left empty.
    pub(crate) fn splice_back(&mut self, kind: Kind, dst: List, src: List) {
        if self.is_empty(src) {
            return;
        }
        let first = self.get(kind, src.0).next;
        let last = self.get(kind, src.0).prev;
        let dst_tail = self.get(kind, dst.0).prev;
        self.get_mut(kind, dst_tail).next = first;
        self.get_mut(kind, first).prev = dst_tail;
        self.get_mut(kind, last).next = dst.0;
        self.get_mut(kind, dst.0).prev = last;
        *self.get_mut(kind, src.0) = Link { prev: src.0, next: src.0 };
    }

    /// The nodes of `list`, front to back (for tests).
    #[cfg(test)]
    pub(crate) fn collect(&self, kind: Kind, list: List) -> Vec<u32> {
        let mut out = Vec::new();
        let mut n = self.get(kind, list.0).next;
        while n != list.0 {
            out.push(n);
            n = self.get(kind, n).next;
        }
        out
    }

    /// How many nodes are linked in some list of `kind`.
    pub(crate) fn linked(&self, kind: Kind) -> usize {
        self.nodes[kind as usize].iter().filter(|l| l.next != NIL).count()
    }

    /// Checks the whole arena: every link of every node and live sentinel names a live
    /// sentinel or a node that its array covers and that links back; detached nodes and free
    /// sentinels have both links [`NIL`]. (Which list each node is in is for the owners of the
    /// lists to check, with [`Links::validate_list`] and [`Links::linked`].)
    pub(crate) fn validate(&self) -> Result<(), String> {
        let live =
            |s: u32| (s as usize) < self.sentinels.len() && self.sentinels[s as usize] != DETACHED;
        let mut free = vec![false; self.sentinels.len()];
        for &s in &self.free_sentinels {
            if std::mem::replace(&mut free[s as usize], true) {
                return Err(format!("links: sentinel {s} freed twice"));
            }
        }
        for (s, l) in self.sentinels.iter().enumerate() {
            let free = free[s];
            if free != (*l == DETACHED) || (!free && (l.next == NIL || l.prev == NIL)) {
                return Err(format!("links: sentinel {s} half linked or wrongly free"));
            }
        }
        for kind in [Kind::Queue, Kind::Timer, Kind::Gen0, Kind::Gen1] {
            let nodes = &self.nodes[kind as usize];
            let named = |n: u32| match n & SENTINEL {
                0 => (n as usize) < nodes.len() && nodes[n as usize].next != NIL,
                _ => live(n & !SENTINEL),
            };
            for (i, l) in nodes.iter().enumerate() {
                let i = i as u32;
                if *l == DETACHED {
                    continue;
                }
                if !named(l.prev) || !named(l.next) {
                    return Err(format!("links: {kind:?} node {i} names {l:?}, not covered"));
                }
                if self.get(kind, l.next).prev != i || self.get(kind, l.prev).next != i {
                    return Err(format!("links: {kind:?} node {i}: neighbours do not link back"));
                }
            }
        }
        // A sentinel's link is not tied to a kind: a non-empty list's ends must link back to
        // it in some kind's array.
        for s in (0..self.sentinels.len() as u32).filter(|&s| live(s)) {
            let id = s | SENTINEL;
            let Link { prev, next } = self.sentinels[s as usize];
            let back = |n: u32, f: fn(&Link) -> u32| {
                n == id || self.nodes.iter().any(|v| v.get(n as usize).is_some_and(|l| f(l) == id))
            };
            if !back(next, |l| l.prev) || !back(prev, |l| l.next) {
                return Err(format!("links: list {id:#x} names nodes that do not link back"));
            }
        }
        Ok(())
    }

    /// Checks the ring structure of `list`, returning its nodes.
    pub(crate) fn validate_list(&self, kind: Kind, list: List) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        let mut prev = list.0;
        let mut n = self.get(kind, list.0).next;
        while n != list.0 {
            if n == NIL || n & SENTINEL != 0 {
                return Err(format!("{kind:?} list {:#x}: broken next link {n:#x}", list.0));
            }
            if self.get(kind, n).prev != prev {
                return Err(format!("{kind:?} list: prev of {n} is not {prev}"));
            }
            out.push(n);
            if out.len() > self.nodes[kind as usize].len() {
                return Err(format!("{kind:?} list {:#x}: cycle", list.0));
            }
            prev = n;
            n = self.get(kind, n).next;
        }
        if self.get(kind, list.0).prev != prev {
            return Err(format!("{kind:?} list {:#x}: tail link wrong", list.0));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_unlink_splice() {
        let mut l = Links::default();
        let a = l.new_list();
        let b = l.new_list();
        for i in 0..3 {
            l.push_back(Kind::Queue, a, i);
        }
        for i in 3..6 {
            l.push_back(Kind::Queue, b, i);
        }
        l.unlink(Kind::Queue, 1);
        l.unlink(Kind::Queue, 1);
        assert_eq!(l.collect(Kind::Queue, a), vec![0, 2]);
        l.splice_back(Kind::Queue, a, b);
        assert!(l.is_empty(b));
        assert_eq!(l.validate_list(Kind::Queue, a).unwrap(), vec![0, 2, 3, 4, 5]);
        assert_eq!(l.pop_front(Kind::Queue, a), Some(0));
        assert!(!l.is_linked(Kind::Queue, 0));
        // Other kinds are independent.
        l.push_back(Kind::Timer, b, 2);
        assert_eq!(l.collect(Kind::Timer, b), vec![2]);
        assert_eq!(l.collect(Kind::Queue, a), vec![2, 3, 4, 5]);
        l.validate().unwrap();
        assert_eq!((l.linked(Kind::Queue), l.linked(Kind::Timer)), (4, 1));
        assert_eq!((l.covered(Kind::Timer), l.covered(Kind::Gen0)), (3, 0));
        // A link to a node its array does not cover, or one that does not link back, is caught.
        l.nodes[Kind::Timer as usize][2].next = 7;
        assert!(l.validate().is_err());
        l.nodes[Kind::Timer as usize][2].next = 0;
        assert!(l.validate().is_err());
    }

    #[test]
    fn slot_arrays_double_up_to_the_share_then_step() {
        let mut v: Vec<u64> = Vec::new();
        let mut caps = Vec::new();
        for len in 1..=3000 {
            reserve_slots(&mut v, len, 1000);
            v.push(0);
            if caps.last() != Some(&v.capacity()) {
                caps.push(v.capacity());
            }
        }
        assert_eq!(caps[..7], [16, 32, 64, 128, 256, 512, 1000]);
        assert_eq!(caps[7..10], [1031, 1062, 1093]);
        assert!(caps.ends_with(&[1992, 2023, 4046]), "{caps:?}");
        // No share: plain doubling.
        let mut v: Vec<u64> = Vec::new();
        reserve_slots(&mut v, 17, 0);
        assert_eq!(v.capacity(), 17);
        reserve_slots(&mut v, 18, 0);
        assert_eq!(v.capacity(), 34);
    }
}
