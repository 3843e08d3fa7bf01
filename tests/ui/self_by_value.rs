use memokit::{memoize, MemoIdentity};

#[derive(MemoIdentity)]
struct Token {
    #[memo(id)]
    id: u64,
}

impl Token {
    #[memoize]
    fn consume(self) -> u64 {
        self.id
    }
}

fn main() {
    Token { id: 1 }.consume();
}
