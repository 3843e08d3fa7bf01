//! Session 23 (a leftover of session 22's user trial): the panic of a memoized function that
//! calls itself with the same arguments was printed twice, once with the engine's generic
//! message and once with the memoizer's, which names the function.
//!
//! Model: for a wait that would deadlock (a call with its own arguments while computing them,
//! a cycle of calls across threads), the panic hook runs exactly once, for the message that
//! names the function; the payload that reaches the caller is that message. The hook is
//! process-wide, so this file holds one test.

mod common;

use std::panic::{catch_unwind, PanicHookInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, LazyLock, Mutex};

use common::panic_message;
use memokit::{memoize, Memoizer};

static M: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

/// The messages the panic hook was called with.
static HOOKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn hook_message(info: &PanicHookInfo<'_>) -> String {
    info.payload()
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn take_hooked() -> Vec<String> {
    std::mem::take(&mut *HOOKED.lock().unwrap_or_else(|p| p.into_inner()))
}

#[memoize(memoizer = &M)]
fn same_arguments_again(n: u64) -> u64 {
    if n > 0 {
        same_arguments_again(n) + 1
    } else {
        0
    }
}

static FIRST: [AtomicBool; 2] = [AtomicBool::new(true), AtomicBool::new(true)];
static CYCLE: Barrier = Barrier::new(2);

/// The first computation of each function waits until both are running.
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

#[test]
fn a_deadlock_refused_is_reported_once_naming_the_function() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        HOOKED.lock().unwrap_or_else(|p| p.into_inner()).push(hook_message(info));
        previous(info);
    }));

    // A call with its own arguments.
    let payload = catch_unwind(|| same_arguments_again(1)).expect_err("it must panic");
    let msg = panic_message(&*payload);
    assert!(msg.contains("same_arguments_again"), "the payload names the function: {msg}");
    let hooked = take_hooked();
    assert_eq!(hooked, vec![msg], "the hook ran once, for the named message");

    // A cycle across two threads: the wait that would close it panics, naming its function;
    // the computation it was in fails, and the other thread, whose wait then ends, computes
    // that result itself and finds its own call in it (a second, named panic). Each panic is
    // hooked once, with the message its caller gets.
    let a = std::thread::spawn(|| catch_unwind(|| ping(7)).err().map(|p| panic_message(&*p)));
    let b = std::thread::spawn(|| catch_unwind(|| pong(7)).err().map(|p| panic_message(&*p)));
    let mut payloads: Vec<String> =
        [a.join().expect("thread"), b.join().expect("thread")].into_iter().flatten().collect();
    assert!(!payloads.is_empty(), "a call panics");
    let mut hooked = take_hooked();
    payloads.sort();
    hooked.sort();
    assert_eq!(hooked, payloads, "the hook ran once per panic, with the message the caller got");
    assert!(
        hooked.iter().all(|m| m.contains("`memoize_rev_s23::ping`")
            || m.contains("`memoize_rev_s23::pong`")),
        "every message hooked names the function: {hooked:?}"
    );
    let _ = std::panic::take_hook();
}
