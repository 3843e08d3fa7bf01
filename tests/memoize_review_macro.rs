//! `key = (a, b)` through a `macro_rules!` (the way api.md §2 expects same-named functions to
//! be generated): the macro's `$key:expr` reaches `#[memoize]` wrapped in an invisible group.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use memokit::memoize;

static RUNS: AtomicU64 = AtomicU64::new(0);

macro_rules! keyed {
    ($name:ident, $region:ident, $tenant:ident, $key:expr) => {
        #[memoize(key = $key)]
        fn $name($region: &str, $tenant: String, _trace: u64) -> String {
            RUNS.fetch_add(1, SeqCst);
            format!("{}/{}", $region, $tenant)
        }
    };
}

keyed!(by_tuple, region, tenant, (region, tenant));

#[test]
fn key_tuple_through_macro_rules() {
    assert_eq!(by_tuple("eu", "acme".into(), 1), "eu/acme");
    assert_eq!(by_tuple("eu", "acme".into(), 2), "eu/acme");
    assert_eq!(RUNS.load(SeqCst), 1);
    by_tuple_memo().delete(&("eu".into(), "acme".into(), 0));
    assert_eq!(by_tuple("eu", "acme".into(), 3), "eu/acme");
    assert_eq!(RUNS.load(SeqCst), 2);
}
