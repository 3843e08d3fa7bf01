// Setting an option on the engine's builder or on `InsertOptions` and dropping the result
// changes nothing: both are values, and each setter returns the changed copy.
#![deny(unused_must_use)]

use memokit_engine::{Engine, InsertOptions};
use std::time::Duration;

fn main() {
    let b = Engine::<u64, u64>::builder();
    b.max_capacity(10);
    let opts = InsertOptions::new();
    opts.ttl(Duration::from_secs(1));
}
