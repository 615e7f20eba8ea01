//! `mybake verify`: settings, the rebuild and comparison, the report
//! (stdout), the exit code (1 when anything differs or failed).

use std::collections::HashMap;

use super::args::{ListFormat, VerifyArgs};
use super::{exit, Outcome};
use crate::plan::Plan;
use crate::report;
use crate::resolve::Resolved;
use crate::verify::{self, VerifySettings};

pub fn run(
    r: &Resolved,
    plan: &Plan,
    v: &VerifyArgs,
    env: &HashMap<String, String>,
    (source_date_epoch, pins): (Option<u64>, Option<std::sync::Arc<crate::lock::Pins>>),
) -> Outcome {
    let settings = VerifySettings {
        builder: super::build::builder(v.builder.as_deref(), env),
        insecure_registries: super::build::insecure_registries(env),
        ssh_auth_sock: env.get("SSH_AUTH_SOCK").map(std::path::PathBuf::from),
        env: env.clone(),
        source_date_epoch,
        pins,
    };
    let reporter = report::reporter::reporter(super::build::mode(v.progress));
    let rep = verify::run(r, plan, &settings, reporter);
    Outcome {
        code: if rep.invalid {
            exit::INVALID
        } else if rep.identical() {
            exit::OK
        } else {
            exit::FAILED
        },
        stdout: vec![match v.format {
            ListFormat::Text => rep.text(),
            ListFormat::Json => rep.json(),
        }],
        stderr: String::new(),
    }
}
