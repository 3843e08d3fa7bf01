use memokit::memoize;

// A key is a tuple of at most 12 parts; a tuple inside it is flattened into it.
#[memoize(key = (a, b, c, (d, e, f, g), h, i, j, k, l, m))]
#[allow(clippy::too_many_arguments)]
fn wide(
    a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8, i: u8, j: u8, k: u8, l: u8,
    m: u8,
) -> u64 {
    [a, b, c, d, e, f, g, h, i, j, k, l, m].iter().map(|&x| u64::from(x)).sum()
}

fn main() {
    wide(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}
