use memokit::{memoize, MemoIdentity};

// `delete_memoized!` names a function or method that has no `#[memoize]`.
fn plain(a: u64) -> u64 {
    a
}

#[derive(MemoIdentity)]
struct Adder {
    #[memo(id)]
    id: u32,
}

impl Adder {
    fn add(&self, n: u64) -> u64 {
        n + u64::from(self.id)
    }

    #[memoize]
    fn add_memoized(&self, n: u64) -> u64 {
        n
    }
}

fn main() {
    let adder = Adder { id: 1 };
    plain(1);
    adder.add(1);
    adder.add_memoized(1);
    memokit::delete_memoized!(plain);
    memokit::delete_memoized!(plain, 1);
    memokit::delete_memoized_verhash!(plain);
    memokit::delete_memoized!(adder.add);
    memokit::delete_memoized!(adder.add, 1);
    memokit::delete_memoized!(Adder::add);
    memokit::delete_memoized!(Adder::add, &adder, 1);
}
