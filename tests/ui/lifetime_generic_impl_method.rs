//! An `impl` generic over a lifetime only is a generic impl too: rejected like
//! `generic_impl_method.rs` (documented in the crate's "Methods").
use memokit::{memoize, MemoIdentity};

#[derive(MemoIdentity)]
struct Doc<'a> {
    #[memo(id)]
    id: u64,
    text: &'a str,
}

impl<'a> Doc<'a> {
    #[memoize]
    fn words(&self, min: usize) -> usize {
        self.text.split(' ').filter(|w| w.len() >= min).count()
    }
}

fn main() {
    Doc { id: 1, text: "a bc" }.words(2);
}
