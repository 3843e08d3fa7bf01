//! Review 3 of `#[memoize(key = ...)]`: a part that is a reference to a temporary
//! (`key = &a.len()`, `key = &a.to_lowercase()`) is a reference part like `&user.name` (the
//! crate docs: "each part is a reference ... or an owned value"); in a plain `let` it would
//! live to the end of the function. Failed before the fix: E0716 "temporary value dropped
//! while borrowed" at the key (the part was evaluated inside a block).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use memokit::{delete_memoized, memoize};

static RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(key = &a.len())]
fn ref_to_len(a: &str, _trace: u64) -> usize {
    RUNS.fetch_add(1, SeqCst);
    a.len()
}

#[memoize(key = (&a.to_lowercase(), b))]
fn ref_to_lowercase(a: &str, b: u64) -> usize {
    RUNS.fetch_add(1, SeqCst);
    a.len() + b as usize
}

#[test]
fn a_reference_to_a_temporary_is_a_key_part() {
    ref_to_len("abc", 0);
    let before = RUNS.load(SeqCst);
    ref_to_len("xyz", 1);
    assert_eq!(RUNS.load(SeqCst), before, "same length: a hit");
    delete_memoized!(ref_to_len, "123", 2);
    ref_to_len("abc", 0);
    assert_eq!(RUNS.load(SeqCst), before + 1, "delete_memoized! missed");
    ref_to_len_memo().delete(&("qqq".into(), 3));
    ref_to_len("abc", 0);
    assert_eq!(RUNS.load(SeqCst), before + 2, "f_memo().delete missed");

    ref_to_lowercase("AB", 1);
    let before = RUNS.load(SeqCst);
    ref_to_lowercase("ab", 1);
    assert_eq!(RUNS.load(SeqCst), before, "same lowercase: a hit");
    ref_to_lowercase_memo().delete(&("aB".into(), 1));
    ref_to_lowercase("AB", 1);
    assert_eq!(RUNS.load(SeqCst), before + 1, "f_memo().delete missed");
}
