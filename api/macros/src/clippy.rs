//! Which of clippy's lints the expansion must allow, and only those.
//!
//! Why: every `allow` the expansion writes is a warning (`forbidden_lint_groups`, an error under
//! `deny(warnings)`) in a crate that forbids the lint's group, `#![forbid(clippy::all)]`, for each
//! memoized function. So the expansion allows a lint only where clippy would raise it on a
//! generated item (measured with rustc and clippy 1.95):
//! - `too_many_arguments`, on `f`, `f_uncached` and the deleters, which take `f`'s arguments
//!   (the receiver included): raised past 7 (clippy's default threshold);
//! - `type_complexity`, on a method's `f_memo`, whose type is spanned at `self` (see `expand`):
//!   raised when the type `Memoized<(<Self as MemoIdentity>::Id, ..)>` scores past 250
//!   (from 6 plain arguments, fewer of nested types); a free or associated function's handle type comes from the macro,
//!   which clippy does not check.
//!
//! A crate that lowers clippy's thresholds (`clippy.toml`) may see these lints on generated
//! items below them; an `allow` on `f` is copied to them.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{GenericArgument, PathArguments, ReturnType, Type};

use crate::validate::{Func, Kind};

/// Clippy's default `too-many-arguments-threshold`.
const MAX_ARGUMENTS: usize = 7;
/// Clippy's default `type-complexity-threshold`. [`complexity`] agreed with clippy 1.95 at
/// the boundary: a method's handle with 5 `u64` arguments (250) was
/// not flagged; with 6 (280), with 3 and an `Option<String>` (260), and with 3 and a `&[u8]`
/// (260) it was.
const MAX_COMPLEXITY: u64 = 250;

/// `#[allow(clippy::too_many_arguments)]` if `f`'s arguments, its receiver included, are more
/// than clippy's default allows.
pub(crate) fn allow_many_arguments(f: &Func) -> TokenStream {
    let receiver = usize::from(matches!(f.kind, Kind::Method(_)));
    if f.params.len() + receiver > MAX_ARGUMENTS {
        quote!(#[allow(clippy::too_many_arguments)])
    } else {
        quote!()
    }
}

/// `#[allow(clippy::type_complexity)]` for a method's handle whose argument types (`owned`, in
/// order) make it score near clippy's threshold.
pub(crate) fn allow_complex_handle(f: &Func, owned: &[TokenStream]) -> TokenStream {
    if !matches!(f.kind, Kind::Method(_)) {
        return quote!();
    }
    // `Memoized<(..)>`: the path at nesting 1, the tuple at 2, its parts at 3; the id,
    // `<Self as MemoIdentity>::Id`, is a path (30) holding `Self` (40).
    let parts: u64 = owned
        .iter()
        .map(|t| syn::parse2::<Type>(t.clone()).map_or(u64::MAX / 4, |t| complexity(&t, 3)))
        .sum();
    if 10 + 20 + 70 + parts > MAX_COMPLEXITY {
        quote!(#[allow(clippy::type_complexity)])
    } else {
        quote!()
    }
}

/// Clippy's `type_complexity` score of `ty` at nesting level `nest`, as its visitor counts:
/// a path, slice, tuple or array 10 × `nest`, what it holds one level deeper; a reference or
/// a pointer 1, at the same level; a function pointer 50 × `nest`. A trait object, `impl
/// Trait` and anything else counts 50 × `nest` (clippy counts 20 or 50: the higher).
fn complexity(ty: &Type, nest: u64) -> u64 {
    let inner = |t: &Type| complexity(t, nest + 1);
    match ty {
        Type::Path(p) => {
            let qself = p.qself.as_ref().map_or(0, |q| inner(&q.ty));
            let args: u64 = p
                .path
                .segments
                .iter()
                .map(|s| match &s.arguments {
                    PathArguments::AngleBracketed(a) => a
                        .args
                        .iter()
                        .map(|g| match g {
                            GenericArgument::Type(t) => inner(t),
                            GenericArgument::AssocType(a) => inner(&a.ty),
                            _ => 0,
                        })
                        .sum(),
                    PathArguments::Parenthesized(a) => {
                        let out = match &a.output {
                            ReturnType::Type(_, t) => inner(t),
                            ReturnType::Default => 0,
                        };
                        a.inputs.iter().map(inner).sum::<u64>() + out
                    }
                    PathArguments::None => 0,
                })
                .sum();
            10 * nest + qself + args
        }
        Type::Slice(s) => 10 * nest + inner(&s.elem),
        Type::Array(a) => 10 * nest + inner(&a.elem),
        Type::Tuple(t) => 10 * nest + t.elems.iter().map(inner).sum::<u64>(),
        Type::Reference(r) => 1 + complexity(&r.elem, nest),
        Type::Ptr(p) => 1 + complexity(&p.elem, nest),
        Type::Paren(p) => complexity(&p.elem, nest),
        Type::Group(g) => complexity(&g.elem, nest),
        Type::BareFn(f) => {
            let out = match &f.output {
                ReturnType::Type(_, t) => inner(t),
                ReturnType::Default => 0,
            };
            50 * nest + f.inputs.iter().map(|a| inner(&a.ty)).sum::<u64>() + out
        }
        _ => 50 * nest,
    }
}

#[cfg(test)]
mod tests {
    use super::complexity;

    fn score(t: &str) -> u64 {
        complexity(&syn::parse_str(t).expect("a type"), 3)
    }

    /// The scores of the cases measured with clippy 1.95 ([`super::MAX_COMPLEXITY`]);
    /// `tests/memoize_forbid_clippy.rs` and `tests/memoize_lints.rs` check the expansion
    /// against clippy itself.
    #[test]
    fn scores_as_clippy_counts() {
        assert_eq!(score("u64"), 30);
        assert_eq!(score("::memokit::__private::String"), 30);
        assert_eq!(score("Vec<Vec<String>>"), 30 + 40 + 50);
        assert_eq!(score("&str"), 31);
        assert_eq!(score("(u8, String)"), 30 + 40 + 40);
        assert_eq!(score("<B as ::memokit::__private::ToOwned>::Owned"), 30 + 40);
        let handle = |parts: &[&str]| 100 + parts.iter().map(|t| score(t)).sum::<u64>();
        assert!(handle(&["u64"; 5]) <= super::MAX_COMPLEXITY);
        assert!(handle(&["u64"; 6]) > super::MAX_COMPLEXITY);
        assert!(handle(&["u64", "u64", "u64", "Option<String>"]) > super::MAX_COMPLEXITY);
        assert!(handle(&["u64", "u64", "u64", "Vec<u8>"]) > super::MAX_COMPLEXITY);
    }
}
