//! `Stats::entries` after deletes: what a delete leaves counted, and when it stops counting
//! (session 22; a user trial read `entries` after `delete_memoized!` and saw the old count).
use std::sync::LazyLock;

use memokit::{memoize, ManualClock, Memoizer};

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static M: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(CLOCK.clone()).build().expect("a memoizer"));

#[memoize(memoizer = &M)]
fn f(x: u64) -> u64 {
    x
}

#[test]
fn deleted_results_count_until_reclaimed() {
    f(1);
    f(2);
    f(3);
    M.flush();
    assert_eq!(M.stats().entries, 3);
    memokit::delete_memoized!(f, 1);
    M.flush();
    assert_eq!(M.stats().entries, 2, "a delete by arguments is applied by the flush");
    memokit::delete_memoized!(f);
    M.flush();
    assert_eq!(f_memo().stats().misses, 3);
    assert_eq!(M.stats().entries, 2, "a function-wide delete counts until reclaimed");
    M.run_maintenance();
    assert_eq!(M.stats().entries, 0, "reclaimed by the maintenance step");
    f(2);
    assert_eq!(f_memo().stats().misses, 4, "never served while it counted");
}
