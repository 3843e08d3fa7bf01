use memokit::memoize;
use std::borrow::Cow;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Name<'a>(&'a str);

// Arguments are stored as owned values in the key: a borrow inside an argument's type (other
// than the one top-level `&`) cannot be stored.
#[memoize]
fn by_cow(name: Cow<'_, str>) -> usize {
    name.len()
}

#[memoize]
fn by_struct<'a>(name: &Name<'a>) -> usize {
    name.0.len()
}

#[memoize]
fn by_ref_ref(name: &&str) -> usize {
    name.len()
}

#[memoize]
fn by_option(name: Option<&str>) -> usize {
    name.map_or(0, str::len)
}

fn main() {
    by_cow(Cow::Borrowed("a"));
    by_struct(&Name("a"));
    by_ref_ref(&"a");
    by_option(Some("a"));
}
