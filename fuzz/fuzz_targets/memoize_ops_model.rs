//! The input of `memoize_ops` (an `Op` list decoded by `arbitrary`, with arguments from small
//! domains) and its model: a `HashMap` from (function, key) to the run id of the value stored
//! and its deadline, which checks every call against what a memoizer may return.
//!
//! Every body run returns a fresh run id (`run_id`), so a value says which run made it, and a
//! call that ran no body (`runs()` unchanged) was served from the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arbitrary::Arbitrary;
use memokit::Timeout;

/// The memoizer's default timeout. Timeouts and clock advances stay within seconds so that the
/// process-wide clock lasts: at ~5k inputs a second it reaches `CLOCK_LIMIT` after hours.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bodies that ran so far; each run returns the new count, so a value says which run made it.
static RUNS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn run_id() -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst) + 1
}

pub(crate) fn runs() -> u64 {
    RUNS.load(Ordering::SeqCst)
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Func {
    Pair,
    Text,
    Checked,
    Keyed,
    Scaled,
}

pub(crate) const FUNCS: [Func; 5] =
    [Func::Pair, Func::Text, Func::Checked, Func::Keyed, Func::Scaled];

/// The key of one stored result in the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Pair(u8, u8),
    Text(String),
    Checked(u8),
    Keyed(u8),
    Scaled(u8, u8),
}

impl Key {
    pub(crate) fn func(&self) -> Func {
        match self {
            Key::Pair(..) => Func::Pair,
            Key::Text(_) => Func::Text,
            Key::Checked(_) => Func::Checked,
            Key::Keyed(_) => Func::Keyed,
            Key::Scaled(..) => Func::Scaled,
        }
    }
}

/// A short string over "ab" (so calls repeat).
#[derive(Clone, Debug)]
pub(crate) struct Word(pub(crate) String);

impl<'a> Arbitrary<'a> for Word {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(0..=2usize)?;
        let mut s = String::new();
        for _ in 0..n {
            s.push(if u.arbitrary::<bool>()? { 'a' } else { 'b' });
        }
        Ok(Word(s))
    }
}

#[derive(Arbitrary, Clone, Copy, Debug)]
pub(crate) enum TimeoutSel {
    Default,
    Never,
    Zero,
    Secs(u8),
    Millis(u16),
}

impl TimeoutSel {
    pub(crate) fn timeout(self) -> Timeout {
        match self {
            TimeoutSel::Default => Timeout::Default,
            TimeoutSel::Never => Timeout::Never,
            TimeoutSel::Zero => Timeout::from(0),
            TimeoutSel::Secs(s) => Timeout::from(u64::from(s % 16)),
            TimeoutSel::Millis(ms) => Timeout::from(Duration::from_millis(u64::from(ms % 16_000))),
        }
    }
}

/// How to delete one result.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub(crate) enum DeleteHow {
    Macro,
    Handle,
    ByName,
}

/// How to delete every result of a function.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub(crate) enum DeleteAllHow {
    Macro,
    Handle,
    ByName,
    Verhash,
    VerhashHandle,
    VerhashByName,
}

#[derive(Arbitrary, Debug)]
pub(crate) enum Op {
    Pair(u8, u8),
    Text(Word),
    Checked(u8),
    Keyed(u8, u8),
    Scaled {
        obj: u8,
        x: u8,
    },
    DeletePair {
        a: u8,
        b: u8,
        how: DeleteHow,
    },
    DeleteText {
        s: Word,
        how: DeleteHow,
    },
    DeleteChecked {
        x: u8,
        how: DeleteHow,
    },
    DeleteKeyed {
        a: u8,
        tag: u8,
        how: DeleteHow,
    },
    /// `delete_memoized!(Obj::scaled, &obj, x)`, `obj.scaled` form, handle or by name.
    DeleteScaled {
        obj: u8,
        x: u8,
        how: DeleteHow,
        instance_form: bool,
    },
    DeleteAll {
        func: Func,
        how: DeleteAllHow,
    },
    /// `delete_memoized!(obj.scaled)`: every result of one receiver.
    DeleteReceiver {
        obj: u8,
    },
    /// A by-name delete with an arbitrary name: must fail with `UnknownFunction` unless it is
    /// one of ours.
    DeleteName(String),
    /// `delete_memoized_args` with the wrong argument type: must fail, and delete nothing.
    DeleteWrongType(Func),
    SetTimeout {
        func: Func,
        t: TimeoutSel,
    },
    /// Up to 20 s.
    Advance {
        millis: u16,
    },
    Flush,
    Maintain,
}

/// What the memoizer may hold: the value (run id) and deadline per key, each function's
/// timeout, and the calls and hits seen.
pub(crate) struct Model {
    pub(crate) now: u64,
    pub(crate) values: HashMap<Key, (u64, u64)>,
    pub(crate) timeouts: HashMap<Func, Timeout>,
    pub(crate) calls: u64,
    pub(crate) hits: u64,
}

impl Model {
    fn visible(&self, k: &Key) -> Option<u64> {
        let &(v, deadline) = self.values.get(k)?;
        (self.now < deadline).then_some(v)
    }

    /// The deadline a result stored now gets (`None`: not stored).
    fn deadline(&self, f: Func) -> Option<u64> {
        let d = match self.timeouts[&f] {
            Timeout::Default => DEFAULT_TIMEOUT,
            Timeout::Never => return Some(u64::MAX),
            Timeout::After(d) => d,
        };
        if d.is_zero() {
            return None;
        }
        Some(self.now.saturating_add(d.as_nanos() as u64))
    }

    /// Checks one call of key `k`: `before` is the run count before the call, `got` the id of
    /// the value returned (and `Some(id)`/`None` for stored/not-stored results).
    pub(crate) fn call(
        &mut self,
        step: usize,
        op: &Op,
        k: Key,
        before: u64,
        got: u64,
        storable: bool,
    ) {
        let after = runs();
        let want = self.visible(&k);
        self.calls += 1;
        if after == before {
            // Served from the cache: must be the model's valid value.
            if want != Some(got) {
                panic!(
                    "step {step} ({op:?}): served {got} from the cache for {k:?} but the model \
                     says {want:?} at t={}ns (stored: {:?})",
                    self.now,
                    self.values.get(&k)
                );
            }
            self.hits += 1;
            return;
        }
        if after != before + 1 || got != after {
            panic!(
                "step {step} ({op:?}): the body ran {} times and the call returned {got} \
                 (fresh would be {after})",
                after - before
            );
        }
        if let Some(w) = want {
            panic!(
                "step {step} ({op:?}): recomputed {k:?} although {w} is valid until {:?} (now \
                 {}ns, capacity not reached)",
                self.values.get(&k),
                self.now
            );
        }
        if storable {
            if let Some(deadline) = self.deadline(k.func()) {
                self.values.insert(k, (got, deadline));
            }
        }
    }

    pub(crate) fn delete_all(&mut self, f: Func) {
        self.values.retain(|k, _| k.func() != f);
    }
}
