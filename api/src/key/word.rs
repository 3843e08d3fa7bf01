//! Keys of one word: owned argument tuples that are a single primitive (`(u64,)`, `(i32,)`,
//! `(char,)`, ...) or empty (`()`), stored inline in [`ErasedKey`](super::ErasedKey) instead
//! of boxed.
//!
//! Why: a hit compares the caller's arguments with the stored key's. A boxed key puts them
//! behind a pointer to a separate allocation, a dependent load after the table's own (perf put
//! about 15% of a memoized hit's samples in `benches/memoize.rs` on it; measured, the word
//! saves 25 of 207 instructions per hit but only ~0.5 ns: BENCHMARKS.md, session 9). Most
//! memoized functions of a server take one id, and methods are keyed by the receiver's id
//! alone; for them the key is now the word itself, and storing it allocates nothing.
//!
//! Invariants, kept by the one list below ([`kind`] and [`encode`] come from it):
//! - a tuple type has a kind (non-zero, below 2^7) exactly when [`encode`] gives it a word;
//! - within one kind, `encode` is injective (equal words ⟺ equal values), so comparing words
//!   compares values (and, the `Borrow` contract, compares the views that find them).
//!
//! A word key is hashed as its word (with the function id folded in), both when it is stored
//! and when a view looks for it, so the two hash alike without the value's own `Hash`.
//!
//! The kind is kept in the high bits of the key's function id ([`KIND_SHIFT`]): keys of two
//! kinds never compare equal, and the paths that check types (deletes, `make_cache_key`) stay
//! checked for word keys too. Cost: the type tests fold at compile time (`TypeId`s of
//! concrete types), so a hit on a word key is one compare of ids and one of words.

use std::any::{Any, TypeId};

/// Where a key's kind sits in its function id (ids stay below `1 << KIND_SHIFT`).
pub(super) const KIND_SHIFT: u32 = 56;

macro_rules! words {
    ($($kind:literal $t:ty: |$x:ident| $enc:expr;)*) => {
        /// The kind of the owned key type `O` (0: not a word key).
        #[inline(always)]
        pub(super) fn kind<O: 'static>() -> u64 {
            let t = TypeId::of::<O>();
            $(if t == TypeId::of::<$t>() {
                return $kind;
            })*
            0
        }

        /// `o` as a word, if its type has a kind.
        #[inline(always)]
        pub(super) fn encode<O: 'static>(o: &O) -> Option<u64> {
            let any = o as &dyn Any;
            $(if let Some($x) = any.downcast_ref::<$t>() {
                return Some($enc);
            })*
            None
        }

        /// The kind of every type of the list, in its order (for the tests).
        #[cfg(test)]
        fn every_kind() -> Vec<u64> {
            vec![$(kind::<$t>()),*]
        }
    };
}

words! {
    1 (): |_x| 0;
    2 (u64,): |x| x.0;
    3 (i64,): |x| x.0 as u64;
    4 (u32,): |x| u64::from(x.0);
    5 (i32,): |x| x.0 as u64;
    6 (u16,): |x| u64::from(x.0);
    7 (i16,): |x| x.0 as u64;
    8 (u8,): |x| u64::from(x.0);
    9 (i8,): |x| x.0 as u64;
    10 (usize,): |x| x.0 as u64;
    11 (isize,): |x| x.0 as u64;
    12 (bool,): |x| u64::from(x.0);
    13 (char,): |x| u64::from(x.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the list promises, for values of every kind: a kind (that fits below the
    /// `UNSTORED` bit) exactly when there is a word, and equal words only for equal values.
    fn check<O: Eq + 'static + std::fmt::Debug>(values: &[O]) {
        let k = kind::<O>();
        assert!(k != 0 && k < 1 << (64 - KIND_SHIFT - 1), "{values:?}");
        for a in values {
            let w = encode(a).expect("a word");
            for b in values {
                assert_eq!(encode(b) == Some(w), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn every_kind_encodes_its_values_injectively() {
        check(&[()]);
        check(&[(0u64,), (1,), (u64::MAX,)]);
        check(&[(0i64,), (-1,), (i64::MIN,), (i64::MAX,)]);
        check(&[(0u32,), (u32::MAX,)]);
        check(&[(0i32,), (-1,), (i32::MIN,)]);
        check(&[(0u16,), (u16::MAX,)]);
        check(&[(0i16,), (-1,), (i16::MIN,)]);
        check(&[(0u8,), (255,)]);
        check(&[(0i8,), (-1,), (i8::MIN,)]);
        check(&[(0usize,), (usize::MAX,)]);
        check(&[(0isize,), (-1,), (isize::MIN,)]);
        check(&[(false,), (true,)]);
        check(&[('\0',), ('a',), (char::MAX,)]);
    }

    #[test]
    fn other_types_have_no_kind() {
        assert_eq!(kind::<u64>(), 0);
        assert_eq!(kind::<(u64, u64)>(), 0);
        assert_eq!(kind::<(String,)>(), 0);
        assert_eq!(kind::<(u128,)>(), 0);
        assert_eq!(encode(&(1u64, 2u64)), None);
        assert_eq!(encode(&(String::new(),)), None);
    }

    /// Over the whole list: a kind given twice would make two types' keys meet, and one at or
    /// above 2^7 would reach the `UNSTORED` bit.
    #[test]
    fn kinds_are_distinct_and_fit() {
        let kinds = every_kind();
        let set: std::collections::HashSet<_> = kinds.iter().collect();
        assert_eq!(set.len(), kinds.len(), "{kinds:?}");
        assert!(kinds.iter().all(|&k| k != 0 && k < 1 << (64 - KIND_SHIFT - 1)), "{kinds:?}");
    }
}
