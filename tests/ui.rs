//! Compile errors of `#[memoize]`, `#[derive(MemoIdentity)]` and `delete_memoized!` (and the
//! warning for an engine builder or `InsertOptions` whose changed copy is dropped): one file
//! per user mistake in `tests/ui/`, with its reviewed `.stderr`; and what must compile, in
//! `tests/ui/pass/`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
