//! Lifecycle, beyond `engine_lifecycle.rs`: the exact threads an engine starts (`workers`
//! capped at one per shard, plus one clock thread with the real clock, none with a manual
//! clock), and dropping the last handle joins them all also when the clock thread has parked
//! for idleness and while a worker is in the middle of background reclamation. Thread counts
//! are read in a child process (Linux), alone, as `engine_lifecycle` does.
#![cfg(target_os = "linux")]
mod common;

use std::time::{Duration, Instant};

use memokit_engine::{Engine, InsertOptions, ManualClock};

#[test]
fn threads_started_and_joined() {
    common::run_child("threads_child");
}

/// This process's threads named `name` (their `comm`; Linux keeps 15 bytes of a name).
fn threads_named(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            out.push(t.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// Context switches of thread `tid` so far (`None` once it has exited).
fn switches(tid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until thread `tid` makes no context switch for 300 ms: a clock thread refreshing
/// every millisecond switches hundreds of times in that window, a parked one not at all.
fn wait_parked(tid: &str) {
    common::wait_until("the clock thread parks once nobody reads", || {
        let before = switches(tid);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            std::thread::yield_now();
        }
        before.is_some() && switches(tid) == before
    });
}

fn back_to(n: usize, what: &str) {
    common::wait_until(what, || common::thread_count() == n);
}

/// The body of [`threads_started_and_joined`]; only meaningful alone in a process.
#[test]
#[ignore = "run in a child process by threads_started_and_joined"]
fn threads_child() {
    let before = common::thread_count();

    // The exact threads: `workers` (at most one per shard), one clock thread on the real clock.
    for (shards, workers, manual) in [(8, 3, false), (2, 4, false), (8, 3, true), (1, 2, true)] {
        let b = Engine::<u64, u64>::builder().shards(shards).workers(workers);
        let e = if manual { b.clock(ManualClock::new()) } else { b }.build().unwrap();
        let want = before + workers.min(shards) + usize::from(!manual);
        let what = format!("{shards} shards, {workers} workers, manual clock {manual}");
        assert_eq!(common::thread_count(), want, "{what}: threads started");
        if !manual {
            // A thread names itself once it runs.
            common::wait_until(&what, || threads_named("memokit-clock").len() == 1);
        }
        e.insert(1, 1);
        drop(e);
        back_to(before, &format!("{what}: every thread joined on drop"));
    }

    // The clock thread parked (nobody read for a second): the drop still wakes and joins it.
    let e: Engine<u64, u64> = Engine::builder().workers(2).build().unwrap();
    e.insert(1, 1);
    assert_eq!(e.get(&1), Some(1));
    common::wait_until("the clock thread", || threads_named("memokit-clock").len() == 1);
    let clock = threads_named("memokit-clock");
    wait_parked(&clock[0]);
    common::no_hang("drop with the clock thread parked", move || drop(e));
    back_to(before, "every thread joined after the clock thread had parked");
    assert!(switches(&clock[0]).is_none(), "the clock thread exited");

    // A worker busy reclaiming a large retired generation in the background (bursts and
    // pauses paced by the real clock): the drop joins it without waiting for the work.
    let e: Engine<u64, u64> = Engine::builder()
        .max_capacity(400_000)
        .workers(2)
        .tick(Duration::from_millis(1))
        .build()
        .unwrap();
    let g = e.new_generation();
    for k in 0..200_000u64 {
        e.insert_with_options(k, k, InsertOptions::new().generations(g, None));
    }
    e.flush();
    e.retire(g);
    common::wait_until("background reclamation began", || e.generation_entries(g) < 200_000);
    let left = e.generation_entries(g);
    let start = Instant::now();
    common::no_hang("drop during reclamation", move || drop(e));
    back_to(before, "every thread joined while reclamation was under way");
    eprintln!("dropped with {left} stale entries left, joined in {:?}", start.elapsed());
}
