//! Config parser and validator on arbitrary UTF-8: `config::parse` never panics, and every
//! problem it reports about a field of the document says where that field is, inside the text.

#![no_main]

use std::path::Path;

use bunq_ipsync::config::{self, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
});

fn check(text: &str) {
    let Err(error) = config::parse(Path::new("fuzz.yaml"), text) else {
        return;
    };
    // Rendering the error is what an operator sees; it must not panic either.
    let shown = error.to_string();
    assert!(!shown.is_empty(), "an empty error message");
    let ConfigError::Invalid(errors) = &error else {
        panic!("parse returned a non-validation error: {error:?}");
    };
    assert!(!errors.is_empty(), "an Invalid error without issues");
    // YAML breaks lines at LF, CR and CRLF (libyaml also at NEL, LS and PS); counting each
    // such character gives an upper bound on the lines a location may name.
    let lines = 1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    for issue in errors.issues() {
        assert_eq!(issue.file, Path::new("fuzz.yaml"));
        if !issue.field.is_empty() {
            assert!(
                issue.location.is_some(),
                "issue about field {:?} has no location: {}",
                issue.field,
                issue
            );
        }
        if let Some(location) = issue.location {
            assert!(location.line >= 1 && location.column >= 1, "{issue}");
            assert!(
                location.line <= lines + 1,
                "line {} beyond the {lines} lines of the text: {issue}",
                location.line
            );
        }
    }
}
