use memokit::{memoize, MemoIdentity};

// The arguments form the key, a tuple of at most 12 parts (a method's receiver id is one).

#[memoize]
fn thirteen(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8, i: u8, j: u8, k: u8, l: u8, m: u8) -> u8 {
    a + b + c + d + e + f + g + h + i + j + k + l + m
}

#[derive(MemoIdentity)]
struct Wide(#[memo(id)] u8);

impl Wide {
    #[memoize]
    fn twelve(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8, i: u8, j: u8, k: u8, l: u8) -> u8 {
        self.0 + a + b + c + d + e + f + g + h + i + j + k + l
    }
}

fn main() {
    thirteen(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    Wide(1).twelve(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
}
