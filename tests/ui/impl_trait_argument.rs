use memokit::memoize;

#[memoize]
fn f(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn main() {
    f(1);
}
