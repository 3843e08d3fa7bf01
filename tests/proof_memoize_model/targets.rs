//! The system side of `proof_memoize_model.rs`: two memoizers on one manual clock, the eight
//! memoized functions and methods under test, a call of each, and every form of delete.
//!
//! Every real computation returns a [`Token`]: a fresh number from a global counter and the
//! key it was computed for, so a stale result, or one from another function or another
//! receiver, is visible.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};

use memokit::{memoize, Error, ManualClock, MemoIdentity, Memoizer};

/// The default timeout of both memoizers (seconds); clock advances are 0..=4 s.
pub(crate) const DEFAULT_SECS: u64 = 3;
/// Capacity of the memoizer under pressure (16 keys compete for it).
pub(crate) const SMALL_CAP: u64 = 4;

pub(crate) static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::new);
pub(crate) static MEMO: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder()
        .clock(CLOCK.clone())
        .default_timeout(DEFAULT_SECS)
        .build()
        .expect("memoizer")
});
pub(crate) static SMALL: LazyLock<Memoizer> = LazyLock::new(|| {
    Memoizer::builder()
        .clock(CLOCK.clone())
        .default_timeout(DEFAULT_SECS)
        .capacity(SMALL_CAP)
        .build()
        .expect("small memoizer")
});

/// The memoized functions and methods under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
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

pub(crate) use Target::*;

pub(crate) const TARGETS: [Target; 8] = [F1, F2, Twin, Bal, Other, Perm, S1, SGet];

impl Target {
    pub(crate) fn is_method(self) -> bool {
        matches!(self, Bal | Other | Perm | SGet)
    }
    /// On `MEMO`: under capacity, so a valid result must be served.
    pub(crate) fn strict(self) -> bool {
        !matches!(self, S1 | SGet)
    }
}

/// One result's identity: function, receiver id (0 for free functions), arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) t: Target,
    pub(crate) recv: u8,
    pub(crate) a: u8,
    pub(crate) b: u8,
}

pub(crate) fn key(t: Target, recv: u8, a: u8, b: u8) -> Key {
    Key { t, recv: if t.is_method() { recv } else { 0 }, a, b: if t == F2 { b } else { 0 } }
}

/// What a real computation returns: a fresh sequence number and the key it was computed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) seq: u64,
    pub(crate) key: Key,
}

pub(crate) static SEQ: AtomicU64 = AtomicU64::new(1);

fn token(key: Key) -> Token {
    Token { seq: SEQ.fetch_add(1, SeqCst), key }
}

const B: [&str; 2] = ["x", "y"];

fn b_index(b: &str) -> u8 {
    B.iter().position(|s| *s == b).expect("b in domain") as u8
}

#[memoize(memoizer = &MEMO)]
pub(crate) fn f1(a: u8) -> Token {
    token(key(F1, 0, a, 0))
}

#[memoize(memoizer = &MEMO)]
pub(crate) fn f2(a: u8, b: &str) -> Arc<Token> {
    Arc::new(token(key(F2, 0, a, b_index(b))))
}

pub(crate) mod twin {
    use super::*;

    #[memoize(memoizer = &MEMO)]
    pub(crate) fn f1(a: u8) -> Token {
        token(key(Twin, 0, a, 0))
    }
}

#[memoize(memoizer = &SMALL)]
pub(crate) fn s1(a: u8) -> Token {
    token(key(S1, 0, a, 0))
}

/// A receiver whose identity is `id` only: `note` differs between instances of one id.
#[derive(MemoIdentity)]
pub(crate) struct Acct {
    #[memo(id)]
    id: u32,
    note: u64,
}

impl Acct {
    #[memoize(memoizer = &MEMO)]
    pub(crate) fn bal(&self, a: u8) -> Token {
        let _ = self.note;
        token(key(Bal, self.id as u8, a, 0))
    }

    #[memoize(memoizer = &MEMO)]
    pub(crate) fn other(&self, a: u8) -> Token {
        token(key(Other, self.id as u8, a, 0))
    }
}

#[derive(MemoIdentity)]
pub(crate) struct User(#[memo(id)] u64);

impl User {
    #[memoize(memoizer = &MEMO)]
    pub(crate) fn perm(&self, a: u8) -> Token {
        token(key(Perm, self.0 as u8, a, 0))
    }
}

#[derive(MemoIdentity)]
pub(crate) struct Slot(#[memo(id)] u8);

impl Slot {
    #[memoize(memoizer = &SMALL)]
    pub(crate) fn get(&self, a: u8) -> Token {
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
pub(crate) use on_handle;

pub(crate) fn call(k: Key) -> Token {
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
/// free-function form (see `scope` in `proof_memoize_model.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
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

pub(crate) const HOWS: [How; 13] = [
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

fn memoizer_of(t: Target) -> &'static Memoizer {
    if t.strict() {
        &MEMO
    } else {
        &SMALL
    }
}

/// Performs a delete of form `how` on the results of `k` (its function, receiver, arguments).
pub(crate) fn delete(how: How, k: Key) {
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
