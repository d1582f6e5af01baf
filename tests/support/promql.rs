//! The metric names a PromQL expression reads, for the tests that hold the shipped dashboard and
//! alert rules to what the daemon exports.
//!
//! A small lexer, not a parser: it skips strings, label matchers (`{…}`), ranges (`[…]`),
//! numbers, Grafana variables (`$…`), keywords and aggregation operators, the label lists of
//! `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, and function names (an identifier
//! followed by `(`). What is left is a metric name.

use std::collections::BTreeSet;

/// Keywords followed by a parenthesised list of label names, not of expressions.
const LABEL_LIST: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The other words that are never metric names: binary operators and modifiers, aggregation
/// operators (which may stand before `by (…)` rather than before their `(`), and the float
/// literals.
const OTHER_KEYWORDS: [&str; 19] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "inf",
    "nan",
];

/// Whether `lower` (a lower-cased word) is a keyword rather than a metric name.
fn is_keyword(lower: &str) -> bool {
    LABEL_LIST.contains(&lower) || OTHER_KEYWORDS.contains(&lower)
}

/// The metric names `expr` reads. A Grafana `label_values(selector, label)` query counts as its
/// selector.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let expr = match expr.trim().strip_prefix("label_values(") {
        Some(rest) => rest.rsplit_once(',').map_or(rest, |(selector, _)| selector),
        None => expr,
    };
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_to(&chars, i, '}'),
            '[' => i = skip_to(&chars, i, ']'),
            '$' => i = skip_word(&chars, i + 1),
            c if c.is_ascii_digit() || c == '.' => i = skip_word(&chars, i),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = skip_word(&chars, i);
                let word: String = chars[i..end].iter().collect();
                let next = chars[end..].iter().find(|c| !c.is_whitespace());
                if LABEL_LIST.contains(&word.as_str()) && next == Some(&'(') {
                    let open = end + chars[end..].iter().position(|&c| c == '(').unwrap_or(0);
                    i = skip_to(&chars, open, ')');
                    continue;
                }
                let is_function = next == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if !is_function && !is_keyword(&lower) {
                    names.insert(word);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    names
}

/// The index after the word (identifier characters) starting at `start`.
fn skip_word(chars: &[char], start: usize) -> usize {
    let mut i = start;
    while i < chars.len()
        && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '.'))
    {
        i += 1;
    }
    i
}

/// The index after the string literal opening at `start` (backslash escapes honoured).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The index after the first `close` from `start` on, skipping strings inside (matchers hold
/// regexes such as `"a|}"`).
fn skip_to(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() && chars[i] != close {
        i = if matches!(chars[i], '"' | '\'' | '`') {
            skip_string(chars, i)
        } else {
            i + 1
        };
    }
    i + 1
}

/// The sample names of a Prometheus or OpenMetrics text exposition (`name{labels} value` or
/// `name value`; comments skipped).
pub fn exposition_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}
