//! Command line: raw arguments → settings → the pipeline → exit code.
//! `main` only calls [`run`].

pub mod args;
mod build;
mod convert;
mod docs;
mod index;
mod lock;
mod verify;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Parser;

use crate::diag::{self, Diag, Diagnostics, RenderOptions};
use crate::load::{self, LoadOptions};
use crate::resolve::{self, platform, ResolveOptions, Resolved, Selection};
use crate::source::Sources;
use crate::{plan, report};
use args::{Cli, Command, ListFormat, ListWhat, PlanFormat};

/// Exit codes (see the spec).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const INTERRUPTED: i32 = 130;
    /// Ended by SIGTERM (128 + 15), as a shell reports a process it killed.
    pub const TERMINATED: i32 = 143;
}

/// What a command produced: text for stdout, or diagnostics.
pub struct Outcome {
    pub code: i32,
    /// Standard output, in pieces written one after the other (`print`
    /// writes a large configuration in parts, which are not copied into one).
    pub stdout: Vec<String>,
    pub stderr: String,
}

/// Run with the process environment and print the outcome.
pub fn run(argv: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            };
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let color = std::io::stderr().is_terminal() && !env.contains_key("NO_COLOR");
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let out = execute_with(cli, &cwd, env, RenderOptions { color, width: 100 }, true);
    let mut stdout = std::io::stdout().lock();
    for part in &out.stdout {
        if stdout.write_all(part.as_bytes()).is_err() {
            break;
        }
    }
    let _ = stdout.flush();
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    out.code
}

/// The whole program minus process I/O (used by tests and the fuzz target).
pub fn execute(
    cli: Cli,
    cwd: &std::path::Path,
    env: HashMap<String, String>,
    render: RenderOptions,
) -> Outcome {
    execute_with(cli, cwd, env, render, false)
}

/// Holds a value and, when `leak`, forgets it instead of dropping it: the
/// binary exits right after a command, and freeing a large configuration's
/// parse trees and resolved targets one by one is pure cost there.
struct ExitScoped<T> {
    value: Option<T>,
    leak: bool,
}

impl<T> ExitScoped<T> {
    fn new(value: T, leak: bool) -> Self {
        ExitScoped {
            value: Some(value),
            leak,
        }
    }
}

impl<T> std::ops::Deref for ExitScoped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("present until dropped")
    }
}

impl<T> std::ops::DerefMut for ExitScoped<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("present until dropped")
    }
}

impl<T> Drop for ExitScoped<T> {
    fn drop(&mut self) {
        if self.leak {
            std::mem::forget(self.value.take());
        }
    }
}

/// [`execute`]; `exiting`: the process ends right after, so the run's data
/// is not freed.
fn execute_with(
    cli: Cli,
    cwd: &std::path::Path,
    env: HashMap<String, String>,
    render: RenderOptions,
    exiting: bool,
) -> Outcome {
    match cli.command {
        Some(Command::Index(cmd)) => return index::run(cmd, &env),
        Some(Command::Completions { shell }) => return docs::completions(shell),
        Some(Command::Man) => return docs::man(),
        _ => {}
    }
    let g = cli.global;
    let cwd = match &g.dir {
        Some(d) => load::absolute(cwd, d),
        None => cwd.to_path_buf(),
    };
    if !cwd.is_dir() {
        return Outcome {
            code: exit::INVALID,
            stdout: Vec::new(),
            stderr: format!("error: -C {}: not a directory\n", cwd.display()),
        };
    }
    if let Some(Command::Convert(c)) = cli.command {
        return convert::run(&c, &g, &cwd, render);
    }
    let mut vars = Vec::new();
    for v in &g.vars {
        match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => vars.push((k.to_string(), val.to_string())),
            _ => {
                return Outcome {
                    code: exit::INVALID,
                    stdout: Vec::new(),
                    stderr: format!("error: --var {v}: expected NAME=VALUE\n"),
                }
            }
        }
    }
    let (sources, files) = load::load(&LoadOptions {
        cwd: cwd.clone(),
        files: g.files.clone(),
    });
    let mut sources = ExitScoped::new(sources, exiting);
    let fail = |d: Diagnostics, sources: &Sources| Outcome {
        code: exit::INVALID,
        stdout: Vec::new(),
        stderr: diag::render(&d, sources, render),
    };
    let files = match files {
        Ok(f) => ExitScoped::new(f, exiting),
        Err(d) => return fail(d, &sources),
    };
    let opts = ResolveOptions {
        cwd: cwd.clone(),
        vars,
        env,
        sets: g.sets.clone(),
        local_platform: platform::local(),
    };
    let resolved = match resolve::resolve(&files, &mut sources, &opts) {
        Ok(r) => ExitScoped::new(r, exiting),
        Err(d) => return fail(d, &sources),
    };
    let command = cli.command.unwrap_or(Command::Build(Default::default()));
    let select = |names: &[String]| resolve::select(&resolved, names);
    let ok = |stdout: Vec<String>| Outcome {
        code: exit::OK,
        stdout,
        stderr: String::new(),
    };
    // What `build` and `verify` need before anything is built: the plan,
    // the files it reads (preflight), the epoch and the lock's pins.
    let prepared = |names: &[String], b: &args::BuildArgs| {
        let (sel, p) = planned(&resolved, names).map_err(|d| fail(d, &sources))?;
        let pre = crate::build::preflight::check(&resolved, &p, &opts.env);
        if !pre.is_empty() {
            return Err(fail(pre, &sources));
        }
        let dir = lock::first_file_dir(&cwd, &g.files);
        let render = |d| fail(d, &sources);
        let repro = lock::build_settings(&resolved, &sel.all, b, &opts.env, &dir, &render)?;
        Ok((p, repro))
    };
    match command {
        Command::Print { targets } => match select(&targets) {
            Ok(sel) => match plan::validate(&resolved, &sel) {
                Ok(()) => ok(report::print::print_parts(&resolved, &sel)),
                Err(d) => fail(d, &sources),
            },
            Err(d) => fail(d, &sources),
        },
        Command::List { what, format } => ok(vec![match (what, format) {
            (ListWhat::Targets, ListFormat::Text) => report::list::targets_text(&resolved),
            (ListWhat::Targets, ListFormat::Json) => report::list::targets_json(&resolved),
            (ListWhat::Variables, ListFormat::Text) => {
                report::list::variables_text(&resolved, &sources)
            }
            (ListWhat::Variables, ListFormat::Json) => report::list::variables_json(&resolved),
        }]),
        Command::Plan { targets, format } => match planned(&resolved, &targets) {
            Ok((_, p)) => ok(vec![match format {
                PlanFormat::Text => report::plan::text(&p),
                PlanFormat::Dot => report::plan::dot(&p),
                PlanFormat::Json => report::plan::json(&p),
            }]),
            Err(d) => fail(d, &sources),
        },
        Command::Build(b) => match prepared(&b.targets, &b) {
            Ok((p, repro)) => build::run(&resolved, &p, &b, &opts.env, repro),
            Err(o) => o,
        },
        Command::Verify(v) => {
            let b = args::BuildArgs {
                source_date_epoch: v.source_date_epoch.clone(),
                locked: v.locked,
                ..Default::default()
            };
            match prepared(&v.targets, &b) {
                Ok((p, repro)) => verify::run(&resolved, &p, &v, &opts.env, repro),
                Err(o) => o,
            }
        }
        Command::Lock(l) => match planned(&resolved, &l.targets) {
            Ok((sel, _)) => {
                let dir = lock::first_file_dir(&cwd, &g.files);
                lock::run(&resolved, &sel.all, &l, &opts.env, &dir, &|d| {
                    fail(d, &sources)
                })
            }
            Err(d) => fail(d, &sources),
        },
        Command::Index(_) | Command::Convert(_) | Command::Completions { .. } | Command::Man => {
            unreachable!("handled before loading build files")
        }
    }
}

fn planned(r: &Resolved, names: &[String]) -> Result<(Selection, plan::Plan), Diagnostics> {
    let sel = resolve::select(r, names)?;
    let p = plan::plan(r, &sel)?;
    Ok((sel, p))
}

impl From<Diag> for Outcome {
    fn from(d: Diag) -> Self {
        Outcome {
            code: exit::INVALID,
            stdout: Vec::new(),
            stderr: format!("error: {}\n", d.message),
        }
    }
}
