//! `--help` of every (sub)command (snapshots), the rule that every flag and
//! argument has a help line, `mybake completions` and `mybake man`.

use clap::CommandFactory;
use mybake::cli::args::Cli;

use crate::common::Test;

/// Every command path of the tree: `[]`, `["build"]`, `["index", "create"]`, …
fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let mut p = prefix.clone();
        p.push(sub.get_name().to_string());
        paths(sub, p, out);
    }
}

fn all_paths() -> Vec<Vec<String>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    paths(&cmd, Vec::new(), &mut out);
    out
}

#[test]
fn every_arg_and_subcommand_has_help() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                missing.push(format!("{path} {}", a.get_id()));
            }
        }
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(format!("{p} (about)"));
            }
            if sub.get_after_help().is_none() && sub.get_after_long_help().is_none() {
                missing.push(format!("{p} (examples)"));
            }
            walk(sub, &p, missing);
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    walk(&cmd, "mybake", &mut missing);
    assert!(missing.is_empty(), "without help text: {missing:#?}");
    // The walk sees the build flags (it can fail).
    let build = cmd.find_subcommand("build").expect("build");
    assert!(build.get_arguments().any(|a| a.get_id() == "metadata_file"));
}

#[test]
fn help_snapshots() {
    let paths = all_paths();
    assert!(paths.len() >= 8, "{paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = Test::new().env("COLUMNS", "100").args(&args).expect(0);
        assert!(out.stderr.is_empty(), "{}", out.stderr);
        if !path.is_empty() {
            assert!(out.stdout.contains("Examples:"), "{path:?}: {}", out.stdout);
        }
        let name = if path.is_empty() {
            "help_mybake".to_string()
        } else {
            format!("help_mybake_{}", path.join("_"))
        };
        insta::assert_snapshot!(name, out.stdout);
    }
}

#[test]
fn bash_completion_lists_subcommands_and_parses() {
    let out = Test::new().args(&["completions", "bash"]).expect(0);
    for sub in [
        "build",
        "print",
        "list",
        "plan",
        "index",
        "completions",
        "man",
    ] {
        assert!(out.stdout.contains(sub), "{sub} missing");
    }
    assert!(out.stdout.contains("--metadata-file"));
    assert!(out.stdout.contains("--provenance"));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mybake.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The script registers the completion function when sourced.
    let sourced = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p mybake", script.display()))
        .output()
        .expect("bash");
    assert!(
        String::from_utf8_lossy(&sourced.stdout).contains("mybake"),
        "{}",
        String::from_utf8_lossy(&sourced.stderr)
    );
}

#[test]
fn other_shells_get_a_script() {
    for (shell, marker) in [
        ("zsh", "#compdef mybake"),
        ("fish", "complete -c mybake"),
        ("elvish", "mybake"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = Test::new().args(&["completions", shell]).expect(0);
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
    }
    let bad = Test::new().args(&["completions", "tcsh"]).expect(2);
    assert!(bad.stderr.contains("tcsh"), "{}", bad.stderr);
}

#[test]
fn man_page_has_a_page_per_subcommand() {
    let out = Test::new().args(&["man"]).expect(0);
    let titles: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with(".TH "))
        .collect();
    for path in all_paths() {
        let title = std::iter::once("MYBAKE".to_string())
            .chain(path.iter().map(|p| p.to_uppercase()))
            .collect::<Vec<_>>()
            .join("-");
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with(&format!(".TH {title} 1"))),
            "no page {title}: {titles:?}"
        );
    }
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXTRA"] {
        assert!(out.stdout.contains(section), "{section}");
    }
    assert!(out.stdout.contains("metadata\\-file"));
    // Rendered by man(1) when it is installed.
    let man = std::process::Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    if let Ok(mut child) = man {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(out.stdout.as_bytes())
            .unwrap();
        let done = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&done.stdout);
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        assert!(text.contains("MYBAKE-BUILD(1)"), "{text}");
        assert!(text.contains("--keep-going"), "{text}");
    }
}
