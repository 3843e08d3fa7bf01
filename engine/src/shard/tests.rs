//! Unit tests of the shard core: slab and link growth, layout sizes, stale handles.

use super::*;

/// A store of `key` (its value too) with this deadline and these generations, weight 1.
fn entry(key: u64, deadline: u64, gens: Gens) -> NewEntry<u64, u64> {
    store(key, key, deadline, gens, 1)
}

/// A store of `value` under `key`, as a caller records it for the worker (the generations
/// checked by lookups when there are any).
pub(super) fn store(
    key: u64,
    value: u64,
    deadline: u64,
    gens: Gens,
    weight: u32,
) -> NewEntry<u64, u64> {
    let hash = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
    NewEntry { key, value, hash, deadline, gens, checked: gens != [0; 2], weight }
}

#[test]
fn link_arrays_and_slab_grow_only_as_used() {
    let reg = Registry::new();
    let mut garbage = Vec::new();
    let mut s = Shard::<u64, u64>::new(1000, 10, 0);
    for k in 0..1000 {
        s.insert(entry(k, NEVER, [0; 2]), None, &reg, &mut garbage);
    }
    s.validate().unwrap();
    // No deadline and no generation yet: no timer or generation links at all.
    for kind in [Kind::Timer, Kind::Gen0, Kind::Gen1] {
        assert_eq!(s.links.covered(kind), 0, "{kind:?}");
    }
    assert_eq!(s.links.covered(Kind::Queue), 1000);
    // Nor any stamp slab (deadlines and generations).
    assert_eq!(s.stamps.len(), 0);
    // Doubling stops at the share, then grows by steps of 1/32 of it.
    assert_eq!(s.metas.capacity(), 1000);
    s.insert(entry(1000, 50, [0; 2]), None, &reg, &mut garbage);
    assert_eq!(s.metas.capacity(), 1031);
    // The first deadline allocates timer links up to its slot, no further generations.
    assert_eq!(s.links.covered(Kind::Timer), 1001);
    assert_eq!(s.links.covered(Kind::Gen0), 0);
    assert_eq!(s.stamps.len(), 1001);
    s.validate().unwrap();
    let g = reg.allocate();
    assert!(reg.acquire_all(&[0, g.id()])); // as the caller recording the store does
    s.insert(entry(1001, NEVER, [0, g.id()]), None, &reg, &mut garbage);
    assert_eq!((s.links.covered(Kind::Gen0), s.links.covered(Kind::Gen1)), (0, 1002));
    s.validate().unwrap();
    // Expiry and reclamation unlink them again; the arrays stay and still validate.
    assert_eq!(s.maintain(100, 10, &reg, &mut garbage).1, 1);
    assert!(reg.retire(g));
    s.schedule_reclaim(g.id());
    assert_eq!(s.maintain(100, 10, &reg, &mut garbage).1, 1);
    assert_eq!(s.len(), 1000);
    s.validate().unwrap();
    // A freed stamped slot taken by an entry without deadline or generations reads as
    // none (`validate` checks the flags against the stamp), and a stamped one as its own.
    s.insert(entry(3000, NEVER, [0; 2]), None, &reg, &mut garbage);
    s.validate().unwrap();
    let g2 = reg.allocate();
    assert!(reg.acquire_all(&[g2.id(), 0]));
    s.insert(entry(2000, 500, [g2.id(), 0]), None, &reg, &mut garbage);
    s.validate().unwrap();
    assert_eq!(s.stamps.len(), 1002);
    assert_eq!(s.clear(&reg, &mut garbage), 1002);
    s.validate().unwrap();
}

#[test]
fn layout_sizes() {
    use std::mem::size_of;
    // The figures the module docs and BENCHMARKS.md count with.
    assert_eq!(size_of::<Entry<u64, std::sync::Arc<[u8; 64]>>>(), 24);
    assert_eq!(size_of::<Meta>(), 8);
    assert_eq!(size_of::<Stamp>(), 24);
    assert_eq!(size_of::<Option<Handle>>(), 12);
}

#[test]
fn stale_handle_is_refused_after_the_reuse_count_wraps() {
    let reg = Registry::new();
    let mut garbage = Vec::new();
    let mut s = Shard::<u64, u64>::new(4, 10, 0);
    let first = entry(7, NEVER, [0; 2]);
    let hash = first.hash;
    s.insert(first, None, &reg, &mut garbage);
    let (h, _) = s.find(hash, |&k| k == 7).unwrap();
    let mut current = hash;
    for k in 0..=u64::from(u16::MAX) {
        let (old, _) = s.find(current, |_| true).unwrap();
        s.remove_handle(old, &reg, &mut garbage);
        let n = entry(100 + k, NEVER, [0; 2]);
        current = n.hash;
        s.insert(n, None, &reg, &mut garbage);
    }
    s.validate().unwrap();
    assert_eq!((s.len(), s.metas.len()), (1, 1));
    assert_eq!(s.metas[h.idx as usize].reuse, h.gen);
    assert_ne!(tag(current as u32), h.tag);
    // Same slot, same (wrapped) reuse count, another entry: the hash tells them apart.
    s.remove_handle(h, &reg, &mut garbage);
    assert_eq!(s.len(), 1);
}

#[test]
fn victims_set_aside_are_kept_at_the_front_or_evicted() {
    let reg = Registry::new();
    let mut garbage = Vec::new();
    let mut s = Shard::<u64, u64>::new(8, 10, 0);
    for k in 0..8 {
        s.insert(store(k, k, NEVER, [0; 2], k as u32 + 1), None, &reg, &mut garbage);
    }
    let weight = s.weight();
    // Three victims in the policy's order, each set aside before the next is chosen.
    let mut chosen = Vec::new();
    for _ in 0..3 {
        let (i, w) = s.victim().unwrap();
        assert!(!chosen.contains(&(i, w)), "{i} chosen twice");
        s.set_aside(i);
        chosen.push((i, w));
    }
    let [(a, wa), (b, wb), (c, wc)] = chosen[..] else { unreachable!() };
    s.keep(b);
    assert_eq!(s.evict(a, &reg, &mut garbage), wa);
    assert_eq!(s.evict(c, &reg, &mut garbage), wc);
    s.validate().unwrap();
    assert_eq!((s.len(), s.weight()), (6, weight - wa - wc));
    assert_eq!(s.counts.evictions, 2);
    // The kept victim is the next one considered.
    assert_eq!(s.victim(), Some((b, wb)));
    assert_eq!(garbage.len(), 2);
}

/// The shard's layout (see [`Shard`]): after the lock word (8 bytes) that precedes the shard
/// in its cell, the first 64-byte line holds the stamps' slice, which a hit reads, and not the
/// table's header, which every insert and eviction writes while readers spin on that line.
#[test]
fn the_lock_words_line_holds_the_stamps_not_the_table() {
    type S = Shard<u64, std::sync::Arc<u64>>;
    use std::mem::offset_of;
    // Checked by `shared::tests::the_shard_follows_an_8_byte_lock_word`.
    const LOCK_WORD: usize = 8;
    let stamps_end = LOCK_WORD + offset_of!(S, stamps) + SparseSlab::<Stamp>::SLOTS_END;
    assert!(stamps_end <= 64, "the stamps' slice ends at {stamps_end}");
    let map = LOCK_WORD + offset_of!(S, map);
    assert!(map >= 64, "the table's header starts at {map}, in the lock word's line");
}
