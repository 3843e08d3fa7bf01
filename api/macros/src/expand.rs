//! Generating the memoized function and its companions.
//!
//! For `vis fn f(a: A, b: &B) -> R { body }` (in a module; in an `impl` block every path
//! below is `Self::..` instead):
//! ```text
//! vis fn f(a: A, b: &B) -> R {          // the attributes of f stay here
//!     <trait checks, spanned at the offending types>
//!     let m = f_memo();
//!     [if (unless)() { return f_uncached(a.to_owned(), b); }]
//!     <call through m with the key (&a, b)>(|| f_uncached(a.to_owned(), b))
//! }
//! vis fn f_uncached(a: A, b: &B) -> R { body }
//! vis fn f_memo() -> Memoized<(A, <B as ToOwned>::Owned)> { static SLOT; handle(&SLOT, spec, ops) }
//! #[doc(hidden)] vis fn delete_memoized_needs_memoize_on_f(a: A, b: &B) { <delete the key (&a, b)> }
//! ```
//! Methods add `&MemoIdentity::memo_id(self)` in front of the key, a receiver argument to the
//! call, and `delete_memoized_all_needs_memoize_on_f(&self)` for `delete_memoized!(obj.f)`. By-value arguments
//! are passed to the uncached body with `to_owned` (a clone, on a miss only), since the key
//! borrows them during the call.
//!
//! In an `impl` block, an empty private `fn memoize_works_in_inherent_impls_only_.._f()` comes
//! first: in a trait impl every sibling of `f` is an error ("not a member of trait"), and this
//! one makes the first of them name the fix. For a method, the handle's type and the calls of
//! `f_memo()` are spanned at `self`, like `<Self as MemoIdentity>::Id` in it, so that a
//! receiver without `MemoIdentity` gives one error (rustc emits identical errors once).
//!
//! Hygiene (review s19b): the expansion's locals (`__memokit_memo`, `__memokit_view`, ...) are
//! mixed-site (`local`), so an argument of any name is the user's, never the expansion's; its
//! one item in a body, `f_memo`'s static, sits in a block of its own. It emits no `allow` for
//! a lint of the `unused` group (an error under the user's `forbid`, E0453): it raises none,
//! by construction (`keep`, the `mention` of arguments a `key =` leaves out).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Type};

use crate::args::Options;
use crate::attrs::{companion_attrs, expect_as_allow, has};
use crate::validate::{first_use, key_parts, Func, Kind, Param, Ret};

fn m() -> TokenStream {
    quote!(::memokit::__private)
}

/// A local of the expansion (a binding, a closure's parameter), with `macro_rules!` hygiene
/// (`Span::mixed_site`): no name of the user's (an argument, a name in `key =`) can see it or
/// hide it, whatever it is called (review s19b: arguments named `__memokit_memo`,
/// `__memokit_id`, ... failed to compile or were keyed by the expansion's value). Placed at
/// `at`, for the errors reported there.
fn local_at(name: &str, at: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(at))
}

/// [`local_at`] the attribute.
fn local(name: &str) -> Ident {
    local_at(name, Span::call_site())
}

/// The view of the `i`th key part, bound (settled) in `__memokit_k{i}`: a reference the
/// expression returns (`key = a`, which the expression sees as `&A`; `key = &a`) is the view,
/// owned only when a result is stored, like an argument; an owned value (`key = user.id`) is
/// borrowed where it lies. So a hit clones nothing. See `KeyRef` in the runtime crate.
fn key_part_view(i: usize, part: &syn::Expr) -> TokenStream {
    let m = m();
    let k = local_at(&format!("__memokit_k{i}"), part.span());
    // Spanned at the part, so that a part that cannot be a key is reported there; but not the
    // imports: one of them is unused, and `unused_imports` is raised at a user's span, not in
    // the expansion's own tokens (no `allow` needed: one is an error under a user's `forbid`).
    let uses = quote!(use #m::{KeyRef as _, KeyOwned as _};);
    quote_spanned! {part.span()=>
        #m::key_part({
            #uses
            (&&#m::probe_key(&#k)).__memokit_view(&#k)
        }),
    }
}

/// The bindings of a `key =` expression's parts and their views (one per part, for the key's
/// view tuple): the same in the call and in `ops`, so that both give the key the same types.
fn key_bindings_and_views(k: &syn::Expr) -> (TokenStream, TokenStream) {
    let parts = key_parts(k);
    let bindings = parts.iter().enumerate().map(|(i, part)| settle_binding(i, part));
    let views = parts.iter().enumerate().map(|(i, part)| key_part_view(i, part));
    (quote!(#(#bindings)*), quote!(#(#views)*))
}

/// A reference to argument `p`, bound as `name`, followed by a comma (for a tuple): a borrowed
/// argument is one already, a by-value one is borrowed.
fn reference_to(p: &Param, name: &Ident) -> TokenStream {
    if p.by_ref {
        quote!(#name,)
    } else {
        quote!(&#name,)
    }
}

/// The hidden binding a by-value argument moves to in a function with `key =` (its name then
/// stands for a reference to it).
fn hidden_arg(name: &Ident) -> Ident {
    local_at(&format!("__memokit_arg{}", name.unraw()), name.span())
}

/// The binding of the `i`th key part, settled in `__memokit_k{i}`: a reference to a reference
/// (`key = &a`, where the part sees `a` as `&A`) becomes the inner one. The part is bound by a
/// `let` of its own in the function's scope (not in a block), so that a reference to a
/// temporary (`key = &a.len()`) lives as long as the key, as in a plain `let`.
fn settle_binding(i: usize, part: &syn::Expr) -> TokenStream {
    let m = m();
    let v = local_at(&format!("__memokit_v{i}"), part.span());
    let k = local_at(&format!("__memokit_k{i}"), part.span());
    let bind = quote_spanned!(part.span()=> let #v = #part;);
    quote! {
        #bind
        let #k = {
            use #m::{SettleRefRef as _, SettleNone as _};
            (&&&#m::probe_key(&#v)).__memokit_settle(#v)
        };
    }
}

/// The owned type of an argument: readable for `&str` and `&[T]`, a `ToOwned` projection for
/// other references.
fn owned_type(p: &Param) -> TokenStream {
    let m = m();
    let b = &p.borrowed;
    if !p.by_ref {
        return quote!(#b);
    }
    match b {
        Type::Path(tp) if tp.qself.is_none() && tp.path.is_ident("str") => quote!(#m::String),
        Type::Slice(s) => {
            let e = &s.elem;
            quote!(#m::Vec<#e>)
        }
        _ => quote!(<#b as #m::ToOwned>::Owned),
    }
}

/// The generated items for a validated function.
pub(crate) fn expand(f: Func, opts: &Options) -> TokenStream {
    let m = m();
    // The locals of the expansion (see `local`).
    let l_id = local("__memokit_id");
    let l_recv = local("__memokit_recv");
    let l_view = local("__memokit_view");
    let l_r = local("__memokit_r");
    let l_memo = local("__memokit_memo");
    let l_out = local("__memokit_out");
    let l_unless = local("__memokit_unless");
    let l_f = local("__memokit_f");
    let l_s = local("__memokit_s");
    let l_a = local("__memokit_a");
    let l_op = local("__memokit_op");
    let item = &f.item;
    let vis = &item.vis;
    let name = &item.sig.ident;
    let name_str = name.to_string();
    let span = name.span();
    let uncached = format_ident!("{}_uncached", name, span = span);
    let memo = format_ident!("{}_memo", name, span = span);
    let deleter = crate::delete::deleter(name, span);
    let deleter_all = crate::delete::deleter_all(name, span);
    let in_impl = !matches!(f.kind, Kind::Free);
    // Only where clippy would raise it (`crate::clippy`): an `allow` warns under `forbid`.
    let allow_many = crate::clippy::allow_many_arguments(&f);
    // `Self`, in an `impl`: for an associated function spanned at the `associated` flag, so
    // that on a free function rustc's one error, "cannot find type `Self`" ("only available
    // in impls"), points at the flag to remove.
    let self_ty = match (f.kind, opts.associated) {
        (Kind::Associated, Some(a)) => Ident::new("Self", a),
        _ => Ident::new("Self", Span::call_site()),
    };
    let path = |id: &Ident| match f.kind {
        Kind::Free => quote!(#id),
        // A type, not a path's first segment: one error about `Self` (E0411), not two.
        Kind::Associated => quote!(<#self_ty>::#id),
        Kind::Method(_) => quote!(Self::#id),
    };
    let (uncached_path, memo_path) = (path(&uncached), path(&memo));
    // For a method, `f_memo()` returns a type naming `<Self as MemoIdentity>::Id`: its calls
    // are spanned at `self`, where the signature of `f_memo` reports a missing `MemoIdentity`,
    // so that rustc reports it once (identical diagnostics are emitted once).
    let memo_call = match f.kind {
        Kind::Method(s) => {
            let memo_at_self = Ident::new(&memo.to_string(), s);
            quote_spanned!(s=> Self::#memo_at_self())
        }
        _ => quote!(#memo_path()),
    };
    let extra = companion_attrs(&item.attrs, true);
    // The doc-hidden companions (called by `delete_memoized!`) do not carry `deprecated`: a
    // delete would warn with their hidden names. They and `f` call the deprecated
    // `f_memo`/`f_uncached` under `allow(deprecated)`.
    let hidden_extra: Vec<Attribute> =
        companion_attrs(&item.attrs, false).iter().map(expect_as_allow).collect();
    let memo_extra: Vec<Attribute> = extra.iter().map(expect_as_allow).collect();
    // Only for a deprecated `f` (`deprecated`, or in a `cfg_attr`): an `allow` under the
    // user's `#![forbid(deprecated)]` is an error (E0453).
    let allow_deprecated = has(&extra, "deprecated").then(|| quote!(#[allow(deprecated)]));
    // `f_uncached` is `f`'s body: the user's `must_use` holds for it too (clippy's pedantic
    // `must_use_candidate` flagged it at `f`'s name, where `#[must_use]` could not reach it).
    let must_use = item.attrs.iter().filter(|a| a.path().is_ident("must_use"));
    let own_attrs: Vec<Attribute> = item.attrs.iter().map(expect_as_allow).collect();
    let generics = &item.sig.generics;
    let where_clause = &item.sig.generics.where_clause;
    let output = &item.sig.output;
    let block = &item.block;

    // Parameter lists: the original (for f_uncached) and with plain names (for f, deleters).
    let orig_inputs = &item.sig.inputs;
    let names: Vec<&Ident> = f.params.iter().map(|p| &p.name).collect();
    let typed: Vec<TokenStream> = f
        .params
        .iter()
        .map(|p| {
            let (n, t) = (&p.name, &p.ty);
            quote!(#n: #t)
        })
        .collect();
    let recv = match f.kind {
        Kind::Method(s) => quote_spanned!(s=> &self,),
        _ => quote!(),
    };
    let self_arg = match f.kind {
        Kind::Method(s) => quote_spanned!(s=> self,),
        _ => quote!(),
    };
    let pass: Vec<TokenStream> = f
        .params
        .iter()
        .map(|p| {
            let n = &p.name;
            if p.by_ref {
                quote!(#n)
            } else {
                quote!(#m::ToOwned::to_owned(&#n))
            }
        })
        .collect();
    let pass_moved: Vec<TokenStream> = names.iter().map(|n| quote!(#n)).collect();

    // Trait checks, spanned at the offending types.
    let mut checks = Vec::new();
    if opts.key.is_none() {
        for p in &f.params {
            let b = &p.borrowed;
            checks.push(quote_spanned!(p.ty.span()=> #m::assert_key_arg::<#b>();));
        }
    }
    let (value_ty, result) = match &f.ret {
        Ret::Plain(t) => (t, false),
        Ret::Result(t) => (t, true),
    };
    checks.push(quote_spanned!(value_ty.span()=> #m::assert_value::<#value_ty>();));
    // A function without `self` and without `associated` is taken for a free function; in an
    // `impl` block each call of its companions by their bare names fails ("cannot find
    // function `f_memo`", rustc's help: `fn Self::f`). Those errors share the span of `f`'s name
    // and rustc keeps the last one resolved there, so the deleter (the last item) ends with a
    // call of this do-nothing function, named for the fix.
    let (free_check_call, free_check_item) = if matches!(f.kind, Kind::Free) {
        let free_check =
            format_ident!("in_an_impl_block_write_memoize_associated_on_{}", name, span = span);
        let item = quote! {
            #[doc(hidden)]
            #(#hidden_extra)*
            #[inline(always)]
            fn #free_check() {}
        };
        (quote!(#free_check();), item)
    } else {
        (quote!(), quote!())
    };

    // The key view and the receiver id.
    let id_binding = match f.kind {
        Kind::Method(_) => quote!(let #l_id = {
            use #m::{IdOf as _, IdNone as _};
            (&&#m::probe_args::<Self>()).__memokit_id(self)
        };),
        _ => quote!(),
    };
    let id_view = match f.kind {
        Kind::Method(_) => quote!(&#l_id,),
        _ => quote!(),
    };
    // With `key =`, the arguments the expression does not name are mentioned, so that their
    // bindings are used by construction: no `allow(unused_variables)`, an error under the
    // user's `forbid(unused)` (E0453).
    let mention = (!names.is_empty()).then(|| quote!(let _ = (#(&#names,)*);));
    let (key_binding, view) = match &opts.key {
        Some(k) => {
            // The parts see the arguments by reference, as in `ops` (which has the owned
            // tuple), so that both give the key the same types: each argument is moved to a
            // hidden binding and its name rebound to a reference to it (the body gets the
            // hidden one, or a clone of it; see `call_args`).
            let hidden: Vec<Ident> = names.iter().map(|n| hidden_arg(n)).collect();
            let refs = f.params.iter().zip(&hidden).map(|(p, h)| reference_to(p, h));
            let (parts, views) = key_bindings_and_views(k);
            let bindings = quote! {
                let (#(#hidden,)*) = (#(#names,)*);
                let (#(#names,)*) = (#(#refs)*);
                #mention
                #parts
            };
            (bindings, quote!((#id_view #views)))
        }
        None => {
            let elems = f.params.iter().map(|p| reference_to(p, &p.name));
            (quote!(), quote!((#id_view #(#elems)*)))
        }
    };
    // With `key =`, the arguments are in hidden bindings, their names references to them (see
    // the key binding). One that the expression names may be borrowed by the key during the
    // call, so the body gets a clone of it (on a miss only); the others are moved.
    let call_args: Vec<TokenStream> = match &opts.key {
        None => pass.clone(),
        Some(k) => f
            .params
            .iter()
            .map(|p| {
                let (n, h) = (&p.name, hidden_arg(&p.name));
                if !p.by_ref && first_use(k, &n.unraw().to_string()).is_some() {
                    // Spanned at the type: one that is not `Clone` is reported there.
                    let t = &p.ty;
                    quote_spanned!(p.ty.span()=> #m::clone_key_named::<#t>(#n))
                } else {
                    quote!(#h)
                }
            })
            .collect(),
    };
    let recv_arg = match f.kind {
        Kind::Method(_) => quote!(::core::option::Option::Some(&#l_recv)),
        _ => quote!(::core::option::Option::None),
    };
    let body_call = quote!(#uncached_path(#self_arg #(#call_args),*));
    let closure = if result {
        quote!(|| #body_call)
    } else {
        quote!(|| ::core::result::Result::Ok::<#value_ty, #m::Infallible>(#body_call))
    };
    let recv_binding = match f.kind {
        Kind::Method(_) => quote!(let #l_recv = #m::receiver(&#l_id);),
        _ => quote!(),
    };
    let dispatched = quote! {{
        use #m::{CallArc as _, CallClone as _, CallUncached as _};
        #recv_binding
        let #l_view = #view;
        let #l_r = (&&&#m::probe::<_, #value_ty>(&#l_view)).__memokit_call(
            #l_memo,
            #recv_arg,
            #l_view,
            #closure,
        );
        #l_r
    }};
    let call = if result {
        dispatched
    } else {
        quote! {
            match #dispatched {
                ::core::result::Result::Ok(v) => v,
                ::core::result::Result::Err(e) => match e {},
            }
        }
    };
    let delete_view = quote! {{
        use #m::{DeleteKey as _, DeleteNone as _};
        let #l_view = #view;
        (&&#m::probe::<_, ()>(&#l_view)).__memokit_delete(#memo_call, #l_view);
    }};
    let unless = opts.unless.as_ref().map(|u| {
        quote_spanned! {u.span()=>
            let #l_unless: fn() -> ::core::primitive::bool = #u;
            if #l_unless() {
                #allow_deprecated
                let #l_r = #uncached_path(#self_arg #(#pass_moved),*);
                return #l_r;
            }
        }
    });

    // The handle's argument tuple and spec.
    let owned: Vec<TokenStream> = f.params.iter().map(owned_type).collect();
    let allow_complex = crate::clippy::allow_complex_handle(&f, &owned);
    let args_ty = match f.kind {
        Kind::Method(s) => {
            let id = quote_spanned!(s=> <Self as #m::MemoIdentity>::Id);
            quote_spanned!(s=> (#id, #(#owned,)*))
        }
        _ => quote!((#(#owned,)*)),
    };
    // The handle's type; for a method spanned at `self` like its `Id` (see `memo_call`).
    let memo_ty = match f.kind {
        Kind::Method(s) => quote_spanned!(s=> ::memokit::Memoized<#args_ty>),
        _ => quote!(::memokit::Memoized<#args_ty>),
    };
    let fn_name = match f.kind {
        // `ToOwned` by path: `String::from` needs `From` in scope, absent under
        // `#![no_implicit_prelude]`.
        Kind::Free => {
            quote!(#m::ToOwned::to_owned(#m::concat!(#m::module_path!(), "::", #name_str)))
        }
        _ => quote!(#m::format!("{}::{}", #m::type_name::<#self_ty>(), #name_str)),
    };
    let make_name = match &opts.make_name {
        Some(e) => quote_spanned!(e.span()=> {
            let #l_f: fn(&::core::primitive::str) -> #m::String = #e;
            ::core::option::Option::Some(#l_f)
        }),
        None => quote!(::core::option::Option::None),
    };
    let memoizer = match &opts.memoizer {
        Some(e) => quote_spanned!(e.span()=> {
            let #l_f: fn() -> &'static #m::Memoizer = || -> &'static #m::Memoizer { #e };
            ::core::option::Option::Some(#l_f)
        }),
        None => quote!(::core::option::Option::None),
    };
    let timeout = match &opts.timeout {
        Some(e) => quote_spanned!(e.span()=> #m::timeout(#e)),
        None => quote!(#m::Timeout::Default),
    };
    // `ops` (the handle's `delete`/`make_cache_key` and the by-name delete) gets the owned
    // argument tuple. It sees each argument as the call does (a `String` as `&str`, through
    // `Borrow`) and builds the call's own view, so that both paths give the key the same types
    // and values, and a key exists whether or not the owned tuple is `Clone` (it is built
    // from the borrowed forms with `ToOwned`, as a call stores it).
    let ops = {
        // For a method, the receiver's id: a pattern of the argument tuple and, bound as
        // `&Id`, the first part of the view.
        let id = match f.kind {
            Kind::Method(_) => quote!(#l_id,),
            _ => quote!(),
        };
        let as_called = f.params.iter().filter(|p| p.by_ref).map(|p| {
            let (n, b) = (&p.name, &p.borrowed);
            quote!(let #n: &#b = #m::Borrow::borrow(#n);)
        });
        let (bindings, views) = match &opts.key {
            Some(k) => {
                let (bindings, views) = key_bindings_and_views(k);
                (quote!(#mention #bindings), views)
            }
            // Each argument is already a reference here, like each part of the call's view.
            None => (quote!(), quote!(#(#names,)*)),
        };
        quote! {
            |#l_s: &'static #m::FnState, #l_a: &#args_ty, #l_op: #m::KeyOp| {
                let (#id #(#names,)*) = #l_a;
                #(#as_called)*
                #bindings
                use #m::{KeyOpView as _, KeyOpNone as _};
                let #l_view = (#id #views);
                (&&#m::probe::<_, ()>(&#l_view))
                    .__memokit_key_op(#l_s, #l_view, #l_op)
            }
        }
    };

    // Without `r#`: rustdoc resolves `fn@type`, and leaves `fn@r#type` as a broken `href`.
    let doc_name = name.unraw().to_string();
    let link = if in_impl { format!("Self::{doc_name}") } else { format!("fn@{doc_name}") };
    let doc_uncached = format!(
        "The body of [`{doc_name}`]({link}) without the cache (generated by `#[memoize]`)."
    );
    // One static per definition: in a generic `impl` it would be shared by every instantiation,
    // so such impls are rejected here. rustc reports it in its own words ("generic `Self` types
    // are currently not permitted in anonymous constants", with a note at the impl's type): no
    // construct that fails only in a generic impl lets a message of ours through. Spanned at
    // `#[memoize]`, so the error is read as the attribute's ("originates in the attribute").
    let not_generic = if in_impl {
        quote!(let _: [(); { let _ = ::core::mem::size_of::<*const #self_ty>(); 0 }] = [];)
    } else {
        quote!()
    };
    let doc_memo = format!("The memoization handle of `{doc_name}`: timeout, keys, deletes, name, stats (generated by `#[memoize]`).");

    // Called by `delete_memoized!` only, and named for the error when `f` is not memoized (not
    // `_`-prefixed): `f` mentions them (see `keep`), so that they are used whenever `f` is, by
    // construction, with no `allow(dead_code)` (an error under the user's `forbid(unused)`).
    // rustc does not report them written by hand (their spans are the attribute's), but does
    // when a `macro_rules!` of the user's crate writes `f` (`tests/memoize_lints.rs`).
    let deleters = match f.kind {
        Kind::Method(s) => quote_spanned! {s=>
            #[doc(hidden)]
            #(#hidden_extra)*
            #allow_deprecated
            #allow_many
            #vis fn #deleter #generics (&self, #(#typed),*) #where_clause {
                #id_binding
                #key_binding
                #delete_view
            }
            #[doc(hidden)]
            #(#hidden_extra)*
            #allow_deprecated
            #vis fn #deleter_all(&self) {
                #id_binding
                #memo_call.__delete_receiver(&#l_id)
            }
        },
        _ => quote! {
            #[doc(hidden)]
            #(#hidden_extra)*
            #allow_deprecated
            #allow_many
            #vis fn #deleter #generics (#(#typed),*) #where_clause {
                #key_binding
                #delete_view
                #free_check_call
            }
            #free_check_item
        },
    };

    // In an `impl`, the companions are siblings of `f`: in a trait impl each is an error
    // ("not a member of trait"), which the attribute cannot prevent, since it cannot see the
    // impl. This do-nothing sibling comes first, so that the first of those errors names the fix.
    // `f` mentions it (see `keep`), so that it is used whenever `f` is.
    let advice_fn = format_ident!(
        "memoize_works_in_inherent_impls_only_memoize_an_inherent_method_or_a_free_fn_and_call_it_from_{}",
        name
    );
    let advice = if in_impl {
        // Only for a name that is not snake case, which the user's own lint reports at `f`.
        let allow_case = name
            .to_string()
            .chars()
            .any(char::is_uppercase)
            .then(|| quote!(#[allow(non_snake_case)]));
        quote! {
            #[doc(hidden)]
            #(#hidden_extra)*
            #allow_case
            fn #advice_fn() {}
        }
    } else {
        quote!()
    };
    // The companions only `delete_memoized!` calls (and the advice above), mentioned by `f`: used
    // whenever `f` is, with no `allow(dead_code)`. For a free function, at `f`'s name (the
    // deleter's span), where in an `impl` the errors about bare names are one (see
    // `free_check`). In a trait impl, each is one more "no function or associated item" error
    // after the first, which names the fix.
    let keep = match f.kind {
        // A call (in a closure never called), so that in an `impl` rustc's error at the name
        // is "cannot find function", like the others there, of which it shows the last.
        Kind::Free => quote!(let _ = |#(#typed),*| #deleter(#(#names),*);),
        Kind::Associated => {
            let (d, a) = (path(&deleter), path(&advice_fn));
            quote!(let _ = (#d, #a);)
        }
        Kind::Method(s) => {
            let (d, da, a) = (path(&deleter), path(&deleter_all), path(&advice_fn));
            quote_spanned!(s=> let _ = (#d, #da, #a);)
        }
    };

    // The memoized function is its hit path (the miss path and `f_uncached` are out of line),
    // small enough to inline into callers: a call then costs no frame of its own (~2 ns of a
    // ~27 ns hit in `benches/memoize.rs`). The user's own `inline` attribute wins.
    let inline = if has(&item.attrs, "inline") { quote!() } else { quote!(#[inline]) };

    quote! {
        #advice

        // Before the user's attributes, so that theirs win (`expect(clippy::too_many_arguments)`
        // is then fulfilled, not overridden).
        #allow_many
        #(#own_attrs)*
        #inline
        #vis fn #name #generics (#recv #(#typed),*) #output #where_clause {
            #(#checks)*
            #keep
            #id_binding
            #allow_deprecated
            let #l_memo = #memo_call;
            #unless
            #key_binding
            #allow_deprecated
            let #l_out = #call;
            #l_out
        }

        #[doc = #doc_uncached]
        #allow_many
        #(#extra)*
        #(#must_use)*
        #vis fn #uncached #generics (#orig_inputs) #output #where_clause #block

        // A method's handle type is spanned at `self`, where clippy's `type_complexity` flags
        // it from 6 plain arguments (`crate::clippy`).
        #[doc = #doc_memo]
        #allow_complex
        #(#memo_extra)*
        #vis fn #memo() -> #memo_ty {
            #not_generic
            #m::handle::<#args_ty>(
                // In a block of its own: the user's `timeout =`, `key =` (in `ops`) and other
                // expressions, in this body, must not see it (items are not hygienic).
                { static __MEMOKIT_SLOT: #m::FnSlot = #m::FnSlot::new(); &__MEMOKIT_SLOT },
                || #m::FnSpec { name: #fn_name, make_name: #make_name, memoizer: #memoizer, timeout: #timeout },
                #ops,
            )
        }

        #deleters
    }
}

/// The expansion when the attribute has errors: the errors, the function unchanged, and its
/// `f_uncached`, so that one mistake gives one error.
pub(crate) fn fallback(item: &syn::ItemFn, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    // A second `#[memoize]` (an error of its own) is not expanded again.
    let mut item = item.clone();
    item.attrs.retain(|a| !crate::validate::is_memoize(a));
    let mut uncached = item.clone();
    uncached.sig.ident = format_ident!("{}_uncached", item.sig.ident, span = Span::call_site());
    uncached.attrs.retain(|a| !a.path().is_ident("doc"));
    quote! {
        #errors
        #item
        #[allow(dead_code)]
        #[doc(hidden)]
        #uncached
    }
}

#[cfg(test)]
mod tests {
    use crate::args::Options;

    /// rustdoc resolves `fn@type`, not `fn@r#type` (left as a literal, broken `href`).
    #[test]
    fn raw_identifier_doc_links() {
        let opts = Options::default();
        let free: syn::ItemFn = syn::parse_quote!(
            fn r#type(x: u64) -> u64 {
                x
            }
        );
        let free = super::expand(crate::validate::validate(free, &opts).unwrap(), &opts);
        assert!(free.to_string().contains("[`type`](fn@type)"), "{free}");
        let method: syn::ItemFn = syn::parse_quote!(
            fn r#match(&self, x: u64) -> u64 {
                x
            }
        );
        let method = super::expand(crate::validate::validate(method, &opts).unwrap(), &opts);
        assert!(method.to_string().contains("[`match`](Self::match)"), "{method}");
    }

    /// Export and linkage attributes in a `cfg_attr` stay on `f` alone (a copy on a companion
    /// defines the symbol twice); lint levels and `deprecated` in the same `cfg_attr` still go
    /// on the companions, an `expect` there as `allow`. (rustc expands an item's `cfg_attr`
    /// before the attribute sees it, so this guards tokens built by hand, like these.)
    #[test]
    fn export_attributes_in_cfg_attr_stay_on_the_function() {
        let opts = Options::default();
        let f: syn::ItemFn = syn::parse_quote! {
            #[cfg_attr(all(), export_name = "sym", allow(clippy::pedantic))]
            #[cfg_attr(all(), no_mangle)]
            #[cfg_attr(all(), link_section = ".text.s")]
            #[cfg_attr(all(), cfg_attr(all(), unsafe(no_mangle), expect(unused_mut), deprecated))]
            fn f(x: u64) -> u64 { x }
        };
        let out = super::expand(crate::validate::validate(f, &opts).unwrap(), &opts).to_string();
        for (word, n) in [
            ("export_name", 1),
            ("no_mangle", 2),
            ("link_section", 1),
            ("allow (clippy :: pedantic)", 5),
            ("expect (unused_mut)", 1),
            ("allow (unused_mut)", 4),
        ] {
            assert_eq!(out.matches(word).count(), n, "{word} in {out}");
        }
    }

    /// A user's `inline` in a `cfg_attr` is the user's `inline`: no `#[inline]` is added after
    /// it (the last `inline` attribute wins).
    #[test]
    fn inline_in_cfg_attr_wins() {
        let opts = Options::default();
        let f: syn::ItemFn = syn::parse_quote! {
            #[cfg_attr(feature = "profiling", inline(never))]
            fn f(x: u64) -> u64 { x }
        };
        let out = super::expand(crate::validate::validate(f, &opts).unwrap(), &opts);
        assert!(!out.to_string().contains("# [inline]"), "{out}");
    }
}
