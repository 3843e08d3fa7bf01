//! Session 21 (a leftover of review s20u's user trial): a memoized function that calls itself
//! with the same arguments.
//!
//! The engine turns the wait for its own key into a panic rather than a deadlock, but its
//! message cannot name the function: a user with many memoized functions had to find the one
//! that recursed from the backtrace. Model: the panic that reaches the caller names the
//! memoized function (its full path, as `Stats` and the by-name deletes know it) and still
//! says what happened; a function that recurses with other arguments is unaffected; and a
//! panic of the user's own code passes through unchanged.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, LazyLock};

use common::panic_message;
use memokit::{memoize, Memoizer};
use memokit_engine::{Engine, SELF_WAIT_PANIC};

static M: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

#[memoize(memoizer = &M)]
fn same_arguments_again(n: u64) -> u64 {
    if n > 0 {
        same_arguments_again(n) + 1
    } else {
        0
    }
}

#[memoize(memoizer = &M)]
fn countdown(n: u64) -> u64 {
    if n > 0 {
        countdown(n - 1) + 1
    } else {
        0
    }
}

#[memoize(memoizer = &M)]
fn fails_on_purpose(n: u64) -> u64 {
    if n == 3 {
        panic!("the user's own panic, for {n}");
    }
    n
}

#[test]
fn a_call_with_its_own_arguments_panics_naming_the_function() {
    let payload = catch_unwind(|| same_arguments_again(1)).expect_err("it must panic");
    let msg = panic_message(&*payload);
    assert!(msg.contains("same_arguments_again"), "the function is named: {msg}");
    assert!(msg.contains("own key"), "what happened is said: {msg}");
    assert_eq!(msg.matches("same_arguments_again").count(), 1, "named once: {msg}");
    // Nothing is poisoned: another call works.
    assert_eq!(same_arguments_again(0), 0);
}

#[test]
fn recursion_with_other_arguments_and_the_users_panics_are_unchanged() {
    assert_eq!(countdown(50), 50);
    let payload = catch_unwind(AssertUnwindSafe(|| fails_on_purpose(3))).expect_err("panics");
    assert_eq!(panic_message(&*payload), "the user's own panic, for 3");
    assert_eq!(fails_on_purpose(4), 4);
}

/// A memoized function whose body makes a plain engine wait for its own key: that panic is
/// not the function's recursion, and passes through unchanged (review of session 21: checked
/// on the message alone, it was blamed on the function).
#[memoize(memoizer = &M)]
fn uses_an_engine_wrongly(n: u64) -> u64 {
    let e: Engine<u64, u64> = Engine::new(10);
    e.get_or_insert_with(n, || e.get_or_insert_with(n, || n))
}

#[test]
fn a_self_wait_inside_the_computation_is_not_blamed_on_the_function() {
    let payload = catch_unwind(|| uses_an_engine_wrongly(1)).expect_err("it must panic");
    assert_eq!(panic_message(&*payload), SELF_WAIT_PANIC);
}

static CYCLE: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(2));
static FIRST: [AtomicBool; 2] = [AtomicBool::new(true), AtomicBool::new(true)];

/// The first computation of each function waits until both are running (a later one, a
/// retry after the other's panic, goes on at once).
fn both_running(which: usize) {
    if FIRST[which].swap(false, Ordering::SeqCst) {
        CYCLE.wait();
    }
}

#[memoize(memoizer = &M)]
fn ping(n: u64) -> u64 {
    both_running(0);
    pong(n) + 1
}

#[memoize(memoizer = &M)]
fn pong(n: u64) -> u64 {
    both_running(1);
    ping(n) + 1
}

/// `ping(7)` computing on one thread needs `pong(7)`, whose computation on another thread
/// needs `ping(7)`: one of the two waits would close the cycle and panics, naming the
/// function whose call it was.
#[test]
fn a_cycle_across_threads_panics_naming_the_function() {
    let a = std::thread::spawn(|| catch_unwind(|| ping(7)));
    let b = std::thread::spawn(|| catch_unwind(|| pong(7)));
    let results = [a.join().expect("thread"), b.join().expect("thread")];
    let messages: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err()).map(|p| panic_message(&**p)).collect();
    assert!(!messages.is_empty(), "one of them panics");
    let named = messages.iter().filter(|m| {
        m.contains("another thread")
            && (m.contains("`memoize_rev_s21::ping`") || m.contains("`memoize_rev_s21::pong`"))
    });
    assert_eq!(named.count(), 1, "exactly one names its function: {messages:?}");
}
