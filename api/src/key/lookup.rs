//! [`OwnedLookup`]: the key of an owned argument tuple for a delete, found with the tuple's
//! `Hash` and `Eq` alone (no `Clone`), hashed as [`ErasedKey`] hashes the stored key.

use std::hash::{Hash, Hasher};

use super::{hash_word, word, Args, ErasedKey, OwnedKey};

/// A key built from an owned argument tuple `O` (`Memoized::delete`, the by-name delete):
/// finds the stored key of the same space and arguments with `O`'s `Hash` and `Eq` alone, so
/// `O` need not be `Clone` ([`LookupKey`] of an [`OwnedView`] clones a word key's arguments
/// to encode them). Checked downcast.
pub(crate) struct OwnedLookup<'a, O> {
    /// The key space looked in (`FnKeys::space`), without the kind (added from `O`).
    pub(crate) space: u64,
    pub(crate) args: &'a O,
}

impl<O: 'static> OwnedLookup<'_, O> {
    /// The id the stored keys of these arguments carry: the space with `O`'s kind.
    fn id(&self) -> u64 {
        self.space | word::kind::<O>() << word::KIND_SHIFT
    }
}

impl<O: Hash + 'static> Hash for OwnedLookup<'_, O> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `ErasedKey` hashes the key stored for `O` (`hash_view` for its views).
        match word::encode(self.args) {
            Some(w) => hash_word(self.id(), w, state),
            None => {
                self.id().hash(state);
                self.args.hash(state);
            }
        }
    }
}

impl<O: Hash + Eq + Send + Sync + 'static> memokit_engine::Equivalent<ErasedKey>
    for OwnedLookup<'_, O>
{
    fn equivalent(&self, key: &ErasedKey) -> bool {
        self.id() == key.id
            && match &key.args {
                // Equal ids: the word is of `O`'s kind.
                Args::Word(w) => word::encode(self.args) == Some(*w),
                Args::Boxed(b) => {
                    b.as_any().downcast_ref::<OwnedKey<O>>().is_some_and(|o| o.args == *self.args)
                }
            }
    }
}
