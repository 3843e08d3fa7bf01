use memokit::MemoIdentity;

#[derive(MemoIdentity)]
struct Person {
    id: u64,
    name: String,
}

fn main() {}
