//! The config YAML the tests write: the `bunq:` section pointing at a (simulated or mocked) bunq
//! and credential list items. Line counts are fixed, so tests that assert a line number of an
//! issue keep their numbers.

use std::fmt::Display;
use std::path::Path;

/// The `bunq:` section: sandbox, `base_url`, `api_key_file` (when given), the device description
/// and the state dir, one line each, unquoted (test paths and loopback URLs need no quotes, and
/// tests find these lines by their text).
pub fn bunq_section(
    base_url: &str,
    key_file: Option<&Path>,
    device: &str,
    state_dir: &Path,
) -> String {
    let key_file = key_file
        .map(|path| format!("  api_key_file: {}\n", path.display()))
        .unwrap_or_default();
    format!(
        "bunq:\n  environment: sandbox\n  base_url: {base_url}\n{key_file}  \
         device_description: {device}\n  state_dir: {}\n",
        state_dir.display()
    )
}

/// One `credentials:` list item with `name` and `ips` (block style, one IP a line).
pub fn credential_item(id: impl Display, name: &str, ips: &[&str]) -> String {
    let mut item = format!("  - id: {id}\n    name: {name}\n    ips:\n");
    for ip in ips {
        item.push_str(&format!("      - {ip}\n"));
    }
    item
}
