//! Deletes racing calls (review of deletes and versions): a data version is bumped before
//! each delete; every call that begins after a delete returned must see a value computed from
//! data at least as new as that delete's (no stale result survives any form of delete).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::{Duration, Instant};

use memokit::{memoize, MemoIdentity, Memoizer, Timeout};

static MEMO: LazyLock<Memoizer> =
    LazyLock::new(|| Memoizer::builder().capacity(1 << 16).build().expect("memoizer"));

/// One data version per function under test, and the version whose delete has returned.
struct Data {
    data: AtomicU64,
    done: AtomicU64,
}

impl Data {
    const fn new() -> Self {
        Data { data: AtomicU64::new(0), done: AtomicU64::new(0) }
    }
    fn read(&self) -> u64 {
        let v = self.data.load(SeqCst);
        // Give deletes a chance to land while the computation runs.
        for _ in 0..(v % 7) {
            thread::yield_now();
        }
        v
    }
}

const KEYS: u64 = 4;

fn run(data: &'static Data, call: fn(u64) -> u64, delete: fn(u64)) {
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..6)
        .map(|t| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut i = t;
                while !stop.load(SeqCst) {
                    let k = i % KEYS;
                    i += 1;
                    let done = data.done.load(SeqCst);
                    let got = call(k);
                    assert!(
                        got >= done,
                        "key {k}: got a result of data {got} after delete of {done}"
                    );
                }
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_millis(1500);
    let mut n = 0u64;
    while Instant::now() < end {
        let v = data.data.fetch_add(1, SeqCst) + 1;
        delete(n % KEYS);
        n += 1;
        data.done.store(v, SeqCst);
        let got = call(n % KEYS);
        assert!(got >= v, "after the delete of {v}, got {got}");
    }
    stop.store(true, SeqCst);
    for c in callers {
        c.join().expect("caller");
    }
}

macro_rules! fun {
    ($f:ident, $d:ident) => {
        static $d: Data = Data::new();
        #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
        fn $f(k: u64) -> u64 {
            let _ = k;
            $d.read()
        }
    };
}

fun!(f_all, D_ALL);
fun!(f_verhash, D_VERHASH);
fun!(f_name_all, D_NAME_ALL);
fun!(f_name_verhash, D_NAME_VERHASH);

/// Per-argument deletes: only the key deleted is versioned, so the data is per key.
static D_ARGS: [Data; KEYS as usize] = [Data::new(), Data::new(), Data::new(), Data::new()];
#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn f_args(k: u64) -> u64 {
    D_ARGS[k as usize].read()
}

fn run_args(call: fn(u64) -> u64, delete: fn(u64)) {
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..6)
        .map(|t| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut i = t;
                while !stop.load(SeqCst) {
                    let k = i % KEYS;
                    i += 1;
                    let done = D_ARGS[k as usize].done.load(SeqCst);
                    let got = call(k);
                    assert!(got >= done, "key {k}: got {got} after delete of {done}");
                }
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_millis(1500);
    let mut n = 0u64;
    while Instant::now() < end {
        let k = n % KEYS;
        n += 1;
        let d = &D_ARGS[k as usize];
        let v = d.data.fetch_add(1, SeqCst) + 1;
        delete(k);
        d.done.store(v, SeqCst);
        let got = call(k);
        assert!(got >= v, "key {k}: after the delete of {v}, got {got}");
    }
    stop.store(true, SeqCst);
    for c in callers {
        c.join().expect("caller");
    }
}

#[test]
fn delete_all_racing_calls() {
    run(&D_ALL, f_all, |_| memokit::delete_memoized!(f_all));
}

#[test]
fn delete_verhash_racing_calls() {
    run(&D_VERHASH, f_verhash, |_| memokit::delete_memoized_verhash!(f_verhash));
}

#[test]
fn by_name_deletes_racing_calls() {
    run(&D_NAME_ALL, f_name_all, |_| {
        MEMO.delete_memoized(f_name_all_memo().name()).expect("known")
    });
    run(&D_NAME_VERHASH, f_name_verhash, |_| {
        MEMO.delete_memoized_verhash(f_name_verhash_memo().name()).expect("known")
    });
}

#[test]
fn argument_deletes_racing_calls() {
    run_args(f_args, |k| memokit::delete_memoized!(f_args, k));
}

#[derive(MemoIdentity)]
struct Obj(#[memo(id)] u64);

static D_M_INSTANCE: Data = Data::new();
static D_M_TYPE: Data = Data::new();
static D_M_VERHASH: Data = Data::new();

impl Obj {
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn m_instance(&self, k: u64) -> u64 {
        let _ = (k, self.0);
        D_M_INSTANCE.read()
    }
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn m_type(&self, k: u64) -> u64 {
        let _ = (k, self.0);
        D_M_TYPE.read()
    }
    #[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
    fn m_verhash(&self, k: u64) -> u64 {
        let _ = (k, self.0);
        D_M_VERHASH.read()
    }
}

#[test]
fn per_instance_deletes_racing_calls() {
    run(&D_M_INSTANCE, |k| Obj(7).m_instance(k), |_| memokit::delete_memoized!(Obj(7).m_instance));
}

#[test]
fn method_deletes_racing_calls() {
    run(&D_M_TYPE, |k| Obj(7).m_type(k), |_| memokit::delete_memoized!(Obj::m_type));
    run(
        &D_M_VERHASH,
        |k| Obj(7).m_verhash(k),
        |_| MEMO.delete_memoized_verhash(Obj::m_verhash_memo().name()).expect("known"),
    );
}
