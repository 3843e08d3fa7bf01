//! Review 3 of `#[memoize(key = ...)]`: the call evaluates the key on the arguments as passed
//! (`role: &str`, `xs: &[u64]`), the deletes (`f_memo().delete`, `make_cache_key`, by name) on
//! references to their owned forms (`&String`, `&Vec<u64>`). Key expressions that type-check
//! only on the former (a `match` on string or slice patterns) did not compile: E0308
//! "expected `&String`, found `&str`" / E0529 "expected an array or slice, found `Vec<u64>`"
//! (a documented limit in the crate docs, removed by the fix: the deletes now see the
//! arguments with the call's types, through `Borrow`).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use memokit::{delete_memoized, memoize};

static RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(key = matches!(role, "admin" | "root"))]
fn privileged(role: &str, _trace: u64) -> bool {
    RUNS.fetch_add(1, SeqCst);
    role == "admin" || role == "root"
}

#[memoize(key = match xs { [first, ..] => *first, [] => 0 })]
fn first(xs: &[u64], _trace: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    xs.first().copied().unwrap_or(0)
}

#[test]
fn patterns_over_borrowed_arguments_in_the_key() {
    assert!(privileged("admin", 0));
    let before = RUNS.load(SeqCst);
    assert!(privileged("root", 1), "same key (true): a hit");
    assert_eq!(RUNS.load(SeqCst), before);
    privileged_memo().delete(&("root".into(), 2));
    assert!(privileged("admin", 0));
    assert_eq!(RUNS.load(SeqCst), before + 1, "f_memo().delete missed");
    delete_memoized!(privileged, "root", 3);
    assert!(privileged("admin", 0));
    assert_eq!(RUNS.load(SeqCst), before + 2, "delete_memoized! missed");

    assert_eq!(first(&[4, 5], 0), 4);
    let before = RUNS.load(SeqCst);
    assert_eq!(first(&[4, 6], 1), 4, "same first element: a hit");
    assert_eq!(RUNS.load(SeqCst), before);
    first_memo().delete(&(vec![4], 2));
    assert_eq!(first(&[4, 5], 0), 4);
    assert_eq!(RUNS.load(SeqCst), before + 1, "f_memo().delete missed");
}
