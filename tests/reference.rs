//! The generated function reference stays in step with the functions.

use crate::common::repo;

#[test]
fn functions_reference_is_current() {
    let path = repo().join("docs/functions.md");
    let generated = tsunagu_engine::function_reference();
    if std::env::var_os("TSUNAGU_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/functions.md is stale: run TSUNAGU_UPDATE_DOCS=1 cargo test -p tsunagu-tests functions_reference"
    );
    for name in [
        "episode_number",
        "episodes",
        "in_window",
        "overlap_days",
        "window_days",
        "rb_build_agg",
        "rb_or_agg",
        "rb_and_agg",
        "rb_and",
        "rb_or",
        "rb_andnot",
        "rb_xor",
        "rb_cardinality",
        "rb_contains",
        "rb_to_array",
        "descendants",
        "ancestors",
        "is_a",
        "related",
    ] {
        assert!(
            generated.contains(&format!("### `{name}`")),
            "{name} is not documented"
        );
    }
}
