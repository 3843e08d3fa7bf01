use memokit::memoize;

struct Catalog;

impl Catalog {
    #[memoize]
    fn count(kind: u8) -> u64 {
        u64::from(kind)
    }
}

fn main() {
    Catalog::count(1);
}
