//! The user's attributes on the companions `#[memoize]` generates.

use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, Ident};

/// Attributes copied to companions: conditional compilation and lint levels.
pub(crate) fn companion_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|a| {
            ["cfg", "cfg_attr", "allow", "expect", "warn", "deny", "deprecated"]
                .iter()
                .any(|n| a.path().is_ident(n))
        })
        .collect()
}

/// `a`, a lint expectation made `allow`. A user's `#[expect(..)]` is kept on `f_uncached`
/// alone, which has the user's signature and body, where the lints it expects are raised; on
/// `f`, `f_memo` and the hidden companions, which do not raise them (`f_memo` takes no
/// arguments, the deleters allow `dead_code`, `f` only borrows its arguments), a copy would
/// warn that it is unfulfilled.
pub(crate) fn expect_as_allow(a: &Attribute) -> Attribute {
    let mut a = a.clone();
    if let syn::Meta::List(l) = &mut a.meta {
        if l.path.is_ident("expect") {
            l.path = Ident::new("allow", l.path.span()).into();
        }
    }
    a
}

/// Whether `t` is or holds the identifier `word`.
fn mentions(t: &proc_macro2::TokenTree, word: &str) -> bool {
    match t {
        proc_macro2::TokenTree::Ident(i) => i == word,
        proc_macro2::TokenTree::Group(g) => g.stream().into_iter().any(|t| mentions(&t, word)),
        _ => false,
    }
}

/// Whether `attrs` hold the attribute `name`, directly or in a `cfg_attr` (`deprecated`,
/// `cfg_attr(feature = "x", inline(never))`).
pub(crate) fn has<'a>(attrs: impl IntoIterator<Item = &'a Attribute>, name: &str) -> bool {
    attrs.into_iter().any(|a| {
        a.path().is_ident(name)
            || (a.path().is_ident("cfg_attr")
                && a.meta.to_token_stream().into_iter().any(|t| mentions(&t, name)))
    })
}
