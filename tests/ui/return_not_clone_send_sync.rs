use std::rc::Rc;

use memokit::memoize;

struct Report(String);

#[memoize]
fn report(id: u64) -> Report {
    Report(id.to_string())
}

#[memoize]
fn shared(id: u64) -> Rc<u64> {
    Rc::new(id)
}

fn main() {
    report(1);
    shared(1);
}
