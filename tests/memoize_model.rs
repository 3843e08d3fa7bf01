//! Differential test: random sequences of calls, clock advances, timeout changes and deletes,
//! replayed on a memoized function and on a `HashMap` + manual clock model.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;
use std::time::Duration;

use memokit::{memoize, ManualClock, Memoizer, Timeout};
use proptest::prelude::*;

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static MEMO: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().clock(CLOCK.clone()).build().expect("memoizer"));
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Each real computation returns a fresh number, so a stale or shared result is visible.
#[memoize(memoizer = &MEMO)]
fn f(k: u8) -> u64 {
    let _ = k;
    RUNS.fetch_add(1, SeqCst)
}

#[derive(Clone, Debug)]
enum Op {
    Call(u8),
    Advance(u64),
    SetTimeout(Option<u64>),
    Delete(u8),
    DeleteAll,
    Verhash,
    Maintain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4).prop_map(Op::Call),
        2 => (0u64..4).prop_map(Op::Advance),
        1 => proptest::option::of(0u64..4).prop_map(Op::SetTimeout),
        1 => (0u8..4).prop_map(Op::Delete),
        1 => Just(Op::DeleteAll),
        1 => Just(Op::Verhash),
        1 => Just(Op::Maintain),
    ]
}

/// The model: what is cached and until when (`None`: no deadline).
#[derive(Default)]
struct Model {
    cache: HashMap<u8, (u64, Option<Duration>)>,
    timeout: Option<Duration>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn memoizer_matches_a_hashmap_model(ops in proptest::collection::vec(op(), 1..60)) {
        // A fresh start for each case: nothing cached, a known timeout.
        f_memo().delete_verhash();
        f_memo().set_cache_timeout(Timeout::Never);
        let mut m = Model::default();
        for op in ops {
            let now = CLOCK.now();
            match op {
                Op::Call(k) => {
                    let before = RUNS.load(SeqCst);
                    let got = f(k);
                    match m.cache.get(&k) {
                        Some(&(v, until)) if until.is_none_or(|u| now < u) => {
                            prop_assert_eq!(got, v, "cached value for {}", k);
                            prop_assert_eq!(RUNS.load(SeqCst), before, "a hit computes nothing");
                        }
                        _ => {
                            prop_assert_eq!(got, before, "a fresh computation for {}", k);
                            match m.timeout {
                                Some(t) if t.is_zero() => {
                                    m.cache.remove(&k);
                                }
                                t => {
                                    m.cache.insert(k, (got, t.map(|t| now + t)));
                                }
                            }
                        }
                    }
                }
                Op::Advance(s) => CLOCK.advance(Duration::from_secs(s)),
                Op::SetTimeout(t) => {
                    let t = t.map(Duration::from_secs);
                    f_memo().set_cache_timeout(t.map_or(Timeout::Never, Timeout::After));
                    m.timeout = t;
                }
                Op::Delete(k) => {
                    memokit::delete_memoized!(f, k);
                    m.cache.remove(&k);
                }
                Op::DeleteAll => {
                    memokit::delete_memoized!(f);
                    m.cache.clear();
                }
                Op::Verhash => {
                    memokit::delete_memoized_verhash!(f);
                    m.cache.clear();
                }
                Op::Maintain => MEMO.run_maintenance(),
            }
        }
    }
}
