//! "No allocation on a hit" (engine.md, the crate docs' "Cost of a hit"), nor on a miss of
//! an absent key with nothing pending: a counting global allocator counts only the
//! allocations of the thread under test, while it is armed, so the engine's workers and the
//! clock thread (and other tests of this binary) do not disturb the count. Each window runs
//! on a fresh thread, from its first call into the engine (no warm-up hides a first-call
//! cost), and each test also checks that the counter sees what the engine does allocate (a
//! computation's flight), so a broken counter cannot pass.
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use common::manual_engine_with;
use memokit_engine::{Engine, Equivalent, InsertOptions};

/// The system allocator, counting the allocations of the current thread while it is armed.
struct Counting;

std::thread_local! {
    // `const` and without `Drop`: no lazy initialisation, no destructor registration, so the
    // allocator may touch them from inside an allocation.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees carry over; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The allocations of the current thread while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

/// Runs `f` on a fresh thread (its first call into the engine is counted too).
fn on_fresh_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("test thread"))
}

type Val = Arc<Vec<u8>>;

fn val(k: u64) -> Val {
    Arc::new(vec![k as u8; 8])
}

#[test]
fn the_counter_sees_this_threads_allocations_only() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 4]))), 1);
    // Another thread's allocations are not counted.
    let n = allocations(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..100 {
                    drop(std::hint::black_box(vec![1u8; 4]));
                }
            });
        });
    });
    assert!(n < 100, "{n}: the spawning thread counted its child's allocations");
}

/// `u64` keys, values stored every way a hit can find them: no deadline, a deadline, under a
/// checked generation, under a primary declared in the key, under two generations.
#[test]
fn hits_and_definitive_misses_do_not_allocate() {
    let (e, clock) = manual_engine_with::<u64, Val>(Engine::builder().max_capacity(10_000));
    let (g1, g2) = (e.new_generation(), e.new_generation());
    let ttl = Duration::from_secs(60);
    for k in 0..500u64 {
        let opts = match k % 5 {
            0 => InsertOptions::new(),
            1 => InsertOptions::new().ttl(ttl),
            2 => InsertOptions::new().generations(g1, None),
            3 => InsertOptions::new().generations(g1, None).primary_in_key(),
            _ => InsertOptions::new().ttl(ttl).generations(g1, Some(g2)),
        };
        e.insert_with_options(k, val(k), opts);
    }
    // Expired and retired entries, still resident: their lookups are misses too.
    let g3 = e.new_generation();
    for k in 500..600u64 {
        e.insert_with_ttl(k, val(k), Duration::from_secs(1));
        e.insert_with_options(k + 100, val(k), InsertOptions::new().generations(g3, None));
    }
    e.flush();
    clock.advance(Duration::from_secs(2));
    e.retire(g3);
    e.flush();
    assert_eq!(e.len(), 700, "nothing reclaimed yet (no maintenance)");

    let n = on_fresh_thread(|| {
        allocations(|| {
            for round in 0..20u64 {
                for k in 0..500u64 {
                    assert!(e.get(&k).is_some(), "key {k} round {round}");
                    assert_eq!(e.get_map(&k, |v| v.len()), Some(8));
                    assert!(e.contains_key(&k));
                    let v = e.get_or_insert_with(k, || unreachable!("hit"));
                    assert_eq!(v[0], k as u8);
                    let r: Result<Val, ()> = e.get_or_try_insert_with_ref(
                        &k,
                        InsertOptions::new(),
                        |k| *k,
                        || unreachable!("hit"),
                    );
                    assert!(r.is_ok());
                }
                for k in 500..2_000u64 {
                    assert!(e.get(&k).is_none(), "key {k}: expired, retired or absent");
                    assert!(!e.contains_key(&k));
                }
            }
        })
    });
    assert_eq!(n, 0, "allocations during 50k hits and 60k misses");
    let s = e.stats();
    assert_eq!((s.hits, s.misses), (20 * 500 * 5, 20 * 1_500 * 2));

    // The counter sees the engine's own allocations: a computation registers a flight.
    let n = on_fresh_thread(|| allocations(|| drop(e.get_or_insert_with(5_000, || val(0)))));
    assert!(n > 0, "a computation allocates its flight, and the counter must see it");
}

/// `(String, u64)` keys looked up by a borrowed form `(&str, u64)` (the spec's example),
/// through [`Equivalent`]: no `String` is built. (`(&str, u64)` itself cannot be the
/// borrowed form: `Equivalent`'s blanket impl covers it only where `(String, u64)` would
/// `Borrow` it, and the orphan rule keeps a user from adding the impl; so a local struct
/// that hashes as the tuple does.)
#[derive(Hash)]
struct Ref<'a>(&'a str, u64);

impl Equivalent<(String, u64)> for Ref<'_> {
    fn equivalent(&self, k: &(String, u64)) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

#[test]
fn borrowed_form_lookups_do_not_allocate() {
    let (e, _clock) =
        manual_engine_with::<(String, u64), Val>(Engine::builder().max_capacity(10_000));
    let names: Vec<String> = (0..100).map(|i| format!("name-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        e.insert((name.clone(), i as u64), val(i as u64));
    }
    // The borrowed form hashes as the owned key: a lookup by it finds a pending value too.
    assert_eq!(e.get(&Ref("name-7", 7)).map(|v| v[0]), Some(7));
    e.flush();
    // Owned keys for `get_or_insert_with`, made before the window (moving a key in is not
    // an allocation; dropping it after the hit is a free).
    let owned: Vec<(String, u64)> =
        (0..20 * 100).map(|i| (names[i % 100].clone(), (i % 100) as u64)).collect();

    let n = on_fresh_thread(|| {
        allocations(|| {
            let mut owned = owned.into_iter();
            for round in 0..20 {
                for (i, name) in names.iter().enumerate() {
                    let q = Ref(name, i as u64);
                    assert_eq!(e.get(&q).map(|v| v[0]), Some(i as u8), "{name} round {round}");
                    assert!(e.contains_key(&q));
                    assert_eq!(e.get_map(&q, |v| v.len()), Some(8));
                    let k = owned.next().expect("an owned key");
                    assert_eq!(e.get_or_insert_with(k, || unreachable!("hit"))[0], i as u8);
                    let r: Result<Val, ()> = e.get_or_try_insert_with_ref(
                        &q,
                        InsertOptions::new(),
                        |q| (q.0.to_owned(), q.1),
                        || unreachable!("hit"),
                    );
                    assert!(r.is_ok());
                    // Absent: another number, another name.
                    assert!(e.get(&Ref(name, 1_000 + i as u64)).is_none());
                    assert!(e.get(&Ref("absent", i as u64)).is_none());
                }
            }
        })
    });
    assert_eq!(n, 0, "allocations during 10k borrowed-form hits and 4k misses");
}

/// A key whose hash is that of its number: `Hash` and `Eq` are user code the engine runs on
/// every lookup; they must not be the ones allocating here.
#[derive(PartialEq, Eq)]
struct Plain(u64);

impl Hash for Plain {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

/// The real clock (with its clock thread) and several shards and workers: the hit path reads
/// the coarse clock, which a manual clock does not exercise.
#[test]
fn hits_on_the_real_clock_do_not_allocate() {
    let e: Engine<Plain, Val> =
        Engine::builder().max_capacity(1_000).shards(8).workers(2).build().unwrap();
    for k in 0..200u64 {
        e.insert_with_ttl(Plain(k), val(k), Duration::from_secs(3_600));
    }
    e.flush();
    let n = on_fresh_thread(|| {
        allocations(|| {
            for _ in 0..50 {
                for k in 0..200u64 {
                    assert!(e.get(&Plain(k)).is_some(), "key {k}");
                }
                for k in 200..400u64 {
                    assert!(e.get(&Plain(k)).is_none(), "key {k}");
                }
            }
        })
    });
    assert_eq!(n, 0, "allocations during 10k hits and 10k misses on the real clock");
}
