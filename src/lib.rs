//! Integration tests, benches and examples of memokit live in this package.
