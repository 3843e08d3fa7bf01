use memokit::memoize;

trait Area {
    #[memoize]
    fn area(&self) -> u64;
}

fn main() {}
