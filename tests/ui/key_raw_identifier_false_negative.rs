use memokit::memoize;

// `r#name` and `name` are one identifier, but the attribute compares their spellings: the key
// borrows `name` without the attribute seeing it, so the body is given the moved argument. A
// compile error (never a wrong result): the borrow checker refuses the move.
#[memoize(key = name.as_str())]
fn greeting(r#name: String) -> String {
    format!("hello {name}")
}

fn main() {
    greeting("x".into());
}
