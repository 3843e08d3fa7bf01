use memokit::{memoize, MemoIdentity};

struct Wrapper<T> {
    id: u64,
    value: T,
}

impl<T> MemoIdentity for Wrapper<T> {
    type Id = u64;
    fn memo_id(&self) -> u64 {
        self.id
    }
}

impl<T: Clone + Send + Sync + 'static> Wrapper<T> {
    #[memoize]
    fn get(&self) -> T {
        self.value.clone()
    }
}

fn main() {
    Wrapper { id: 1, value: 2u8 }.get();
}
