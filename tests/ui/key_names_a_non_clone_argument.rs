use memokit::memoize;

#[derive(Hash, PartialEq, Eq)]
pub struct Request {
    id: u64,
}

// The key borrows `request` during the call, so a miss clones it for the body: it must be
// `Clone` (or taken by reference).
#[memoize(key = request.id)]
fn handle(request: Request) -> u64 {
    request.id
}

fn main() {
    handle(Request { id: 1 });
}
