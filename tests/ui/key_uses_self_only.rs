use memokit::{memoize, MemoIdentity};

#[derive(MemoIdentity)]
pub struct Page {
    #[memo(id)]
    pub id: u64,
    pub lang: u8,
}

impl Page {
    // One error (at `self`), not a second one for using none of the arguments.
    #[memoize(key = self.lang)]
    fn title(&self, page: u32) -> String {
        format!("{page}")
    }
}

fn main() {
    let _ = Page { id: 1, lang: 0 }.title(1);
}
