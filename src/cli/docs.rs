//! `mybake completions SHELL` and `mybake man`: generated from the clap
//! command tree, so they follow every flag and its help text.

use clap::CommandFactory;

use super::args::{Cli, CompletionShell};
use super::{exit, Outcome};

/// The completion script for `shell`.
pub fn completions(shell: CompletionShell) -> Outcome {
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Elvish => Shell::Elvish,
        CompletionShell::Powershell => Shell::PowerShell,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mybake", &mut out);
    text(out)
}

/// The man page: `mybake(1)` followed by one page per subcommand
/// (`mybake-build(1)`, `mybake-index-create(1)`, ...), all in one roff
/// stream (`mybake man | man -l -` shows them one after the other).
pub fn man() -> Outcome {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    match page(&cmd, "mybake", &mut out) {
        Ok(()) => text(out),
        Err(e) => Outcome {
            code: exit::FAILED,
            stdout: Vec::new(),
            stderr: format!("error: man: {e}\n"),
        },
    }
}

fn page(cmd: &clap::Command, name: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .source(concat!("mybake ", env!("CARGO_PKG_VERSION")))
        .render(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, &format!("{name}-{}", sub.get_name()), out)?;
    }
    Ok(())
}

fn text(out: Vec<u8>) -> Outcome {
    Outcome {
        code: exit::OK,
        stdout: vec![String::from_utf8_lossy(&out).into_owned()],
        stderr: String::new(),
    }
}
