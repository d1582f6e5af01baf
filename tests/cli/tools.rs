//! What operators install beside the binary: shell completions and the man page, generated from
//! the CLI definition, and `--version` with the commit it was built from.

use super::*;

#[test]
fn completion_scripts_for_bash_zsh_and_fish_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_binary(&["completion", shell], &[]);
        assert_eq!(out.code, 0, "{shell}: {}", show(&out));
        for subcommand in SUBCOMMANDS {
            assert!(
                out.stdout.contains(subcommand),
                "{shell} completion lacks {subcommand}"
            );
        }
        assert!(out.stdout.contains("log-level"), "{shell}");
    }
    let bash = run_binary(&["completion", "bash"], &[]);
    assert!(bash.stdout.contains("-F _bunq__ipsync"), "{}", bash.stdout);
    let zsh = run_binary(&["completion", "zsh"], &[]);
    assert!(
        zsh.stdout.starts_with("#compdef bunq-ipsync"),
        "{}",
        zsh.stdout
    );
    let fish = run_binary(&["completion", "fish"], &[]);
    assert!(
        fish.stdout.contains("complete -c bunq-ipsync"),
        "{}",
        fish.stdout
    );

    let unknown = run_binary(&["completion", "powershell"], &[]);
    assert_eq!(unknown.code, 1, "{}", show(&unknown));
}

#[test]
fn the_bash_completion_script_loads_and_registers_the_command() {
    let Ok(bash) = Command::new("bash").arg("--version").output() else {
        return; // no bash on this machine: the text checks above still ran
    };
    assert!(bash.status.success());
    let script = run_binary(&["completion", "bash"], &[]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bunq-ipsync.bash");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p bunq-ipsync",
            file.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-F _bunq__ipsync bunq-ipsync"), "{stdout}");
}

#[test]
fn the_man_page_has_name_synopsis_every_subcommand_and_the_exit_codes() {
    let out = run_binary(&["man"], &[]);
    assert_eq!(out.code, 0, "{}", show(&out));
    let page = &out.stdout;
    assert!(page.contains(".TH bunq-ipsync 1"), "{page}");
    assert!(page.contains(".SH NAME\nbunq\\-ipsync \\- Keeps"), "{page}");
    assert!(page.contains(".SH SYNOPSIS"), "{page}");
    for subcommand in SUBCOMMANDS {
        let heading = format!(".SH \"BUNQ-IPSYNC {}\"", subcommand.to_uppercase());
        assert!(page.contains(&heading), "{heading} missing");
    }
    assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
    assert!(page.contains("2 changes pending"), "{page}");
}

#[test]
fn version_prints_the_version_and_the_commit_it_was_built_from_when_known() {
    let out = run_binary(&["--version"], &[]);
    assert_eq!(out.code, 0, "{}", show(&out));
    let version = env!("CARGO_PKG_VERSION");
    let commit = env!("BUNQ_IPSYNC_COMMIT");
    let expected = if commit.is_empty() {
        format!("bunq-ipsync {version}\n")
    } else {
        format!("bunq-ipsync {version} (commit {commit})\n")
    };
    assert_eq!(out.stdout, expected);
    // Built from a git checkout without BUNQ_IPSYNC_GIT_COMMIT: the commit is HEAD's.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(head) = head
        && head.status.success()
        && std::env::var_os("BUNQ_IPSYNC_GIT_COMMIT").is_none()
    {
        assert_eq!(commit, String::from_utf8_lossy(&head.stdout).trim());
    }
}
