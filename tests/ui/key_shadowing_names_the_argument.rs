use memokit::memoize;

#[derive(Hash, PartialEq, Eq)]
pub struct Request {
    id: u64,
}

// The key shadows `request` and does not use the argument, but the attribute does not follow
// scopes: it counts `request` as named (conservatively: a missed use would be a borrow error),
// so a miss would clone it. The message says what to do.
#[memoize(key = { let request = 7u64; request })]
fn handle(request: Request) -> u64 {
    request.id
}

fn main() {
    handle(Request { id: 1 });
}
