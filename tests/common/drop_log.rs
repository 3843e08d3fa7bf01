//! How many times, and on which thread, each key or value of a test was dropped, by id: the
//! tests of where and how often the engine drops what it holds (`tests/engine_rev_s23f.rs`,
//! `tests/engine_rev_s23g.rs`, whose logs add their own behaviour to a drop).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Mutex;
use std::thread::ThreadId;

/// Drop counts and the thread of the last drop, by id (`0..ids`).
#[derive(Default)]
pub(crate) struct DropCounts {
    drops: Vec<AtomicU32>,
    on: Mutex<Vec<Option<ThreadId>>>,
}

impl DropCounts {
    pub(crate) fn new(ids: usize) -> Self {
        DropCounts {
            drops: (0..ids).map(|_| AtomicU32::new(0)).collect(),
            on: Mutex::new(vec![None; ids]),
        }
    }

    /// Records a drop of `id` on the calling thread.
    pub(crate) fn record(&self, id: usize) {
        self.drops[id].fetch_add(1, SeqCst);
        self.on.lock().unwrap_or_else(|p| p.into_inner())[id] = Some(std::thread::current().id());
    }

    /// How many times `id` was dropped.
    pub(crate) fn of(&self, id: usize) -> u32 {
        self.drops[id].load(SeqCst)
    }

    /// Drops of every id.
    pub(crate) fn total(&self) -> u32 {
        self.drops.iter().map(|d| d.load(SeqCst)).sum()
    }

    /// The (id, drops) of `ids` not dropped exactly once.
    pub(crate) fn wrong(&self, ids: impl IntoIterator<Item = usize>) -> Vec<(usize, u32)> {
        ids.into_iter().map(|i| (i, self.of(i))).filter(|&(_, c)| c != 1).collect()
    }

    /// The thread `id` was (last) dropped on.
    pub(crate) fn dropped_on(&self, id: usize) -> Option<ThreadId> {
        self.on.lock().unwrap_or_else(|p| p.into_inner())[id]
    }
}
