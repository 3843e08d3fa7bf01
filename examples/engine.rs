//! A tour of the cache engine on its own: inserts and hits, deadlines on a manual clock, single
//! flight, a generation retired in O(1) and reclaimed by the workers, and the statistics.
//!
//! `cargo run --release --example engine`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memokit_engine::{Engine, InsertOptions, ManualClock};

fn main() -> Result<(), memokit_engine::BuildError> {
    // A manual clock makes deadlines visible without sleeping; real servers use the default.
    let clock = ManualClock::new();
    let cache: Engine<u64, Arc<String>> =
        Engine::builder().max_capacity(200_000).clock(clock.clone()).build()?;

    // Inserts are handed to the worker threads, yet visible at once (read-your-writes).
    cache.insert(1, Arc::new("one".into()));
    println!("get(1) right after insert: {:?}", cache.get(&1));

    // Deadlines: a value is never returned at or after its deadline.
    cache.insert_with_ttl(2, Arc::new("two".into()), Duration::from_secs(30));
    clock.advance(Duration::from_secs(29));
    println!("get(2) after 29 s of a 30 s TTL: {:?}", cache.get(&2));
    clock.advance(Duration::from_secs(1));
    println!("get(2) after 30 s: {:?}", cache.get(&2));

    // Single flight: eight threads miss on one key, one computation runs.
    let computed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                cache.get_or_insert_with(3, || {
                    computed.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20)); // a slow computation
                    Arc::new("three".into())
                })
            });
        }
    });
    println!(
        "8 concurrent get_or_insert_with(3): {} computation(s)",
        computed.load(Ordering::SeqCst)
    );

    // Generations: store 100 000 values under one version, then retire it in O(1).
    let version = cache.new_generation();
    let opts = InsertOptions::new().generations(version, None);
    for k in 10_000..110_000 {
        cache.insert_with_options(k, Arc::new(k.to_string()), opts);
    }
    cache.flush();
    println!("resident after 100 000 inserts under one generation: {}", cache.len());
    let t = Instant::now();
    cache.retire(version);
    println!("retire() took {:?}; get(10 000) now: {:?}", t.elapsed(), cache.get(&10_000));
    cache.run_maintenance(); // the workers reclaim the stale entries in bounded slices
    println!("resident after one maintenance step: {}", cache.len());

    let s = cache.stats();
    println!(
        "stats: {} hits, {} misses, {} inserts, {} expirations, {} stale reclaimed, {} single-flight waits",
        s.hits, s.misses, s.inserts, s.expirations, s.stale_reclaimed, s.single_flight_waits
    );
    Ok(())
}
