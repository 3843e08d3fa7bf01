//! Helpers shared by the `memoize_*` tests of `key =`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// For each delete form: the call is stored (a second call hits), then the delete makes the
/// next call recompute. `runs` counts the function's runs.
pub(crate) fn check(what: &str, runs: &AtomicU64, call: &dyn Fn(), deletes: &[(&str, &dyn Fn())]) {
    for (form, delete) in deletes {
        call();
        let before = runs.load(SeqCst);
        call();
        assert_eq!(runs.load(SeqCst), before, "{what}: the second call is a hit");
        delete();
        call();
        assert_eq!(runs.load(SeqCst), before + 1, "{what}: delete by {form} missed the call's key");
    }
}

static CLONES: AtomicU64 = AtomicU64::new(0);

/// An argument that counts its clones ([`clones`]), to check that a hit clones none.
#[derive(PartialEq, Eq, Hash, Debug)]
pub(crate) struct Counted(pub(crate) u64);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, SeqCst);
        Counted(self.0)
    }
}

/// Clones of [`Counted`] values so far (in this test binary).
pub(crate) fn clones() -> u64 {
    CLONES.load(SeqCst)
}
