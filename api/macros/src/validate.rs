//! Checking the memoized function's signature and building the model that `expand` reads.
//!
//! Every rejection is an error at the offending token saying what to do; all of them are
//! collected so that the caller emits them together with one fallback expansion.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericArgument, GenericParam, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::args::Options;

/// What kind of function carries the attribute.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// A free function (module level).
    Free,
    /// An associated function without `self` (`associated` flag).
    Associated,
    /// A `&self` method; the span of `self`.
    Method(Span),
}

/// One argument.
pub(crate) struct Param {
    pub(crate) name: syn::Ident,
    pub(crate) ty: Type,
    /// The type behind the reference for `&T` arguments, the type itself otherwise.
    pub(crate) borrowed: Type,
    /// Whether the argument is a reference (`&T`).
    pub(crate) by_ref: bool,
}

/// How results are returned.
pub(crate) enum Ret {
    /// A plain value (including `()` and `Option<T>`).
    Plain(Type),
    /// `...::Result<T, ..>`: only `Ok(T)` is stored; the `T`.
    Result(Type),
}

/// The validated function.
pub(crate) struct Func {
    pub(crate) item: ItemFn,
    pub(crate) kind: Kind,
    pub(crate) params: Vec<Param>,
    pub(crate) ret: Ret,
}

struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.add(syn::Error::new(span, msg));
    }

    /// [`Errors::push`] spanned over all of `tokens` (a span of several tokens, which
    /// `Spanned::span` cannot give on stable: it is the first token's there).
    fn push_spanned(&mut self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.add(syn::Error::new_spanned(tokens, msg));
    }

    fn add(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
}

/// What is wrong with a `timeout` written as a literal that no timeout converts from (a
/// string, a negative number, a fraction), which would otherwise get rustc's error about a
/// `From` bound of a hidden function (review s20u). Any other expression is left to the
/// type checker: `Timeout` converts from `u64` seconds and from a `Duration`.
fn timeout_literal(e: &syn::Expr) -> Option<&'static str> {
    use syn::{Expr, Lit, UnOp};
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(_) => Some("`timeout` takes whole seconds or a `Duration`, not a string: write `timeout = 60`, `timeout = std::time::Duration::from_secs(300)`, or `timeout = memokit::Timeout::Never` for no deadline"),
            Lit::Float(_) => Some("`timeout` takes whole seconds as an integer (`timeout = 60`), or a `Duration` for any other length, such as `timeout = std::time::Duration::from_millis(1500)`"),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => Some("a timeout cannot be negative: write a number of seconds (`timeout = 60`), `timeout = 0` to store nothing, or `timeout = memokit::Timeout::Never` for no deadline"),
        Expr::Paren(p) => timeout_literal(&p.expr),
        Expr::Group(g) => timeout_literal(&g.expr),
        _ => None,
    }
}

/// Finds `Self` in types.
struct FindSelf(Vec<Span>);

impl<'ast> Visit<'ast> for FindSelf {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if let Some(first) = p.segments.first() {
            if first.ident == "Self" {
                self.0.push(first.ident.span());
            }
        }
        syn::visit::visit_path(self, p);
    }
}

/// The most parts a key built from the arguments may have (std's `Hash` and `Eq` on tuples).
const MAX_KEY_PARTS: usize = 12;

/// The parts of a `key =` expression: the elements of a tuple, flattened (`key = (a, (b, c))`
/// is keyed like `(a, b, c)`), or the expression itself. Looks through parentheses and the
/// invisible group a `macro_rules!` fragment (`key = $k`) arrives in.
pub(crate) fn key_parts(k: &syn::Expr) -> Vec<&syn::Expr> {
    match k {
        syn::Expr::Paren(p) => key_parts(&p.expr),
        syn::Expr::Group(g) => key_parts(&g.expr),
        syn::Expr::Tuple(t) if !t.elems.is_empty() => t.elems.iter().flat_map(key_parts).collect(),
        _ => vec![k],
    }
}

/// Where the `key =` expression first uses `name` (an argument, or `self`): a path of one
/// segment `name` (`name`, `name.field`, `f(name)`, `S { name }`), or the token `name` inside a
/// macro call or an expression syn does not parse (a raw identifier `r#a` is `a`). A field or
/// method called `name` (`other.name`, `other.name()`), a segment of a longer path
/// (`name::f`) and a label do not use it. Conservative: an expression that shadows `name`
/// (`{ let name = 1; name }`) counts.
pub(crate) fn first_use(key: &syn::Expr, name: &str) -> Option<Span> {
    use syn::ext::IdentExt;
    fn in_tokens(tokens: proc_macro2::TokenStream, name: &str) -> Option<Span> {
        tokens.into_iter().find_map(|t| match t {
            proc_macro2::TokenTree::Ident(i) if i.unraw() == name => Some(i.span()),
            proc_macro2::TokenTree::Group(g) => in_tokens(g.stream(), name),
            // An inline argument of a format string (`format!("{name}")`, `"{name:?}"`).
            proc_macro2::TokenTree::Literal(l) if names_in_format(&l.to_string(), name) => {
                Some(l.span())
            }
            _ => None,
        })
    }
    struct Uses<'n> {
        name: &'n str,
        found: Option<Span>,
    }
    impl<'ast> Visit<'ast> for Uses<'_> {
        fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
            let plain = p.qself.is_none() && p.path.leading_colon.is_none();
            if let Some(i) = p.path.get_ident().filter(|i| plain && i.unraw() == self.name) {
                self.found = self.found.or(Some(i.span()));
            }
            syn::visit::visit_expr_path(self, p);
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            self.found = self.found.or_else(|| in_tokens(m.tokens.clone(), self.name));
            syn::visit::visit_macro(self, m);
        }
        fn visit_expr(&mut self, e: &'ast syn::Expr) {
            if let syn::Expr::Verbatim(t) = e {
                self.found = self.found.or_else(|| in_tokens(t.clone(), self.name));
            }
            syn::visit::visit_expr(self, e);
        }
    }
    let mut u = Uses { name, found: None };
    u.visit_expr(key);
    u.found
}

/// Whether the literal `lit` (as written, quotes included) could be a format string that
/// names `name` inline: `{name}`, `{name:..}`. Conservative: any string literal with such a
/// brace counts.
fn names_in_format(lit: &str, name: &str) -> bool {
    lit.ends_with('"')
        && lit.match_indices('{').any(|(i, _)| {
            let rest = &lit[i + 1..];
            rest.strip_prefix(name).is_some_and(|r| r.starts_with('}') || r.starts_with(':'))
        })
}

/// A `key = ()`: the explicit key for "one result for every call, whatever the arguments".
fn is_unit(e: &syn::Expr) -> bool {
    matches!(bare_expr(e), syn::Expr::Tuple(t) if t.elems.is_empty())
}

/// `e` without the parentheses, invisible groups (a `macro_rules!` fragment) and references
/// around it.
fn bare_expr(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => bare_expr(&p.expr),
        syn::Expr::Group(g) => bare_expr(&g.expr),
        syn::Expr::Reference(r) => bare_expr(&r.expr),
        e => e,
    }
}

/// The arguments that a `key` part which is an array literal holds as they are (`[a, b]`,
/// `[&a, b]`), with their spans. In the key expression an argument is a reference, so such
/// an array is an array of references to the arguments, which rustc rejects with errors about
/// the macro's hidden bindings; this names the fix instead.
fn arguments_in_array(part: &syn::Expr, params: &[Param]) -> Vec<(String, Span)> {
    let syn::Expr::Array(array) = bare_expr(part) else { return Vec::new() };
    array
        .elems
        .iter()
        .filter_map(|e| match bare_expr(e) {
            syn::Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
            _ => None,
        })
        .filter(|i| params.iter().any(|p| p.name == *i))
        .map(|i| (i.to_string(), i.span()))
        .collect()
}

fn impl_trait(ty: &Type) -> Option<Span> {
    struct F(Option<Span>);
    impl<'ast> Visit<'ast> for F {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.0.get_or_insert(t.impl_token.span);
        }
    }
    let mut f = F(None);
    f.visit_type(ty);
    f.0
}

/// The first borrow in `ty` that cannot be stored: a lifetime other than `'static` (named or
/// `'_`) or a reference with an elided one. Function types (`fn(&str) -> u32`, `Fn(&str)`) and
/// `for<'a>` bounds borrow nothing of the call, so they are not looked into. A lifetime elided
/// in a path (`Name` for `Name<'_>`) cannot be seen here; rustc reports it.
fn borrow_in(ty: &Type) -> Option<Span> {
    struct F(Option<Span>);
    impl<'ast> Visit<'ast> for F {
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            if l.ident != "static" {
                self.0.get_or_insert(l.span());
            }
        }
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            if r.lifetime.is_none() {
                self.0.get_or_insert(r.and_token.span);
            }
            syn::visit::visit_type_reference(self, r);
        }
        fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &'ast syn::ParenthesizedGenericArguments,
        ) {
        }
        fn visit_bound_lifetimes(&mut self, _: &'ast syn::BoundLifetimes) {}
        fn visit_trait_bound(&mut self, b: &'ast syn::TraitBound) {
            if b.lifetimes.is_none() {
                syn::visit::visit_trait_bound(self, b);
            }
        }
    }
    let mut f = F(None);
    f.visit_type(ty);
    f.0
}

/// The `dyn` of `ty` when it is a trait object (`dyn Trait`, `(dyn Trait + Send)`).
fn trait_object(ty: &Type) -> Option<Span> {
    match ty {
        Type::TraitObject(t) => Some(t.dyn_token.map_or_else(|| t.span(), |d| d.span)),
        Type::Paren(p) => trait_object(&p.elem),
        Type::Group(g) => trait_object(&g.elem),
        _ => None,
    }
}

/// `T` when `ty` is a path type whose last segment is `Result` with a first type argument;
/// for one without arguments (an alias such as `std::fmt::Result`), its `Ok` type through
/// `__private::ResultOk`.
fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    if matches!(last.arguments, PathArguments::None) {
        return Some(
            syn::parse_quote_spanned!(ty.span()=> <#ty as ::memokit::__private::ResultOk>::Ok),
        );
    }
    let PathArguments::AngleBracketed(a) = &last.arguments else { return None };
    a.args.iter().find_map(|g| match g {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

/// Whether `a` is `#[memoize]` (by any path: `memoize`, `memokit::memoize`).
pub(crate) fn is_memoize(a: &syn::Attribute) -> bool {
    a.path().segments.last().is_some_and(|s| s.ident == "memoize")
}

/// Validates `item` under `opts`.
pub(crate) fn validate(item: ItemFn, opts: &Options) -> Result<Func, syn::Error> {
    let mut err = Errors(None);
    for a in &item.attrs {
        if is_memoize(a) {
            err.push(a.path().span(), "`#[memoize]` is given twice: keep one, with all the options in it (`#[memoize(timeout = 60, key = ..)]`)");
        }
    }
    let sig = &item.sig;
    if let Some(a) = &sig.asyncness {
        err.push(a.span, "`#[memoize]` does not support `async fn` yet: memoize a synchronous function (for example the one the async function awaits on a blocking pool)");
    }
    if let Some(c) = &sig.constness {
        err.push(c.span, "`#[memoize]` cannot be used on a `const fn`: remove `const`");
    }
    if let Some(u) = &sig.unsafety {
        err.push(u.span, "`#[memoize]` cannot be used on an `unsafe fn`: memoize a safe wrapper");
    }
    if let Some(a) = &sig.abi {
        err.push(a.extern_token.span, "`#[memoize]` cannot be used on an `extern` function: memoize a Rust function that it calls");
    }
    if let Some(v) = &sig.variadic {
        err.push(v.span(), "`#[memoize]` cannot be used on a variadic function");
    }
    for g in &sig.generics.params {
        match g {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(t) => err.push(t.ident.span(), format!("a memoized function cannot be generic over type `{}`: each memoized function has one cache, so write a non-generic function per type (for example a small wrapper), or take a concrete type (lifetime parameters are fine)", t.ident)),
            GenericParam::Const(c) => err.push(c.ident.span(), format!("a memoized function cannot be generic over const `{}`: pass the value as an argument instead (lifetime parameters are fine)", c.ident)),
        }
    }
    if let Some(t) = &opts.timeout {
        if let Some(msg) = timeout_literal(t) {
            err.push_spanned(t, msg);
        }
    }
    let mut kind = if opts.associated.is_some() { Kind::Associated } else { Kind::Free };
    let mut params = Vec::new();
    let mut selfs = FindSelf(Vec::new());
    for (i, arg) in sig.inputs.iter().enumerate() {
        match arg {
            FnArg::Receiver(r) => {
                if let Some(span) = opts.associated {
                    err.push(span, "`associated` is for associated functions without `self`; remove it from this method");
                }
                if r.colon_token.is_some() {
                    err.push(r.ty.span(), "memoized methods take `&self`; a typed receiver (`self: Arc<Self>`, `self: Box<Self>`, ...) is not supported: take `&self`");
                } else if r.reference.is_none() {
                    err.push(r.self_token.span, "memoized methods take `&self`; `self` by value would be consumed by the first call: take `&self`");
                } else if let Some(m) = &r.mutability {
                    err.push(m.span, "memoized methods take `&self`; `&mut self` suggests the method changes its receiver, which a cached result would skip: take `&self`, or memoize a `&self` helper that it calls");
                } else if i != 0 {
                    err.push(r.self_token.span, "`self` must come first");
                }
                kind = Kind::Method(r.self_token.span);
            }
            FnArg::Typed(pt) => {
                let name = match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                        pi.ident.clone()
                    }
                    other => {
                        err.push(other.span(), "arguments of memoized functions must be plain names (`x: T`): destructure inside the function body");
                        syn::Ident::new("__memokit_invalid", other.span())
                    }
                };
                let ty = (*pt.ty).clone();
                if let Some(s) = impl_trait(&ty) {
                    err.push(s, "a memoized function cannot take `impl Trait` arguments: each memoized function has one cache, so take a concrete type");
                }
                selfs.visit_type(&ty);
                let (borrowed, by_ref) = match &ty {
                    Type::Reference(r) => {
                        if let Some(m) = &r.mutability {
                            err.push(m.span, "a memoized function cannot take `&mut` arguments: arguments are compared by value and the function must not change them; take `&T`");
                        }
                        ((*r.elem).clone(), true)
                    }
                    t => (t.clone(), false),
                };
                if let Some(s) = by_ref.then(|| trait_object(&borrowed)).flatten() {
                    err.push(s, "a memoized function cannot take `&dyn Trait`: arguments are stored in the key as owned values, and a trait object has no owned form (`ToOwned`); take a concrete type, or pass what identifies the value (an id, a name)");
                }
                if let Some(s) = borrow_in(&borrowed) {
                    err.push(s, "an argument of a memoized function cannot hold a borrow inside its type: arguments are stored in the key as owned values, and only a top-level `&T` is owned for that (`&str` as `String`, `&[T]` as `Vec<T>`); take an owned type (`String`, `Cow<'static, str>`, a struct without lifetimes) or a `&T` of one");
                }
                params.push(Param { name, ty, borrowed, by_ref });
            }
        }
    }
    let ret = match &sig.output {
        ReturnType::Default => Ret::Plain(syn::parse_quote!(())),
        ReturnType::Type(_, t) => {
            selfs.visit_type(t);
            if let Some(s) = impl_trait(t) {
                err.push(s, "a memoized function cannot return `impl Trait`: results are stored, so name the type (or return `Arc<dyn Trait + Send + Sync>`)");
            }
            if let Type::Never(n) = &**t {
                err.push(n.bang_token.span, "a memoized function cannot return `!`: it never returns a result to store; remove `#[memoize]`");
            }
            let ret = match result_ok_type(t) {
                Some(ok) => Ret::Result(ok),
                None => Ret::Plain((**t).clone()),
            };
            // Only a `Result`'s `Ok` value is stored: its error may borrow.
            let (Ret::Result(stored) | Ret::Plain(stored)) = &ret;
            if let Some(s) = borrow_in(stored) {
                err.push(s, "a memoized function cannot return a borrow: results are stored and outlive the call; return an owned value (`String`, `Vec<T>`, `Arc<T>`) or `'static` data");
            }
            ret
        }
    };
    for s in selfs.0 {
        err.push(
            s,
            "a memoized function's signature cannot mention `Self`: write the type's name instead",
        );
    }
    // The arguments (and a method's receiver id) are the key's parts, hashed and compared as
    // a tuple: std implements `Hash` and `Eq` for tuples of up to 12.
    let id_parts = usize::from(matches!(kind, Kind::Method(_)));
    if opts.key.is_none() && params.len() + id_parts > MAX_KEY_PARTS {
        let extra = &params[MAX_KEY_PARTS - id_parts];
        err.push(
            extra.name.span(),
            format!(
                "a memoized {} takes at most {} arguments, because they form its key (a tuple of at most {MAX_KEY_PARTS}{}): pass some of them as one struct that derives `Hash, PartialEq, Eq, Clone`, or choose what identifies a call with `#[memoize(key = ...)]`",
                if id_parts == 1 { "method" } else { "function" },
                MAX_KEY_PARTS - id_parts,
                if id_parts == 1 { ", the receiver's id included" } else { "" },
            ),
        );
    }
    if let Some(key) = &opts.key {
        let parts = key_parts(key);
        if parts.len() + id_parts > MAX_KEY_PARTS {
            err.push(
                parts[MAX_KEY_PARTS - id_parts].span(),
                format!(
                    "a `key` has at most {} parts, because they form a tuple of at most {MAX_KEY_PARTS}{}: key by fewer of them, or group some in a struct that derives `Hash, PartialEq, Eq, Clone` (a tuple inside the key is flattened into it)",
                    MAX_KEY_PARTS - id_parts,
                    if id_parts == 1 { ", the receiver's id included" } else { "" },
                ),
            );
        }
        // A closure (the seed's `make_cache_key` was a function) is no key: rustc would
        // report it as a key that is not `Hash + Eq` and, with a borrowed argument, a missing
        // `Clone` at the whole attribute. Say what to write instead.
        let closures: Vec<&syn::ExprClosure> = parts
            .iter()
            .filter_map(|p| match bare_expr(p) {
                syn::Expr::Closure(c) => Some(c),
                _ => None,
            })
            .collect();
        let has_closure = !closures.is_empty();
        for c in closures {
            err.push(
                c.or1_token.span,
                "`key` is an expression over the arguments, not a function: write the closure's body, naming the arguments directly (`key = user.id`, not `key = |user| user.id`)",
            );
        }
        let uses_self = first_use(key, "self");
        if let Some(s) = uses_self {
            err.push(s, "`key` cannot use `self`: the receiver's `MemoIdentity` is always part of the key of a method; key by the other arguments");
        }
        // A key over none of the arguments (`key = "k"`, `key = CONFIG_VERSION`) gives every
        // call the result of the first: the spec's key is "an expression over the
        // arguments". Sharing one result across all arguments on purpose is `key = ()`. Not
        // reported over a closure or `self`, already errors of their own.
        let uses =
            |p: &Param| first_use(key, &syn::ext::IdentExt::unraw(&p.name).to_string()).is_some();
        if !params.is_empty()
            && !is_unit(key)
            && !has_closure
            && uses_self.is_none()
            && !params.iter().any(uses)
        {
            let names: Vec<String> = params.iter().map(|p| format!("`{}`", p.name)).collect();
            err.push(
                key.span(),
                format!(
                    "this `key` uses none of the arguments ({}), so every call would get the result of the first, whatever its arguments: key by what identifies a call (`key = user.id`, `key = (a, b.len())`); to share one result across all arguments on purpose, write `key = ()`",
                    names.join(", ")
                ),
            );
        }
        for (arg, span) in parts.iter().flat_map(|p| arguments_in_array(p, &params)) {
            err.push(
                span,
                format!("in `key`, the arguments are seen by reference, so an array of them (`{arg}` here) would borrow them past the call: key by a tuple instead (`key = (a, b)`), or, for `Copy` arguments, copy the values into the array (`[*a, *b]`)"),
            );
        }
    }
    match err.0 {
        Some(e) => Err(e),
        None => Ok(Func { item, kind, params, ret }),
    }
}
