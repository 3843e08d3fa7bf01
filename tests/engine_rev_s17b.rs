//! Review s17b: the write path of sessions 16-17 (in-place replacement, the pending table and
//! its filter, `Cell::hides`, `settle`, `may_hold_dead`).
//!
//! Every test runs on a manual clock; a worker is held deterministically by a key whose
//! `Drop` (run on the worker) waits for a gate, never by a sleep.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{no_hang, Gate, HookedKey};
use memokit_engine::{Engine, Generation, InsertOptions, ManualClock};
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);

/// A pending replacement of a resident key whose new value is dead by the time the worker
/// applies it (its deadline has passed, or its generation was retired) frees the hidden
/// entry's weight as surely as a remove does: it must go before a live entry, as a pending
/// remove does (`Cell::hides`). Without a weigher a replacement did not set `hides` (weight 1
/// before and after), so a store of a new key into another shard, applied first, found the
/// engine over capacity by that entry and evicted a live one while the live entries fit.
///
/// Capacity 2, one worker, two shards: `a` and `b` resident; the worker is held in the `Drop`
/// of `b`'s old key (a replacement of `b` with a long deadline); then a store of the new key
/// `c` and a replacement of `a` with a 1 s deadline are queued in that order, and the clock
/// moves 2 s. Live: `b` and `c`, within capacity, so nothing may be evicted. Each round is a
/// fresh engine (a fresh hasher): the case needs `a` and `c` in different shards, which
/// about half the rounds give.
#[test]
fn a_pending_replacement_that_is_dead_when_applied_goes_before_a_live_entry() {
    for round in 0..24 {
        let clock = ManualClock::new();
        let e: Engine<HookedKey, u64> = Engine::builder()
            .max_capacity(2)
            .shards(2)
            .workers(1)
            .clock(clock.clone())
            .build()
            .expect("engine");
        let gate = Gate::new();
        let g = gate.clone();
        e.insert(HookedKey::new(1), 1);
        e.insert(HookedKey::with_drop(2, move || g.enter_and_wait()), 2);
        e.flush();
        assert_eq!(e.len(), 2);
        // The worker replaces b's entry and drops its old key: held at the gate.
        e.insert_with_ttl(HookedKey::new(2), 20, 1000 * SEC);
        gate.wait_entered();
        e.insert(HookedKey::new(3), 3);
        e.insert_with_ttl(HookedKey::new(1), 10, SEC);
        clock.advance(2 * SEC);
        gate.open();
        let e2 = e.clone();
        no_hang("flush", move || e2.flush());
        let s = e.stats();
        let got = [1, 2, 3].map(|k| e.get(&HookedKey::new(k)));
        assert_eq!(
            got,
            [None, Some(20), Some(3)],
            "round {round}: a live entry evicted, the live weight (2) fitting: {s:?}"
        );
        assert_eq!(s.evictions, 0, "round {round}: {s:?}");
        e.run_maintenance();
        e.flush();
        assert_eq!(e.len(), 2, "round {round}");
        e.validate().unwrap();
    }
}

/// The batched capacity model of `engine_rev_s16a`, without a weigher (every entry weighs 1,
/// so a replacement never changes a weight, and only what the engine knows of deadlines and
/// generations tells a pending replacement's entry from a live one), on 1-8 shards and 1-3
/// workers, with several operations (stores with and without deadlines and generations, in
/// place or not, removes, clock moves, retirements) between flushes.
///
/// Model: `HashMap<key, (value, deadline, generation)>` on the manual clock. At each `Flush` /
/// `Maintain` and each `Get`: a value served is the model's live value (never stale, never a
/// removed or superseded one); `len() <= capacity`, `entries == len()`, `validate()` holds;
/// a live key may be missing only if the number of keys that may be live went over the
/// capacity (after some operation) since it was stored; after maintenance `len()` is exactly
/// the number of visible values; `inserts` never exceeds the stores made.
///
/// "May be live" counts a key live at any instant since the last flush (a deadline after the
/// clock then, a generation live then). A worker that settles reads the clock once as it
/// begins; if the test moves the clock and then replaces a value in place before that worker
/// evicts, the worker may evict the new value as a live entry while entries it still counts
/// live have expired (counting only what is live now, this model failed in about 1 run of 10
/// of 512 cases: a race of the moving clock with the worker, which no model over the public
/// API can tell from the bug that `a_pending_replacement_that_is_dead_when_applied_goes_before_a_live_entry`
/// pins down with a held worker; that strict version also failed before that fix, in about
/// a third of the runs).
mod unweighted {
    use super::*;

    pub(super) const KEYS: u64 = 16;

    #[derive(Clone, Debug)]
    pub(super) enum Op {
        Insert { k: u64, tag: u16, ttl: Option<u8>, gen: bool },
        Get(u64),
        Remove(u64),
        Advance(u8),
        Retire,
        Flush,
        Maintain,
    }

    #[derive(Clone, Copy, Debug)]
    pub(super) struct Config {
        pub(super) capacity: u64,
        pub(super) shards: usize,
        pub(super) workers: usize,
    }

    #[derive(Clone, Copy, Debug)]
    struct Stored {
        value: u64,
        deadline: Option<Duration>,
        gen: Option<Generation>,
        evictable: bool,
    }

    pub(super) fn config() -> impl Strategy<Value = Config> {
        (
            prop::sample::select(vec![1u64, 2, 3, 5, 8]),
            prop::sample::select(vec![1usize, 2, 3, 8]),
            1usize..=3,
        )
            .prop_map(|(capacity, shards, workers)| Config { capacity, shards, workers })
    }

    pub(super) fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => (0..KEYS, any::<u16>(), prop::option::of(1u8..4), any::<bool>())
                .prop_map(|(k, tag, ttl, gen)| Op::Insert { k, tag, ttl, gen }),
            3 => (0..KEYS).prop_map(Op::Get),
            2 => (0..KEYS).prop_map(Op::Remove),
            3 => (1u8..3).prop_map(Op::Advance),
            1 => Just(Op::Retire),
            3 => Just(Op::Flush),
            2 => Just(Op::Maintain),
        ]
    }

    fn is_live(e: &Engine<u64, u64>, clock: &ManualClock, s: &Stored) -> bool {
        s.deadline.is_none_or(|d| clock.now() < d) && s.gen.is_none_or(|g| e.is_live(g))
    }

    /// Whether a worker may still take `s` for live: it was live at some instant since the
    /// last flush (`since`: the clock then; `retired`: the generations retired since). A
    /// worker that settles reads the clock when it begins, and the test may move time on and
    /// store again (in place) before that worker evicts, so counting only what is live now
    /// asks more than the engine gives (see the note on [`unweighted`]).
    fn maybe_live(
        e: &Engine<u64, u64>,
        since: Duration,
        retired: &[Generation],
        s: &Stored,
    ) -> bool {
        s.deadline.is_none_or(|d| since < d)
            && s.gen.is_none_or(|g| e.is_live(g) || retired.contains(&g))
    }

    pub(super) fn run(cfg: Config, ops: &[Op]) -> Result<(), String> {
        let clock = ManualClock::new();
        let e: Engine<u64, u64> = Engine::builder()
            .max_capacity(cfg.capacity)
            .shards(cfg.shards)
            .workers(cfg.workers)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut model: HashMap<u64, Stored> = HashMap::new();
        let mut gen = e.new_generation();
        let mut inserts = 0u64;
        let (mut since, mut retired) = (clock.now(), Vec::new());
        for (step, op) in ops.iter().enumerate() {
            let mut checkpoint = None;
            match *op {
                Op::Insert { k, tag, ttl, gen: with_gen } => {
                    let v = (k << 16) | u64::from(tag);
                    let mut opts = InsertOptions::new();
                    if let Some(t) = ttl {
                        opts = opts.ttl(u32::from(t) * SEC);
                    }
                    if with_gen {
                        opts = opts.generations(gen, None);
                    }
                    e.insert_with_options(k, v, opts);
                    inserts += 1;
                    let deadline = ttl.map(|t| clock.now() + u32::from(t) * SEC);
                    let gen = with_gen.then_some(gen);
                    model.insert(k, Stored { value: v, deadline, gen, evictable: false });
                }
                Op::Get(k) => {
                    let got = e.get(&k);
                    let live = model.get(&k).filter(|s| is_live(&e, &clock, s)).copied();
                    match (got, live) {
                        (Some(g), Some(s)) if g == s.value => {}
                        (None, Some(s)) if s.evictable => {
                            model.remove(&k);
                        }
                        (None, None) => {}
                        (g, m) => return Err(format!("step {step}: get k{k} {g:?}, model {m:?}")),
                    }
                }
                Op::Remove(k) => {
                    e.remove(&k);
                    model.remove(&k);
                }
                Op::Advance(s) => clock.advance(u32::from(s) * SEC),
                Op::Retire => {
                    retired.push(gen);
                    e.retire(gen);
                    gen = e.new_generation();
                }
                Op::Flush => {
                    let e2 = e.clone();
                    no_hang("flush", move || e2.flush());
                    checkpoint = Some(false);
                }
                Op::Maintain => {
                    let e2 = e.clone();
                    no_hang("maintain", move || {
                        e2.run_maintenance();
                        e2.flush();
                    });
                    checkpoint = Some(true);
                }
            }
            let live = model.values().filter(|s| maybe_live(&e, since, &retired, s)).count();
            if live as u64 > cfg.capacity {
                model.values_mut().for_each(|s| s.evictable = true);
            }
            if let Some(maintained) = checkpoint {
                check(&e, &clock, cfg, &mut model, maintained, inserts)
                    .map_err(|m| format!("step {step} ({op:?}): {m}"))?;
                (since, retired) = (clock.now(), Vec::new());
            }
        }
        let e2 = e.clone();
        no_hang("flush", move || {
            e2.run_maintenance();
            e2.flush();
        });
        check(&e, &clock, cfg, &mut model, true, inserts).map_err(|m| format!("at the end: {m}"))
    }

    fn check(
        e: &Engine<u64, u64>,
        clock: &ManualClock,
        cfg: Config,
        model: &mut HashMap<u64, Stored>,
        maintained: bool,
        inserts: u64,
    ) -> Result<(), String> {
        let stats = e.stats();
        if e.len() > cfg.capacity || stats.weight != stats.entries {
            return Err(format!("len {} over capacity {} ({stats:?})", e.len(), cfg.capacity));
        }
        if stats.entries != e.len() {
            return Err(format!("entries {} but len {}", stats.entries, e.len()));
        }
        // Stores under a generation retired before they were applied are refused, so the
        // count may be lower, never higher.
        if stats.inserts > inserts {
            return Err(format!("{} inserts counted, {inserts} made", stats.inserts));
        }
        e.validate()?;
        let mut visible = 0u64;
        for k in 0..KEYS {
            let got = e.get(&k);
            let live = model.get(&k).filter(|s| is_live(e, clock, s)).copied();
            match (got, live) {
                (Some(g), Some(s)) if g == s.value => visible += 1,
                (None, Some(s)) if s.evictable => {
                    model.remove(&k);
                }
                (None, None) => {}
                (g, m) => return Err(format!("k{k}: {g:?}, model {m:?} ({stats:?})")),
            }
        }
        if maintained && stats.entries != visible {
            return Err(format!(
                "after maintenance: {} entries, {visible} visible ({stats:?})",
                stats.entries
            ));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// See [`unweighted`]. Failed about 1 debug run in 50 (of 512 cases) with a `flush`
    /// ending over capacity (`len 3 over capacity 2`, two or three workers): a store that hid
    /// an entry, taken out of the pending table by a remove of its key after the worker had
    /// reclaimed that entry, left `Cell::hides` set with nothing pending, and the workers
    /// deferred to each other for good (pinned down by
    /// `capacity::tests::a_hiding_store_taken_out_after_its_entry_left_does_not_hold_off_eviction`).
    #[test]
    fn batched_unweighted_model(
        cfg in unweighted::config(),
        ops in prop::collection::vec(unweighted::op(), 1..80),
    ) {
        if let Err(m) = unweighted::run(cfg, &ops) {
            return Err(TestCaseError::fail(format!("{cfg:?}: {m}")));
        }
    }
}

/// The kind of writer operation number `n` on key `k` (deterministic, so readers know it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// `remove`.
    Remove,
    /// `insert`: in place when the entry is resident, untimed, without generations.
    Plain,
    /// `insert_with_ttl` (an hour): always through the pending table.
    Timed,
    /// A store under a generation that stays live: through the pending table, and the entry
    /// then differs from a plain store's, so the next plain store goes there too.
    Versioned,
}

fn kind(k: u64, n: u64) -> Kind {
    match (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)) >> 61 {
        0 => Kind::Remove,
        1..=3 => Kind::Plain,
        4 | 5 => Kind::Timed,
        _ => Kind::Versioned,
    }
}

/// Read-your-writes across threads, with every store path racing every other on the same
/// keys: writers (one per key set) store and remove their keys through the in-place path, the
/// pending table (with a deadline, under a generation) and removes; before operation `n` on
/// `k` a writer publishes `started[k] = n`, after it returns `done[k] = n`. Readers on other
/// threads read `done`, look the key up, then read `started`, and check that the answer is
/// one the operations in between allow: a value whose number is at least that of the last
/// operation done (the last store done, or a store after the last remove done) and at most
/// `started`, never older (never stale, never a superseded or removed value coming back);
/// `None` only if the last operation done is a remove or a remove was started since. No
/// eviction (capacity far above the keys), no expiry (the clock never moves), so these are
/// exact. Values encode `(k, n)`; writers also check their own store at once.
#[test]
fn every_store_path_is_read_your_writes_for_other_threads() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const KEYS_PER_WRITER: u64 = 6;
    const WRITERS: u64 = 2;
    const OPS: u64 = 6_000;
    for (shards, workers) in [(1, 1), (4, 2), (16, 3)] {
        let (e, _clock) = common::manual_engine_with::<u64, u64>(
            Engine::builder().max_capacity(1 << 20).shards(shards).workers(workers),
        );
        let gen = e.new_generation();
        let keys = KEYS_PER_WRITER * WRITERS;
        let started: Arc<Vec<AtomicU64>> = Arc::new((0..keys).map(|_| AtomicU64::new(0)).collect());
        let done: Arc<Vec<AtomicU64>> = Arc::new((0..keys).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        // Everyone starts together, so that the readers overlap the writers.
        let start = Arc::new(std::sync::Barrier::new(WRITERS as usize + 2));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (e, started, done) = (e.clone(), started.clone(), done.clone());
            let start = start.clone();
            writers.push(std::thread::spawn(move || {
                start.wait();
                for i in 0..OPS {
                    let k = w * KEYS_PER_WRITER + i % KEYS_PER_WRITER;
                    let n = i / KEYS_PER_WRITER + 1;
                    started[k as usize].store(n, Ordering::SeqCst);
                    let v = (k << 32) | n;
                    match kind(k, n) {
                        Kind::Remove => e.remove(&k),
                        Kind::Plain => e.insert(k, v),
                        Kind::Timed => e.insert_with_ttl(k, v, 3600 * SEC),
                        Kind::Versioned => {
                            e.insert_with_options(k, v, InsertOptions::new().generations(gen, None))
                        }
                    }
                    done[k as usize].store(n, Ordering::SeqCst);
                    let own = e.get(&k);
                    let want = (kind(k, n) != Kind::Remove).then_some(v);
                    assert_eq!(own, want, "writer {w}: key {k} right after op {n}");
                }
            }));
        }
        let mut readers = Vec::new();
        for r in 0..2u64 {
            let (e, started, done, stop) = (e.clone(), started.clone(), done.clone(), stop.clone());
            let start = start.clone();
            readers.push(std::thread::spawn(move || {
                start.wait();
                let mut checks = 0u64;
                let mut i = r;
                // At least a few thousand checks, even if the writers finish first.
                while !stop.load(Ordering::SeqCst) || checks < 4_000 {
                    let k = i % keys;
                    i += 1;
                    let d = done[k as usize].load(Ordering::SeqCst);
                    let got = e.get(&k);
                    let s = started[k as usize].load(Ordering::SeqCst);
                    // The last operation done that decides: the answer may come from it or
                    // from any operation started since.
                    let removed_since = (d.max(1)..=s).any(|n| kind(k, n) == Kind::Remove);
                    match got {
                        Some(v) => {
                            assert_eq!(v >> 32, k, "reader {r}: another key's value");
                            let m = v & 0xffff_ffff;
                            assert!(
                                m >= d.max(1) && m <= s && kind(k, m) != Kind::Remove,
                                "reader {r}: key {k} served op {m}'s value, done {d}, started {s}"
                            );
                        }
                        None => assert!(
                            d == 0 || removed_since,
                            "reader {r}: key {k} missed, op {d} done ({:?}), started {s}",
                            kind(k, d)
                        ),
                    }
                    checks += 1;
                }
                checks
            }));
        }
        for w in writers {
            w.join().expect("writer");
        }
        stop.store(true, Ordering::SeqCst);
        let checks: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
        assert!(checks > 0);
        let e2 = e.clone();
        no_hang("flush", move || e2.flush());
        for k in 0..keys {
            let n = done[k as usize].load(Ordering::SeqCst);
            let want = (kind(k, n) != Kind::Remove).then_some((k << 32) | n);
            assert_eq!(e.get(&k), want, "{shards} shards: key {k} after op {n}");
        }
        assert_eq!(e.stats().evictions, 0);
        e.validate().unwrap();
    }
}
