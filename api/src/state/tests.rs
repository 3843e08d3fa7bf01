//! Unit tests of the call path: a function slot called with two value types.

use super::*;
use crate::dispatch::CloneCodec;
use std::cell::Cell;
use std::sync::LazyLock;

static MEMO: LazyLock<Memoizer> = LazyLock::new(|| Memoizer::builder().build().expect("memoizer"));

/// One function slot called with two value types (generated code never does: one
/// signature per function): the first call fixes the types, calls with the other type run
/// the function uncached every time, and the first type's result stays cached.
#[test]
fn a_call_with_other_types_runs_uncached() {
    static SLOT: FnSlot = FnSlot::new();
    let spec = || FnSpec {
        name: "state::tests::twice".into(),
        make_name: None,
        memoizer: Some(|| &*MEMO),
        timeout: Timeout::Never,
    };
    let m = handle::<(u64,)>(&SLOT, spec, |_, _, _| None);
    let view = (&1u64,);
    let runs = Cell::new(0);
    let run = || runs.set(runs.get() + 1);
    let as_u64 = || {
        m.state.call::<_, u64, (), CloneCodec>(&view, None, || {
            run();
            Ok(7)
        })
    };
    let as_str = || {
        m.state.call::<_, String, (), CloneCodec>(&view, None, || {
            run();
            Ok("x".to_string())
        })
    };
    assert_eq!(as_u64(), Ok(7));
    MEMO.flush();
    assert_eq!(as_u64(), Ok(7));
    assert_eq!(runs.get(), 1);
    assert_eq!(as_str().as_deref(), Ok("x"));
    assert_eq!(as_str().as_deref(), Ok("x"));
    assert_eq!(runs.get(), 3, "the other type runs uncached, every time");
    assert_eq!(as_u64(), Ok(7));
    assert_eq!(runs.get(), 3, "the first type's result is still cached");
}
