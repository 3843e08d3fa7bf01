//! `delete_memoized!` and `delete_memoized_verhash!`: calls of the doc-hidden companions that
//! `#[memoize]` generates, so their arguments are type-checked like a call of the function.
//!
//! | form | expands to |
//! |---|---|
//! | `delete_memoized!(path::f)` | `path::f_memo().delete_all()` |
//! | `delete_memoized!(path::f, a, b)` | `path::delete_memoized_needs_memoize_on_f(a, b)` |
//! | `delete_memoized!(obj.m)` | `(obj).delete_memoized_all_needs_memoize_on_m()` |
//! | `delete_memoized!(obj.m, a)` | `(obj).delete_memoized_needs_memoize_on_m(a)` |
//! | `delete_memoized!(Type::m, &obj, a)` | `Type::delete_memoized_needs_memoize_on_m(&obj, a)` |
//! | `delete_memoized_verhash!(path::f)` | `path::f_memo().delete_verhash()` |
//! | `delete_memoized_verhash!(obj.m)` | `(obj).delete_memoized_all_needs_memoize_on_m()` |
//!
//! The macros cannot see the function they name. The companions' names say what is missing
//! when it is not memoized: rustc's error is then "cannot find function
//! `delete_memoized_needs_memoize_on_f`" (or "no method named
//! `delete_memoized_all_needs_memoize_on_m`") at `f`; for `delete_memoized!(f)` it is "cannot
//! find function `f_memo`", the handle `#[memoize]` generates.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Member, Token};

enum Target {
    Path(syn::ExprPath),
    Method(Box<Expr>, syn::Ident),
}

const HOW: &str = "name the memoized function by a path (`f`, `module::f`, `Type::method`) or an instance method (`obj.method`)";

const CALL: &str = "the arguments go after the function, separated by commas: `delete_memoized!(f, 1, 2)` deletes the result of `f(1, 2)`, `delete_memoized!(obj.m, 3)` that of `obj.m(3)`";

fn parse(input: TokenStream) -> syn::Result<(Target, Vec<Expr>)> {
    let span = proc_macro2::Span::call_site();
    let list = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(input)?;
    let mut it = list.into_iter();
    let first =
        it.next().ok_or_else(|| syn::Error::new(span, format!("no function given: {HOW}")))?;
    let target = match first {
        Expr::Path(p) if p.qself.is_none() && !p.path.segments.is_empty() => Target::Path(p),
        Expr::Field(f) => match f.member {
            Member::Named(id) => Target::Method(f.base, id),
            Member::Unnamed(i) => return Err(syn::Error::new(i.span, HOW)),
        },
        // `delete_memoized!(f(1, 2))`: the arguments written as a call.
        Expr::Call(c) => return Err(syn::Error::new(c.paren_token.span.join(), CALL)),
        Expr::MethodCall(m) => return Err(syn::Error::new(m.paren_token.span.join(), CALL)),
        // `delete_memoized!("f")`: a name, as the by-name deletes take.
        Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(l), .. }) => {
            let by_name = "to delete by name (the full path, `my_crate::module::f`), call \
                `memokit::global().delete_memoized(name)`, or the method of the memoizer the \
                function is bound to";
            return Err(syn::Error::new(l.span(), format!("{HOW}, not a string; {by_name}")));
        }
        other => return Err(syn::Error::new_spanned(other, HOW)),
    };
    Ok((target, it.collect()))
}

/// The doc-hidden companion `delete_memoized!(f, args..)` calls, spanned at `span`. Named for
/// the error a user sees when `f` is not memoized (see the module docs).
pub(crate) fn deleter(f: &syn::Ident, span: proc_macro2::Span) -> syn::Ident {
    format_ident!("delete_memoized_needs_memoize_on_{}", f, span = span)
}

/// The doc-hidden companion `delete_memoized!(obj.m)` calls (a method's per-receiver delete).
pub(crate) fn deleter_all(m: &syn::Ident, span: proc_macro2::Span) -> syn::Ident {
    format_ident!("delete_memoized_all_needs_memoize_on_{}", m, span = span)
}

/// `path::f` -> `path::<prefix>f<suffix>`, the new segment spanned at `f`.
fn rename(p: &syn::ExprPath, prefix: &str, suffix: &str) -> syn::ExprPath {
    let mut p = p.clone();
    if let Some(last) = p.path.segments.last_mut() {
        last.ident = format_ident!("{}{}{}", prefix, last.ident, suffix, span = last.ident.span());
    }
    p
}

/// `delete_memoized!(..)`.
pub(crate) fn delete_memoized(input: TokenStream) -> TokenStream {
    let (target, args) = match parse(input) {
        Ok(t) => t,
        Err(e) => return e.to_compile_error(),
    };
    match (target, args.is_empty()) {
        (Target::Path(p), true) => {
            let memo = rename(&p, "", "_memo");
            quote!({ #memo().delete_all(); })
        }
        (Target::Path(p), false) => {
            let mut del = p.clone();
            if let Some(last) = del.path.segments.last_mut() {
                last.ident = deleter(&last.ident, last.ident.span());
            }
            quote!({ #del(#(#args),*); })
        }
        (Target::Method(obj, m), true) => {
            let del = deleter_all(&m, m.span());
            quote!({ (#obj).#del(); })
        }
        (Target::Method(obj, m), false) => {
            let del = deleter(&m, m.span());
            quote!({ (#obj).#del(#(#args),*); })
        }
    }
}

/// `delete_memoized_verhash!(..)`.
pub(crate) fn delete_memoized_verhash(input: TokenStream) -> TokenStream {
    let (target, args) = match parse(input) {
        Ok(t) => t,
        Err(e) => return e.to_compile_error(),
    };
    if let Some(first) = args.first() {
        return syn::Error::new_spanned(
            first,
            "`delete_memoized_verhash!` takes only the function: it drops the version of all its results; to delete one result use `delete_memoized!(f, args..)`",
        )
        .to_compile_error();
    }
    match target {
        Target::Path(p) => {
            let memo = rename(&p, "", "_memo");
            quote!({ #memo().delete_verhash(); })
        }
        Target::Method(obj, m) => {
            let del = deleter_all(&m, m.span());
            quote!({ (#obj).#del(); })
        }
    }
}
