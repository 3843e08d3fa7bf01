//! The user's attributes on the companions `#[memoize]` generates.

use quote::{quote, ToTokens};
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Meta, Token};

/// The attributes of `attrs` copied to companions: conditional compilation, lint levels and
/// (with `deprecated`) `deprecated`, also inside a `cfg_attr`. Its other attributes
/// (`export_name`, `no_mangle`, `link_section`, `inline`, `doc`, ...) are `f`'s alone, like
/// the same attributes outside one: a copy of an export would define its symbol twice (review
/// s19b). A `cfg_attr` left with none is dropped.
pub(crate) fn companion_attrs(attrs: &[Attribute], deprecated: bool) -> Vec<Attribute> {
    let keep = |m: &Meta| {
        let names = ["cfg", "allow", "expect", "warn", "deny"].iter();
        (names.chain(deprecated.then_some(&"deprecated")).any(|n| m.path().is_ident(n)))
            .then(|| m.clone())
    };
    attrs
        .iter()
        .filter_map(|a| Some(Attribute { meta: map_meta(&a.meta, &keep)?, ..a.clone() }))
        .collect()
}

/// `meta` mapped by `f`, or inside a `cfg_attr` (nested ones too) each of its attributes, the
/// `cfg_attr` dropped when none is left (or when it cannot be read).
fn map_meta(meta: &Meta, f: &dyn Fn(&Meta) -> Option<Meta>) -> Option<Meta> {
    let Meta::List(l) = meta else { return f(meta) };
    if !l.path.is_ident("cfg_attr") {
        return f(meta);
    }
    let (pred, list) = l
        .parse_args_with(|input: ParseStream| {
            let pred: Meta = input.parse()?;
            input.parse::<Token![,]>()?;
            Ok((pred, Punctuated::<Meta, Token![,]>::parse_terminated(input)?))
        })
        .ok()?;
    let kept: Vec<Meta> = list.iter().filter_map(|m| map_meta(m, f)).collect();
    if kept.is_empty() {
        return None;
    }
    let mut l = l.clone();
    l.tokens = quote!(#pred, #(#kept),*);
    Some(Meta::List(l))
}

/// `a`, a lint expectation made `allow` (also in a `cfg_attr`). A user's `#[expect(..)]` is
/// kept on `f_uncached` alone, which has the user's signature and body, where the lints it
/// expects are raised; on `f`, `f_memo` and the hidden companions, which do not raise them
/// (`f_memo` takes no arguments, the deleters are mentioned by `f`, `f` only borrows its
/// arguments), a copy would warn that it is unfulfilled.
pub(crate) fn expect_as_allow(a: &Attribute) -> Attribute {
    let allow = |m: &Meta| {
        let mut m = m.clone();
        if let Meta::List(l) = &mut m {
            if l.path.is_ident("expect") {
                l.path = Ident::new("allow", l.path.span()).into();
            }
        }
        Some(m)
    };
    match map_meta(&a.meta, &allow) {
        Some(meta) => Attribute { meta, ..a.clone() },
        None => a.clone(),
    }
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
