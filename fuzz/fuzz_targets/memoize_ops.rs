//! The memoizer: calls of a few `#[memokit::memoize]` functions (a free function of two `u8`s,
//! one taking `&str`, one returning `Result`, one with `key = ..`, a `&self` method) with
//! arguments from a small domain, every form of delete (`delete_memoized!` in each shape,
//! `delete_memoized_verhash!`, the `Memoized` handle, the by-name API with real and arbitrary
//! names and wrong argument types), `set_cache_timeout`, manual clock advances, flush and
//! maintenance; against a plain model (a `HashMap` from (function, key) to the value stored and
//! its deadline).
//!
//! The property: every call returns either the model's still-valid value for its key, or a
//! fresh computation made by this very call; never a value from before a delete that covers it,
//! past its timeout, or of another key, function or receiver. The capacity is far above what a
//! run can store, so a call with a valid value in the model must hit (no recomputation).
//!
//! The memoizer and its clock are process-wide statics (`memoizer = &MEMO` binds a function
//! for good), so each input starts with `MEMO.clear()` and resets the timeouts; the manual
//! clock only moves forward, and stops moving (Advance is skipped) near `CLOCK_LIMIT`.
//!
//! The operations and the model are in `memoize_ops_model.rs`; the functions under test and
//! the replay of each operation on them are here.

#![no_main]

mod memoize_ops_model;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use memoize_ops_model::*;
use memokit::{memoize, ManualClock, MemoIdentity, Memoizer, Timeout};
use memokit_fuzz::{CLOCK_LIMIT, TICK};

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static MEMO: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder()
        .capacity(1 << 20)
        .default_timeout(DEFAULT_TIMEOUT)
        .tick(TICK)
        .clock(CLOCK.clone())
        .build()
        .expect("memoizer builds")
});

static CLOCK_SPENT: AtomicBool = AtomicBool::new(false);

#[memoize(memoizer = &MEMO)]
fn pair(a: u8, b: u8) -> (u8, u8, u64) {
    (a, b, run_id())
}

#[memoize(memoizer = &MEMO, timeout = 3)]
fn text(s: &str) -> (String, u64) {
    (s.to_owned(), run_id())
}

/// Errors are returned, never stored.
#[memoize(memoizer = &MEMO)]
fn checked(x: u8) -> Result<(u8, u64), u64> {
    let id = run_id();
    if x % 3 == 0 {
        Err(id)
    } else {
        Ok((x, id))
    }
}

/// Keyed by `a % 4` alone: calls with the same `a % 4` share one result.
#[memoize(memoizer = &MEMO, timeout = 7, key = a % 4)]
fn keyed(a: u8, tag: u8) -> (u8, u8, u64) {
    (a, tag, run_id())
}

#[derive(MemoIdentity)]
struct Obj {
    #[memo(id)]
    id: u8,
}

impl Obj {
    #[memoize(memoizer = &MEMO)]
    fn scaled(&self, x: u8) -> (u8, u8, u64) {
        (self.id, x, run_id())
    }
}

fn attribute_timeout(f: Func) -> Timeout {
    match f {
        Func::Text => Timeout::from(3),
        Func::Keyed => Timeout::from(7),
        _ => Timeout::Default,
    }
}

fn name_of(f: Func) -> &'static str {
    match f {
        Func::Pair => pair_memo().name(),
        Func::Text => text_memo().name(),
        Func::Checked => checked_memo().name(),
        Func::Keyed => keyed_memo().name(),
        Func::Scaled => Obj::scaled_memo().name(),
    }
}

fn set_timeout(f: Func, t: Timeout) {
    match f {
        Func::Pair => pair_memo().set_cache_timeout(t),
        Func::Text => text_memo().set_cache_timeout(t),
        Func::Checked => checked_memo().set_cache_timeout(t),
        Func::Keyed => keyed_memo().set_cache_timeout(t),
        Func::Scaled => Obj::scaled_memo().set_cache_timeout(t),
    }
}

fn delete_one(how: DeleteHow, f: Func, macro_form: impl FnOnce(), handle: impl FnOnce()) {
    match how {
        DeleteHow::Macro => macro_form(),
        DeleteHow::Handle => handle(),
        DeleteHow::ByName => unreachable!("{f:?}: by-name deletes are done by the caller"),
    }
}

fn step(m: &mut Model, step: usize, op: &Op) {
    let before = runs();
    match op {
        &Op::Pair(a, b) => {
            let (a, b) = (a % 8, b % 8);
            let got = pair(a, b);
            if (got.0, got.1) != (a, b) {
                panic!("step {step}: pair({a}, {b}) returned the result of {got:?}");
            }
            m.call(step, op, Key::Pair(a, b), before, got.2, true);
        }
        Op::Text(w) => {
            let got = text(&w.0);
            if got.0 != w.0 {
                panic!("step {step}: text({:?}) returned the result of {got:?}", w.0);
            }
            m.call(step, op, Key::Text(w.0.clone()), before, got.1, true);
        }
        &Op::Checked(x) => {
            let x = x % 8;
            match checked(x) {
                Ok((y, id)) => {
                    if y != x {
                        panic!("step {step}: checked({x}) returned the result of {y}");
                    }
                    m.call(step, op, Key::Checked(x), before, id, true);
                }
                Err(id) => {
                    if x % 3 != 0 {
                        panic!("step {step}: checked({x}) returned an error");
                    }
                    m.call(step, op, Key::Checked(x), before, id, false);
                }
            }
        }
        &Op::Keyed(a, tag) => {
            let a = a % 8;
            let got = keyed(a, tag);
            if got.0 % 4 != a % 4 {
                panic!("step {step}: keyed({a}, {tag}) returned the result of {got:?}");
            }
            m.call(step, op, Key::Keyed(a % 4), before, got.2, true);
        }
        &Op::Scaled { obj, x } => {
            let (obj, x) = (obj % 4, x % 8);
            let got = Obj { id: obj }.scaled(x);
            if (got.0, got.1) != (obj, x) {
                panic!("step {step}: obj {obj}.scaled({x}) returned the result of {got:?}");
            }
            m.call(step, op, Key::Scaled(obj, x), before, got.2, true);
        }
        &Op::DeletePair { a, b, how } => {
            let (a, b) = (a % 8, b % 8);
            match how {
                DeleteHow::ByName => {
                    MEMO.delete_memoized_args(name_of(Func::Pair), &(a, b)).expect("by name")
                }
                _ => delete_one(
                    how,
                    Func::Pair,
                    || memokit::delete_memoized!(pair, a, b),
                    || pair_memo().delete(&(a, b)),
                ),
            }
            m.values.remove(&Key::Pair(a, b));
        }
        Op::DeleteText { s, how } => {
            match how {
                DeleteHow::ByName => MEMO
                    .delete_memoized_args(name_of(Func::Text), &(s.0.clone(),))
                    .expect("by name"),
                _ => delete_one(
                    *how,
                    Func::Text,
                    || memokit::delete_memoized!(text, &s.0),
                    || text_memo().delete(&(s.0.clone(),)),
                ),
            }
            m.values.remove(&Key::Text(s.0.clone()));
        }
        &Op::DeleteChecked { x, how } => {
            let x = x % 8;
            match how {
                DeleteHow::ByName => {
                    MEMO.delete_memoized_args(name_of(Func::Checked), &(x,)).expect("by name")
                }
                _ => delete_one(
                    how,
                    Func::Checked,
                    || memokit::delete_memoized!(checked, x),
                    || checked_memo().delete(&(x,)),
                ),
            }
            m.values.remove(&Key::Checked(x));
        }
        &Op::DeleteKeyed { a, tag, how } => {
            let a = a % 8;
            match how {
                DeleteHow::ByName => {
                    MEMO.delete_memoized_args(name_of(Func::Keyed), &(a, tag)).expect("by name")
                }
                _ => delete_one(
                    how,
                    Func::Keyed,
                    || memokit::delete_memoized!(keyed, a, tag),
                    || keyed_memo().delete(&(a, tag)),
                ),
            }
            m.values.remove(&Key::Keyed(a % 4));
        }
        &Op::DeleteScaled { obj, x, how, instance_form } => {
            let (o, x) = (obj % 4, x % 8);
            let obj = Obj { id: o };
            match how {
                DeleteHow::ByName => {
                    MEMO.delete_memoized_args(name_of(Func::Scaled), &(o, x)).expect("by name")
                }
                DeleteHow::Macro if instance_form => memokit::delete_memoized!(obj.scaled, x),
                DeleteHow::Macro => memokit::delete_memoized!(Obj::scaled, &obj, x),
                DeleteHow::Handle => Obj::scaled_memo().delete(&(o, x)),
            }
            m.values.remove(&Key::Scaled(o, x));
        }
        &Op::DeleteReceiver { obj } => {
            let o = obj % 4;
            let obj = Obj { id: o };
            memokit::delete_memoized!(obj.scaled);
            m.values.retain(|k, _| !matches!(k, Key::Scaled(id, _) if *id == o));
        }
        &Op::DeleteAll { func, how } => {
            match how {
                DeleteAllHow::Macro => match func {
                    Func::Pair => memokit::delete_memoized!(pair),
                    Func::Text => memokit::delete_memoized!(text),
                    Func::Checked => memokit::delete_memoized!(checked),
                    Func::Keyed => memokit::delete_memoized!(keyed),
                    Func::Scaled => memokit::delete_memoized!(Obj::scaled),
                },
                DeleteAllHow::Handle => match func {
                    Func::Pair => pair_memo().delete_all(),
                    Func::Text => text_memo().delete_all(),
                    Func::Checked => checked_memo().delete_all(),
                    Func::Keyed => keyed_memo().delete_all(),
                    Func::Scaled => Obj::scaled_memo().delete_all(),
                },
                DeleteAllHow::ByName => MEMO.delete_memoized(name_of(func)).expect("by name"),
                DeleteAllHow::Verhash => match func {
                    Func::Pair => memokit::delete_memoized_verhash!(pair),
                    Func::Text => memokit::delete_memoized_verhash!(text),
                    Func::Checked => memokit::delete_memoized_verhash!(checked),
                    Func::Keyed => memokit::delete_memoized_verhash!(keyed),
                    Func::Scaled => memokit::delete_memoized_verhash!(Obj::scaled),
                },
                DeleteAllHow::VerhashHandle => match func {
                    Func::Pair => pair_memo().delete_verhash(),
                    Func::Text => text_memo().delete_verhash(),
                    Func::Checked => checked_memo().delete_verhash(),
                    Func::Keyed => keyed_memo().delete_verhash(),
                    Func::Scaled => Obj::scaled_memo().delete_verhash(),
                },
                DeleteAllHow::VerhashByName => {
                    MEMO.delete_memoized_verhash(name_of(func)).expect("by name")
                }
            }
            m.delete_all(func);
        }
        Op::DeleteName(name) => {
            let ours = FUNCS.iter().copied().find(|&f| name_of(f) == name.as_str());
            let r = MEMO.delete_memoized(name);
            match (ours, r) {
                (Some(f), Ok(())) => m.delete_all(f),
                (None, Err(memokit::Error::UnknownFunction { name: n })) if n == *name => {}
                (ours, r) => panic!("step {step}: delete_memoized({name:?}): ours {ours:?}, {r:?}"),
            }
            let r = MEMO.delete_memoized_verhash(name);
            if ours.is_none() && !matches!(r, Err(memokit::Error::UnknownFunction { .. })) {
                panic!("step {step}: delete_memoized_verhash({name:?}) gave {r:?}");
            }
            let r = MEMO.delete_memoized_args(name, &(1u8, 2u8));
            if ours.is_none() && !matches!(r, Err(memokit::Error::UnknownFunction { .. })) {
                panic!("step {step}: delete_memoized_args({name:?}) gave {r:?}");
            }
            if let Some(f) = ours {
                m.delete_all(f);
            }
        }
        &Op::DeleteWrongType(f) => {
            let name = name_of(f);
            let r = match f {
                Func::Pair => MEMO.delete_memoized_args(name, &(1u64, 2u64)),
                Func::Text => MEMO.delete_memoized_args(name, &("a",)),
                Func::Checked => MEMO.delete_memoized_args(name, &1u8),
                Func::Keyed => MEMO.delete_memoized_args(name, &(1u8,)),
                Func::Scaled => MEMO.delete_memoized_args(name, &(1u8, 2u8, 3u8)),
            };
            if !matches!(r, Err(memokit::Error::ArgumentTypes { .. })) {
                panic!("step {step}: delete_memoized_args({name}) with a wrong type gave {r:?}");
            }
        }
        &Op::SetTimeout { func, t } => {
            let t = t.timeout();
            set_timeout(func, t);
            m.timeouts.insert(func, t);
        }
        &Op::Advance { millis } => {
            let d = Duration::from_millis(u64::from(millis % 20_000));
            let n = d.as_nanos() as u64;
            if m.now + n < CLOCK_LIMIT {
                CLOCK.advance(d);
                m.now += n;
            } else if !CLOCK_SPENT.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "memoize_ops: the process-wide manual clock reached its limit; clock \
                     advances are skipped from now on (restart the fuzzer to test expiry again)"
                );
            }
        }
        Op::Flush => MEMO.flush(),
        Op::Maintain => {
            MEMO.run_maintenance();
            let entries = MEMO.stats().entries;
            let live = m.values.values().filter(|(_, d)| m.now < *d).count() as u64;
            if entries < live {
                panic!("step {step}: {entries} entries after maintenance, {live} valid results");
            }
        }
    }
    if CLOCK.now().as_nanos() as u64 != m.now {
        panic!("step {step}: clock {:?}, model {}ns", CLOCK.now(), m.now);
    }
}

fuzz_target!(|ops: Vec<Op>| {
    // A fresh start: no result stored, every timeout as its attribute set it.
    MEMO.clear();
    for f in FUNCS {
        set_timeout(f, attribute_timeout(f));
    }
    let counts = |f: Func| match f {
        Func::Pair => pair_memo().stats(),
        Func::Text => text_memo().stats(),
        Func::Checked => checked_memo().stats(),
        Func::Keyed => keyed_memo().stats(),
        Func::Scaled => Obj::scaled_memo().stats(),
    };
    let sum =
        || FUNCS.iter().map(|&f| counts(f)).fold((0, 0), |a, s| (a.0 + s.hits, a.1 + s.misses));
    let start = sum();
    let mut m = Model {
        now: CLOCK.now().as_nanos() as u64,
        values: HashMap::new(),
        timeouts: FUNCS.iter().map(|&f| (f, attribute_timeout(f))).collect(),
        calls: 0,
        hits: 0,
    };
    for (i, op) in ops.iter().enumerate() {
        step(&mut m, i, op);
    }
    let end = sum();
    let (hits, misses) = (end.0 - start.0, end.1 - start.1);
    if (hits, hits + misses) != (m.hits, m.calls) {
        panic!(
            "stats: {hits} hits and {misses} misses counted, the model saw {} hits in {} calls",
            m.hits, m.calls
        );
    }
});
