//! Parsing the options of `#[memoize(..)]`.
//!
//! Each option has one spelling: `timeout`, `make_name`, `unless`, `key`, `memoizer` take
//! `= <expr>`; `associated` is a flag. Unknown, repeated, valueless options are errors at the
//! option's name; every error is collected, so one expansion reports them all at once.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token};

/// The parsed options.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) timeout: Option<Expr>,
    pub(crate) make_name: Option<Expr>,
    pub(crate) unless: Option<Expr>,
    pub(crate) key: Option<Expr>,
    pub(crate) memoizer: Option<Expr>,
    pub(crate) associated: Option<Span>,
}

struct RawOpt {
    name: Ident,
    value: Option<Expr>,
    /// Where the option is written like a call (`timeout(60)`, as some other caching crates
    /// spell their options): the opening delimiter, for the error.
    call: Option<Span>,
}

impl Parse for RawOpt {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        if input.peek(syn::token::Paren) || input.peek(syn::token::Bracket) {
            let group: proc_macro2::Group = input.parse()?;
            return Ok(RawOpt { name, value: None, call: Some(group.span_open()) });
        }
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(RawOpt { name, value, call: None })
    }
}

const KNOWN: &str = "`timeout`, `make_name`, `unless`, `key`, `memoizer`, `associated`";

/// The option a misspelled name most likely means: the nearest by edit distance, if at most
/// 2 edits and fewer than the name's length away, ignoring case (`Timeout`, `timout`, `memoiser`).
fn closest(n: &str) -> Option<&'static str> {
    let n = n.to_lowercase();
    ["timeout", "make_name", "unless", "key", "memoizer", "associated"]
        .into_iter()
        .map(|k| (edit_distance(&n, k), k))
        .filter(|&(d, _)| d <= 2 && d < n.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses the attribute's arguments, collecting every error.
pub(crate) fn parse(args: proc_macro2::TokenStream) -> (Options, Option<syn::Error>) {
    let mut opts = Options::default();
    let raw = match syn::parse::Parser::parse2(
        Punctuated::<RawOpt, Token![,]>::parse_terminated,
        args,
    ) {
        Ok(r) => r,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                format!("{e}; write the options as `name = <expr>`, separated by commas (options: {KNOWN})"),
            );
            return (opts, Some(e));
        }
    };
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    // Whether the option before was `key = ..`: a bare name after it (`key = a, b`) is most
    // likely meant as part of the key.
    let mut after_key = false;
    for RawOpt { name, value, call } in raw {
        let n = name.to_string();
        let follows_key = std::mem::replace(&mut after_key, n == "key");
        if let Some(open) = call {
            let msg = if n == "associated" {
                "an option is not written like a call: `associated` is a flag, write `#[memoize(associated)]`".to_owned()
            } else {
                format!("an option is not written like a call: write `{n} = <expr>`, not `{n}(..)`")
            };
            push(syn::Error::new(open, msg));
            continue;
        }
        if follows_key && value.is_none() && !KNOWN.contains(&format!("`{n}`")) {
            push(syn::Error::new(
                name.span(),
                format!("unknown option `{n}`: to key by several values, put them in parentheses: `key = (.., {n})`"),
            ));
            continue;
        }
        if n == "associated" {
            if let Some(v) = value {
                push(syn::Error::new_spanned(
                    v,
                    "`associated` is a flag and takes no value: write `#[memoize(associated)]`",
                ));
            } else if opts.associated.is_some() {
                push(syn::Error::new(name.span(), "`associated` is given twice; give it once"));
            } else {
                opts.associated = Some(name.span());
            }
            continue;
        }
        let slot = match n.as_str() {
            "timeout" => &mut opts.timeout,
            "make_name" => &mut opts.make_name,
            "unless" => &mut opts.unless,
            "key" => &mut opts.key,
            "memoizer" => &mut opts.memoizer,
            _ => {
                let hint = match n.as_str() {
                    "ttl" | "expire" | "expires" | "expiry" | "cache_timeout" | "time"
                    | "duration" | "max_age" | "secs" | "seconds" | "lifetime" => {
                        " (did you mean `timeout`?)".to_owned()
                    }
                    "name" => " (did you mean `make_name`?)".to_owned(),
                    "cache_key" | "make_cache_key" | "key_fn" | "convert" => {
                        " (did you mean `key`?)".to_owned()
                    }
                    "cache" | "backend" => " (did you mean `memoizer`?)".to_owned(),
                    "capacity" | "size" | "max_size" | "max_capacity" | "max_entries" => {
                        " (a capacity is the memoizer's, shared by its functions: build one with \
                         `Memoizer::builder().capacity(n)` and bind to it with `memoizer = &M`)"
                            .to_owned()
                    }
                    _ => match closest(&n) {
                        Some(k) => format!(" (did you mean `{k}`?)"),
                        None => String::new(),
                    },
                };
                push(syn::Error::new(
                    name.span(),
                    format!("unknown option `{n}`{hint}; the options of `#[memoize]` are {KNOWN}"),
                ));
                continue;
            }
        };
        match value {
            None => push(syn::Error::new(
                name.span(),
                format!("`{n}` needs a value: write `{n} = <expr>`"),
            )),
            Some(_) if slot.is_some() => push(syn::Error::new(
                name.span(),
                format!("`{n}` is given twice; give each option once"),
            )),
            Some(v) => *slot = Some(v),
        }
    }
    (opts, errors)
}
