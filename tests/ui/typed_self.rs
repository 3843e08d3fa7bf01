use std::sync::Arc;

use memokit::{memoize, MemoIdentity};

#[derive(MemoIdentity)]
struct Shared {
    #[memo(id)]
    id: u64,
}

impl Shared {
    #[memoize]
    fn get(self: Arc<Self>) -> u64 {
        self.id
    }
}

fn main() {
    Arc::new(Shared { id: 1 }).get();
}
