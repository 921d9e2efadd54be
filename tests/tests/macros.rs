//! Macro tests: pass cases, and compile-fail cases whose committed `.stderr`
//! shows each error pointing at the user's token.

#[test]
fn macro_ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
