//! `key = &a`: a reference to an argument, which the key expression sees by reference (so
//! `&a` is `&&A`). The docs say a reference the expression returns is owned; `key = &user.name`
//! works, `key = &id` should too, and reach the same key from every delete form.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use memokit::{delete_memoized, memoize, Memoizer};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO, key = (&id, &region))]
fn lookup(id: u64, region: &str, _trace: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    id + region.len() as u64
}

#[test]
fn key_can_be_a_reference_to_an_argument() {
    let call = || lookup(1, "eu", 0);
    let forms: [(&str, &dyn Fn()); 3] = [
        ("f_memo().delete", &|| lookup_memo().delete(&(1, "eu".into(), 5))),
        ("delete_memoized!", &|| delete_memoized!(lookup, 1, "eu", 6)),
        ("by name", &|| {
            MEMO.delete_memoized_args(lookup_memo().name(), &(1u64, "eu".to_string(), 7u64))
                .expect("by name")
        }),
    ];
    for (form, delete) in forms {
        call();
        let before = RUNS.load(SeqCst);
        call();
        assert_eq!(RUNS.load(SeqCst), before, "a hit");
        delete();
        call();
        assert_eq!(RUNS.load(SeqCst), before + 1, "delete by {form} missed the call's key");
    }
}
