//! [`Error`]: what the memoizer's fallible operations report.

use std::fmt;

/// The errors of [`configure`](crate::configure), [`MemoizerBuilder::build`](crate::MemoizerBuilder::build)
/// and the by-name deletes of [`Memoizer`](crate::Memoizer).
///
/// ```
/// let m = memokit::Memoizer::new();
/// let err = m.delete_memoized("no::such::function").unwrap_err();
/// assert!(matches!(err, memokit::Error::UnknownFunction { .. }));
/// assert_eq!(
///     err.to_string(),
///     "no memoized function is named `no::such::function` in this memoizer \
///      (a function is known from its first call or `f_memo()`, to the memoizer it is bound \
///      to: its `memoizer = ..` option, or the global one)"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `configure` was called too late: after `global()`, any memoized call or `f_memo()`
    /// (whichever memoizer the function is bound to), or an earlier `configure`.
    AlreadyInitialized,
    /// No function of this memoizer has this name (a function is known from its first call or
    /// its first `f_memo()`, to the memoizer it is bound to only).
    UnknownFunction {
        /// The name asked for.
        name: String,
    },
    /// Several functions share this name; give them distinct names with `make_name`.
    AmbiguousName {
        /// The name asked for.
        name: String,
        /// How many functions have it.
        count: usize,
    },
    /// `delete_memoized_args` got an argument tuple of another type than the function's.
    ArgumentTypes {
        /// The function's name.
        name: String,
        /// The owned argument tuple the function takes (`std::any::type_name`).
        expected: &'static str,
        /// The type given.
        given: &'static str,
    },
    /// The engine could not be built (for example, a worker thread could not be spawned).
    Build(memokit_engine::BuildError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyInitialized => {
                f.write_str("the global memoizer is already initialized; call `memokit::configure` once, before any memoized call")
            }
            Error::UnknownFunction { name } => {
                write!(f, "no memoized function is named `{name}` in this memoizer")?;
                if name.contains("::") {
                    f.write_str(
                        " (a function is known from its first call or `f_memo()`, to the memoizer \
                         it is bound to: its `memoizer = ..` option, or the global one)",
                    )
                } else {
                    f.write_str(" (names are full paths, `my_crate::module::f`: see `f_memo().name()`)")
                }
            }
            Error::AmbiguousName { name, count } => write!(
                f,
                "{count} memoized functions are named `{name}`; tell them apart with `make_name`"
            ),
            Error::ArgumentTypes { name, expected, given } => write!(
                f,
                "arguments of type `{given}` given to `{name}`, which takes `{expected}`"
            ),
            Error::Build(e) => write!(f, "cannot build the memoizer's engine: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Build(e) => Some(e),
            _ => None,
        }
    }
}
