//! The ARC traces (Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache",
//! FAST 03), read from `$MEMOKIT_TRACES/arc/<name>` (default `../shared/traces` relative to the
//! project root) and decoded with ruzstd as a stream. The traces are never copied into the repo.
//!
//! Each line is `start_block count ignored request_number`; it expands to `count` block
//! requests `start_block .. start_block + count`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// The trace folder: `$MEMOKIT_TRACES`, or `<project root>/../shared/traces`.
pub(crate) fn trace_dir() -> PathBuf {
    match std::env::var_os("MEMOKIT_TRACES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"),
    }
}

/// The block requests of `arc/<file>`, at most `limit` of them; `None` (with a printed note) when
/// the file is absent.
pub(crate) fn load_arc(file: &str, limit: usize) -> Option<Vec<u64>> {
    let path = trace_dir().join("arc").join(file);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            println!("note: skipping trace {} ({e}); set MEMOKIT_TRACES", path.display());
            return None;
        }
    };
    let decoder = ruzstd::StreamingDecoder::new(BufReader::new(f))
        .unwrap_or_else(|e| panic!("{}: not a zstd stream: {e}", path.display()));
    let mut out = Vec::new();
    for (n, line) in BufReader::with_capacity(1 << 16, decoder).lines().enumerate() {
        let line = line.unwrap_or_else(|e| panic!("{}: read error: {e}", path.display()));
        let mut fields = line.split_ascii_whitespace();
        let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
            continue; // a blank line
        };
        let parse = |s: &str| -> u64 {
            s.parse().unwrap_or_else(|_| panic!("{}:{}: bad number {s:?}", path.display(), n + 1))
        };
        let (start, count) = (parse(start), parse(count));
        for block in start..start + count {
            if out.len() == limit {
                return Some(out);
            }
            out.push(block);
        }
    }
    Some(out)
}
