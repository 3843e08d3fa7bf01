//! Integration tests, benches and examples of memokit live in this package (not published).
//!
//! The README's examples are compiled and run as this crate's doc tests, so they cannot rot.
#![doc = include_str!("../README.md")]
