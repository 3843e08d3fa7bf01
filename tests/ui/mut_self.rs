use memokit::{memoize, MemoIdentity};

#[derive(MemoIdentity)]
struct Counter {
    #[memo(id)]
    id: u64,
    n: u64,
}

impl Counter {
    #[memoize]
    fn bump(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

fn main() {
    let mut c = Counter { id: 1, n: 0 };
    c.bump(1);
}
