use memokit::{memoize, MemoIdentity};

#[derive(Clone, MemoIdentity)]
struct Node {
    #[memo(id)]
    id: u64,
}

impl Node {
    #[memoize]
    fn child(&self, n: u64) -> Self {
        Node { id: self.id * 10 + n }
    }
}

fn main() {
    Node { id: 1 }.child(2);
}
