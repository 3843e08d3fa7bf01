//! Proof suite, part 2: concurrency stress of the memoizer, threads after drop, memory after
//! generation churn.
//!
//! - [`concurrent_calls_deletes_and_time`]: threads call, delete (every form), change
//!   timeouts, advance a manual clock and run maintenance at once on 16 keys of a memoizer
//!   whose capacity is 12, on seeded schedules bounded in operations (not wall time). The
//!   oracle is sound under concurrency:
//!   - *deletes*: before a delete, the deleter reads the token counter `E`; every computation
//!     that began before the delete has a token below `E`. After the delete returns it
//!     publishes `E` as the *delete epoch* of every key the delete covers. A caller reads the
//!     epoch of its key before calling; the token it gets must not be below it (a delete that
//!     returned before a call began is never violated);
//!   - *timeouts*: every caller that returns token `X` publishes the clock it read after
//!     returning as an upper bound of `X`'s store time, so `X`'s deadline is at most that bound
//!     plus the largest timeout ever set (`T_MAX`). A caller whose call began at clock `t0` must
//!     not get a token whose bound plus `T_MAX` is `<= t0`;
//!   - every token is for the key asked (no other function's or receiver's result).
//! - [`no_thread_outlives_a_dropped_memoizer`]: in a child process (so no other test's threads
//!   count), memoizers and engines are built, used from several threads and dropped; the
//!   process returns to its thread count.
//! - [`memory_returns_after_generation_churn`]: in a child process, rounds of
//!   `MEMOKIT_CHURN_RESULTS` distinct results then `delete_memoized!`: the engine's entries go
//!   back to 0 after maintenance, and RSS (`/proc/self/statm`) after later rounds stays within a
//!   tolerance of RSS after the first.
//!
//! Longer runs: `MEMOKIT_STRESS_ITERS` (a multiplier of the 2000 operations per thread, as in
//! `engine_stress`),
//! `MEMOKIT_STRESS_SEED` (first seed, default 1), `MEMOKIT_STRESS_SEEDS` (number of seeds,
//! default 4), `MEMOKIT_CHURN_RESULTS` (default 100000), `MEMOKIT_CHURN_ROUNDS` (default 3).
mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use common::{env_u64, no_hang};
use memokit::{memoize, ManualClock, MemoIdentity, Memoizer, Timeout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------------
// Concurrent calls, deletes and time against the epoch oracle.

const CALLERS: usize = 4;
/// The largest timeout any function has at any time in the stress test.
const T_MAX: Duration = Duration::from_secs(2);
/// One clock step.
const STEP: Duration = Duration::from_millis(250);

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static STRESS: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder()
        .clock(CLOCK.clone())
        .default_timeout(T_MAX)
        .capacity(12)
        .build()
        .expect("stress memoizer")
});
static SEQ: AtomicU64 = AtomicU64::new(0);

/// `sf(a)`: keys 0..4. `R(recv).m(a)`: keys 4 + 4 * recv + a, recv in 0..3.
const NKEYS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    seq: u64,
    key: usize,
}

fn token(key: usize) -> Token {
    Token { seq: SEQ.fetch_add(1, SeqCst), key }
}

#[memoize(memoizer = &STRESS)]
fn sf(a: u8) -> Token {
    token(usize::from(a))
}

#[derive(MemoIdentity)]
struct R(#[memo(id)] u8);

impl R {
    #[memoize(memoizer = &STRESS)]
    fn m(&self, a: u8) -> Token {
        token(4 + 4 * usize::from(self.0) + usize::from(a))
    }
}

fn call(key: usize) -> Token {
    if key < 4 {
        sf(key as u8)
    } else {
        let (recv, a) = ((key - 4) / 4, (key - 4) % 4);
        R(recv as u8).m(a as u8)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("clock fits u64")
}

/// What the threads publish for each other.
struct Oracle {
    /// Per key: no call that began after the epoch was published may get a token below it.
    epochs: Vec<AtomicU64>,
    /// Per token (seq - base): an upper bound of the clock (ns) when it was stored.
    stored_by: Vec<AtomicU64>,
    base: u64,
}

impl Oracle {
    /// Starts a run: deletes everything earlier runs left (an epoch for every key).
    fn new(max_tokens: usize) -> Self {
        sf_memo().set_cache_timeout(Timeout::Default);
        R::m_memo().set_cache_timeout(Timeout::Default);
        let base = SEQ.load(SeqCst);
        memokit::delete_memoized!(sf);
        memokit::delete_memoized!(R::m);
        Oracle {
            epochs: (0..NKEYS).map(|_| AtomicU64::new(base)).collect(),
            stored_by: (0..max_tokens).map(|_| AtomicU64::new(u64::MAX)).collect(),
            base,
        }
    }

    fn slot(&self, t: &Token) -> &AtomicU64 {
        let i = t.seq.checked_sub(self.base).expect("a token from before this run");
        &self.stored_by[usize::try_from(i).expect("index")]
    }

    /// One checked call.
    fn call(&self, key: usize) {
        let epoch = self.epochs[key].load(SeqCst);
        let t0 = nanos(CLOCK.now());
        let got = call(key);
        let t1 = nanos(CLOCK.now());
        assert_eq!(got.key, key, "another key's result: {got:?} for key {key}");
        assert!(
            got.seq >= epoch,
            "stale after delete: key {key} got token {} but a delete that returned before the \
             call began covers every token below {epoch}",
            got.seq
        );
        let slot = self.slot(&got);
        let bound = slot.load(SeqCst);
        assert!(
            bound == u64::MAX || bound + nanos(T_MAX) > t0,
            "past its timeout: key {key} got token {} at {t0} ns, but it was stored by {bound} \
             ns and no timeout exceeds {T_MAX:?}",
            got.seq
        );
        slot.fetch_min(t1, SeqCst);
    }

    /// A delete of the keys `keys` by `f`, publishing its epoch once `f` has returned.
    fn delete(&self, keys: impl IntoIterator<Item = usize>, f: impl FnOnce()) {
        let e = SEQ.load(SeqCst);
        f();
        for k in keys {
            self.epochs[k].fetch_max(e, SeqCst);
        }
    }
}

fn all_of_sf() -> std::ops::Range<usize> {
    0..4
}
fn all_of_m() -> std::ops::Range<usize> {
    4..NKEYS
}
fn all_of_recv(r: u8) -> impl Iterator<Item = usize> {
    (0..4).map(move |a| 4 + 4 * usize::from(r) + a)
}

/// One random delete, of one of the 17 forms.
fn random_delete(o: &Oracle, rng: &mut StdRng) {
    let a: u8 = rng.gen_range(0..4);
    let r: u8 = rng.gen_range(0..3);
    let mk = 4 + 4 * usize::from(r) + usize::from(a);
    let m = &*STRESS;
    match rng.gen_range(0..17) {
        0 => o.delete(all_of_sf(), || memokit::delete_memoized!(sf)),
        1 => o.delete([usize::from(a)], || memokit::delete_memoized!(sf, a)),
        2 => o.delete(all_of_sf(), || memokit::delete_memoized_verhash!(sf)),
        3 => o.delete(all_of_sf(), || m.delete_memoized(sf_memo().name()).expect("by name")),
        4 => o.delete([usize::from(a)], || {
            m.delete_memoized_args(sf_memo().name(), &(a,)).expect("by name, args")
        }),
        5 => o.delete(all_of_sf(), || {
            m.delete_memoized_verhash(sf_memo().name()).expect("verhash by name")
        }),
        6 => o.delete([usize::from(a)], || sf_memo().delete(&(a,))),
        7 => o.delete(all_of_m(), || memokit::delete_memoized!(R::m)),
        8 => o.delete(all_of_recv(r), || memokit::delete_memoized!(R(r).m)),
        9 => o.delete([mk], || memokit::delete_memoized!(R(r).m, a)),
        10 => o.delete([mk], || memokit::delete_memoized!(R::m, &R(r), a)),
        11 => o.delete(all_of_m(), || memokit::delete_memoized_verhash!(R::m)),
        12 => o.delete(all_of_recv(r), || memokit::delete_memoized_verhash!(R(r).m)),
        13 => o.delete(all_of_m(), || m.delete_memoized(R::m_memo().name()).expect("by name")),
        14 => o.delete([mk], || {
            m.delete_memoized_args(R::m_memo().name(), &(r, a)).expect("by name, args")
        }),
        15 => o.delete([mk], || R::m_memo().delete(&(r, a))),
        _ => o.delete(0..NKEYS, || m.clear()),
    }
}

fn random_timeout(rng: &mut StdRng) -> Timeout {
    match rng.gen_range(0..4) {
        0 => Timeout::After(Duration::ZERO),
        1 => Timeout::After(T_MAX / 2),
        2 => Timeout::After(T_MAX),
        _ => Timeout::Default, // T_MAX
    }
}

fn stress_thread(o: &Oracle, seed: u64, iters: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..iters {
        match rng.gen_range(0..100) {
            0..70 => o.call(rng.gen_range(0..NKEYS)),
            70..88 => random_delete(o, &mut rng),
            88..94 => CLOCK.advance(STEP),
            94..97 => {
                let t = random_timeout(&mut rng);
                if rng.gen() {
                    sf_memo().set_cache_timeout(t);
                } else {
                    R::m_memo().set_cache_timeout(t);
                }
            }
            _ => STRESS.run_maintenance(),
        }
    }
}

#[test]
fn concurrent_calls_deletes_and_time() {
    let iters = 2000 * env_u64("MEMOKIT_STRESS_ITERS", 1);
    let first = env_u64("MEMOKIT_STRESS_SEED", 1);
    let seeds = env_u64("MEMOKIT_STRESS_SEEDS", 4);
    for seed in first..first + seeds {
        no_hang("concurrent calls, deletes and time", move || {
            let max_tokens = CALLERS * usize::try_from(iters).expect("iters") + 1;
            let o = Arc::new(Oracle::new(max_tokens));
            let hits_before = STRESS.stats().hits;
            std::thread::scope(|s| {
                for t in 0..CALLERS as u64 {
                    let o = &o;
                    s.spawn(move || stress_thread(o, seed * 1000 + t, iters));
                }
            });
            // Afterwards, quiescent: every key still answers, and a delete still applies.
            for k in 0..NKEYS {
                o.call(k);
            }
            let hits = STRESS.stats().hits - hits_before;
            assert!(hits > 0, "seed {seed}: no call was ever served from the cache");
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Threads and memory, each in a child process of its own.

#[cfg(target_os = "linux")]
#[test]
fn no_thread_outlives_a_dropped_memoizer() {
    no_hang("threads child", || common::run_child("threads_child"));
}

#[cfg(target_os = "linux")]
#[test]
fn memory_returns_after_generation_churn() {
    no_hang("memory child", || common::run_child("memory_child"));
}

#[cfg(target_os = "linux")]
fn back_to(n: usize, what: &str) {
    common::wait_until(what, || common::thread_count() == n);
}

/// The body of [`no_thread_outlives_a_dropped_memoizer`]; only meaningful alone in a process.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by no_thread_outlives_a_dropped_memoizer"]
fn threads_child() {
    use memokit_engine::{Engine, InsertOptions};

    let before = common::thread_count();

    // Memoizers (real and manual clock), used from several threads, then dropped.
    for manual in [false, true] {
        let b = Memoizer::builder().capacity(100);
        let m = if manual { b.clock(ManualClock::new()).build() } else { b.build() }.unwrap();
        assert!(common::thread_count() > before, "the memoizer runs engine workers");
        std::thread::scope(|s| {
            for i in 0..4 {
                let m = m.clone();
                s.spawn(move || {
                    for _ in 0..100 {
                        assert!(m.delete_memoized(&format!("no::f{i}")).is_err());
                        m.flush();
                        m.run_maintenance();
                        let _ = m.stats();
                    }
                    drop(m);
                });
            }
        });
        let last = m.clone();
        drop(m);
        std::thread::spawn(move || drop(last)).join().unwrap();
        back_to(before, "every worker joined after the last memoizer handle was dropped");
    }

    // The engine under the memoizer, with generations, single flight and a stress of
    // concurrent stores, retirements and removes, dropped while values are in its mailboxes.
    let clock = ManualClock::new();
    let e: Engine<u64, u64> =
        Engine::builder().max_capacity(64).workers(2).clock(clock.clone()).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let e = e.clone();
            let clock = clock.clone();
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                let mut gen = e.new_generation();
                for i in 0..2_000u64 {
                    let k = rng.gen_range(0..200);
                    let opts = InsertOptions::new().generations(gen, None).ttl(T_MAX);
                    let _ = e.get_or_insert_with_options(k, opts, || i);
                    match rng.gen_range(0..20) {
                        0 => {
                            e.retire(gen);
                            gen = e.new_generation();
                        }
                        1 => e.remove(&k),
                        2 => clock.advance(STEP),
                        3 => e.run_maintenance(),
                        _ => {}
                    }
                }
            });
        }
    });
    e.validate().expect("engine invariants after the stress");
    drop(e);
    back_to(before, "every engine worker joined after the stress");
}

/// Resident set size in bytes (Linux).
#[cfg(target_os = "linux")]
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("rss");
    pages * 4096
}

static CHURN_CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static CHURN: LazyLock<Memoizer> = LazyLock::new(|| {
    let n = env_u64("MEMOKIT_CHURN_RESULTS", 100_000);
    Memoizer::builder()
        .clock(CHURN_CLOCK.clone())
        .capacity(n + n / 2)
        .default_timeout(Timeout::Never)
        .build()
        .expect("churn memoizer")
});

/// A 64-byte result, as in the engine's memory bench.
#[memoize(memoizer = &CHURN)]
fn churn(k: u64) -> Arc<[u64; 8]> {
    Arc::new([k; 8])
}

#[derive(MemoIdentity)]
struct Visitor(#[memo(id)] u64);

impl Visitor {
    #[memoize(memoizer = &CHURN)]
    fn page(&self, p: u8) -> u64 {
        self.0 * 256 + u64::from(p)
    }
}

/// Runs maintenance until the engine holds no entry (a condition the engine must reach by
/// itself; the bound only turns "never" into a failure).
#[cfg(target_os = "linux")]
fn reclaim_all(round: u64) {
    for _ in 0..1_000 {
        CHURN.run_maintenance();
        if CHURN.stats().entries == 0 {
            return;
        }
        CHURN_CLOCK.advance(Duration::from_secs(1));
    }
    panic!("round {round}: {} entries never reclaimed after delete", CHURN.stats().entries);
}

/// The body of [`memory_returns_after_generation_churn`]; only meaningful alone in a process.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by memory_returns_after_generation_churn"]
fn memory_child() {
    let n = env_u64("MEMOKIT_CHURN_RESULTS", 100_000);
    let rounds = env_u64("MEMOKIT_CHURN_ROUNDS", 3).max(2);
    let start = rss();
    let mut after_first = 0;
    let mut first_growth = 0;
    for round in 0..rounds {
        // Functions: n distinct results, then one O(1) delete of all of them.
        for k in 0..n {
            assert_eq!(churn(k)[0], k);
        }
        CHURN.flush();
        assert_eq!(CHURN.stats().entries, n, "round {round}: every result stored");
        let peak = rss();
        memokit::delete_memoized!(churn);
        assert_eq!(churn(0)[0], 0, "recomputed after the delete");
        memokit::delete_memoized!(churn);
        reclaim_all(round);

        // Methods: many receivers, deleted per receiver and per type.
        for v in 0..n / 10 {
            assert_eq!(Visitor(v).page(1), v * 256 + 1);
            if v % 3 == 0 {
                memokit::delete_memoized!(Visitor(v).page);
            }
        }
        memokit::delete_memoized!(Visitor::page);
        reclaim_all(round);
        let records = Visitor::page_memo().__receiver_records();
        assert!(
            records as u64 <= n + n / 2,
            "round {round}: {records} receiver records kept, more than the capacity"
        );

        let now = rss();
        eprintln!("round {round}: rss start {start} peak {peak} after {now}");
        if round == 0 {
            after_first = now;
            first_growth = peak.saturating_sub(start);
        } else {
            let tolerance = (first_growth / 2).max(8 << 20);
            assert!(
                now <= after_first + tolerance,
                "round {round}: RSS {now} B after reclaiming, {after_first} B after the first \
                 round (tolerance {tolerance} B): memory is not coming back"
            );
        }
    }
}
