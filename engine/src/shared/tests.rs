//! The layout of a shard's cell: which fields share a cache line.

use super::{Cell, Padded};
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

/// The cells' stride (a [`Padded`] cell) is an odd multiple of 128 bytes, whatever `K` and `V`
/// are: at 2,048 bytes a hit took 1.4–2.2x as long, its lines all in the same few L1 sets.
/// `CELL_SKEW` is computed from one pair, so the cell's own size must not depend on them.
#[test]
fn cell_stride_is_an_odd_multiple_of_128() {
    use std::mem::size_of;
    #[repr(align(4096))]
    struct Page;
    let cells = [
        size_of::<Cell<u64, u64>>(),
        size_of::<Cell<u64, std::sync::Arc<u64>>>(),
        size_of::<Cell<String, Vec<u8>>>(),
        size_of::<Cell<(), ()>>(),
        size_of::<Cell<[u64; 32], [u8; 1000]>>(),
        size_of::<Cell<Page, u8>>(),
    ];
    assert!(cells.iter().all(|&s| s == cells[0]), "cell sizes differ by type: {cells:?}");
    let stride = size_of::<Padded<String, Vec<u8>>>();
    assert_eq!(stride % 256, 128, "{stride} bytes: not an odd multiple of 128");
    assert_eq!(std::mem::align_of::<Padded<u8, u8>>(), 128);
}

/// The shard follows its lock word at offset 8 of its cell, as the shard's layout test
/// (`shard::tests::the_lock_words_line_holds_the_stamps_not_the_table`) assumes.
#[test]
fn the_shard_follows_an_8_byte_lock_word() {
    let e: crate::Engine<u64, u64> = crate::Engine::new(100);
    let cell: &Cell<u64, u64> = &e.shared().cells[0];
    let shard = &*cell.core.read() as *const _ as usize - cell as *const _ as usize;
    assert_eq!(shard, 8);
}
