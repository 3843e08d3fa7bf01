//! A `key` that uses an argument only through a method call, a field, a macro or an inline
//! format argument compiles; and `key = ()` shares one result across all arguments on purpose.
use memokit::memoize;

#[derive(Clone)]
struct User {
    id: u64,
    name: String,
}

#[memoize(key = user.name.to_lowercase())]
fn through_a_method(user: &User) -> usize {
    user.name.len()
}

#[memoize(key = user.id)]
fn through_a_field(user: &User) -> u64 {
    user.id
}

#[memoize(key = format!("{user:?}/{}", 1))]
fn through_an_inline_format_argument(user: u64) -> u64 {
    user
}

#[memoize(key = vec![*r#user])]
fn through_a_macro(user: u64) -> u64 {
    user
}

#[memoize(key = ())]
fn shared_on_purpose(db: &str) -> usize {
    db.len()
}

#[memoize(key = "no arguments to use")]
fn without_arguments() -> u8 {
    1
}

fn main() {
    let u = User { id: 7, name: "Ann".into() };
    assert_eq!(through_a_method(&u), 3);
    assert_eq!(through_a_field(&u), 7);
    assert_eq!(through_an_inline_format_argument(2), 2);
    assert_eq!(through_a_macro(3), 3);
    assert_eq!(shared_on_purpose("ab"), 2);
    assert_eq!(shared_on_purpose("abc"), 2, "one result for every argument");
    assert_eq!(without_arguments(), 1);
}
