use memokit::memoize;

struct Adder {
    base: u64,
}

impl Adder {
    #[memoize]
    fn add(&self, n: u64) -> u64 {
        self.base + n
    }
}

fn main() {
    Adder { base: 1 }.add(2);
}
