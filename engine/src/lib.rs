//! # memokit-engine
//!
//! The in-process cache engine under [memokit](https://docs.rs/memokit): a bounded, sharded,
//! concurrent cache with single flight, deadlines, an expiry wheel and O(1) invalidation of
//! whole *generations* (versions) of entries. It knows nothing of functions or macros; it is
//! also a general-purpose cache in its own right.
//!
//! ```
//! use memokit_engine::Engine;
//! use std::{sync::Arc, time::Duration};
//! let cache: Engine<u64, Arc<Vec<u8>>> = Engine::builder().max_capacity(100_000).build()?;
//! cache.insert(1, Arc::new(vec![1]));
//! cache.insert_with_ttl(2, Arc::new(vec![2]), Duration::from_secs(30));
//! assert!(cache.get(&1).is_some());
//! let v = cache.get_or_insert_with(3, || Arc::new(vec![3])); // single flight
//! cache.remove(&1);
//! cache.flush(); // every earlier command applied
//! assert_eq!(cache.len(), 2);
//! # Ok::<(), memokit_engine::BuildError>(())
//! ```
//!
//! ## Architecture
//!
//! Three layers, each wrapping the one below:
//!
//! | layer | file | what it is |
//! |---|---|---|
//! | core | `shard.rs`, `policy.rs`, `wheel.rs`, `list.rs` | single-threaded, `&mut self`, no locks, no `unsafe`: a `hashbrown::HashTable` of slab indices, the policy (S3-FIFO queues with TinyLFU admission and an adaptive window), the timer wheel and per-generation lists, all intrusive lists over `u32` slab indices |
//! | worker | `worker.rs` | a thread owning some shards, reading commands from a crossbeam-channel mailbox and applying them in batches under one short write lock per shard |
//! | handle | `engine.rs`, `builder.rs`, `shared.rs` | what callers hold: the lock-light hit path, the pending table that makes handed-over values visible at once, single flight (`flight.rs`) |
//!
//! Supporting pieces: `generation.rs` (O(1) retirement: an entry is visible only while every
//! generation it was stored under is live, or until it is reclaimed for a primary generation
//! declared in the key), `clock.rs` (the coarse clock the hit path reads,
//! and [`ManualClock`]), `sync.rs` (every lock, atomic, channel and thread the engine uses, named
//! in one place: built with `RUSTFLAGS="--cfg memokit_shuttle"` they become
//! [shuttle](https://docs.rs/shuttle)'s, and `tests/shuttle/` model-checks the hand-over to
//! the workers, single flight, retirement, eviction across workers and shutdown),
//! `counters.rs` (hits and misses counted per thread, each thread alone writing its own
//! stripe with a plain store: no locked instruction on a hit; see
//! [`EngineBuilder::count_lookups`] for callers that count their own).
//!
//! ## Cost of a hit
//! One hash (ahash), one uncontended read lock (parking_lot), one probe, one deadline comparison
//! against the coarse clock for an entry that has a deadline (two atomic loads, no clock read;
//! none for an entry without), one generation check per generation
//! the entry carries (none for a primary generation declared in the key,
//! [`InsertOptions::primary_in_key`]), an access mark written only when it changes, one clone
//! of the value, and a plain increment of the hit counter in the calling thread's stripe (a
//! relaxed load and store, not a locked add; `counters.rs`); two thread-local counter writes
//! mark the value's `Clone` as user code run under a lock (see below).
//! No allocation, no channel, no locked instruction but the read lock's two and the value's
//! `Clone` (an `Arc`'s increment).
//!
//! ## Threads and idle cost
//!
//! An engine starts `workers` threads (default: half the cores rounded up, at least one, at most
//! one per shard) and, with the real clock, one clock thread. While the clock is read, the clock
//! thread wakes once per `clock_resolution` (1 000 wake-ups a second at the default 1 ms); after
//! a second without a clock read (a store, a slow lookup, a hit on an entry with a deadline: a
//! hit on an entry without one reads no clock) it parks until the next one, which reads the
//! real clock itself. Each worker wakes once
//! per `tick` (default 1 s) to expire and reclaim. So an idle engine costs one wake-up per worker
//! per second. With a [`ManualClock`] no thread wakes on its own. Dropping the last handle (or
//! [`Engine::shutdown`]) stops and joins all of them (dropped on a worker thread or in user
//! code run under a lock, it only stops them, and the first worker to stop joins the others:
//! see [`Engine`]).
//!
//! ## User code calling back into the engine
//!
//! The engine runs some of your code while it holds one of its locks: the key's `Eq` (or
//! [`Equivalent`]) in every probe of its tables, the value's `Clone` on every hit (and
//! [`Engine::get_map`]'s `read`), the `to_owned` of
//! [`Engine::get_or_try_insert_with_ref`], and the weigher on every store
//! ([`EngineBuilder::weigher`]). (Your `Hash` runs before any lock, and the engine
//! drops your keys and values after its locks, also when your code panics: see
//! [`Engine::insert_with_options`].) Such code should only compare, clone, convert or
//! weigh. If it calls back into an engine anyway, the call never hangs; it works
//! or panics with a message starting with `memokit:`, and the engine stays usable:
//! - a lookup works, unless it needs a lock its caller holds: a lookup that the fast path
//!   cannot answer, from code the engine runs under a shard's pending table or flights lock
//!   (a lookup of a key still being handed to a worker, a store, a remove, a computation);
//!   any lookup of the shard whose value is being replaced in place. Those panic;
//!   A weigher's lookups work, of its own engine too;
//! - a store, remove or computation of the same engine works from code run under a read
//!   lock only (a hit in the shard's table: the value's `Clone`, `get_map`'s `read`, the key's
//!   `Eq` in that probe) and panics from the others, the weigher included; of another engine,
//!   it works. The same `Clone` or `read` runs under the pending table's lock when the hit is
//!   on a value still being handed to the worker (just stored), so a store from it works or
//!   panics depending on the worker's timing: do not store into the engine from them;
//! - waiting for a computation another thread runs (a `get_or_insert_with` of a key being
//!   computed) panics from any such code, of any engine, the weigher included: that thread's
//!   store of the value reads the shard, behind a worker waiting to write it, behind the read
//!   lock held here (or its computation stores into the weigher's engine, waiting for the
//!   lock the weigher runs under).
//!   (Code the engine runs with no lock held, such as the `Clone` a waiting caller makes of
//!   the value it was handed, may wait.)
//! - [`Engine::flush`], [`Engine::clear`], [`Engine::run_maintenance`] and
//!   [`Engine::shutdown`], of any engine, panic (from the weigher too): they wait for
//!   workers, and a worker may need the lock held (a shard's write lock, or a lock a key's
//!   `Drop` on that worker takes, such as the weigher's engine's flights lock);
//! - [`Engine::stats`], [`Engine::len`], [`Engine::is_empty`] and [`Engine::validate`] read
//!   every shard: they panic from code run under a shard's write lock (a key's `Eq` while a
//!   value is replaced in place) and work from the others.
//!
//! ## Tracing
//! With the `tracing` feature, the engine emits events with target `memokit_engine`: a
//! generation retired (debug), each background maintenance burst that reclaimed entries (debug:
//! entries handled, whether work is left), and a worker that died (error: lookups go on, stores
//! are dropped). Nothing is emitted on the lookup path.
//!
//! ## What it does not do (yet)
//! - Hit-ratio and memory figures against moka and quick_cache are in `BENCHMARKS.md`; read
//!   them before choosing it as a general cache.
//! - No async API yet: single flight blocks the waiting thread. The flight state machine is
//!   independent of the waiting mechanism so an async adapter can be added on the same engine.
//! - No refresh-ahead, no eviction listener.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// Emits a `tracing` event (target `memokit_engine`) when the `tracing` feature is on; expands
/// to nothing otherwise (the arguments are then not evaluated).
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {
        #[cfg(feature = "tracing")]
        tracing::$level!(target: "memokit_engine", $($arg)+);
    };
}

mod builder;
mod clock;
mod counters;
mod engine;
mod entry;
mod flight;
mod generation;
mod list;
mod options;
mod pending;
mod policy;
mod reentry;
mod shard;
mod shared;
mod sync;
mod wheel;
mod worker;

pub use crate::builder::{BuildError, EngineBuilder};
pub use crate::clock::ManualClock;
#[doc(hidden)]
pub use crate::counters::Striped as __Striped;
pub use crate::engine::{Engine, EngineStats};
pub use crate::flight::{SELF_WAIT_PANIC, WAIT_CYCLE_PANIC};
pub use crate::generation::Generation;
pub use crate::options::{Equivalent, InsertOptions};
