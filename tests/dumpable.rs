//! The process keeps its secrets out of core dumps: `main` calls
//! [`bunq_ipsync::secret::forbid_core_dumps`] before anything else. This file is its own test
//! process, so making it non-dumpable affects no other test.
//!
//! (Linux's `/proc/<pid>/status` has no dumpable field, and as root every process's `/proc`
//! files stay readable, so the flag is read back with `prctl(PR_GET_DUMPABLE)`, which only
//! works on the calling process.)

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use rustix::process::{DumpableBehavior, dumpable_behavior};

#[test]
fn forbid_core_dumps_makes_the_process_non_dumpable() {
    // The control: an ordinary process is dumpable.
    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::Dumpable);

    bunq_ipsync::secret::forbid_core_dumps().unwrap();

    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
}

#[test]
fn main_forbids_core_dumps_before_running_the_cli() {
    let main = include_str!("../src/main.rs");
    let forbid = main.find("forbid_core_dumps()").expect("main calls it");
    let cli = main.find("cli::main()").expect("main runs the CLI");
    assert!(forbid < cli, "forbid_core_dumps runs first");
}
