//! Review s17c (the memoizer's internals: receiver records and their pruning, deletes,
//! timeouts, `Option`/`Result` returns, stats).
//!
//! `methods_with_many_receivers_match_a_model`: a proptest of three memoized `&self` methods
//! (`u64`, `Option<u64>` with `None` cached, `Result<u64, u64>` with only `Ok` stored) on one
//! receiver type, bound to a memoizer of capacity [`CAP`] on a manual clock, with enough
//! receivers (`Churn`) that the per-method receiver records are pruned again and again, by
//! both rules (deadline passed; more records than the capacity and no entry under them: a zero
//! timeout makes such records).
//!
//! The model is the spec (api.md §3, §4): a map `(method, receiver id, k) -> (value,
//! deadline)`, a timeout per method (`Never` or a number of seconds; 0 stores nothing), and a
//! call that returns the model's value if it is within its deadline, else computes (one run)
//! and stores per the method's timeout (`Err` never). Every delete form removes exactly what
//! it names. While the model's live results have stayed below the capacity through the case,
//! this is exact: a result the model holds must be served (a pruned record must never cost
//! one), and one it does not must be computed. After that, a call may also recompute (the
//! engine may evict), but never returns anything but the model's value or a fresh one. Each
//! method's `stats()` counts every call once, as the hit or miss it was.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;
use std::time::Duration;

use memokit::{memoize, ManualClock, MemoIdentity, Memoizer, Timeout};
use proptest::prelude::*;

const CAP: u64 = 96;

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static MEMO: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder().clock(CLOCK.clone()).capacity(CAP).build().expect("memoizer")
});
static RUNS: AtomicU64 = AtomicU64::new(0);
/// Fresh receiver ids for `Churn`, never reused across cases.
static NEXT_ID: AtomicU32 = AtomicU32::new(1_000);

#[derive(MemoIdentity)]
struct Acct {
    #[memo(id)]
    id: u32,
}

impl Acct {
    #[memoize(memoizer = &MEMO)]
    fn bal(&self, k: u8) -> u64 {
        let _ = (self.id, k);
        RUNS.fetch_add(1, SeqCst)
    }

    #[memoize(memoizer = &MEMO)]
    fn lim(&self, k: u8) -> Option<u64> {
        let _ = (self.id, k);
        let t = RUNS.fetch_add(1, SeqCst);
        (t % 3 != 0).then_some(t)
    }

    #[memoize(memoizer = &MEMO)]
    fn chk(&self, k: u8) -> Result<u64, u64> {
        let _ = (self.id, k);
        let t = RUNS.fetch_add(1, SeqCst);
        if t % 4 == 0 {
            Err(t)
        } else {
            Ok(t)
        }
    }
}

/// What a call of method `m` returns, as one comparable value; `stored` says whether the
/// spec stores it (`Err` is never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Bal(u64),
    Lim(Option<u64>),
    Chk(Result<u64, u64>),
}

impl Out {
    fn stored(self) -> bool {
        !matches!(self, Out::Chk(Err(_)))
    }

    /// What a fresh computation that took run number `t` returns.
    fn fresh(m: u8, t: u64) -> Out {
        match m {
            0 => Out::Bal(t),
            1 => Out::Lim((t % 3 != 0).then_some(t)),
            _ => Out::Chk(if t % 4 == 0 { Err(t) } else { Ok(t) }),
        }
    }
}

fn call(m: u8, id: u32, k: u8) -> Out {
    let a = Acct { id };
    match m {
        0 => Out::Bal(a.bal(k)),
        1 => Out::Lim(a.lim(k)),
        _ => Out::Chk(a.chk(k)),
    }
}

fn name(m: u8) -> &'static str {
    match m {
        0 => Acct::bal_memo().name(),
        1 => Acct::lim_memo().name(),
        _ => Acct::chk_memo().name(),
    }
}

fn set_timeout(m: u8, t: Timeout) {
    match m {
        0 => Acct::bal_memo().set_cache_timeout(t),
        1 => Acct::lim_memo().set_cache_timeout(t),
        _ => Acct::chk_memo().set_cache_timeout(t),
    }
}

fn receiver_records(m: u8) -> usize {
    match m {
        0 => Acct::bal_memo().__receiver_records(),
        1 => Acct::lim_memo().__receiver_records(),
        _ => Acct::chk_memo().__receiver_records(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Call(u8, u32, u8),
    /// `bal(0)` on this many fresh receivers.
    Churn(u8),
    /// `bal(0)` again on the `j`th receiver churned in this case (if any).
    Recall(u16),
    Advance(u64),
    SetTimeout(u8, Option<u64>),
    /// `delete_memoized!(acct.m, k)`.
    DelKey(u8, u32, u8),
    /// `delete_memoized!(acct.m)`.
    DelRecv(u8, u32),
    /// `delete_memoized!(Acct::m)`.
    DelType(u8),
    /// `delete_memoized!(Acct::m, &acct, k)`.
    DelTypeKey(u8, u32, u8),
    Verhash(u8),
    ByName(u8),
    ByNameArgs(u8, u32, u8),
    Maintain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..3, 0u32..6, 0u8..3).prop_map(|(m, i, k)| Op::Call(m, i, k)),
        3 => (1u8..48).prop_map(Op::Churn),
        3 => any::<u16>().prop_map(Op::Recall),
        2 => (0u64..4).prop_map(Op::Advance),
        2 => (0u8..3, proptest::option::of(0u64..4)).prop_map(|(m, t)| Op::SetTimeout(m, t)),
        1 => (0u8..3, 0u32..6, 0u8..3).prop_map(|(m, i, k)| Op::DelKey(m, i, k)),
        1 => (0u8..3, 0u32..6).prop_map(|(m, i)| Op::DelRecv(m, i)),
        1 => (0u8..3).prop_map(Op::DelType),
        1 => (0u8..3, 0u32..6, 0u8..3).prop_map(|(m, i, k)| Op::DelTypeKey(m, i, k)),
        1 => (0u8..3).prop_map(Op::Verhash),
        1 => (0u8..3).prop_map(Op::ByName),
        1 => (0u8..3, 0u32..6, 0u8..3).prop_map(|(m, i, k)| Op::ByNameArgs(m, i, k)),
        1 => Just(Op::Maintain),
    ]
}

type Key = (u8, u32, u8);

#[derive(Default)]
struct Model {
    cache: HashMap<Key, (Out, Option<Duration>)>,
    /// Per method; `None`: `Timeout::Never`.
    timeout: [Option<Duration>; 3],
    churned: Vec<u32>,
    /// The live results once reached the capacity: the engine may have evicted.
    pressured: bool,
    /// Per method: calls answered from the cache, calls that ran the method.
    hits: [u64; 3],
    misses: [u64; 3],
}

impl Model {
    fn live(&self, now: Duration) -> usize {
        self.cache.values().filter(|(_, u)| u.is_none_or(|u| now < u)).count()
    }

    fn valid(&self, k: &Key, now: Duration) -> Option<Out> {
        self.cache.get(k).filter(|(_, u)| u.is_none_or(|u| now < u)).map(|(o, _)| *o)
    }

    /// Replays one call on the memoizer and checks it.
    fn call(&mut self, key: Key) -> Result<(), TestCaseError> {
        let now = CLOCK.now();
        let (m, id, k) = key;
        let before = RUNS.load(SeqCst);
        let got = call(m, id, k);
        let ran = RUNS.load(SeqCst) - before;
        if ran == 0 {
            self.hits[usize::from(m)] += 1;
        } else {
            self.misses[usize::from(m)] += 1;
        }
        match self.valid(&key, now) {
            Some(v) if ran == 0 => prop_assert_eq!(got, v, "the cached result of {:?}", key),
            Some(v) => {
                prop_assert!(
                    self.pressured,
                    "{:?}: its result {:?} (model) was lost far below capacity ({} live, \
                     {} records): recomputed {:?}",
                    key,
                    v,
                    self.live(now),
                    receiver_records(m),
                    got
                );
                prop_assert_eq!(ran, 1);
                prop_assert_eq!(got, Out::fresh(m, before));
                self.store(key, got, now);
            }
            None => {
                prop_assert_eq!(ran, 1, "{:?}: nothing valid in the model, served {:?}", key, got);
                prop_assert_eq!(got, Out::fresh(m, before));
                self.store(key, got, now);
            }
        }
        Ok(())
    }

    fn store(&mut self, key: Key, out: Out, now: Duration) {
        let t = self.timeout[usize::from(key.0)];
        if !out.stored() || t.is_some_and(|t| t.is_zero()) {
            self.cache.remove(&key);
            return;
        }
        self.cache.insert(key, (out, t.map(|t| now + t)));
        if self.live(now) >= CAP as usize {
            self.pressured = true;
        }
    }

    fn forget(&mut self, f: impl Fn(&Key) -> bool) {
        self.cache.retain(|k, _| !f(k));
    }
}

fn stats(m: u8) -> memokit::Stats {
    match m {
        0 => Acct::bal_memo().stats(),
        1 => Acct::lim_memo().stats(),
        _ => Acct::chk_memo().stats(),
    }
}

fn replay(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let start: Vec<memokit::Stats> = (0..3).map(stats).collect();
    for m in 0..3 {
        memokit::Memoizer::delete_memoized_verhash(&MEMO, name(m)).ok();
        set_timeout(m, Timeout::Never);
    }
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Call(m, id, k) => model.call((m, id, k))?,
            Op::Churn(n) => {
                for _ in 0..n {
                    let id = NEXT_ID.fetch_add(1, SeqCst);
                    model.churned.push(id);
                    model.call((0, id, 0))?;
                }
            }
            Op::Recall(j) => {
                if !model.churned.is_empty() {
                    let id = model.churned[usize::from(j) % model.churned.len()];
                    model.call((0, id, 0))?;
                }
            }
            Op::Advance(s) => CLOCK.advance(Duration::from_secs(s)),
            Op::SetTimeout(m, t) => {
                let t = t.map(Duration::from_secs);
                set_timeout(m, t.map_or(Timeout::Never, Timeout::After));
                model.timeout[usize::from(m)] = t;
            }
            Op::DelKey(m, id, k) => {
                let a = Acct { id };
                match m {
                    0 => memokit::delete_memoized!(a.bal, k),
                    1 => memokit::delete_memoized!(a.lim, k),
                    _ => memokit::delete_memoized!(a.chk, k),
                }
                model.forget(|key| *key == (m, id, k));
            }
            Op::DelRecv(m, id) => {
                let a = Acct { id };
                match m {
                    0 => memokit::delete_memoized!(a.bal),
                    1 => memokit::delete_memoized!(a.lim),
                    _ => memokit::delete_memoized!(a.chk),
                }
                model.forget(|key| key.0 == m && key.1 == id);
            }
            Op::DelType(m) => {
                match m {
                    0 => memokit::delete_memoized!(Acct::bal),
                    1 => memokit::delete_memoized!(Acct::lim),
                    _ => memokit::delete_memoized!(Acct::chk),
                }
                model.forget(|key| key.0 == m);
            }
            Op::DelTypeKey(m, id, k) => {
                let a = Acct { id };
                match m {
                    0 => memokit::delete_memoized!(Acct::bal, &a, k),
                    1 => memokit::delete_memoized!(Acct::lim, &a, k),
                    _ => memokit::delete_memoized!(Acct::chk, &a, k),
                }
                model.forget(|key| *key == (m, id, k));
            }
            Op::Verhash(m) => {
                match m {
                    0 => memokit::delete_memoized_verhash!(Acct::bal),
                    1 => memokit::delete_memoized_verhash!(Acct::lim),
                    _ => memokit::delete_memoized_verhash!(Acct::chk),
                }
                model.forget(|key| key.0 == m);
            }
            Op::ByName(m) => {
                MEMO.delete_memoized(name(m)).expect("known name");
                model.forget(|key| key.0 == m);
            }
            Op::ByNameArgs(m, id, k) => {
                MEMO.delete_memoized_args(name(m), &(id, k)).expect("known name and types");
                model.forget(|key| *key == (m, id, k));
            }
            Op::Maintain => MEMO.run_maintenance(),
        }
    }
    // Every call is counted once, as a hit or a miss (one thread: no single-flight waits).
    for m in 0..3u8 {
        let (now, then, i) = (stats(m), start[usize::from(m)], usize::from(m));
        prop_assert_eq!(now.hits - then.hits, model.hits[i], "hits of method {}", m);
        prop_assert_eq!(now.misses - then.misses, model.misses[i], "misses of method {}", m);
        prop_assert_eq!(now.single_flight_waits, then.single_flight_waits);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn methods_with_many_receivers_match_a_model(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        replay(ops)?;
    }
}

// Per-receiver deletes racing calls while the same method's receiver records are pruned over
// and over by other threads (records pile up from calls whose `Err` is not stored, so pruning
// by the second rule runs; a manual clock moved by a churner makes the first rule run too).
// Oracle (sound under concurrency): a data version per hot receiver is bumped before each
// delete of that receiver's results and published as done after the delete returned; a call
// that begins after reading `done = d` must return a value computed from data >= d. At the
// end, every hot receiver's result is cached (a second call runs nothing): pruning did not
// leave it unreachable.

static RACE_CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static RACE: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder().clock(RACE_CLOCK.clone()).capacity(64).build().expect("memoizer")
});
const HOT: usize = 4;
static DATA: [AtomicU64; HOT] = [const { AtomicU64::new(0) }; HOT];
static DONE: [AtomicU64; HOT] = [const { AtomicU64::new(0) }; HOT];
static RACE_RUNS: AtomicU64 = AtomicU64::new(0);

#[derive(MemoIdentity)]
struct Shop(#[memo(id)] u64);

impl Shop {
    #[memoize(memoizer = &RACE, timeout = 5)]
    fn stock(&self) -> Result<u64, ()> {
        RACE_RUNS.fetch_add(1, SeqCst);
        match DATA.get(self.0 as usize) {
            Some(d) => {
                let v = d.load(SeqCst);
                for _ in 0..(v % 5) {
                    std::thread::yield_now();
                }
                Ok(v)
            }
            None if self.0 % 3 == 0 => Ok(0),
            None => Err(()),
        }
    }
}

#[test]
fn per_receiver_deletes_racing_calls_and_pruning() {
    common::no_hang("per_receiver_deletes_racing_calls_and_pruning", || {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..3u64 {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(SeqCst) {
                    let h = (i % HOT as u64) as usize;
                    let d = DONE[h].load(SeqCst);
                    let got = Shop(h as u64).stock().expect("hot receivers never fail");
                    assert!(
                        got >= d,
                        "receiver {h}: got data {got}, a delete of data {d} had returned"
                    );
                    i += 1;
                }
            }));
        }
        {
            // The churner: fresh receivers (most failing, so their records hold no entry) and
            // clock moves.
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut id = 1_000u64;
                while !stop.load(SeqCst) {
                    let _ = Shop(id).stock();
                    id += 1;
                    if id % 97 == 0 {
                        RACE_CLOCK.advance(Duration::from_secs(1));
                    }
                }
            }));
        }
        for round in 0..3_000u64 {
            let h = (round % HOT as u64) as usize;
            let v = DATA[h].fetch_add(1, SeqCst) + 1;
            let s = Shop(h as u64);
            match round % 3 {
                0 => memokit::delete_memoized!(s.stock),
                1 => memokit::delete_memoized!(Shop::stock, &s),
                _ => RACE
                    .delete_memoized_args(Shop::stock_memo().name(), &(h as u64,))
                    .expect("name"),
            }
            DONE[h].store(v, SeqCst);
            if round % 16 == 0 {
                std::thread::yield_now();
            }
        }
        stop.store(true, SeqCst);
        for t in threads {
            t.join().expect("thread");
        }
        let records = Shop::stock_memo().__receiver_records();
        // Pruned when they have doubled since the last pruning, which keeps those with an entry
        // (the engine may hold a few stores beyond its capacity until its worker applies them).
        assert!(records <= 8 * 64, "records are pruned: {records}");
        for (h, done) in DONE.iter().enumerate() {
            let d = done.load(SeqCst);
            assert_eq!(Shop(h as u64).stock(), Ok(d));
            let runs = RACE_RUNS.load(SeqCst);
            assert_eq!(Shop(h as u64).stock(), Ok(d));
            assert_eq!(RACE_RUNS.load(SeqCst), runs, "receiver {h}: the result is cached");
        }
    });
}
