//! Checks that need the file system, run before anything is sent to a
//! builder: every problem is a located diagnostic (exit 2). Part of the
//! `build` stage because it checks what both `exec` (contexts,
//! Dockerfiles, secrets, SSH agents) and `publish` (output destinations)
//! will use; `exec` no longer depends on `publish`.

use std::path::Path;

use crate::attrs::A;
use crate::diag::{Diag, Diagnostics};
use crate::plan::Plan;
use crate::resolve::spec::{ContextSource, OutputKind, SecretFrom};
use crate::resolve::Resolved;
use crate::source::Span;

pub fn check(
    r: &Resolved,
    plan: &Plan,
    env: &std::collections::HashMap<String, String>,
) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut seen = std::collections::HashSet::new();
    for n in plan.graph.node_weights().filter(|n| n.is_build()) {
        if !seen.insert(n.target) {
            continue;
        }
        let t = &r.targets[n.target];
        let at = |s: Span| if s.is_none() { t.name.span } else { s };
        let ctx = t.context_dir();
        let ctx_span = t.str(A::Context).map(|s| at(s.span)).unwrap_or(t.name.span);
        if !ctx.is_dir() {
            diags.push(
                Diag::new(
                    "mybake::exec::missing-context",
                    format!(
                        "target `{}`: context directory {} does not exist",
                        t.name.v,
                        ctx.display()
                    ),
                )
                .label(ctx_span, "this directory"),
            );
            continue;
        }
        if t.str(A::DockerfileInline).is_none() {
            let df = t
                .str(A::Dockerfile)
                .map(|s| s.v.clone())
                .unwrap_or_else(|| "Dockerfile".into());
            let path = crate::load::absolute(&ctx, Path::new(&df));
            if !path.is_file() {
                let span = t
                    .str(A::Dockerfile)
                    .map(|s| at(s.span))
                    .unwrap_or(t.name.span);
                diags.push(
                    Diag::new(
                        "mybake::exec::missing-dockerfile",
                        format!("target `{}`: no Dockerfile at {}", t.name.v, path.display()),
                    )
                    .label(span, "expected here")
                    .help("set `dockerfile` (relative to the context) or `dockerfile-inline`"),
                );
            }
        }
        for c in &t.spec.contexts {
            let ContextSource::Dir(dir) = &c.source else {
                continue;
            };
            if dir.is_absolute() && !dir.is_dir() {
                diags.push(
                    Diag::new(
                        "mybake::exec::missing-context",
                        format!(
                            "target `{}`: context `{}` directory {} does not exist",
                            t.name.v,
                            c.name,
                            dir.display()
                        ),
                    )
                    .label(at(c.span), "this directory"),
                );
            }
        }
        let auth_sock = env.get("SSH_AUTH_SOCK").map(Path::new);
        for ssh in &t.spec.ssh {
            match ssh.socket(auth_sock) {
                Some(sock) if !sock.exists() => diags.push(
                    Diag::new(
                        "mybake::exec::ssh",
                        format!(
                            "target `{}`: SSH agent socket {} (ssh `{}`) does not exist",
                            t.name.v,
                            sock.display(),
                            ssh.id
                        ),
                    )
                    .label(at(ssh.span), "this agent"),
                ),
                Some(_) => {}
                None => diags.push(Diag::new("mybake::exec::ssh", format!("target `{}`: ssh `{}` forwards your SSH agent, but SSH_AUTH_SOCK is not set", t.name.v, ssh.id)).label(at(ssh.span), "here").help("start an agent (`eval $(ssh-agent)`) or name a socket: `ssh \"default=/path/to/agent.sock\"`")),
            }
        }
        for s in &t.spec.secrets {
            match &s.source {
                SecretFrom::Env(var) => {
                    if !env.contains_key(&var.v) {
                        diags.push(Diag::new("mybake::exec::missing-secret", format!("target `{}`: secret `{}` reads environment variable {} which is not set", t.name.v, s.id.v, var.v)).label(at(var.span), "not set").help(format!("export {} before building", var.v)));
                    }
                }
                SecretFrom::File(src) => {
                    use mybake_buildkit::secrets::{check_file, FileProblem};
                    if let Err(problem) = check_file(&src.v) {
                        let code = match problem {
                            FileProblem::Missing { .. } => "mybake::exec::missing-secret",
                            _ => "mybake::exec::invalid-secret",
                        };
                        diags.push(
                            Diag::new(
                                code,
                                format!("target `{}`: secret file {problem}", t.name.v),
                            )
                            .label(at(src.span), "this file"),
                        );
                    }
                }
            }
        }
    }
    check_outputs(r, plan, &mut diags);
    diags
}

/// Output destinations of the requested targets: each must be writable
/// without destroying data ([`crate::publish::place::check`]).
fn check_outputs(r: &Resolved, plan: &Plan, diags: &mut Diagnostics) {
    use crate::publish::place::{self, DestKind};
    for n in plan.graph.node_weights().filter(|n| n.is_merge()) {
        let t = &r.targets[n.target];
        for o in &t.spec.outputs {
            let at = |s: Span| if s.is_none() { o.span } else { s };
            let ty = o.kind.type_name();
            let (kind, dest) = match &o.kind {
                OutputKind::Local { dest } => (DestKind::Dir, dest),
                OutputKind::Tar { dest } => (DestKind::File, dest),
                OutputKind::Oci { dest, tar: false } => (DestKind::OciDir, dest),
                OutputKind::Oci { dest, tar: true } => (DestKind::File, dest),
                _ => continue,
            };
            let path = match kind {
                DestKind::File => place::real_file_dest(&dest.v),
                _ => dest.v.clone(),
            };
            if let Err(e) = place::check(kind, &path) {
                diags.push(
                    Diag::new(
                        "mybake::exec::output",
                        format!("target `{}`: output `{ty}`: {e}", t.name.v),
                    )
                    .label(at(dest.span), "this destination")
                    .help("mybake never replaces or deletes a directory it did not create; choose another `dest`"),
                );
            }
        }
    }
}
