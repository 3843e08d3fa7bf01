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
use std::sync::LazyLock;

use common::panic_message;
use memokit::{memoize, Memoizer};

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
