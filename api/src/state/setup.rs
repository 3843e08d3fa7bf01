//! A function's set-up: its state made at its first call or `f_memo()` (the `memoizer` and
//! `make_name` expressions run, the name registered with the memoizer), once, with a clear
//! panic for an expression that uses the function it sets up.

use std::any::TypeId;
use std::cell::RefCell;

use parking_lot::{Mutex, RwLock};

use super::{delete_any, FnKeys, FnSlot, FnSpec, FnState, Ops, Receivers};
use crate::memoizer::Registered;
use crate::stats::Counters;

thread_local! {
    /// The functions whose set-up (`init`) runs on this thread, by slot address, with their
    /// names once known.
    static SETTING_UP: RefCell<Vec<(usize, Option<String>)>> = const { RefCell::new(Vec::new()) };
}

/// A function's set-up running on this thread: its `timeout`, `memoizer` and `make_name`
/// expressions are the user's code, and one that uses the function itself would wait for its
/// own set-up (a reentrant `OnceLock` initialisation, which hangs). Detected, to panic instead.
struct SettingUp(usize);

impl SettingUp {
    /// Marks `slot`'s set-up as running on this thread; if it already is (reentry), the
    /// function's name, if known yet. (In a thread-local destructor, after this thread's list
    /// is gone, nothing is checked.)
    fn enter(slot: &'static FnSlot) -> Result<Self, Option<String>> {
        let addr = std::ptr::from_ref(slot) as usize;
        let running = SETTING_UP.try_with(|s| {
            let mut s = s.borrow_mut();
            let running = s.iter().find(|(a, _)| *a == addr).map(|(_, name)| name.clone());
            if running.is_none() {
                s.push((addr, None));
            }
            running
        });
        match running {
            Ok(Some(name)) => Err(name),
            _ => Ok(SettingUp(addr)),
        }
    }

    /// Records the function's name, for the message of a reentry.
    fn named(&self, name: &str) {
        let _ = SETTING_UP.try_with(|s| {
            if let Some(e) = s.borrow_mut().iter_mut().find(|(a, _)| *a == self.0) {
                e.1 = Some(name.to_owned());
            }
        });
    }
}

impl Drop for SettingUp {
    fn drop(&mut self) {
        let _ = SETTING_UP.try_with(|s| s.borrow_mut().retain(|(a, _)| *a != self.0));
    }
}

#[cold]
#[inline(never)]
fn init<A: 'static>(
    slot: &'static FnSlot,
    spec: impl FnOnce() -> FnSpec,
    ops: Ops<A>,
) -> &'static FnState {
    crate::memoizer::note_function_used();
    let setting_up = match SettingUp::enter(slot) {
        Ok(s) => s,
        // Not `spec()` for the name: it runs the `timeout` expression, which may be the one
        // that uses the function.
        Err(name) => {
            let name = name.map_or_else(|| "a memoized function".to_owned(), |n| format!("`{n}`"));
            panic!(
                "memokit: the `timeout`, `memoizer` or `make_name` expression of {name} uses the \
                 function (a call or its handle) while it is set up (they run once, at its first \
                 use, and the function is not ready before they return); they must not use the \
                 function"
            );
        }
    };
    slot.0.get_or_init(|| {
        let spec = spec();
        setting_up.named(&spec.name);
        let memoizer = match spec.memoizer {
            Some(m) => m(),
            None => crate::global(),
        };
        let name = match spec.make_name {
            Some(mk) => mk(&spec.name),
            None => spec.name,
        };
        event!(debug, function = %name, "memoized function registered");
        memoizer.register(
            &name,
            Registered {
                slot,
                args_type: TypeId::of::<A>(),
                args_type_name: std::any::type_name::<A>(),
                delete_any: delete_any::<A>,
            },
        );
        FnState {
            keys: FnKeys::new(),
            name,
            memoizer,
            engine: memoizer.inner.engine.clone(),
            timeout: RwLock::new(spec.timeout),
            version: Mutex::new(None),
            receivers: Mutex::new(Receivers { prune_at: 64, ..Receivers::default() }),
            recv_hasher: ahash::RandomState::new(),
            counters: Counters::default(),
            ops: Box::new(ops),
        }
    })
}

/// The handle of a function, initialising its state on first use (used by `f_memo()`).
#[inline]
pub fn handle<A: 'static>(
    slot: &'static FnSlot,
    spec: impl FnOnce() -> FnSpec,
    ops: Ops<A>,
) -> crate::Memoized<A> {
    let state = match slot.get() {
        Some(s) => s,
        None => init(slot, spec, ops),
    };
    crate::Memoized { state, ops }
}
