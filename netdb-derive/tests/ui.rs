//! Compile-fail tests: each file under `tests/ui/` holds one mistake; its `.stderr` pins the
//! message the user sees. Regenerate after a deliberate change with
//! `TRYBUILD=overwrite cargo test -p netdb-derive --test ui`, then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
