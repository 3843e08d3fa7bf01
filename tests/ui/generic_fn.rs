use memokit::memoize;

#[memoize]
fn f<T: Clone>(x: T) -> T {
    x
}

fn main() {
    f(1);
}
