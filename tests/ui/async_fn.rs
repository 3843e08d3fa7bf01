use memokit::memoize;

#[memoize]
async fn f(x: u64) -> u64 {
    x
}

fn main() {
    let _ = f(1);
}
