//! The layout of a shard's cell: which fields share a cache line.

use super::Cell;
use std::mem::offset_of;

/// The 128-byte block a field starts in.
fn block(offset: usize) -> usize {
    offset / 128
}

/// Whether the fields of each group share no 128-byte block with another group's.
#[test]
fn layout_groups() {
    type C = Cell<u64, std::sync::Arc<u64>>;
    let lookups = [offset_of!(C, core)];
    let stores = [
        offset_of!(C, pending),
        offset_of!(C, pending_len),
        offset_of!(C, pending_keys),
        offset_of!(C, applied),
        offset_of!(C, signaled),
        offset_of!(C, hides),
    ];
    let flights = [offset_of!(C, flights)];
    let worker = [
        offset_of!(C, batch),
        offset_of!(C, drained),
        offset_of!(C, due_at),
        offset_of!(C, weight),
    ];
    let groups = [&lookups[..], &stores, &flights, &worker];
    for (i, g) in groups.iter().enumerate() {
        for h in &groups[i + 1..] {
            for &a in g.iter() {
                for &b in h.iter() {
                    assert_ne!(block(a), block(b), "offsets {a} and {b} share a block");
                }
            }
        }
    }
}
