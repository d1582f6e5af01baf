//! Assertions shared by the unit tests of several modules.

/// Asserts that `text` contains `part`, showing the whole text when it does not.
#[track_caller]
pub(crate) fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} not in:\n{text}");
}
