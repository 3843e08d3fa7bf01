use memokit::memoize;

#[derive(Hash, PartialEq, Eq)]
pub struct Config {
    level: u64,
}

// With `key =`, deletes take the owned argument tuple (`Config` for `&Config`): a borrowed
// argument's type must have an owned form (`Clone`), even if the key does not use it.
#[memoize(key = n)]
fn scaled(n: u64, config: &Config) -> u64 {
    n * config.level
}

fn main() {
    scaled(1, &Config { level: 2 });
}
