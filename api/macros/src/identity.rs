//! `#[derive(MemoIdentity)]`: the id is the one field marked `#[memo(id)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

fn is_id_attr(a: &syn::Attribute) -> syn::Result<bool> {
    if !a.path().is_ident("memo") {
        return Ok(false);
    }
    let mut id = false;
    a.parse_nested_meta(|meta| {
        if meta.path.is_ident("id") {
            id = true;
            Ok(())
        } else {
            Err(meta.error("unknown `memo` attribute: the only one is `#[memo(id)]`"))
        }
    })?;
    Ok(id)
}

/// Expands the derive.
///
/// On an error, the error and a stand-in impl (its `Id` is `()`), so that the memoized methods
/// of the type do not add an error of their own saying to derive what is derived already (user
/// trial, session 22).
pub(crate) fn derive(input: DeriveInput) -> TokenStream {
    match derive_inner(&input) {
        Ok(t) => t,
        Err(e) => {
            let e = e.to_compile_error();
            let name = &input.ident;
            let (ig, tg, wc) = input.generics.split_for_impl();
            quote! {
                #e
                impl #ig ::memokit::MemoIdentity for #name #tg #wc {
                    type Id = ();
                    fn memo_id(&self) -> Self::Id {}
                }
            }
        }
    }
}

fn derive_inner(input: &DeriveInput) -> syn::Result<TokenStream> {
    const HOW: &str = "mark exactly one field `#[memo(id)]`: its value (cloned) is the identity";
    let Data::Struct(s) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(MemoIdentity)]` works on structs only: implement `memokit::MemoIdentity` by hand",
        ));
    };
    let mut found = Vec::new();
    for (i, f) in s.fields.iter().enumerate() {
        for a in &f.attrs {
            if is_id_attr(a)? {
                found.push((i, f, a));
            }
        }
    }
    let (i, field) = match found.as_slice() {
        [(i, f, _)] => (*i, *f),
        [] => {
            return Err(syn::Error::new(
                input.ident.span(),
                format!("no field is marked `#[memo(id)]`: {HOW}"),
            ))
        }
        [_, (_, _, a), ..] => {
            return Err(syn::Error::new_spanned(
                a,
                format!("more than one field is marked `#[memo(id)]`: {HOW}"),
            ))
        }
    };
    let member = match (&s.fields, &field.ident) {
        (Fields::Named(_), Some(id)) => quote!(#id),
        _ => {
            let idx = syn::Index::from(i);
            quote!(#idx)
        }
    };
    let name = &input.ident;
    let ty = &field.ty;
    let (ig, tg, wc) = input.generics.split_for_impl();
    let id_ty = quote_spanned!(ty.span()=> #ty);
    Ok(quote! {
        impl #ig ::memokit::MemoIdentity for #name #tg #wc {
            type Id = #id_ty;
            fn memo_id(&self) -> Self::Id {
                ::core::clone::Clone::clone(&self.#member)
            }
        }
    })
}
