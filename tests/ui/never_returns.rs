use memokit::memoize;

#[memoize]
fn fail(code: u32) -> ! {
    panic!("failed with {code}")
}

fn main() {
    fail(1);
}
