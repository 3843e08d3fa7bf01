//! Proof suite, part 1: property-based invalidation tests of the memoizer.
//!
//! Random sequences of operations (calls with arguments from a small domain, every form of
//! `delete_memoized!`, `delete_memoized_verhash!`, the by-name deletes of `Memoizer`, the
//! handle's deletes, `set_cache_timeout`, manual clock advances, maintenance, `clear`) run on
//! eight memoized functions and methods, bound to two dedicated memoizers on one manual clock:
//! `MEMO` (default capacity: nothing may be evicted) and `SMALL` (capacity 4: constant capacity
//! pressure). Every real computation returns a [`Token`]: a fresh number from a global counter
//! and the key it was computed for, so a stale result, or one from another function or another
//! receiver, is visible.
//!
//! The model ([`Model`]) is a plain map `key -> (token, deadline)` with the timeout of each
//! function, written from `../shared/spec/api.md`. A call may return:
//! - the token the model holds for that key, if it is still within its deadline; or
//! - a fresh token (computed during this call), since a cache may always recompute — except on
//!   `MEMO`, which holds far fewer results than its capacity, so a result the model holds must
//!   be served (§3: "a stored value stays until it expires or is deleted").
//!
//! Anything else (a token from before a covering delete, one past its timeout, another key's)
//! fails, and proptest shrinks the case to a short, readable sequence of [`Op`]s.
//!
//! The system side (the memoizers, the targets, a call of each, every form of delete) is in
//! `proof_memoize_model/targets.rs`; the model, the strategies and the replay are here.
//!
//! `PROPTEST_CASES` raises the case count (default 256).
mod common;
#[path = "proof_memoize_model/targets.rs"]
mod targets;

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use memokit::Timeout;
use proptest::prelude::*;

use targets::*;

/// Which results a delete covers.
#[derive(Debug, PartialEq, Eq)]
enum Scope {
    /// Every result of the function (every receiver).
    All,
    /// Every result of (method, receiver).
    Receiver,
    /// The one result of this key.
    One,
    /// Nothing (the call is an error).
    Nothing,
}

fn scope(how: How, t: Target) -> Scope {
    match how {
        How::Macro | How::Verhash | How::Name | How::NameVerhash => Scope::All,
        How::HandleAll | How::HandleVerhash => Scope::All,
        How::MacroRecv | How::VerhashRecv if t.is_method() => Scope::Receiver,
        How::MacroRecv | How::VerhashRecv => Scope::All,
        How::MacroArgs | How::MacroTypeArgs | How::NameArgs | How::Handle => Scope::One,
        How::NameArgsWrongType => Scope::Nothing,
    }
}

/// A function's timeout as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tm {
    Default,
    Never,
    Secs(u64),
}

impl Tm {
    fn timeout(self) -> Timeout {
        match self {
            Tm::Default => Timeout::Default,
            Tm::Never => Timeout::Never,
            Tm::Secs(s) => Timeout::from(s),
        }
    }
    /// `None`: no deadline; `Some(0)`: nothing is stored.
    fn resolve(self) -> Option<Duration> {
        match self {
            Tm::Default => Some(Duration::from_secs(DEFAULT_SECS)),
            Tm::Never => None,
            Tm::Secs(s) => Some(Duration::from_secs(s)),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Call(Key),
    Delete(How, Key),
    SetTimeout(Target, Tm),
    Advance(u64),
    Maintain,
    Clear { small: bool },
}

fn target() -> impl Strategy<Value = Target> {
    proptest::sample::select(TARGETS.to_vec())
}

fn key_strategy() -> impl Strategy<Value = Key> {
    (target(), 0u8..3, 0u8..4, 0u8..2).prop_map(|(t, r, a, b)| key(t, r, a, b))
}

fn op() -> impl Strategy<Value = Op> {
    let tm = prop_oneof![Just(Tm::Default), Just(Tm::Never), (0u64..5).prop_map(Tm::Secs),];
    prop_oneof![
        10 => key_strategy().prop_map(Op::Call),
        4 => (proptest::sample::select(HOWS.to_vec()), key_strategy())
            .prop_map(|(h, k)| Op::Delete(h, k)),
        1 => (target(), tm).prop_map(|(t, tm)| Op::SetTimeout(t, tm)),
        2 => (0u64..5).prop_map(Op::Advance),
        1 => Just(Op::Maintain),
        1 => any::<bool>().prop_map(|small| Op::Clear { small }),
    ]
}

/// The plain model: which token is valid for which key, until when; each function's timeout.
#[derive(Debug)]
struct Model {
    /// key -> (token seq, deadline; `None` = no deadline).
    live: HashMap<Key, (u64, Option<Duration>)>,
    timeouts: HashMap<Target, Tm>,
}

impl Model {
    fn new() -> Self {
        Model {
            live: HashMap::new(),
            timeouts: TARGETS.iter().map(|&t| (t, Tm::Default)).collect(),
        }
    }

    /// The token seq still valid for `k` at `now`, if any.
    fn valid(&self, k: &Key, now: Duration) -> Option<u64> {
        self.live.get(k).filter(|(_, until)| until.is_none_or(|u| now < u)).map(|&(s, _)| s)
    }

    /// A fresh result was computed at `now`: stored unless the timeout is zero.
    fn computed(&mut self, k: Key, seq: u64, now: Duration) {
        match self.timeouts[&k.t].resolve() {
            Some(t) if t.is_zero() => {
                self.live.remove(&k);
            }
            t => {
                self.live.insert(k, (seq, t.map(|t| now + t)));
            }
        }
    }

    fn delete(&mut self, how: How, k: Key) {
        match scope(how, k.t) {
            Scope::All => self.live.retain(|x, _| x.t != k.t),
            Scope::Receiver => self.live.retain(|x, _| !(x.t == k.t && x.recv == k.recv)),
            Scope::One => {
                self.live.remove(&k);
            }
            Scope::Nothing => {}
        }
    }
}

/// Puts both memoizers back to "nothing cached, default timeouts" before a case.
fn reset() {
    for t in TARGETS {
        on_handle!(t, |h| {
            h.delete_verhash();
            h.set_cache_timeout(Timeout::Default);
        });
    }
    MEMO.clear();
    SMALL.clear();
}

/// Replays `ops` on the memoizers and the model; `Err` names the first disallowed outcome.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    // The tests of this file share the memoizers: one sequence at a time.
    static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let _serial = SERIAL.lock();
    reset();
    let mut m = Model::new();
    for (i, op) in ops.iter().enumerate() {
        let now = CLOCK.now();
        match *op {
            Op::Call(k) => {
                let before = SEQ.load(SeqCst);
                let got = call(k);
                prop_assert_eq!(
                    got.key,
                    k,
                    "op {}: {:?} returned another key's result {:?}",
                    i,
                    op,
                    got
                );
                let fresh = got.seq >= before;
                match m.valid(&k, now) {
                    Some(v) if got.seq == v => {}
                    Some(v) if fresh => {
                        prop_assert!(
                            !k.t.strict(),
                            "op {}: {:?} recomputed (token {}) although token {} was valid and \
                             the memoizer is under capacity",
                            i,
                            op,
                            got.seq,
                            v
                        );
                        m.computed(k, got.seq, now);
                    }
                    Some(v) => prop_assert!(
                        false,
                        "op {}: {:?} returned stale token {} (valid: {}, fresh would be >= {}); \
                         model entry {:?}",
                        i,
                        op,
                        got.seq,
                        v,
                        before,
                        m.live.get(&k)
                    ),
                    None if fresh => m.computed(k, got.seq, now),
                    None => prop_assert!(
                        false,
                        "op {}: {:?} at t={:?} returned stale token {} (nothing valid, fresh \
                         would be >= {}); model entry {:?}",
                        i,
                        op,
                        now,
                        got.seq,
                        before,
                        m.live.get(&k)
                    ),
                }
            }
            Op::Delete(how, k) => {
                delete(how, k);
                m.delete(how, k);
            }
            Op::SetTimeout(t, tm) => {
                on_handle!(t, |h| h.set_cache_timeout(tm.timeout()));
                m.timeouts.insert(t, tm);
            }
            Op::Advance(s) => CLOCK.advance(Duration::from_secs(s)),
            Op::Maintain => {
                MEMO.run_maintenance();
                SMALL.run_maintenance();
                SMALL.flush();
                let e = SMALL.stats().entries;
                prop_assert!(e <= SMALL_CAP, "op {}: SMALL holds {} entries > capacity", i, e);
            }
            Op::Clear { small } => {
                if small {
                    SMALL.clear();
                    m.live.retain(|k, _| k.t.strict());
                } else {
                    MEMO.clear();
                    m.live.retain(|k, _| !k.t.strict());
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(256),
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    })]

    /// Every call returns the model's valid token or a fresh one (on `MEMO`: the valid one).
    #[test]
    fn memoizer_never_serves_what_the_model_forbids(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        run(&ops)?;
    }
}

/// Hand-written sequences that each form of delete must pass (regressions and a smoke test
/// that the model itself is strict enough to catch a stale result).
#[test]
fn every_delete_form_invalidates_on_every_target() {
    for t in TARGETS {
        for how in HOWS {
            let k = key(t, 1, 2, 1);
            // Same arguments, another receiver (for free functions: the same key).
            let other_receiver = key(t, 2, 2, 1);
            // Same receiver, other arguments.
            let other_args = key(t, 1, 3, 0);
            let ops = vec![
                Op::SetTimeout(t, Tm::Never),
                Op::Call(k),
                Op::Call(other_receiver),
                Op::Call(other_args),
                Op::Call(k),
                Op::Delete(how, k),
                Op::Call(k),
                Op::Call(other_receiver),
                Op::Call(other_args),
                Op::Call(k),
            ];
            if let Err(e) = run(&ops) {
                panic!("{how:?} on {t:?}: {e}");
            }
        }
    }
}

/// The model is not vacuous: a token that survives a delete fails the check.
#[test]
fn the_model_rejects_a_stale_token() {
    let mut m = Model::new();
    let k = key(F1, 0, 1, 0);
    m.computed(k, 10, Duration::ZERO);
    assert_eq!(m.valid(&k, Duration::from_secs(2)), Some(10));
    assert_eq!(m.valid(&k, Duration::from_secs(DEFAULT_SECS)), None, "past its timeout");
    m.delete(How::NameArgs, k);
    assert_eq!(m.valid(&k, Duration::ZERO), None, "deleted");
    m.computed(key(Bal, 1, 1, 0), 11, Duration::ZERO);
    m.computed(key(Bal, 2, 1, 0), 12, Duration::ZERO);
    m.delete(How::MacroRecv, key(Bal, 1, 0, 0));
    assert_eq!(m.valid(&key(Bal, 1, 1, 0), Duration::ZERO), None);
    assert_eq!(m.valid(&key(Bal, 2, 1, 0), Duration::ZERO), Some(12), "other receiver kept");
}
