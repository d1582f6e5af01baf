//! `completion` and `man`: shell completion scripts and the man page, generated from the clap
//! definition in [`crate::cli::args`], so they name exactly the subcommands and flags the binary
//! accepts. Written to stdout; neither reads a config.

use std::io::Write as _;

use clap::CommandFactory as _;

use crate::cli::args::{Cli, CompletionArgs, CompletionShell};
use crate::reconcile::exit::ExitStatus;

/// `completion SHELL`: the completion script for `SHELL`.
pub fn completion(args: &CompletionArgs) -> anyhow::Result<ExitStatus> {
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "bunq-ipsync", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(ExitStatus::Success)
}

/// `man`: the man page of the command and, as sections of it, every subcommand.
pub fn man() -> anyhow::Result<ExitStatus> {
    let mut page = Vec::new();
    man_page(&mut page)?;
    std::io::stdout().write_all(&page)?;
    Ok(ExitStatus::Success)
}

/// Renders the page: clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
/// then one section per subcommand with its synopsis and options (instead of clap_mangen's list
/// of per-subcommand pages, which are not shipped), the exit codes and VERSION.
fn man_page(out: &mut Vec<u8>) -> std::io::Result<()> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    for sub in command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
    {
        let name = sub.get_name();
        writeln!(
            out,
            ".SH \"{}\"",
            format!("BUNQ-IPSYNC {name}").to_uppercase()
        )?;
        let sub_man = clap_mangen::Man::new(sub.clone().bin_name(format!("bunq-ipsync {name}")));
        let mut section = Vec::new();
        sub_man.render_synopsis_section(&mut section)?;
        sub_man.render_description_section(&mut section)?;
        sub_man.render_options_section(&mut section)?;
        // Each part starts with its own .SH heading; as a subsection they become .SS.
        let section = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
        out.extend_from_slice(section.as_bytes());
    }
    // The after-help is the exit codes: under the heading man pages give them.
    let mut extra = Vec::new();
    man.render_extra_section(&mut extra)?;
    let extra = String::from_utf8_lossy(&extra).replace(".SH EXTRA", ".SH \"EXIT STATUS\"");
    out.extend_from_slice(extra.as_bytes());
    man.render_version_section(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_has_a_section_per_subcommand_with_its_options() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        for sub in Cli::command().get_subcommands() {
            if sub.get_name() != "help" {
                let heading = format!(".SH \"BUNQ-IPSYNC {}\"", sub.get_name().to_uppercase());
                assert!(page.contains(&heading), "{heading} missing");
            }
        }
        assert!(page.contains("\\-\\-output"), "plan's --output: {page}");
        assert!(page.contains(".SH \"EXIT STATUS\"\nExit codes"), "{page}");
    }
}
