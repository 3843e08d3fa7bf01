use memokit::memoize;

#[memoize]
fn param_func(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    param_func(1, 2);
    memokit::delete_memoized!(param_func, "1", 2);
    memokit::delete_memoized!(param_func, 1);
    memokit::delete_memoized_verhash!(param_func, 1, 2);
}
