//! The memokit tour: the seed's examples, hits and misses with their timings, each form of
//! invalidation, and the stats.
//!
//! Run it with `cargo run --release --example quickstart`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memokit::{memoize, MemoIdentity};

/// Something slow: about 20 ms of work per call.
fn expensive_work(seed: u64) -> u64 {
    let start = Instant::now();
    let mut x = seed;
    while start.elapsed() < Duration::from_millis(20) {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    }
    x % 1000
}

/// The seed's `big_foo`: memoized for 5 seconds.
#[memoize(timeout = 5)]
fn big_foo(a: u64, b: u64) -> u64 {
    a + b + expensive_work(a ^ b)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The seed's `random_func`: a different value at each real run.
#[memoize]
fn random_func() -> u64 {
    SEQ.fetch_add(1, Relaxed) * 7919 % 1000
}

/// Real runs of `param_func` and `Adder::add` (a hit does not run the function).
static RUNS: AtomicU64 = AtomicU64::new(0);

fn runs() -> u64 {
    RUNS.load(Relaxed)
}

/// The seed's `param_func`.
#[memoize]
fn param_func(a: u64, b: u64) -> u64 {
    RUNS.fetch_add(1, Relaxed);
    a * 10 + b
}

/// A large result: return an `Arc` so that hits clone a pointer, not the data.
#[memoize(timeout = memokit::Timeout::Never)]
fn report(customer: &str) -> Arc<Vec<u64>> {
    Arc::new((0..10_000).map(|i| i + customer.len() as u64).collect())
}

/// The seed's `Adder`: its id (like the seed's `__repr__`) is part of the key.
#[derive(MemoIdentity)]
struct Adder {
    #[memo(id)]
    initial: u64,
}

impl Adder {
    #[memoize]
    fn add(&self, b: u64) -> u64 {
        RUNS.fetch_add(1, Relaxed);
        self.initial + b
    }
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    println!("  {label:<34} {:>12.3?}", start.elapsed());
    r
}

fn main() {
    println!("hits and misses (big_foo, 20 ms of work):");
    let a = timed("big_foo(5, 2)    miss", || big_foo(5, 2));
    let b = timed("big_foo(5, 2)    hit", || big_foo(5, 2));
    assert_eq!(a, b);
    timed("big_foo(5, 3)    miss (new args)", || big_foo(5, 3));
    timed("big_foo_uncached(5, 2)", || big_foo_uncached(5, 2));

    println!("\nrandom_func: the same value until deleted");
    let r1 = random_func();
    println!("  random_func() = {r1}, again = {}", random_func());
    memokit::delete_memoized!(random_func);
    println!("  after delete_memoized!(random_func): {}", random_func());

    println!("\nparam_func: one result per argument combination (runs: real calls so far)");
    let both = || (param_func(1, 2), param_func(2, 1));
    let step = |label: &str, expected: u64, note: &str| {
        assert_eq!(runs(), expected, "{label}");
        println!("  {label:<48} runs {:>2} {note}", runs());
    };
    assert_eq!(both(), (12, 21));
    step("(param_func(1, 2), param_func(2, 1)) = (12, 21)", 2, "");
    both();
    step("called again", 2, "(both cached)");
    memokit::delete_memoized!(param_func, 1, 2); // exactly (1, 2)
    both();
    step("after delete_memoized!(param_func, 1, 2)", 3, "(only (1, 2) ran)");
    memokit::delete_memoized!(param_func); // every result, O(1)
    both();
    step("after delete_memoized!(param_func)", 5, "(both ran)");
    memokit::delete_memoized_verhash!(param_func); // drop the version, O(1)
    both();
    step("after delete_memoized_verhash!(param_func)", 7, "(both ran)");

    println!("\nArc results are shared:");
    let r1 = timed("report(\"acme\") miss", || report("acme"));
    let r2 = timed("report(\"acme\") hit", || report("acme"));
    println!("  same allocation: {}", Arc::ptr_eq(&r1, &r2));

    println!("\nAdder instances (results are per instance id; runs go on counting)");
    let adder1 = Adder { initial: 1 };
    let adder2 = Adder { initial: 2 };
    let both = || (adder1.add(3), adder2.add(3));
    assert_eq!(both(), (4, 5));
    step("(adder1.add(3), adder2.add(3)) = (4, 5)", 9, "");
    both();
    step("called again", 9, "(both cached)");
    memokit::delete_memoized!(adder1.add, 3); // the result of adder1.add(3)
    both();
    step("after delete_memoized!(adder1.add, 3)", 10, "(only adder1 ran)");
    memokit::delete_memoized!(adder1.add); // every result of adder1
    both();
    step("after delete_memoized!(adder1.add)", 11, "(only adder1 ran)");
    memokit::delete_memoized!(Adder::add, &adder2, 3); // through the type
    both();
    step("after delete_memoized!(Adder::add, &adder2, 3)", 12, "(only adder2 ran)");
    memokit::delete_memoized!(Adder::add); // every instance
    both();
    step("after delete_memoized!(Adder::add)", 14, "(both ran)");

    println!("\nby name (admin tools):");
    let m = memokit::global();
    let name = big_foo_memo().name();
    m.delete_memoized_args(name, &(5u64, 3u64)).expect("known function, right types");
    match m.delete_memoized_args(name, &(5u32, 3u32)) {
        Err(e) => println!("  wrong types: {e}"),
        Ok(()) => unreachable!(),
    }
    m.delete_memoized(name).expect("known function");
    println!("  deleted `{name}` by name");

    println!("\nhit cost (1M hits of big_foo(5, 2)):");
    big_foo(5, 2);
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..1_000_000 {
        sum = sum.wrapping_add(big_foo(std::hint::black_box(5), 2));
    }
    println!("  {:.1} ns per hit (checksum {sum})", start.elapsed().as_nanos() as f64 / 1e6);

    m.flush();
    let s = m.stats();
    println!("\nstats: {s:?}");
    let f = big_foo_memo().stats();
    println!("big_foo: {} hits, {} misses", f.hits, f.misses);
}
