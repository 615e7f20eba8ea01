//! `mybake convert [FILE...] [-o FILE]`: bake files → mybake.kdl.

use std::path::Path;

use super::args::{ConvertArgs, Global};
use super::{exit, Outcome};
use crate::convert;
use crate::diag::{Diag, Diagnostics, RenderOptions};
use crate::source::Sources;

pub fn run(c: &ConvertArgs, g: &Global, cwd: &Path, render: RenderOptions) -> Outcome {
    let invalid = |stderr: String| Outcome {
        code: exit::INVALID,
        stdout: Vec::new(),
        stderr,
    };
    if !g.vars.is_empty() || !g.sets.is_empty() {
        return invalid(
            "error: --var and --set do not apply to `convert`: variables and expressions are \
             carried over unevaluated, so they apply when the result is used\n"
                .to_string(),
        );
    }
    // `-f FILE` is accepted as an input too (`mybake -f docker-bake.hcl convert`).
    let named: Vec<_> = c.inputs.iter().chain(g.files.iter()).cloned().collect();
    let inputs = match convert::input_files(cwd, &named) {
        Ok(i) => i,
        Err(d) => return invalid(render_one(d)),
    };
    let mut sources = Sources::default();
    let mut diags = Diagnostics::default();
    let mut ids = Vec::new();
    for (display, path) in inputs {
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => ids.push(sources.add(display, path, text)),
                Err(e) => {
                    let (text, d) = crate::load::not_utf8(sources.len() as u32, e.into_bytes());
                    sources.add(display, path, text);
                    diags.push(d);
                }
            },
            Err(e) => diags.push(Diag::new(
                "mybake::load::read",
                format!("cannot read {display}: {e}"),
            )),
        }
    }
    if !diags.is_empty() {
        return invalid(convert::render(&diags, &sources, render));
    }
    let kdl = match convert::convert(&sources, &ids) {
        Ok(k) => k,
        Err(d) => return invalid(convert::render(&d, &sources, render)),
    };
    let Some(out) = &c.output else {
        return Outcome {
            code: exit::OK,
            stdout: vec![kdl],
            stderr: String::new(),
        };
    };
    let dest = crate::load::absolute(cwd, out);
    match write_atomically(&dest, kdl.as_bytes()) {
        Ok(()) => Outcome {
            code: exit::OK,
            stdout: Vec::new(),
            stderr: format!("wrote {}\n", out.display()),
        },
        Err(e) => invalid(format!("error: cannot write {}: {e}\n", out.display())),
    }
}

fn render_one(d: Diag) -> String {
    let mut s = format!("error: {}\n", d.message);
    if let Some(h) = d.help {
        s.push_str(&format!("  help: {h}\n"));
    }
    s
}

/// Write `bytes` to a new file next to `dest` and rename it over `dest`:
/// `dest` is replaced whole or not at all, and nothing else is touched.
fn write_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if dest.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    crate::files::write_atomic(dest, ".mybake-convert-", bytes)
}
