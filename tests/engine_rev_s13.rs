//! Session 13's review of the engine changes: a generation given as both primary and
//! secondary (`generations(g, Some(g))`) across in-place replacement (`replace_resident`
//! compares the generations and the `VERSIONED` flag: a store that changes only whether the
//! generation is checked must not keep the old flag).
mod common;

use common::manual_engine;
use memokit_engine::InsertOptions;

/// `(g, None).primary_in_key()` (not checked: the key changes with `g`) replaced by
/// `(g, Some(g)).primary_in_key()` (checked, as a secondary is): once replaced, retiring `g`
/// hides the value at once, as for a value stored that way first. And back: replaced by the
/// unchecked form, the value is counted once and reclaimed with `g`.
#[test]
fn replacing_between_the_checked_and_unchecked_forms_of_one_generation() {
    let (e, _clock) = manual_engine::<u64, u64>(100);
    let g = e.new_generation();
    let in_key = InsertOptions::new().generations(g, None).primary_in_key();
    let twice = InsertOptions::new().generations(g, Some(g)).primary_in_key();
    assert_ne!(in_key, twice, "the options differ in whether lookups check g");
    e.insert_with_options(1, 10, in_key);
    e.flush();
    e.insert_with_options(1, 11, twice);
    e.flush();
    assert_eq!((e.get(&1), e.generation_entries(g), e.len()), (Some(11), 1, 1));
    e.retire(g);
    assert_eq!(e.get(&1), None, "stored (g, Some(g)) last: checked, hidden at once");
    e.run_maintenance();
    assert_eq!((e.generation_entries(g), e.len()), (0, 0));
    assert_eq!(e.validate(), Ok(()));

    let h = e.new_generation();
    let in_key = InsertOptions::new().generations(h, None).primary_in_key();
    let twice = InsertOptions::new().generations(h, Some(h)).primary_in_key();
    e.insert_with_options(2, 20, twice);
    e.flush();
    e.insert_with_options(2, 21, in_key);
    e.flush();
    assert_eq!((e.get(&2), e.generation_entries(h), e.len()), (Some(21), 1, 1));
    e.retire(h);
    e.run_maintenance();
    assert_eq!((e.get(&2), e.generation_entries(h), e.len()), (None, 0, 0));
    assert_eq!(e.validate(), Ok(()));
}

/// Without `primary_in_key`, `(g, Some(g))` and `(g, None)` store alike (one generation,
/// checked): a replacement between them keeps one value under `g`, and retiring `g` hides the value.
#[test]
fn the_same_generation_twice_replaces_in_place_like_once() {
    let (e, _clock) = manual_engine::<u64, u64>(100);
    let g = e.new_generation();
    e.insert_with_options(1, 10, InsertOptions::new().generations(g, None));
    e.flush();
    e.insert_with_options(1, 11, InsertOptions::new().generations(g, Some(g)));
    assert_eq!(e.get(&1), Some(11), "the new value, before any flush");
    e.flush();
    assert_eq!((e.generation_entries(g), e.len()), (1, 1));
    e.retire(g);
    assert_eq!(e.get(&1), None);
    e.run_maintenance();
    assert_eq!((e.generation_entries(g), e.len(), e.validate()), (0, 0, Ok(())));
}
