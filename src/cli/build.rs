//! `mybake build`: settings from the arguments and the environment, the
//! `build` stage, its report rendered, the exit code.

use std::collections::HashMap;

use super::args::{BuildArgs, Progress, Publish};
use super::{exit, Outcome};
use crate::build::{self, BuildSettings, Class, Signal};
use crate::plan::Plan;
use crate::report::{self, reporter::Mode};
use crate::resolve::Resolved;

pub fn run(
    r: &Resolved,
    plan: &Plan,
    b: &BuildArgs,
    env: &HashMap<String, String>,
    (source_date_epoch, pins): (Option<u64>, Option<std::sync::Arc<crate::lock::Pins>>),
) -> Outcome {
    let attest =
        match build::attest::AttestRun::new(b.provenance.as_deref(), b.sbom.as_deref(), env) {
            Ok(a) => a,
            Err(e) => {
                return Outcome {
                    code: exit::INVALID,
                    stdout: Vec::new(),
                    stderr: format!("error: {e}; nothing was built\n"),
                }
            }
        };
    let settings = BuildSettings {
        builder: builder(b.builder.as_deref(), env),
        push: b.push,
        load: b.load,
        jobs: b.jobs,
        keep_going: b.keep_going,
        no_cache: b.no_cache,
        rebuild: b.rebuild,
        pull: b.pull,
        history: b.history,
        per_target: b.publish == Publish::PerTarget,
        metadata_file: b.metadata_file.clone(),
        insecure_registries: insecure_registries(env),
        ssh_auth_sock: env.get("SSH_AUTH_SOCK").map(std::path::PathBuf::from),
        env: env.clone(),
        source_date_epoch,
        pins,
        attest,
    };
    let reporter = report::reporter::reporter(mode(b.progress));
    let rep = build::run(r, plan, &settings, reporter);
    Outcome {
        code: match rep.class() {
            Class::Ok => exit::OK,
            Class::Failed => exit::FAILED,
            Class::Invalid => exit::INVALID,
            Class::Interrupted(Signal::Int) => exit::INTERRUPTED,
            Class::Interrupted(Signal::Term) => exit::TERMINATED,
        },
        stdout: Vec::new(),
        stderr: report::build::text(&rep),
    }
}

/// `--builder`, else `$MYBAKE_BUILDER`, else `docker` (build and verify).
pub(super) fn builder(flag: Option<&str>, env: &HashMap<String, String>) -> String {
    flag.map(str::to_string)
        .or_else(|| env.get("MYBAKE_BUILDER").cloned())
        .unwrap_or_else(|| "docker".into())
}

/// `$MYBAKE_INSECURE_REGISTRIES`, comma-separated.
pub(super) fn insecure_registries(env: &HashMap<String, String>) -> Vec<String> {
    env.get("MYBAKE_INSECURE_REGISTRIES")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The reporter mode of `--progress`.
pub(super) fn mode(p: Progress) -> Mode {
    match p {
        Progress::Auto => Mode::Auto,
        Progress::Tty => Mode::Tty,
        Progress::Plain => Mode::Plain,
        Progress::Json => Mode::Json,
        Progress::Quiet => Mode::Quiet,
    }
}
