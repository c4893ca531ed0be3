//! Tests that cannot run in every environment: under CI (`CI=true`, as CI
//! sets it; `CI=1` too, any case) such a test fails, since CI must run
//! every test; elsewhere it says why and passes as skipped.

#![allow(dead_code)]

/// Whether this run is CI's.
pub fn under_ci() -> bool {
    means_ci(std::env::var("CI").ok().as_deref())
}

/// Whether a value of `CI` says the run is CI's.
pub fn means_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A test that cannot run here, for `why`: a failure under CI; elsewhere
/// it says so and the caller returns (the test passes as skipped).
pub fn cannot_run(why: &str) {
    assert!(
        !under_ci(),
        "this test cannot run here and CI is set: {why}"
    );
    eprintln!("SKIPPED: {why}");
}

#[test]
fn ci_is_true_or_1_in_any_case() {
    for v in ["true", "TRUE", "True", "1"] {
        assert!(means_ci(Some(v)), "{v}");
    }
    for v in [None, Some(""), Some("false"), Some("0"), Some("yes")] {
        assert!(!means_ci(v), "{v:?}");
    }
}
