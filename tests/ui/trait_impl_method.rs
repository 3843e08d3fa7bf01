use memokit::{memoize, MemoIdentity};

trait Area {
    fn area(&self) -> u64;
}

#[derive(MemoIdentity)]
struct Square {
    #[memo(id)]
    side: u64,
}

impl Area for Square {
    #[memoize]
    fn area(&self) -> u64 {
        self.side * self.side
    }
}

fn main() {
    Square { side: 2 }.area();
}
