use memokit::memoize;

pub struct User {
    pub id: u64,
    pub name: String,
}

// `key` is an expression over the arguments, not a function (the seed's `make_cache_key`
// was one): without a check of the macro, rustc reported the closure as a key that is not
// `Hash + Eq` (suggesting to call it) and `User: Clone` at the whole attribute.
#[memoize(key = |user: &User| user.id)]
fn greeting(user: &User) -> String {
    format!("hello {}", user.name)
}

fn main() {
    greeting(&User { id: 1, name: "a".into() });
}
