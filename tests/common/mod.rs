//! Helpers shared by the integration tests (`memo`: those of the memoizer's `key =`).
//!
//! Each test file includes this module with `mod common;` and uses only part of it.
#![allow(dead_code)]

pub(crate) mod drop_log;
pub(crate) mod lookups;
pub(crate) mod memo;
pub(crate) mod user_locks;
pub(crate) mod weighted;

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memokit_engine::{Engine, EngineBuilder, ManualClock};

/// Upper bound for anything that should finish at once. Only a hang detector: a test that
/// needs it has already failed (a correct engine finishes in milliseconds).
pub(crate) const HANG_LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` on its own thread and fails the test if it has not returned within
/// [`HANG_LIMIT`] (a deadlock in the engine becomes a failure instead of a stuck CI job).
/// A panic in `f` is propagated with its original payload.
pub(crate) fn no_hang<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    no_hang_within(HANG_LIMIT, what, f)
}

/// [`no_hang`] with a `limit` of the test's own, for a test that runs many rounds.
pub(crate) fn no_hang_within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let handle = std::thread::Builder::new()
        .name("no-hang".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn test thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => {
            handle.join().expect("join test thread");
            v
        }
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => panic!("hang: `{what}` did not return within {limit:?}"),
    }
}

pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG_LIMIT, "hang: never reached: {what}");
        std::thread::yield_now();
    }
}

/// The id of the calling thread within this process (Linux: `/proc/thread-self`), for
/// [`wait_asleep`].
pub(crate) fn this_thread_id() -> String {
    let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    me.file_name().expect("a thread id").to_string_lossy().into_owned()
}

/// Whether thread `tid` of this process is asleep now (Linux: `/proc/self/task/<tid>/stat`).
pub(crate) fn asleep(tid: &str) -> bool {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    s.rsplit(')').next().and_then(|r| r.trim_start().chars().next()) == Some('S')
}

/// Waits until thread `tid` of this process is asleep on many consecutive looks: blocked
/// (queued for a lock, waiting for an answer), not passing through a sleep on its way
/// somewhere.
pub(crate) fn wait_asleep(what: &str, tid: &str) {
    assert!(wait_asleep_or_done(what, tid, || false));
}

/// [`wait_asleep`], or until `done` holds first; returns whether `tid` was found blocked.
pub(crate) fn wait_asleep_or_done(what: &str, tid: &str, done: impl Fn() -> bool) -> bool {
    let (mut seen, mut blocked) = (0, false);
    wait_until(what, || {
        if done() {
            return true;
        }
        seen = if asleep(tid) { seen + 1 } else { 0 };
        blocked = seen >= 200;
        blocked
    });
    blocked
}

/// Like [`wait_until`], but gives up quietly after `limit` and reports whether the
/// condition was reached. For conditions that make a test stronger but are not part of
/// what it asserts (for example "the waiters are parked by now").
pub(crate) fn wait_until_or(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Runs `f`, expecting it to panic; returns the panic message.
pub(crate) fn expect_panic<T>(what: &str, f: impl FnOnce() -> T) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic from {what}, but it returned"),
        Err(p) => panic_message(&*p),
    }
}

/// Reads a `u64` from the environment, or `default`.
pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("{name}={s:?} is not a number")),
        Err(_) => default,
    }
}

/// Proptest case count: `PROPTEST_CASES` when set (as proptest itself reads it), else `default`.
pub(crate) fn proptest_cases(default: u32) -> u32 {
    env_u64("PROPTEST_CASES", u64::from(default)) as u32
}

/// An engine on a manual clock (the tests drive time and maintenance themselves).
pub(crate) fn manual_engine<K, V>(capacity: u64) -> (Engine<K, V>, ManualClock)
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    manual_engine_with(Engine::builder().max_capacity(capacity))
}

/// An engine built from `builder` on a manual clock (for shards, workers, a weigher).
pub(crate) fn manual_engine_with<K, V>(builder: EngineBuilder<K, V>) -> (Engine<K, V>, ManualClock)
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let clock = ManualClock::new();
    let engine = builder.clock(clock.clone()).build().expect("build engine on a manual clock");
    (engine, clock)
}

/// An engine of `u64 -> u64` with `shards` shards and two workers on a manual clock, far below
/// its capacity (the single-flight tests).
pub(crate) fn sharded_engine(shards: usize) -> Engine<u64, u64> {
    Engine::builder()
        .max_capacity(10_000)
        .shards(shards)
        .workers(2)
        .clock(ManualClock::new())
        .build()
        .expect("build a sharded engine on a manual clock")
}

/// A one-shot gate a compute can wait on: the test opens it when it has set up what it
/// wants to observe while the compute is in flight.
#[derive(Clone, Default)]
pub(crate) struct Gate {
    open: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    entered: Arc<AtomicBool>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Called by the compute: records that it is running, then blocks until opened.
    pub(crate) fn enter_and_wait(&self) {
        self.entered.store(true, Ordering::SeqCst);
        let (lock, cv) = &*self.open;
        let mut open = lock.lock();
        let start = Instant::now();
        while !*open {
            cv.wait_for(&mut open, Duration::from_millis(100));
            assert!(start.elapsed() < HANG_LIMIT, "hang: gate never opened");
        }
    }

    /// Blocks until some compute has entered the gate.
    pub(crate) fn wait_entered(&self) {
        wait_until("a compute entered the gate", || self.entered.load(Ordering::SeqCst));
    }

    /// Blocks until the gate has been opened (by a compute signalling that it runs).
    pub(crate) fn wait_open(&self) {
        wait_until("the gate was opened", || *self.open.0.lock());
    }

    pub(crate) fn open(&self) {
        let (lock, cv) = &*self.open;
        *lock.lock() = true;
        cv.notify_all();
    }
}

/// Number of threads of this process (Linux: entries of /proc/self/task).
#[cfg(target_os = "linux")]
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").expect("read /proc/self/task").count()
}

/// Runs the ignored test `name` of this binary alone in a child process.
#[cfg(target_os = "linux")]
pub(crate) fn run_child(name: &str) {
    let exe = std::env::current_exe().expect("current test binary");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--ignored", "--test-threads=1", "--nocapture"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child `{name}` failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stdout}{stderr}");
}

pub(crate) type Hook = Box<dyn FnOnce() + Send>;

/// A key whose `Drop` runs a hook once (user code calling back into the engine from a
/// worker: `engine_reentry`, `engine_rev_reentry`).
pub(crate) struct HookedKey {
    pub(crate) id: u64,
    on_drop: Mutex<Option<Hook>>,
}

impl HookedKey {
    pub(crate) fn new(id: u64) -> Self {
        HookedKey { id, on_drop: Mutex::new(None) }
    }

    pub(crate) fn with_drop(id: u64, hook: impl FnOnce() + Send + 'static) -> Self {
        HookedKey { id, on_drop: Mutex::new(Some(Box::new(hook))) }
    }
}

impl Hash for HookedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialEq for HookedKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for HookedKey {}

impl Drop for HookedKey {
    fn drop(&mut self) {
        let hook = self.on_drop.get_mut().map(Option::take).unwrap_or_default();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// The id of the key a [`Stalled`] worker is dropping.
pub(crate) const STALL: u64 = 1 << 40;

/// An engine's only worker, held in a key's `Drop` until released: what is stored meanwhile
/// stays pending, and the first store sends the worker a `Work` it serves once released
/// (`engine_rev_userfn`, `engine_rev_s17a`).
#[derive(Clone)]
pub(crate) struct Stalled {
    gate: Gate,
    returned: Arc<AtomicBool>,
    tid: Arc<Mutex<String>>,
}

/// Stalls `e`'s worker (see [`Stalled`]): stores `key(Some(hook))` (a key of id [`STALL`]
/// whose `Drop` runs `hook`) with `filler`, then removes it through `key(None)`.
pub(crate) fn stall<K, V>(e: &Engine<K, V>, key: impl Fn(Option<Hook>) -> K, filler: V) -> Stalled
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let s = Stalled { gate: Gate::new(), returned: Arc::default(), tid: Arc::default() };
    let h = s.clone();
    let hook: Hook = Box::new(move || {
        *h.tid.lock().unwrap() = this_thread_id();
        h.gate.enter_and_wait();
        h.returned.store(true, Ordering::SeqCst);
    });
    e.insert(key(Some(hook)), filler);
    e.flush();
    e.remove(&key(None));
    s.gate.wait_entered();
    s
}

impl Stalled {
    /// Lets the worker go on.
    pub(crate) fn release(&self) {
        self.gate.open();
    }

    /// Releases the worker and waits until its `Drop` has returned; returns its thread id.
    pub(crate) fn release_and_wait_returned(&self) -> String {
        self.release();
        wait_until("the worker's Drop returned", || self.returned.load(Ordering::SeqCst));
        self.tid.lock().unwrap().clone()
    }

    /// Releases the worker and waits until it sleeps again: with a `Work` in its mailbox and
    /// the shard read-locked by this thread, it sleeps queued for the shard's write lock.
    pub(crate) fn release_until_queued(&self) {
        let tid = self.release_and_wait_returned();
        wait_asleep("the worker queued for the write lock", &tid);
    }
}

/// A key whose `Hash` or `Eq` can be armed to panic. Equal ids hash equally, so a lookup of
/// an armed key finds the stored entry with the same id and must call `eq`. Keys may share
/// their switches (clones, or built with the same `Arc`s) to be armed together.
#[derive(Clone, Debug)]
pub(crate) struct Evil {
    pub(crate) id: u32,
    pub(crate) hash_bomb: Arc<AtomicBool>,
    pub(crate) eq_bomb: Arc<AtomicBool>,
}

impl Evil {
    pub(crate) fn new(id: u32) -> Self {
        Evil { id, hash_bomb: Arc::default(), eq_bomb: Arc::default() }
    }
    pub(crate) fn bad_hash(id: u32) -> Self {
        let k = Self::new(id);
        k.hash_bomb.store(true, Ordering::SeqCst);
        k
    }
    pub(crate) fn bad_eq(id: u32) -> Self {
        let k = Self::new(id);
        k.eq_bomb.store(true, Ordering::SeqCst);
        k
    }
}

impl Hash for Evil {
    fn hash<H: Hasher>(&self, state: &mut H) {
        assert!(!self.hash_bomb.load(Ordering::SeqCst), "evil hash of key {}", self.id);
        self.id.hash(state);
    }
}

impl PartialEq for Evil {
    fn eq(&self, other: &Self) -> bool {
        for k in [self, other] {
            assert!(!k.eq_bomb.load(Ordering::SeqCst), "evil eq of key {}", k.id);
        }
        self.id == other.id
    }
}

impl Eq for Evil {}

/// A small deterministic generator (xorshift64*) for tests that draw their own sequences.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
