use memokit::{memoize, MemoIdentity};

#[derive(MemoIdentity)]
struct Doc {
    #[memo(id)]
    id: u64,
    lang: u64,
}

impl Doc {
    // The receiver's id is always part of the key; `self` is not available to `key`.
    #[memoize(key = (self.lang, page))]
    fn render(&self, page: u64) -> u64 {
        self.id + page
    }
}

fn main() {
    Doc { id: 1, lang: 2 }.render(3);
}
