//! Memoized `&self` methods: receiver identity, the seed's Adder instances, every
//! per-instance and per-type delete, `key =` and `Result` on methods, receiver-record pruning.
mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use common::Gate;
use memokit::{memoize, ManualClock, MemoIdentity, Memoizer};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The seed's `Adder`: `add` returns `initial + b + random`, keyed by the instance's id.
#[derive(MemoIdentity)]
struct Adder {
    #[memo(id)]
    initial: u64,
}

impl Adder {
    #[memoize(memoizer = &MEMO)]
    fn add(&self, b: u64) -> u64 {
        self.initial + b + 1000 * SEQ.fetch_add(1, SeqCst)
    }
}

#[test]
fn adder_instances_follow_the_seed() {
    let adder1 = Adder { initial: 1 };
    let adder2 = Adder { initial: 2 };
    let x = adder1.add(3);
    assert_eq!(adder1.add(3), x, "hit");
    assert_ne!(adder1.add(4), x, "other argument");
    let y = adder2.add(3);
    assert_ne!(y, x, "other instance");
    assert_eq!(Adder { initial: 1 }.add(3), x, "same id, same result (like the seed's __repr__)");

    // Every result of add for adder1 only.
    memokit::delete_memoized!(adder1.add);
    let x2 = adder1.add(3);
    assert_ne!(x2, x);
    assert_eq!(adder2.add(3), y, "adder2 keeps its results");

    // The result of adder1.add(3) only; the instance is supplied.
    let x4 = adder1.add(4);
    memokit::delete_memoized!(adder1.add, 3);
    let x3 = adder1.add(3);
    assert_ne!(x3, x2);
    assert_eq!(adder1.add(4), x4);

    // Through the type, with the instance.
    memokit::delete_memoized!(Adder::add, &adder1, 4);
    assert_ne!(adder1.add(4), x4);
    assert_eq!(adder1.add(3), x3);

    // Every result of add for every instance.
    memokit::delete_memoized!(Adder::add);
    assert_ne!(adder1.add(3), x3);
    assert_ne!(adder2.add(3), y);

    // Dropping the versions.
    let (a, b) = (adder1.add(3), adder2.add(3));
    memokit::delete_memoized_verhash!(adder1.add);
    assert_ne!(adder1.add(3), a);
    assert_eq!(adder2.add(3), b);
    memokit::delete_memoized_verhash!(Adder::add);
    assert_ne!(adder2.add(3), b);

    // The handle takes (Id, args..).
    let c = adder2.add(9);
    assert_eq!(
        Adder::add_memo().make_cache_key(&(2, 9)),
        Adder::add_memo().make_cache_key(&(2, 9))
    );
    assert_ne!(
        Adder::add_memo().make_cache_key(&(1, 9)),
        Adder::add_memo().make_cache_key(&(2, 9))
    );
    Adder::add_memo().delete(&(2, 9));
    assert_ne!(adder2.add(9), c);
    assert_eq!(Adder::add_uncached(&adder2, 0) % 1000, 2);
    assert!(
        Adder::add_memo().name().ends_with("memoize_methods::Adder::add"),
        "{}",
        Adder::add_memo().name()
    );
}

/// A hand-written identity (a database id behind a name).
struct Person {
    db_id: u32,
    name: String,
}

impl MemoIdentity for Person {
    type Id = u32;
    fn memo_id(&self) -> u32 {
        self.db_id
    }
}

static PERSON_RUNS: AtomicU64 = AtomicU64::new(0);

impl Person {
    #[memoize(memoizer = &MEMO, key = group.to_lowercase())]
    fn has_membership(&self, group: &str, _trace: u64) -> bool {
        PERSON_RUNS.fetch_add(1, SeqCst);
        group.eq_ignore_ascii_case("admins") && !self.name.is_empty()
    }

    #[memoize(memoizer = &MEMO)]
    fn nickname(&self, n: usize) -> Result<String, String> {
        PERSON_RUNS.fetch_add(1, SeqCst);
        self.name.get(..n).map(str::to_owned).ok_or_else(|| "too long".to_string())
    }
}

#[test]
fn key_and_result_work_on_methods() {
    let p = Person { db_id: 9, name: "ann".into() };
    let runs = || PERSON_RUNS.load(SeqCst);
    let before = runs();
    assert!(p.has_membership("Admins", 1));
    assert!(p.has_membership("ADMINS", 2), "keyed by the lowercased group only");
    assert_eq!(runs(), before + 1);
    memokit::delete_memoized!(p.has_membership, "admins", 0);
    assert!(p.has_membership("admins", 3));
    assert_eq!(runs(), before + 2);
    // The handle applies the key expression to the owned tuple (Id, String, u64).
    Person::has_membership_memo().delete(&(9, "AdMiNs".to_string(), 7));
    assert!(p.has_membership("admins", 3));
    assert_eq!(runs(), before + 3);

    assert_eq!(p.nickname(2).as_deref(), Ok("an"));
    assert_eq!(p.nickname(2).as_deref(), Ok("an"));
    assert!(p.nickname(9).is_err());
    assert!(p.nickname(9).is_err());
    assert_eq!(runs(), before + 6, "one Ok stored, errors recomputed");
}

static PRUNE: LazyLock<(ManualClock, Memoizer)> = LazyLock::new(|| {
    let c = ManualClock::new();
    let m = Memoizer::builder().clock(c.clone()).capacity(100).build().expect("memoizer");
    (c, m)
});

#[derive(MemoIdentity)]
struct Session(#[memo(id)] u64);

impl Session {
    #[memoize(memoizer = &PRUNE.1, timeout = 1)]
    fn token(&self) -> u64 {
        self.0 * 2
    }
}

#[test]
fn receiver_records_do_not_pile_up() {
    for i in 0..1_000 {
        assert_eq!(Session(i).token(), i * 2);
        if i % 10 == 9 {
            PRUNE.0.advance(Duration::from_secs(2));
        }
    }
    let records = Session::token_memo().__receiver_records();
    assert!(records <= 200, "expired receivers were pruned: {records} records left");
    // A live receiver keeps its results while others come and go within the bound.
    let keep = Session(5_000);
    keep.token();
    for i in 0..50 {
        Session(10_000 + i).token();
    }
    let misses = Session::token_memo().stats().misses;
    keep.token();
    assert_eq!(Session::token_memo().stats().misses, misses, "still cached");
}

// Pruning never drops a receiver whose results are live (found by a review: records were
// dropped in arbitrary order once more of them than the capacity were kept, and a record's
// deadline ran from the start of the call, not from the store).

static EXCESS: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(1_000).build().expect("memoizer"));
static EXCESS_RUNS: AtomicU64 = AtomicU64::new(0);

#[derive(MemoIdentity)]
struct Account(#[memo(id)] u64);

impl Account {
    #[memoize(memoizer = &EXCESS, timeout = memokit::Timeout::Never)]
    fn balance(&self) -> Result<u64, ()> {
        EXCESS_RUNS.fetch_add(1, SeqCst);
        if self.0 < 10_000 {
            Ok(self.0)
        } else {
            Err(())
        }
    }
}

#[test]
fn pruning_keeps_receivers_whose_results_are_live() {
    for i in 0..300 {
        assert_eq!(Account(i).balance(), Ok(i));
    }
    // Many receivers with nothing stored (errors are not stored): their records go.
    for i in 0..1_800 {
        assert_eq!(Account(10_000 + i).balance(), Err(()));
    }
    EXCESS.flush();
    let entries = EXCESS.stats().entries;
    assert!(entries <= 300, "far below capacity: {entries} entries");
    let before = EXCESS_RUNS.load(SeqCst);
    for i in 0..300 {
        assert_eq!(Account(i).balance(), Ok(i));
    }
    let recomputed = EXCESS_RUNS.load(SeqCst) - before;
    assert_eq!(recomputed, 0, "{recomputed} of 300 live results lost ({entries} entries)");
}

static SLOW: LazyLock<(ManualClock, Memoizer)> = LazyLock::new(|| {
    let c = ManualClock::new();
    let m = Memoizer::builder().clock(c.clone()).build().expect("memoizer");
    (c, m)
});
static SLOW_RUNS: AtomicU64 = AtomicU64::new(0);

#[derive(MemoIdentity)]
struct Report(#[memo(id)] u64);

impl Report {
    #[memoize(memoizer = &SLOW.1, timeout = 10)]
    fn render(&self) -> u64 {
        if self.0 == 0 {
            SLOW_RUNS.fetch_add(1, SeqCst);
            SLOW.0.advance(Duration::from_secs(5)); // a computation that takes 5 s
        }
        self.0
    }
}

#[test]
fn a_slow_computation_keeps_its_result_for_the_whole_timeout() {
    let clock = &SLOW.0;
    assert_eq!(Report(0).render(), 0); // starts at t = 0, stored at t = 5, live until t = 15
    clock.advance(Duration::from_secs(7)); // t = 12
    assert_eq!(Report(0).render(), 0);
    assert_eq!(SLOW_RUNS.load(SeqCst), 1, "a hit at t = 12");
    for i in 1..200 {
        Report(i).render(); // enough new receivers for pruning to run (twice)
    }
    assert_eq!(Report(0).render(), 0);
    assert_eq!(SLOW_RUNS.load(SeqCst), 1, "live until t = 15, still cached at t = 12");
}

// Pruning keeps a record whose result is still on its way to the engine's worker (found by a
// review: the engine counted a generation's entries only once its worker had applied them, so
// a record whose result waited through a whole pruning interval was dropped and its result
// lost).

static HELD: LazyLock<Memoizer> = LazyLock::new(|| {
    let clock = ManualClock::new(); // no background work: the worker runs only when asked
    Memoizer::builder().clock(clock).capacity(64).build().expect("memoizer")
});
static HELD_RUNS: AtomicU64 = AtomicU64::new(0);
static HOLD_GATE: LazyLock<Gate> = LazyLock::new(Gate::new);

/// A result whose last clone, if gated, blocks in its `Drop` until [`HOLD_GATE`] opens: left
/// to the worker to drop, it holds the worker there.
#[derive(Clone)]
struct Ticket(u64, Option<Arc<Blocker>>);

struct Blocker;

impl Drop for Blocker {
    fn drop(&mut self) {
        HOLD_GATE.enter_and_wait();
    }
}

#[derive(MemoIdentity)]
struct Doc(#[memo(id)] u64);

impl Doc {
    #[memoize(memoizer = &HELD, timeout = memokit::Timeout::Never)]
    fn render(&self, page: u64) -> Ticket {
        let run = HELD_RUNS.fetch_add(1, SeqCst);
        Ticket(self.0 + page, (run == 0).then(|| Arc::new(Blocker)))
    }
}

#[test]
fn pruning_keeps_a_result_the_worker_has_not_applied() {
    // Doc(0)'s first result is gated: once it is resident and deleted, the worker that owns
    // its key's shard blocks dropping it. Its recomputation is stored under the same key, so
    // in that shard too, and waits there for the worker.
    let doc = Doc(0);
    let first = doc.render(1);
    assert!(first.1.is_some() && first.0 == 1);
    drop(first);
    HELD.flush();
    memokit::delete_memoized!(doc.render, 1); // this key only: the record stays
    HOLD_GATE.wait_entered();
    let entries = HELD.stats().entries;
    assert_eq!(doc.render(1).0, 1);
    assert_eq!(HELD_RUNS.load(SeqCst), 2);
    assert_eq!(HELD.stats().entries, entries, "the recomputed result waits for the worker");
    // Enough receivers for two prunings with more records than the capacity: Doc(0)'s record
    // (touched before the first one) is judged by the second.
    for i in 1..=150 {
        assert_eq!(Doc(i).render(1).0, i + 1);
    }
    let runs = HELD_RUNS.load(SeqCst);
    assert_eq!(doc.render(1).0, 1);
    let lost = HELD_RUNS.load(SeqCst) - runs;
    HOLD_GATE.open();
    HELD.flush();
    assert_eq!(lost, 0, "Doc(0)'s result, waiting for the worker, was lost by pruning");
}

// Pruning keeps the record of a receiver whose computation is still running, however many
// prunings it runs through (a record touched only at the start of a long computation was
// dropped by the second pruning after it: its version retired, its result refused).

static LONG: LazyLock<Memoizer> = LazyLock::new(|| {
    let clock = ManualClock::new();
    Memoizer::builder().clock(clock).capacity(64).build().expect("memoizer")
});
static LONG_RUNS: AtomicU64 = AtomicU64::new(0);
static LONG_GATE: LazyLock<Gate> = LazyLock::new(Gate::new);

#[derive(MemoIdentity)]
struct Job(#[memo(id)] u64);

impl Job {
    /// Job 0 runs until the gate opens; the others fail at once (nothing stored under them).
    #[memoize(memoizer = &LONG, timeout = memokit::Timeout::Never)]
    fn run(&self) -> Result<u64, String> {
        LONG_RUNS.fetch_add(1, SeqCst);
        if self.0 == 0 {
            LONG_GATE.enter_and_wait();
            Ok(42)
        } else {
            Err(format!("job {} failed", self.0))
        }
    }
}

#[test]
fn pruning_keeps_a_receiver_whose_computation_runs_through_prunings() {
    let long = std::thread::spawn(|| Job(0).run());
    LONG_GATE.wait_entered();
    // Records with nothing stored under them, well past the capacity (64): two prunings or
    // more, each of which may drop records untouched since the one before.
    for i in 1..=300 {
        assert!(Job(i).run().is_err());
    }
    LONG_GATE.open();
    assert_eq!(long.join().expect("the long job"), Ok(42));
    LONG.flush();
    let runs = LONG_RUNS.load(SeqCst);
    assert_eq!(Job(0).run(), Ok(42));
    assert_eq!(LONG_RUNS.load(SeqCst), runs, "job 0's result was lost by pruning");
    assert!(Job::run_memo().__receiver_records() < 300, "records of failed jobs are still pruned");
}

// --- receiver records ---------------------------------------------------------------------

static RECS: LazyLock<Memoizer> = LazyLock::new(|| {
    let clock = ManualClock::new();
    Memoizer::builder().clock(clock).capacity(64).build().expect("memoizer")
});
static RECS_RUNS: AtomicU64 = AtomicU64::new(0);
static RECS_GATE_A: LazyLock<Gate> = LazyLock::new(Gate::new);
static RECS_GATE_B: LazyLock<Gate> = LazyLock::new(Gate::new);

#[derive(MemoIdentity)]
struct Task(#[memo(id)] u64);

impl Task {
    /// Task 0: page 1 waits for gate A, page 2 for gate B. Tasks >= 1000 fail (nothing stored),
    /// tasks in 500..1000 panic. `depth` > 0 recurses on the same receiver.
    #[memoize(memoizer = &RECS, timeout = memokit::Timeout::Never)]
    fn work(&self, page: u64, depth: u64) -> Result<u64, String> {
        RECS_RUNS.fetch_add(1, SeqCst);
        if depth > 0 {
            return self.work(page + 100, depth - 1).map(|v| v + 1);
        }
        match (self.0, page) {
            (0, 1) => RECS_GATE_A.enter_and_wait(),
            (0, 2) => RECS_GATE_B.enter_and_wait(),
            (n, _) if (500..1000).contains(&n) => panic!("task {n} panics"),
            (n, _) if n >= 1000 => return Err(format!("task {n} failed")),
            _ => {}
        }
        Ok(self.0 * 1000 + page)
    }
}

fn churn(from: u64) {
    for i in from..from + 300 {
        assert!(Task(i).work(0, 0).is_err());
    }
}

/// A call on task 0 begun before a per-instance delete ends after a new call on the same
/// receiver (a new record) has begun: its end must not count against the new record, which
/// must survive prunings while its call runs. Then panicking calls and recursive calls on the
/// same receiver leave no record marked running: they are pruned once over the capacity.
#[test]
fn receiver_records_running_counts() {
    let a = std::thread::spawn(|| Task(0).work(1, 0));
    RECS_GATE_A.wait_entered();
    memokit::delete_memoized!(Task(0).work); // drops the record task 0's first call runs under
    let b = std::thread::spawn(|| Task(0).work(2, 0));
    RECS_GATE_B.wait_entered();
    RECS_GATE_A.open();
    assert_eq!(a.join().expect("a"), Ok(1));
    churn(1_000);
    RECS_GATE_B.open();
    assert_eq!(b.join().expect("b"), Ok(2));
    RECS.flush();
    let runs = RECS_RUNS.load(SeqCst);
    assert_eq!(Task(0).work(2, 0), Ok(2));
    assert_eq!(RECS_RUNS.load(SeqCst), runs, "the second call's result was lost by pruning");

    // Panicking calls and recursion on the same receiver.
    for i in 500..700 {
        let r = std::panic::catch_unwind(|| Task(i).work(0, 0));
        assert!(r.is_err());
    }
    for i in 2_000..2_200 {
        assert!(Task(i).work(0, 3).is_err(), "recursion reaches the failing depth");
    }
    churn(10_000);
    churn(20_000);
    let records = Task::work_memo().__receiver_records();
    assert!(records < 300, "records of ended calls are pruned: {records} left");
}

// --- a receiver id whose `Hash` or `Eq` panics on the n-th use ----------------------------

thread_local! {
    /// Uses of `Flaky`'s `Hash`/`Eq` left before one panics (`None`: never).
    static ARMED: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

fn tick() {
    ARMED.with(|a| {
        if let Some(n) = a.get() {
            if n == 0 {
                a.set(None);
                panic!("Flaky id panics");
            }
            a.set(Some(n - 1));
        }
    });
}

#[derive(Clone, Debug)]
struct FlakyId(u64);

impl std::hash::Hash for FlakyId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        tick();
        self.0.hash(h);
    }
}

impl PartialEq for FlakyId {
    fn eq(&self, o: &Self) -> bool {
        tick();
        self.0 == o.0
    }
}
impl Eq for FlakyId {}

struct Flaky(u64);

impl MemoIdentity for Flaky {
    type Id = FlakyId;
    fn memo_id(&self) -> FlakyId {
        FlakyId(self.0)
    }
}

static FLAKY: LazyLock<Memoizer> = LazyLock::new(|| {
    let clock = ManualClock::new();
    Memoizer::builder().clock(clock).capacity(64).build().expect("memoizer")
});
static FLAKY_RUNS: AtomicU64 = AtomicU64::new(0);

impl Flaky {
    /// Receivers >= 100_000 fail (nothing stored: their records may be pruned).
    #[memoize(memoizer = &FLAKY, timeout = memokit::Timeout::Never)]
    fn get(&self, x: u64) -> Result<u64, ()> {
        FLAKY_RUNS.fetch_add(1, SeqCst);
        if self.0 >= 100_000 {
            Err(())
        } else {
            Ok(self.0 + x)
        }
    }
}

/// Whichever use of the id's `Hash` or `Eq` panics (in the lookup, at the miss's `Begin`, at
/// the computation's `Renew`, in the engine), the call panics, later calls work and cache,
/// and no record stays marked running: records of failed receivers are all pruned.
#[test]
fn a_receiver_id_whose_hash_or_eq_panics_leaves_no_running_record() {
    let mut panicked = 0;
    for n in 0..8u32 {
        for i in 0..40u64 {
            let id = 100_000 + u64::from(n) * 1_000 + i;
            // A first call (a record exists, so `Begin` compares ids with `Eq`), then one armed.
            let _ = Flaky(id).get(0);
            ARMED.with(|a| a.set(Some(n)));
            let r = std::panic::catch_unwind(|| Flaky(id).get(1));
            ARMED.with(|a| a.set(None));
            panicked += usize::from(r.is_err());
        }
    }
    assert!(panicked > 0, "some use panicked");
    assert_eq!(Flaky(1).get(1), Ok(2));
    let runs = FLAKY_RUNS.load(SeqCst);
    assert_eq!(Flaky(1).get(1), Ok(2));
    assert_eq!(FLAKY_RUNS.load(SeqCst), runs, "cached");
    for i in 0..400 {
        assert!(Flaky(200_000 + i).get(0).is_err());
    }
    let records = Flaky::get_memo().__receiver_records();
    assert!(
        records < 300,
        "records of ended calls are pruned: {records} left ({panicked} panicked)"
    );
}

// A call whose receiver's results are deleted while it runs leaves no record behind (its
// result, computed under the retired version, is not stored; the record it would renew is
// gone). Before, the renewal recreated the record, with a fresh version nothing was stored
// under, until a pruning dropped it.

static RENEWED: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static RENEW_GATE: LazyLock<Gate> = LazyLock::new(Gate::new);

#[derive(MemoIdentity)]
struct Draft(#[memo(id)] u64);

impl Draft {
    #[memoize(memoizer = &RENEWED)]
    fn render(&self) -> u64 {
        RENEW_GATE.enter_and_wait();
        self.0
    }
}

#[test]
fn a_call_whose_receiver_was_deleted_meanwhile_leaves_no_record() {
    let running = std::thread::spawn(|| Draft(1).render());
    RENEW_GATE.wait_entered();
    memokit::delete_memoized!(Draft(1).render);
    assert_eq!(Draft::render_memo().__receiver_records(), 0, "deleted");
    RENEW_GATE.open();
    assert_eq!(running.join().expect("the call"), 1);
    assert_eq!(Draft::render_memo().__receiver_records(), 0, "the call's end recreated it");
}

static DROP_CALLS: LazyLock<(ManualClock, Memoizer)> = LazyLock::new(|| {
    let c = ManualClock::new();
    let m = Memoizer::builder().clock(c.clone()).capacity(100).build().expect("memoizer");
    (c, m)
});

std::thread_local! {
    /// Set while the next dropped `CallingId` should call the memoized method (once).
    static CALL_ON_DROP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An identity whose `Drop` (once armed, for receivers below 64) calls a memoized method of another receiver.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CallingId(u64);

impl Drop for CallingId {
    fn drop(&mut self) {
        // Only a pruned record's id (receivers 0..64), not the calls' own ids.
        if self.0 < 64 && CALL_ON_DROP.with(|c| c.replace(false)) {
            assert_eq!(Badge(1_000_000).number(), 1_000_001);
        }
    }
}

struct Badge(u64);

impl MemoIdentity for Badge {
    type Id = CallingId;
    fn memo_id(&self) -> CallingId {
        CallingId(self.0)
    }
}

impl Badge {
    #[memoize(memoizer = &DROP_CALLS.1, timeout = 1)]
    fn number(&self) -> u64 {
        self.0 + 1
    }
}

/// Pruning drops the records of expired receivers, and with them the user's ids: after the
/// records' lock is let go, so an id's `Drop` that calls a memoized method of the same
/// function works. (Before: dropped under that lock, the nested call waited for it: a hang.)
#[test]
fn a_receiver_ids_drop_may_call_the_method_while_records_are_pruned() {
    common::no_hang("a call whose pruning drops an id that calls back", || {
        for i in 0..64 {
            assert_eq!(Badge(i).number(), i + 1);
        }
        DROP_CALLS.0.advance(Duration::from_secs(2));
        // This call's record is the 65th: pruning drops the 64 expired ones first.
        CALL_ON_DROP.with(|c| c.set(true));
        let id_drops_before = Badge::number_memo().__receiver_records();
        assert_eq!(Badge(64).number(), 65);
        assert!(!CALL_ON_DROP.with(std::cell::Cell::get), "an id was dropped by the pruning");
        let records = Badge::number_memo().__receiver_records();
        assert!(records < id_drops_before, "pruned: {id_drops_before} -> {records} records");
    });
}
