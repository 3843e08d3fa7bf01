//! Review of `key =` (the call and every delete form reach the same key) and of receiver
//! records (a running call keeps its record; however calls end, records are pruned after).
mod common;

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use common::Gate;
use memokit::{delete_memoized, memoize, ManualClock, MemoIdentity, Memoizer};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);

/// For each delete form: the call is stored (a second call hits), then the delete makes the
/// next call recompute.
fn check(what: &str, runs: &AtomicU64, call: &dyn Fn(), deletes: &[(&str, &dyn Fn())]) {
    for (form, delete) in deletes {
        call();
        let before = runs.load(SeqCst);
        call();
        assert_eq!(runs.load(SeqCst), before, "{what}: the second call is a hit");
        delete();
        call();
        assert_eq!(runs.load(SeqCst), before + 1, "{what}: delete by {form} missed the call's key");
    }
}

fn by_name<A: std::any::Any>(name: &str, args: &A) {
    MEMO.delete_memoized_args(name, args).expect("by-name delete");
}

// --- by-value arguments ------------------------------------------------------------------

static V_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a)]
fn v_key_a(a: u64, b: u64) -> u64 {
    V_RUNS.fetch_add(1, SeqCst);
    a + b
}

#[test]
fn key_naming_a_by_value_copy_argument() {
    check(
        "key = a (u64)",
        &V_RUNS,
        &|| {
            v_key_a(1, 2);
        },
        &[
            ("f_memo().delete", &|| v_key_a_memo().delete(&(1, 99))),
            ("delete_memoized!", &|| delete_memoized!(v_key_a, 1, 98)),
            ("by name", &|| by_name(v_key_a_memo().name(), &(1u64, 97u64))),
        ],
    );
    assert_eq!(v_key_a_memo().make_cache_key(&(1, 5)), v_key_a_memo().make_cache_key(&(1, 6)));
    assert_ne!(v_key_a_memo().make_cache_key(&(1, 5)), v_key_a_memo().make_cache_key(&(2, 5)));
}

static VS_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a.to_string())]
fn v_to_string(a: u64, b: u64) -> u64 {
    VS_RUNS.fetch_add(1, SeqCst);
    a + b
}

static VMIN_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a.min(b))]
fn v_min(a: u64, b: u64) -> u64 {
    VMIN_RUNS.fetch_add(1, SeqCst);
    a + b
}

static VDEREF_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = *a)]
fn v_deref(a: u64, b: u64) -> u64 {
    VDEREF_RUNS.fetch_add(1, SeqCst);
    a + b
}

#[test]
fn key_expressions_over_by_value_arguments() {
    check(
        "key = a.to_string()",
        &VS_RUNS,
        &|| {
            v_to_string(1, 2);
        },
        &[
            ("f_memo().delete", &|| v_to_string_memo().delete(&(1, 99))),
            ("delete_memoized!", &|| delete_memoized!(v_to_string, 1, 98)),
            ("by name", &|| by_name(v_to_string_memo().name(), &(1u64, 97u64))),
        ],
    );
    check(
        "key = a.min(b)",
        &VMIN_RUNS,
        &|| {
            v_min(3, 9);
        },
        &[
            ("f_memo().delete", &|| v_min_memo().delete(&(30, 3))),
            ("delete_memoized!", &|| delete_memoized!(v_min, 3, 4)),
            ("by name", &|| by_name(v_min_memo().name(), &(5u64, 3u64))),
        ],
    );
    check(
        "key = *a",
        &VDEREF_RUNS,
        &|| {
            v_deref(4, 9);
        },
        &[
            ("f_memo().delete", &|| v_deref_memo().delete(&(4, 3))),
            ("delete_memoized!", &|| delete_memoized!(v_deref, 4, 0)),
            ("by name", &|| by_name(v_deref_memo().name(), &(4u64, 1u64))),
        ],
    );
}

// --- borrowed arguments ------------------------------------------------------------------

static SLEN_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = (a.len(), b))]
fn s_len(a: &str, b: u64, _trace: u64) -> u64 {
    SLEN_RUNS.fetch_add(1, SeqCst);
    a.len() as u64 + b
}

static SCLONE_RUNS: AtomicU64 = AtomicU64::new(0);
#[allow(noop_method_call)]
#[memoize(memoizer = &MEMO, key = a.clone())]
fn s_clone(a: &str, _trace: u64) -> u64 {
    SCLONE_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

static SLICE_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a)]
fn slice_key(a: &[u64], _trace: u64) -> u64 {
    SLICE_RUNS.fetch_add(1, SeqCst);
    a.iter().sum()
}

static NESTED_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = ((a, b), c.len()))]
fn nested(a: &str, b: u64, c: &[u8], _trace: u64) -> u64 {
    NESTED_RUNS.fetch_add(1, SeqCst);
    a.len() as u64 + b + c.len() as u64
}

static SHADOW_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = { let a = a.len(); a + 1 })]
fn shadow(a: &str, _trace: u64) -> u64 {
    SHADOW_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

static PATH_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = p)]
fn path_key(p: &Path, _trace: u64) -> u64 {
    PATH_RUNS.fetch_add(1, SeqCst);
    p.as_os_str().len() as u64
}

static REFCOPY_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = *a)]
fn ref_copy(a: &u64, _trace: u64) -> u64 {
    REFCOPY_RUNS.fetch_add(1, SeqCst);
    *a
}

#[test]
fn key_expressions_over_borrowed_arguments() {
    check(
        "key = (a.len(), b), a: &str",
        &SLEN_RUNS,
        &|| {
            s_len("abc", 1, 0);
        },
        &[
            ("f_memo().delete", &|| s_len_memo().delete(&("xyz".to_string(), 1, 5))),
            ("delete_memoized!", &|| delete_memoized!(s_len, "qqq", 1, 6)),
            ("by name", &|| by_name(s_len_memo().name(), &("zzz".to_string(), 1u64, 7u64))),
        ],
    );
    check(
        "key = a.clone(), a: &str",
        &SCLONE_RUNS,
        &|| {
            s_clone("abc", 0);
        },
        &[
            ("f_memo().delete", &|| s_clone_memo().delete(&("abc".to_string(), 5))),
            ("delete_memoized!", &|| delete_memoized!(s_clone, "abc", 6)),
            ("by name", &|| by_name(s_clone_memo().name(), &("abc".to_string(), 7u64))),
        ],
    );
    check(
        "key = a, a: &[u64]",
        &SLICE_RUNS,
        &|| {
            slice_key(&[1, 2], 0);
        },
        &[
            ("f_memo().delete", &|| slice_key_memo().delete(&(vec![1, 2], 5))),
            ("delete_memoized!", &|| delete_memoized!(slice_key, &[1, 2], 6)),
            ("by name", &|| by_name(slice_key_memo().name(), &(vec![1u64, 2], 7u64))),
        ],
    );
    check(
        "key = ((a, b), c.len())",
        &NESTED_RUNS,
        &|| {
            nested("ab", 3, b"xyz", 0);
        },
        &[
            ("f_memo().delete", &|| nested_memo().delete(&("ab".into(), 3, b"123".to_vec(), 5))),
            ("delete_memoized!", &|| delete_memoized!(nested, "ab", 3, b"456", 6)),
            ("by name", &|| {
                by_name(nested_memo().name(), &("ab".to_string(), 3u64, b"789".to_vec(), 7u64))
            }),
        ],
    );
    check(
        "key = { let a = a.len(); a + 1 }",
        &SHADOW_RUNS,
        &|| {
            shadow("abcd", 0);
        },
        &[
            ("f_memo().delete", &|| shadow_memo().delete(&("wxyz".to_string(), 5))),
            ("delete_memoized!", &|| delete_memoized!(shadow, "1234", 6)),
            ("by name", &|| by_name(shadow_memo().name(), &("....".to_string(), 7u64))),
        ],
    );
    check(
        "key = p, p: &Path",
        &PATH_RUNS,
        &|| {
            path_key(Path::new("/a/b"), 0);
        },
        &[
            ("f_memo().delete", &|| path_key_memo().delete(&("/a/b".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(path_key, Path::new("/a/b"), 6)),
            ("by name", &|| {
                by_name(path_key_memo().name(), &(std::path::PathBuf::from("/a/b"), 7u64))
            }),
        ],
    );
    check(
        "key = *a, a: &u64",
        &REFCOPY_RUNS,
        &|| {
            ref_copy(&8, 0);
        },
        &[
            ("f_memo().delete", &|| ref_copy_memo().delete(&(8, 5))),
            ("delete_memoized!", &|| delete_memoized!(ref_copy, &8, 6)),
            ("by name", &|| by_name(ref_copy_memo().name(), &(8u64, 7u64))),
        ],
    );
}

// --- fields of a struct argument -------------------------------------------------------

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct User {
    id: u64,
    name: String,
}

static FIELD_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = &user.name)]
fn field_ref(user: &User, _trace: u64) -> u64 {
    FIELD_RUNS.fetch_add(1, SeqCst);
    user.id
}

static FIELDV_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = &user.name)]
fn field_ref_by_value(user: User, _trace: u64) -> u64 {
    FIELDV_RUNS.fetch_add(1, SeqCst);
    user.id
}

static FIELDC_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = (user.id, user.name.clone()))]
fn field_clone(user: &User, _trace: u64) -> u64 {
    FIELDC_RUNS.fetch_add(1, SeqCst);
    user.id
}

static USERCLONE_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = user.clone())]
fn user_clone(user: &User, _trace: u64) -> u64 {
    USERCLONE_RUNS.fetch_add(1, SeqCst);
    user.id
}

static COW_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a)]
fn cow_key(a: Cow<'static, str>, _trace: u64) -> u64 {
    COW_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

#[test]
fn key_expressions_over_fields() {
    let ann = || User { id: 1, name: "ann".into() };
    let other = |id| User { id, name: "ann".into() };
    check(
        "key = &user.name, user: &User",
        &FIELD_RUNS,
        &|| {
            field_ref(&ann(), 0);
        },
        &[
            ("f_memo().delete", &|| field_ref_memo().delete(&(other(5), 5))),
            ("delete_memoized!", &|| delete_memoized!(field_ref, &other(6), 6)),
            ("by name", &|| by_name(field_ref_memo().name(), &(other(7), 7u64))),
        ],
    );
    check(
        "key = &user.name, user: User",
        &FIELDV_RUNS,
        &|| {
            field_ref_by_value(ann(), 0);
        },
        &[
            ("f_memo().delete", &|| field_ref_by_value_memo().delete(&(other(5), 5))),
            ("delete_memoized!", &|| delete_memoized!(field_ref_by_value, other(6), 6)),
            ("by name", &|| by_name(field_ref_by_value_memo().name(), &(other(7), 7u64))),
        ],
    );
    check(
        "key = (user.id, user.name.clone())",
        &FIELDC_RUNS,
        &|| {
            field_clone(&ann(), 0);
        },
        &[
            ("f_memo().delete", &|| field_clone_memo().delete(&(ann(), 5))),
            ("delete_memoized!", &|| delete_memoized!(field_clone, &ann(), 6)),
            ("by name", &|| by_name(field_clone_memo().name(), &(ann(), 7u64))),
        ],
    );
    check(
        "key = user.clone()",
        &USERCLONE_RUNS,
        &|| {
            user_clone(&ann(), 0);
        },
        &[
            ("f_memo().delete", &|| user_clone_memo().delete(&(ann(), 5))),
            ("delete_memoized!", &|| delete_memoized!(user_clone, &ann(), 6)),
            ("by name", &|| by_name(user_clone_memo().name(), &(ann(), 7u64))),
        ],
    );
    check(
        "key = a, a: Cow<'static, str>",
        &COW_RUNS,
        &|| {
            cow_key(Cow::Borrowed("x"), 0);
        },
        &[
            ("f_memo().delete", &|| cow_key_memo().delete(&(Cow::Owned("x".into()), 5))),
            ("delete_memoized!", &|| delete_memoized!(cow_key, Cow::Borrowed("x"), 6)),
            ("by name", &|| {
                by_name(cow_key_memo().name(), &(Cow::<'static, str>::Borrowed("x"), 7u64))
            }),
        ],
    );
}

// --- `unless` with `key` ------------------------------------------------------------------

static BYPASS: AtomicBool = AtomicBool::new(false);
static UNLESS_RUNS: AtomicU64 = AtomicU64::new(0);
#[memoize(memoizer = &MEMO, key = a, unless = || BYPASS.load(SeqCst))]
fn unless_key(a: String, _trace: u64) -> u64 {
    UNLESS_RUNS.fetch_add(1, SeqCst);
    a.len() as u64
}

#[test]
fn unless_with_key() {
    check(
        "key = a with unless",
        &UNLESS_RUNS,
        &|| {
            unless_key("x".into(), 0);
        },
        &[
            ("f_memo().delete", &|| unless_key_memo().delete(&("x".into(), 5))),
            ("delete_memoized!", &|| delete_memoized!(unless_key, "x".into(), 6)),
            ("by name", &|| by_name(unless_key_memo().name(), &("x".to_string(), 7u64))),
        ],
    );
    BYPASS.store(true, SeqCst);
    let before = UNLESS_RUNS.load(SeqCst);
    unless_key("x".into(), 0);
    unless_key("x".into(), 0);
    BYPASS.store(false, SeqCst);
    assert_eq!(UNLESS_RUNS.load(SeqCst), before + 2);
}

// --- methods --------------------------------------------------------------------------------

#[derive(MemoIdentity)]
struct Thing {
    #[memo(id)]
    id: u64,
}

static METHOD_RUNS: AtomicU64 = AtomicU64::new(0);

impl Thing {
    #[memoize(memoizer = &MEMO, key = (a, b.len()))]
    fn m(&self, a: &str, b: &[u8], _trace: u64) -> u64 {
        METHOD_RUNS.fetch_add(1, SeqCst);
        self.id + a.len() as u64 + b.len() as u64
    }
}

#[test]
fn key_on_a_method() {
    let t = Thing { id: 3 };
    check(
        "method key = (a, b.len())",
        &METHOD_RUNS,
        &|| {
            t.m("a", b"12", 0);
        },
        &[
            ("f_memo().delete", &|| Thing::m_memo().delete(&(3, "a".into(), b"xy".to_vec(), 5))),
            ("delete_memoized!(obj.m, ..)", &|| delete_memoized!(t.m, "a", b"zz", 6)),
            ("delete_memoized!(Type::m, &obj, ..)", &|| {
                delete_memoized!(Thing::m, &t, "a", b"zz", 6)
            }),
            ("by name", &|| {
                by_name(Thing::m_memo().name(), &(3u64, "a".to_string(), b"ww".to_vec(), 7u64))
            }),
        ],
    );
}

// --- receiver records ---------------------------------------------------------------------

static RECS: LazyLock<Memoizer> = LazyLock::new(|| {
    let clock = ManualClock::new();
    Memoizer::builder().clock(clock).capacity(64).build().expect("memoizer")
});
static RECS_RUNS: AtomicU64 = AtomicU64::new(0);
static RECS_GATE_A: LazyLock<Gate> = LazyLock::new(Gate::new);
static RECS_GATE_B: LazyLock<Gate> = LazyLock::new(Gate::new);

#[derive(MemoIdentity)]
struct Task(#[memo(id)] u64);

impl Task {
    /// Task 0: page 1 waits for gate A, page 2 for gate B. Tasks >= 1000 fail (nothing stored),
    /// tasks in 500..1000 panic. `depth` > 0 recurses on the same receiver.
    #[memoize(memoizer = &RECS, timeout = memokit::Timeout::Never)]
    fn work(&self, page: u64, depth: u64) -> Result<u64, String> {
        RECS_RUNS.fetch_add(1, SeqCst);
        if depth > 0 {
            return self.work(page + 100, depth - 1).map(|v| v + 1);
        }
        match (self.0, page) {
            (0, 1) => RECS_GATE_A.enter_and_wait(),
            (0, 2) => RECS_GATE_B.enter_and_wait(),
            (n, _) if (500..1000).contains(&n) => panic!("task {n} panics"),
            (n, _) if n >= 1000 => return Err(format!("task {n} failed")),
            _ => {}
        }
        Ok(self.0 * 1000 + page)
    }
}

fn churn(from: u64) {
    for i in from..from + 300 {
        assert!(Task(i).work(0, 0).is_err());
    }
}

/// A call on task 0 begun before a per-instance delete ends after a new call on the same
/// receiver (a new record) has begun: its end must not count against the new record, which
/// must survive prunings while its call runs. Then panicking calls and recursive calls on the
/// same receiver leave no record marked running: they are pruned once over the capacity.
#[test]
fn receiver_records_running_counts() {
    let a = std::thread::spawn(|| Task(0).work(1, 0));
    RECS_GATE_A.wait_entered();
    delete_memoized!(Task(0).work); // drops the record task 0's first call runs under
    let b = std::thread::spawn(|| Task(0).work(2, 0));
    RECS_GATE_B.wait_entered();
    RECS_GATE_A.open();
    assert_eq!(a.join().expect("a"), Ok(1));
    churn(1_000);
    RECS_GATE_B.open();
    assert_eq!(b.join().expect("b"), Ok(2));
    RECS.flush();
    let runs = RECS_RUNS.load(SeqCst);
    assert_eq!(Task(0).work(2, 0), Ok(2));
    assert_eq!(RECS_RUNS.load(SeqCst), runs, "the second call's result was lost by pruning");

    // Panicking calls and recursion on the same receiver.
    for i in 500..700 {
        let r = std::panic::catch_unwind(|| Task(i).work(0, 0));
        assert!(r.is_err());
    }
    for i in 2_000..2_200 {
        assert!(Task(i).work(0, 3).is_err(), "recursion reaches the failing depth");
    }
    churn(10_000);
    churn(20_000);
    let records = Task::work_memo().__receiver_records();
    assert!(records < 300, "records of ended calls are pruned: {records} left");
}

// --- a receiver id whose `Hash` or `Eq` panics on the n-th use ----------------------------

thread_local! {
    /// Uses of `Flaky`'s `Hash`/`Eq` left before one panics (`None`: never).
    static ARMED: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

fn tick() {
    ARMED.with(|a| {
        if let Some(n) = a.get() {
            if n == 0 {
                a.set(None);
                panic!("Flaky id panics");
            }
            a.set(Some(n - 1));
        }
    });
}

#[derive(Clone, Debug)]
struct FlakyId(u64);

impl std::hash::Hash for FlakyId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        tick();
        self.0.hash(h);
    }
}

impl PartialEq for FlakyId {
    fn eq(&self, o: &Self) -> bool {
        tick();
        self.0 == o.0
    }
}
impl Eq for FlakyId {}

struct Flaky(u64);

impl MemoIdentity for Flaky {
    type Id = FlakyId;
    fn memo_id(&self) -> FlakyId {
        FlakyId(self.0)
    }
}

static FLAKY: LazyLock<Memoizer> = LazyLock::new(|| {
    let clock = ManualClock::new();
    Memoizer::builder().clock(clock).capacity(64).build().expect("memoizer")
});
static FLAKY_RUNS: AtomicU64 = AtomicU64::new(0);

impl Flaky {
    /// Receivers >= 100_000 fail (nothing stored: their records may be pruned).
    #[memoize(memoizer = &FLAKY, timeout = memokit::Timeout::Never)]
    fn get(&self, x: u64) -> Result<u64, ()> {
        FLAKY_RUNS.fetch_add(1, SeqCst);
        if self.0 >= 100_000 {
            Err(())
        } else {
            Ok(self.0 + x)
        }
    }
}

/// Whichever use of the id's `Hash` or `Eq` panics (in the lookup, at the miss's `Begin`, at
/// the computation's `Renew`, in the engine), the call panics, later calls work and cache,
/// and no record stays marked running: records of failed receivers are all pruned.
#[test]
fn a_receiver_id_whose_hash_or_eq_panics_leaves_no_running_record() {
    let mut panicked = 0;
    for n in 0..8u32 {
        for i in 0..40u64 {
            let id = 100_000 + u64::from(n) * 1_000 + i;
            // A first call (a record exists, so `Begin` compares ids with `Eq`), then one armed.
            let _ = Flaky(id).get(0);
            ARMED.with(|a| a.set(Some(n)));
            let r = std::panic::catch_unwind(|| Flaky(id).get(1));
            ARMED.with(|a| a.set(None));
            panicked += usize::from(r.is_err());
        }
    }
    assert!(panicked > 0, "some use panicked");
    assert_eq!(Flaky(1).get(1), Ok(2));
    let runs = FLAKY_RUNS.load(SeqCst);
    assert_eq!(Flaky(1).get(1), Ok(2));
    assert_eq!(FLAKY_RUNS.load(SeqCst), runs, "cached");
    for i in 0..400 {
        assert!(Flaky(200_000 + i).get(0).is_err());
    }
    let records = Flaky::get_memo().__receiver_records();
    assert!(
        records < 300,
        "records of ended calls are pruned: {records} left ({panicked} panicked)"
    );
}

// --- a hit clones no argument (api.md §3), with `key =` naming a borrowed argument too ------

static CLONES: AtomicU64 = AtomicU64::new(0);

#[derive(PartialEq, Eq, Hash, Debug)]
struct Counted(u64);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, SeqCst);
        Counted(self.0)
    }
}

#[memoize(memoizer = &MEMO)]
fn counted_plain(c: &Counted) -> u64 {
    c.0
}

#[memoize(memoizer = &MEMO, key = c)]
fn counted_key(c: &Counted, _trace: u64) -> u64 {
    c.0
}

#[test]
fn a_hit_clones_no_argument() {
    let c = Counted(4);
    assert_eq!(counted_plain(&c), 4);
    let before = CLONES.load(SeqCst);
    assert_eq!(counted_plain(&c), 4);
    assert_eq!(CLONES.load(SeqCst) - before, 0, "without key: a hit clones no argument");
    assert_eq!(counted_key(&c, 1), 4);
    let before = CLONES.load(SeqCst);
    assert_eq!(counted_key(&c, 2), 4);
    assert_eq!(counted_key_memo().stats().hits, 1);
    assert_eq!(CLONES.load(SeqCst) - before, 0, "key = c: a hit clones no argument");
}
