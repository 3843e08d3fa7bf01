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
//! `PROPTEST_CASES` raises the case count (default 256).
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use memokit::{memoize, Error, ManualClock, MemoIdentity, Memoizer, Timeout};
use proptest::prelude::*;

/// The default timeout of both memoizers (seconds); clock advances are 0..=4 s.
const DEFAULT_SECS: u64 = 3;
/// Capacity of the memoizer under pressure (16 keys compete for it).
const SMALL_CAP: u64 = 4;

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
static MEMO: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder()
        .clock(CLOCK.clone())
        .default_timeout(DEFAULT_SECS)
        .build()
        .expect("memoizer")
});
static SMALL: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder()
        .clock(CLOCK.clone())
        .default_timeout(DEFAULT_SECS)
        .capacity(SMALL_CAP)
        .build()
        .expect("small memoizer")
});

/// The memoized functions and methods under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    /// `f1(a: u8)` on `MEMO`.
    F1,
    /// `f2(a: u8, b: &str) -> Arc<Token>` on `MEMO` (borrowed argument, `Arc` result).
    F2,
    /// `twin::f1(a: u8)`: same name and signature as `f1`, another definition.
    Twin,
    /// `Acct::bal(&self, a: u8)` on `MEMO`.
    Bal,
    /// `Acct::other(&self, a: u8)`: a second method of the same receiver type.
    Other,
    /// `User::perm(&self, a: u8)`: another receiver type whose ids overlap `Acct`'s.
    Perm,
    /// `s1(a: u8)` on `SMALL`.
    S1,
    /// `Slot::get(&self, a: u8)` on `SMALL`.
    SGet,
}

use Target::*;

const TARGETS: [Target; 8] = [F1, F2, Twin, Bal, Other, Perm, S1, SGet];

impl Target {
    fn is_method(self) -> bool {
        matches!(self, Bal | Other | Perm | SGet)
    }
    /// On `MEMO`: under capacity, so a valid result must be served.
    fn strict(self) -> bool {
        !matches!(self, S1 | SGet)
    }
}

/// One result's identity: function, receiver id (0 for free functions), arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    t: Target,
    recv: u8,
    a: u8,
    b: u8,
}

fn key(t: Target, recv: u8, a: u8, b: u8) -> Key {
    Key { t, recv: if t.is_method() { recv } else { 0 }, a, b: if t == F2 { b } else { 0 } }
}

/// What a real computation returns: a fresh sequence number and the key it was computed for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    seq: u64,
    key: Key,
}

static SEQ: AtomicU64 = AtomicU64::new(1);

fn token(key: Key) -> Token {
    Token { seq: SEQ.fetch_add(1, SeqCst), key }
}

const B: [&str; 2] = ["x", "y"];

fn b_index(b: &str) -> u8 {
    B.iter().position(|s| *s == b).expect("b in domain") as u8
}

#[memoize(memoizer = &MEMO)]
fn f1(a: u8) -> Token {
    token(key(F1, 0, a, 0))
}

#[memoize(memoizer = &MEMO)]
fn f2(a: u8, b: &str) -> Arc<Token> {
    Arc::new(token(key(F2, 0, a, b_index(b))))
}

mod twin {
    use super::*;

    #[memoize(memoizer = &MEMO)]
    pub(super) fn f1(a: u8) -> Token {
        token(key(Twin, 0, a, 0))
    }
}

#[memoize(memoizer = &SMALL)]
fn s1(a: u8) -> Token {
    token(key(S1, 0, a, 0))
}

/// A receiver whose identity is `id` only: `note` differs between instances of one id.
#[derive(MemoIdentity)]
struct Acct {
    #[memo(id)]
    id: u32,
    note: u64,
}

impl Acct {
    #[memoize(memoizer = &MEMO)]
    fn bal(&self, a: u8) -> Token {
        let _ = self.note;
        token(key(Bal, self.id as u8, a, 0))
    }

    #[memoize(memoizer = &MEMO)]
    fn other(&self, a: u8) -> Token {
        token(key(Other, self.id as u8, a, 0))
    }
}

#[derive(MemoIdentity)]
struct User(#[memo(id)] u64);

impl User {
    #[memoize(memoizer = &MEMO)]
    fn perm(&self, a: u8) -> Token {
        token(key(Perm, self.0 as u8, a, 0))
    }
}

#[derive(MemoIdentity)]
struct Slot(#[memo(id)] u8);

impl Slot {
    #[memoize(memoizer = &SMALL)]
    fn get(&self, a: u8) -> Token {
        token(key(SGet, self.0, a, 0))
    }
}

/// A fresh `Acct` instance for id `recv` (instances of one id share results).
fn acct(recv: u8) -> Acct {
    Acct { id: u32::from(recv), note: SEQ.load(SeqCst) }
}

/// Runs `$body` with `$h` bound to the handle (`f_memo()`) of target `$t`.
macro_rules! on_handle {
    ($t:expr, |$h:ident| $body:expr) => {
        match $t {
            F1 => {
                let $h = f1_memo();
                $body
            }
            F2 => {
                let $h = f2_memo();
                $body
            }
            Twin => {
                let $h = twin::f1_memo();
                $body
            }
            Bal => {
                let $h = Acct::bal_memo();
                $body
            }
            Other => {
                let $h = Acct::other_memo();
                $body
            }
            Perm => {
                let $h = User::perm_memo();
                $body
            }
            S1 => {
                let $h = s1_memo();
                $body
            }
            SGet => {
                let $h = Slot::get_memo();
                $body
            }
        }
    };
}

fn call(k: Key) -> Token {
    let Key { t, recv, a, b } = k;
    match t {
        F1 => f1(a),
        F2 => (*f2(a, B[b as usize])).clone(),
        Twin => twin::f1(a),
        Bal => acct(recv).bal(a),
        Other => acct(recv).other(a),
        Perm => User(u64::from(recv)).perm(a),
        S1 => s1(a),
        SGet => Slot(recv).get(a),
    }
}

/// The forms of deletion. For free functions the receiver forms fall back to the nearest
/// free-function form (see [`scope`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// `delete_memoized!(f)` / `delete_memoized!(Type::m)`.
    Macro,
    /// `delete_memoized!(f, args..)` / `delete_memoized!(obj.m, a)`.
    MacroArgs,
    /// `delete_memoized!(obj.m)` (free functions: `delete_memoized!(f)`).
    MacroRecv,
    /// `delete_memoized!(Type::m, &obj, a)` (free functions: `delete_memoized!(f, args..)`).
    MacroTypeArgs,
    /// `delete_memoized_verhash!(f)` / `delete_memoized_verhash!(Type::m)`.
    Verhash,
    /// `delete_memoized_verhash!(obj.m)` (free functions: `delete_memoized_verhash!(f)`).
    VerhashRecv,
    /// `Memoizer::delete_memoized(name)`.
    Name,
    /// `Memoizer::delete_memoized_args(name, &args)`.
    NameArgs,
    /// `Memoizer::delete_memoized_args` with a wrong argument type: an error, no effect.
    NameArgsWrongType,
    /// `Memoizer::delete_memoized_verhash(name)`.
    NameVerhash,
    /// `f_memo().delete(&args)`.
    Handle,
    /// `f_memo().delete_all()`.
    HandleAll,
    /// `f_memo().delete_verhash()`.
    HandleVerhash,
}

const HOWS: [How; 13] = [
    How::Macro,
    How::MacroArgs,
    How::MacroRecv,
    How::MacroTypeArgs,
    How::Verhash,
    How::VerhashRecv,
    How::Name,
    How::NameArgs,
    How::NameArgsWrongType,
    How::NameVerhash,
    How::Handle,
    How::HandleAll,
    How::HandleVerhash,
];

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

fn memoizer_of(t: Target) -> &'static Memoizer {
    if t.strict() {
        &MEMO
    } else {
        &SMALL
    }
}

/// Performs a delete of form `how` on the results of `k` (its function, receiver, arguments).
fn delete(how: How, k: Key) {
    let Key { t, recv, a, b } = k;
    let bs = B[b as usize];
    match how {
        How::Macro | How::MacroRecv if !t.is_method() => match t {
            F1 => memokit::delete_memoized!(f1),
            F2 => memokit::delete_memoized!(f2),
            Twin => memokit::delete_memoized!(twin::f1),
            S1 => memokit::delete_memoized!(s1),
            _ => unreachable!(),
        },
        How::MacroArgs | How::MacroTypeArgs if !t.is_method() => match t {
            F1 => memokit::delete_memoized!(f1, a),
            F2 => memokit::delete_memoized!(f2, a, bs),
            Twin => memokit::delete_memoized!(twin::f1, a),
            S1 => memokit::delete_memoized!(s1, a),
            _ => unreachable!(),
        },
        How::Verhash | How::VerhashRecv if !t.is_method() => match t {
            F1 => memokit::delete_memoized_verhash!(f1),
            F2 => memokit::delete_memoized_verhash!(f2),
            Twin => memokit::delete_memoized_verhash!(twin::f1),
            S1 => memokit::delete_memoized_verhash!(s1),
            _ => unreachable!(),
        },
        How::Macro => match t {
            Bal => memokit::delete_memoized!(Acct::bal),
            Other => memokit::delete_memoized!(Acct::other),
            Perm => memokit::delete_memoized!(User::perm),
            SGet => memokit::delete_memoized!(Slot::get),
            _ => unreachable!(),
        },
        How::MacroArgs => match t {
            Bal => memokit::delete_memoized!(acct(recv).bal, a),
            Other => memokit::delete_memoized!(acct(recv).other, a),
            Perm => memokit::delete_memoized!(User(u64::from(recv)).perm, a),
            SGet => memokit::delete_memoized!(Slot(recv).get, a),
            _ => unreachable!(),
        },
        How::MacroRecv => match t {
            Bal => memokit::delete_memoized!(acct(recv).bal),
            Other => memokit::delete_memoized!(acct(recv).other),
            Perm => memokit::delete_memoized!(User(u64::from(recv)).perm),
            SGet => memokit::delete_memoized!(Slot(recv).get),
            _ => unreachable!(),
        },
        How::MacroTypeArgs => match t {
            Bal => memokit::delete_memoized!(Acct::bal, &acct(recv), a),
            Other => memokit::delete_memoized!(Acct::other, &acct(recv), a),
            Perm => memokit::delete_memoized!(User::perm, &User(u64::from(recv)), a),
            SGet => memokit::delete_memoized!(Slot::get, &Slot(recv), a),
            _ => unreachable!(),
        },
        How::Verhash => match t {
            Bal => memokit::delete_memoized_verhash!(Acct::bal),
            Other => memokit::delete_memoized_verhash!(Acct::other),
            Perm => memokit::delete_memoized_verhash!(User::perm),
            SGet => memokit::delete_memoized_verhash!(Slot::get),
            _ => unreachable!(),
        },
        How::VerhashRecv => match t {
            Bal => memokit::delete_memoized_verhash!(acct(recv).bal),
            Other => memokit::delete_memoized_verhash!(acct(recv).other),
            Perm => memokit::delete_memoized_verhash!(User(u64::from(recv)).perm),
            SGet => memokit::delete_memoized_verhash!(Slot(recv).get),
            _ => unreachable!(),
        },
        How::Name => {
            let name = on_handle!(t, |h| h.name());
            memoizer_of(t).delete_memoized(name).expect("delete by name");
        }
        How::NameVerhash => {
            let name = on_handle!(t, |h| h.name());
            memoizer_of(t).delete_memoized_verhash(name).expect("verhash by name");
        }
        How::NameArgs | How::NameArgsWrongType => {
            let name = on_handle!(t, |h| h.name());
            let m = memoizer_of(t);
            let r = if how == How::NameArgsWrongType {
                // Right values, wrong types: u64 where the function takes u8.
                m.delete_memoized_args(name, &(u64::from(recv), u64::from(a)))
            } else {
                match t {
                    F1 | Twin | S1 => m.delete_memoized_args(name, &(a,)),
                    F2 => m.delete_memoized_args(name, &(a, bs.to_string())),
                    Bal | Other => m.delete_memoized_args(name, &(u32::from(recv), a)),
                    Perm => m.delete_memoized_args(name, &(u64::from(recv), a)),
                    SGet => m.delete_memoized_args(name, &(recv, a)),
                }
            };
            match (how, r) {
                (How::NameArgs, Ok(())) => {}
                (How::NameArgsWrongType, Err(Error::ArgumentTypes { .. })) => {}
                (_, r) => panic!("{how:?} on {t:?}: unexpected {r:?}"),
            }
        }
        How::Handle => match t {
            F1 => f1_memo().delete(&(a,)),
            F2 => f2_memo().delete(&(a, bs.to_string())),
            Twin => twin::f1_memo().delete(&(a,)),
            S1 => s1_memo().delete(&(a,)),
            Bal => Acct::bal_memo().delete(&(u32::from(recv), a)),
            Other => Acct::other_memo().delete(&(u32::from(recv), a)),
            Perm => User::perm_memo().delete(&(u64::from(recv), a)),
            SGet => Slot::get_memo().delete(&(recv, a)),
        },
        How::HandleAll => on_handle!(t, |h| h.delete_all()),
        How::HandleVerhash => on_handle!(t, |h| h.delete_verhash()),
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
