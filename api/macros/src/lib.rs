//! Procedural macros of memokit: use them through the `memokit` crate, which re-exports them
//! and documents them with tested examples.
//!
//! `#[memoize]` is parse (`args.rs`) → validate (`validate.rs`) → expand (`expand.rs`).
//! Errors are spanned at the offending token and say what to do; when there are any, the
//! expansion is the errors plus the function unchanged (and its `f_uncached`), so that one
//! mistake gives one error. (The attribute cannot see the `impl` around a method: for trait
//! impls and generic impls, see `expand.rs`.) Generated code refers only to
//! `::memokit::__private::..` (and `::core`), and every generated public item carries docs.

use proc_macro::TokenStream;

mod args;
mod attrs;
mod clippy;
mod delete;
mod expand;
mod identity;
mod validate;

/// Memoizes a function: results are stored by argument value, with a timeout, and shared by
/// concurrent callers (single flight).
///
/// ```
/// use memokit::memoize;
///
/// #[memoize(timeout = 60)]
/// fn count_objects() -> u64 { 42 }
///
/// #[memoize]
/// fn param_func(a: u64, b: u64) -> u64 { a + b }
///
/// assert_eq!(count_objects(), 42);
/// assert_eq!(param_func(1, 2), 3);
/// assert_eq!(param_func_uncached(1, 2), 3);
/// assert_eq!(param_func_memo().stats().misses, 1);
/// ```
///
/// Options: `timeout = <expr>`, `make_name = <expr>`, `unless = <expr>`, `key = <expr>`,
/// `memoizer = <expr>`, and the flag `associated`. Generated next to `f`, with its visibility:
/// `f_uncached(..)` and `f_memo()`. See the `memokit` crate docs for the table of options and
/// the guarantees.
#[proc_macro_attribute]
pub fn memoize(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemFn = match syn::parse(input.clone()) {
        Ok(i) => i,
        Err(_)
            if matches!(syn::parse(input.clone()), Ok(syn::TraitItemFn { default: None, .. })) =>
        {
            let e = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[memoize]` cannot go on a trait's method declaration (it has no body to memoize): memoize a free function or an inherent `&self` method, and call it from each implementation",
            );
            // The declaration stays, so that its implementations raise no errors of their own.
            let mut out = e.to_compile_error();
            out.extend(proc_macro2::TokenStream::from(input));
            return out.into();
        }
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                format!("{e}: `#[memoize]` goes on a function (`fn`), or on a `&self` method inside an `impl` block"),
            );
            return e.to_compile_error().into();
        }
    };
    let (opts, arg_errors) = args::parse(args.into());
    let func = validate::validate(item.clone(), &opts);
    match (func, arg_errors) {
        (Ok(f), None) => expand::expand(f, &opts).into(),
        (Ok(_), Some(e)) => expand::fallback(&item, e).into(),
        (Err(e), None) => expand::fallback(&item, e).into(),
        (Err(e), Some(mut a)) => {
            a.combine(e);
            expand::fallback(&item, a).into()
        }
    }
}

/// Deletes memoized results, type-checked like a call of the function.
///
/// ```
/// # use memokit::{memoize, MemoIdentity};
/// # #[memoize] fn param_func(a: u64, b: u64) -> u64 { a + b }
/// # #[derive(MemoIdentity)] struct Adder { #[memo(id)] id: u32 }
/// # impl Adder { #[memoize] fn add(&self, n: u64) -> u64 { n + 1 } }
/// # let adder1 = Adder { id: 1 };
/// memokit::delete_memoized!(param_func);          // every result of param_func: O(1)
/// memokit::delete_memoized!(param_func, 1, 2);    // exactly the result for (1, 2)
/// memokit::delete_memoized!(adder1.add);          // every result of add for adder1 only
/// memokit::delete_memoized!(adder1.add, 3);       // the result of adder1.add(3)
/// memokit::delete_memoized!(Adder::add);          // every result of add for every instance
/// memokit::delete_memoized!(Adder::add, &adder1, 3);
///
/// // A deleted result is computed again; the others stay.
/// param_func(1, 2);
/// param_func(3, 4);
/// memokit::delete_memoized!(param_func, 1, 2);
/// param_func(1, 2);
/// param_func(3, 4);
/// assert_eq!((param_func_memo().stats().hits, param_func_memo().stats().misses), (1, 3));
/// ```
#[proc_macro]
pub fn delete_memoized(input: TokenStream) -> TokenStream {
    delete::delete_memoized(input.into()).into()
}

/// Drops a memoized function's version (or, for `obj.method`, that receiver's); the next call
/// makes a fresh one.
///
/// ```
/// # use memokit::{memoize, MemoIdentity};
/// # #[memoize] fn param_func(a: u64, b: u64) -> u64 { a + b }
/// # #[derive(MemoIdentity)] struct Adder { #[memo(id)] id: u32 }
/// # impl Adder { #[memoize] fn add(&self, n: u64) -> u64 { n + 1 } }
/// # let adder1 = Adder { id: 1 };
/// adder1.add(1);
/// memokit::delete_memoized_verhash!(adder1.add);
/// adder1.add(1); // computed again, under the receiver's fresh version
/// assert_eq!(Adder::add_memo().stats().misses, 2);
/// param_func(1, 2);
/// memokit::delete_memoized_verhash!(param_func);
/// param_func(1, 2);
/// assert_eq!(param_func_memo().stats().misses, 2);
/// ```
#[proc_macro]
pub fn delete_memoized_verhash(input: TokenStream) -> TokenStream {
    delete::delete_memoized_verhash(input.into()).into()
}

/// Implements `memokit::MemoIdentity` with the one field marked `#[memo(id)]` as the id.
///
/// ```
/// use memokit::MemoIdentity;
///
/// #[derive(MemoIdentity)]
/// struct Person {
///     #[memo(id)]
///     id: u64,
///     name: String,
/// }
///
/// let p = Person { id: 7, name: "ann".into() };
/// assert_eq!(p.memo_id(), 7);
/// # drop(p.name);
/// ```
#[proc_macro_derive(MemoIdentity, attributes(memo))]
pub fn derive_memo_identity(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(i) => identity::derive(i).into(),
        Err(e) => e.to_compile_error().into(),
    }
}
