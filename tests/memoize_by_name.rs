//! By-name invalidation on the memoizer: known names, unknown and ambiguous names, argument
//! tuples matched by `TypeId` with errors that name both types, methods, verhash.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::LazyLock;

use memokit::{memoize, Error, MemoIdentity, Memoizer};

static MEMO: LazyLock<Memoizer> = LazyLock::new(Memoizer::new);
static RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(memoizer = &MEMO)]
fn has_membership(user: u64, group: &str) -> bool {
    if user >= 2 {
        // Other tests call it with user 1 concurrently; count only this test's calls.
        RUNS.fetch_add(1, SeqCst);
    }
    user % 2 == 0 && !group.is_empty()
}

#[test]
fn by_name_deletes_find_the_function_by_its_full_path() {
    let name = "memoize_by_name::has_membership";
    let runs = || RUNS.load(SeqCst);
    has_membership(2, "staff");
    has_membership(4, "staff");
    assert_eq!(runs(), 2);
    assert_eq!(has_membership_memo().name(), name);
    assert!(MEMO.function_names().contains(&name.to_string()));

    MEMO.delete_memoized_args(name, &(2u64, "staff".to_string())).expect("right types");
    has_membership(2, "staff");
    has_membership(4, "staff");
    assert_eq!(runs(), 3, "exactly the given arguments");

    MEMO.delete_memoized(name).expect("known");
    has_membership(4, "staff");
    assert_eq!(runs(), 4);

    MEMO.delete_memoized_verhash(name).expect("known");
    has_membership(4, "staff");
    assert_eq!(runs(), 5);
    MEMO.delete_memoized_args(name, &(77u64, "never cached".to_string())).expect("a no-op");
}

#[test]
fn wrong_argument_types_are_an_error_naming_both_types() {
    has_membership(1, "x");
    let name = has_membership_memo().name();
    let err = MEMO.delete_memoized_args(name, &(2u32, "staff")).expect_err("wrong types");
    match &err {
        Error::ArgumentTypes { name: n, expected, given } => {
            assert_eq!(n, name);
            assert_eq!(*expected, std::any::type_name::<(u64, String)>());
            assert_eq!(*given, std::any::type_name::<(u32, &str)>());
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("(u32, &str)"), "{err}");
}

#[test]
fn unknown_names_are_an_error_never_a_silent_no_op() {
    for r in [
        MEMO.delete_memoized("memoize_by_name::nope"),
        MEMO.delete_memoized_args("memoize_by_name::nope", &(1u64,)),
        MEMO.delete_memoized_verhash("memoize_by_name::nope"),
    ] {
        assert!(
            matches!(r, Err(Error::UnknownFunction { ref name }) if name == "memoize_by_name::nope")
        );
    }
    // Another memoizer does not know this memoizer's functions.
    has_membership(1, "y");
    let other = Memoizer::new();
    assert!(matches!(
        other.delete_memoized(has_membership_memo().name()),
        Err(Error::UnknownFunction { .. })
    ));
}

fn shared_name(_: &str) -> String {
    "shared::name".to_string()
}

#[memoize(memoizer = &MEMO, make_name = shared_name)]
fn first() -> u8 {
    1
}

#[memoize(memoizer = &MEMO, make_name = shared_name)]
fn second() -> u8 {
    2
}

#[test]
fn a_shared_name_is_ambiguous() {
    assert_eq!((first(), second()), (1, 2), "distinct functions, distinct results");
    let err = MEMO.delete_memoized("shared::name").expect_err("ambiguous");
    assert!(matches!(err, Error::AmbiguousName { count: 2, .. }), "{err:?}");
}

#[memoize(memoizer = &MEMO)]
fn never_called(x: u8) -> u8 {
    x
}

#[test]
fn a_function_is_known_from_its_first_handle() {
    let name = "memoize_by_name::never_called";
    assert!(!MEMO.function_names().contains(&name.to_string()));
    assert_eq!(never_called_memo().name(), name);
    MEMO.delete_memoized(name).expect("known from f_memo()");
    MEMO.delete_memoized_args(name, &(1u8,)).expect("known from f_memo()");
}

#[derive(MemoIdentity)]
struct Account {
    #[memo(id)]
    id: String,
}

static BALANCE_RUNS: AtomicU64 = AtomicU64::new(0);

impl Account {
    #[memoize(memoizer = &MEMO)]
    fn balance(&self, currency: &str) -> u64 {
        BALANCE_RUNS.fetch_add(1, SeqCst);
        self.id.len() as u64 + currency.len() as u64
    }
}

#[test]
fn method_arguments_start_with_the_receiver_id() {
    let a = Account { id: "acc-1".into() };
    let runs = || BALANCE_RUNS.load(SeqCst);
    a.balance("EUR");
    a.balance("EUR");
    assert_eq!(runs(), 1);
    let name = Account::balance_memo().name();
    assert!(name.ends_with("memoize_by_name::Account::balance"), "{name}");
    MEMO.delete_memoized_args(name, &("acc-1".to_string(), "EUR".to_string())).expect("(Id, args)");
    a.balance("EUR");
    assert_eq!(runs(), 2);
    assert!(matches!(
        MEMO.delete_memoized_args(name, &("EUR".to_string(),)),
        Err(Error::ArgumentTypes { .. })
    ));
}
