//! Review s18a (the user-facing behaviour against api.md, from a user's eye).
//!
//! Receiver ids whose `Hash`, `Eq` or `Clone` call memoized methods or delete: the memoizer
//! runs these on its receiver records (`api/src/state.rs`), which once held the records' lock
//! around them, so such an id hung its call (the lock is not reentrant). Every test is bounded
//! by `no_hang`.
mod common;

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use common::no_hang;
use memokit::{memoize, MemoIdentity, Memoizer, Timeout};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Which of the id's traits run the hook (bits), and whether a hook is running (no recursion).
const HASH: u8 = 1;
const EQ: u8 = 2;
const CLONE: u8 = 4;

thread_local! {
    static HOOK_ON: Cell<u8> = const { Cell::new(0) };
    static HOOK: Cell<Option<fn()>> = const { Cell::new(None) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    static HOOK_RUNS: Cell<u32> = const { Cell::new(0) };
}

/// Runs the hook if `which` is on and `id` is one that hooks, once at a time per thread.
fn hook(id: &Rid, which: u8) {
    if !id.hooks || HOOK_ON.get() & which == 0 || IN_HOOK.get() {
        return;
    }
    let Some(f) = HOOK.get() else { return };
    IN_HOOK.set(true);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_HOOK.set(false);
        }
    }
    let _reset = Reset;
    HOOK_RUNS.set(HOOK_RUNS.get() + 1);
    f();
}

/// A receiver id whose traits may run user code that goes back into the memoizer.
#[derive(Debug)]
struct Rid {
    n: u32,
    hooks: bool,
}

impl Hash for Rid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hook(self, HASH);
        self.n.hash(state);
        self.hooks.hash(state);
    }
}

impl PartialEq for Rid {
    fn eq(&self, other: &Self) -> bool {
        hook(self, EQ);
        self.n == other.n && self.hooks == other.hooks
    }
}

impl Eq for Rid {}

impl Clone for Rid {
    fn clone(&self) -> Self {
        hook(self, CLONE);
        Rid { n: self.n, hooks: self.hooks }
    }
}

struct Obj {
    n: u32,
    hooks: bool,
}

impl MemoIdentity for Obj {
    type Id = Rid;
    fn memo_id(&self) -> Rid {
        Rid { n: self.n, hooks: self.hooks }
    }
}

impl Obj {
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn get(&self, k: u64) -> u64 {
        u64::from(self.n) * 1_000_000 + k * 1_000 + RUNS.fetch_add(1, SeqCst) % 1_000
    }

    #[memoize(memoizer = &MEMO, timeout = 0)]
    fn get0(&self, k: u64) -> u64 {
        u64::from(self.n) * 1_000_000 + k * 1_000 + RUNS.fetch_add(1, SeqCst) % 1_000
    }

    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn other(&self, k: u64) -> u64 {
        u64::from(self.n) * 1_000_000 + k * 1_000 + RUNS.fetch_add(1, SeqCst) % 1_000
    }
}

/// The hooks: what a user's id trait might do, to `get` and to `get0` (for each of them, the
/// same method as the hooking call's or another one).
fn call_get() {
    let _ = Obj { n: 9_001, hooks: false }.get(1);
}

fn call_get0() {
    let _ = Obj { n: 9_001, hooks: false }.get0(1);
}

fn call_other_method() {
    let _ = Obj { n: 9_002, hooks: false }.other(1);
}

fn delete_one() {
    let o = Obj { n: 9_003, hooks: false };
    memokit::delete_memoized!(Obj::get, &o, 1);
    memokit::delete_memoized!(o.get, 1);
    memokit::delete_memoized!(Obj::get0, &o, 1);
    memokit::delete_memoized!(o.get0, 1);
}

fn delete_receiver() {
    let o = Obj { n: 9_004, hooks: false };
    let _ = (o.get(1), o.get0(1));
    memokit::delete_memoized!(o.get);
    memokit::delete_memoized!(o.get0);
}

fn delete_verhash_receiver() {
    let o = Obj { n: 9_005, hooks: false };
    memokit::delete_memoized_verhash!(o.get);
    memokit::delete_memoized_verhash!(o.get0);
}

fn delete_all() {
    memokit::delete_memoized!(Obj::other);
}

const HOOKS: [(&str, fn()); 7] = [
    ("calls `get`", call_get),
    ("calls `get0`", call_get0),
    ("calls another method", call_other_method),
    ("deletes one result", delete_one),
    ("deletes a receiver's results", delete_receiver),
    ("drops a receiver's version", delete_verhash_receiver),
    ("deletes all results of a method", delete_all),
];

/// With the hook on `which`, a hooking receiver (id `n`) calls `get` twice with two arguments
/// (a miss that makes its record, a miss that finds it, a hit), then deletes its results
/// through the receiver (finds the record) and through the type: every call returns, with the
/// right values.
fn check_storing(which: u8, trait_name: &str, n: u32) {
    for (i, (what, f)) in HOOKS.iter().enumerate() {
        let n = n + i as u32;
        let what = format!("an id whose `{trait_name}` {what}");
        no_hang(&what.clone(), move || {
            HOOK.set(Some(*f));
            HOOK_ON.set(which);
            let o = Obj { n, hooks: true };
            let a = o.get(1);
            assert_eq!(a / 1_000, u64::from(n) * 1_000 + 1, "{what}");
            let b = o.get(2);
            assert_eq!(b / 1_000, u64::from(n) * 1_000 + 2, "{what}");
            MEMO.flush();
            assert_eq!(o.get(1), a, "{what}: a hit");
            memokit::delete_memoized!(o.get);
            let c = o.get(1);
            assert_ne!(c, a, "{what}: deleted through the receiver");
            memokit::delete_memoized!(Obj::get, &o, 1);
            assert_ne!(o.get(1), c, "{what}: deleted through the type");
            memokit::delete_memoized_verhash!(o.get);
            assert!(HOOK_RUNS.get() > 0, "{what}: the hook ran");
            HOOK_ON.set(0);
        });
    }
}

/// As [`check_storing`], with `get0` (timeout 0: the engine stores nothing, so it never
/// compares or clones the id under its own lock; only the memoizer's receiver records do).
fn check_records(which: u8, trait_name: &str, n: u32) {
    for (i, (what, f)) in HOOKS.iter().enumerate() {
        let n = n + i as u32;
        let what = format!("an id whose `{trait_name}` {what} (timeout 0)");
        no_hang(&what.clone(), move || {
            HOOK.set(Some(*f));
            HOOK_ON.set(which);
            let o = Obj { n, hooks: true };
            for k in [1, 2, 1] {
                assert_eq!(o.get0(k) / 1_000, u64::from(n) * 1_000 + k, "{what}");
            }
            memokit::delete_memoized!(o.get0);
            memokit::delete_memoized!(Obj::get0, &o, 1);
            memokit::delete_memoized_verhash!(o.get0);
            assert_eq!(o.get0(3) / 1_000, u64::from(n) * 1_000 + 3, "{what}");
            assert!(HOOK_RUNS.get() > 0, "{what}: the hook ran");
            HOOK_ON.set(0);
        });
    }
}

#[test]
fn an_id_whose_hash_goes_back_into_the_memoizer_does_not_hang() {
    check_storing(HASH, "Hash", 100);
    check_records(HASH, "Hash", 150);
}

#[test]
fn an_id_whose_eq_goes_back_into_the_memoizer_does_not_hang() {
    check_records(EQ, "Eq", 200);
}

/// The engine's re-entry panic, from a panic payload (`None`: another panic).
fn engine_reentry_panic(p: &(dyn std::any::Any + Send)) -> bool {
    let msg = p.downcast_ref::<String>().map(String::as_str).or(p.downcast_ref::<&str>().copied());
    msg.is_some_and(|m| m.contains("called back into the engine"))
}

/// An id's `Eq` or `Clone` also runs under the engine's lock when the id is compared or cloned
/// as part of a key (a stored key's `Eq`; the single flight's `to_owned` of the key, on every
/// miss): there, going back into the memoizer is the engine's documented re-entry panic
/// (`engine/src/reentry.rs`), a clear message, never a hang. (The memoizer's own clone of the
/// id, for its receiver record, runs first, outside any lock: it once hung there.)
#[test]
fn an_id_whose_eq_or_clone_goes_back_in_under_the_engine_lock_panics_clearly() {
    let checks: [(&str, fn()); 3] = [
        ("Eq, storing", || check_storing(EQ, "Eq", 400)),
        ("Clone, storing", || check_storing(CLONE, "Clone", 500)),
        ("Clone, timeout 0", || check_records(CLONE, "Clone", 300)),
    ];
    for (what, check) in checks {
        if let Err(p) = std::panic::catch_unwind(check) {
            assert!(engine_reentry_panic(&*p), "{what}: another panic than the engine's");
        }
    }
}

/// A receiver id whose every value hashes alike: all receivers share one bucket of records,
/// so each miss and per-receiver delete compares (outside the lock) with every other record.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Flat(u32);

impl Hash for Flat {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

struct Shop {
    id: u32,
}

impl MemoIdentity for Shop {
    type Id = Flat;
    fn memo_id(&self) -> Flat {
        Flat(self.id)
    }
}

impl Shop {
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn price(&self, k: u64) -> u64 {
        u64::from(self.id) * 1_000_000_000 + k * 1_000_000 + RUNS.fetch_add(1, SeqCst) % 1_000_000
    }
}

/// Threads calling and deleting receivers whose ids all collide: every call gets its own
/// receiver's result (never another's), a delete by the same thread is seen by its next
/// call, and there is at most one record per id.
#[test]
fn receivers_whose_ids_collide_keep_one_record_each_under_concurrent_calls_and_deletes() {
    const IDS: u32 = 12;
    no_hang("colliding receiver ids", || {
        std::thread::scope(|s| {
            for t in 0..4u32 {
                s.spawn(move || {
                    for i in 0..300u32 {
                        let shop = Shop { id: (i * 7 + t) % IDS };
                        let k = u64::from(i % 3);
                        let v = shop.price(k);
                        assert_eq!(v / 1_000_000, u64::from(shop.id) * 1_000 + k, "its own result");
                        if i % 5 == t % 5 {
                            memokit::delete_memoized!(shop.price);
                            assert_ne!(shop.price(k), v, "a delete is seen by the next call");
                        }
                    }
                });
            }
        });
        let records = Shop::price_memo().__receiver_records();
        assert!(records <= IDS as usize, "{records} records for {IDS} ids");
    });
}
