//! Intrusive doubly linked lists over slab indices.
//!
//! Every list used by a shard (the policy's FIFO queues, the wheel's buckets, the per-generation
//! lists) links entries through `u32` slab indices stored in one arena, never through pointers.
//! A list is a circular ring through a *sentinel* node, so unlinking a node needs neither the
//! list's identity nor its head: it is O(1) and touches only the two neighbours. Splicing a whole
//! list onto another is O(1) as well (the wheel's cascade relies on it).
//!
//! Each entry has [`KINDS`] independent link pairs, one per kind of list it can belong to at the
//! same time, each kind in its own array that grows only when an entry of that index is first
//! linked in that kind: an engine that never sets deadlines or generations pays 8 bytes of links
//! per entry, not 32. Sentinels live in their own array (indices with the [`SENTINEL`] bit set)
//! and are recycled through a free list.
//!
//! Invariants (checked by [`Links::validate_list`]): following `next` from a sentinel returns to
//! it, `prev` mirrors `next`, and a detached node has both links equal to [`NIL`].

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
pub(crate) struct Link {
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
}

impl Links {
    fn get(&self, kind: Kind, i: u32) -> Link {
        if i & SENTINEL != 0 {
            self.sentinels[(i & !SENTINEL) as usize]
        } else {
            self.nodes[kind as usize].get(i as usize).copied().unwrap_or(DETACHED)
        }
    }

    fn get_mut(&mut self, kind: Kind, i: u32) -> &mut Link {
        if i & SENTINEL != 0 {
            &mut self.sentinels[(i & !SENTINEL) as usize]
        } else {
            let v = &mut self.nodes[kind as usize];
            if i as usize >= v.len() {
                v.resize(i as usize + 1, DETACHED);
            }
            &mut v[i as usize]
        }
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
    }
}
