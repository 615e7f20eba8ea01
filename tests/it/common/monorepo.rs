//! Cold builds of `examples/monorepo`, for the reproducibility tests of the
//! `it` binary (`--no-cache`) and of the `cold` binary (after
//! `docker builder prune -af`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::testbed::*;
use super::Output;

pub fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo")
}

/// `mybake -C DIR ARGS` with `env` (and no inherited `SOURCE_DATE_EPOCH`).
pub fn mybake_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mybake"));
    c.arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run mybake");
    Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub const TARGETS: [&str; 5] = ["base", "lib-greet", "svc-api", "svc-worker", "tools"];

/// How a build is made cold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cold {
    /// `--no-cache`: safe next to other tests on the daemon. Every
    /// dependency then goes through the registry.
    NoCache,
    /// `docker builder prune -af` first: empties the daemon's whole build
    /// cache, so only for a test binary that runs alone.
    Pruned,
}

/// What a cold build gave.
pub struct ColdBuild {
    /// Per target: its index digest (empty with attestations, whose
    /// provenance records build times) and its image manifests.
    pub digests: BTreeMap<String, String>,
    /// The run's output (`--progress plain` on stderr).
    pub out: Output,
}

/// A cold build and push of the whole monorepo example under `ns`.
pub fn cold_build(ns: &str, args: &[&str], env: &[(&str, &str)], cold: Cold) -> ColdBuild {
    let mut a = vec![
        "--var".to_string(),
        format!("REGISTRY={ns}"),
        "build".into(),
        "base".into(),
        "default".into(),
        "--push".into(),
        "--progress".into(),
        "plain".into(),
    ];
    match cold {
        Cold::NoCache => a.push("--no-cache".into()),
        Cold::Pruned => {
            let o = cmd("docker", &["builder", "prune", "-af"]);
            assert_eq!(o.code, 0, "docker builder prune -af: {}", o.stderr);
        }
    }
    a.extend(args.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = mybake_in(&example(), &a, env);
    assert_eq!(o.code, 0, "build failed:\n{}\n{}", o.stdout, o.stderr);
    let digests = TARGETS
        .iter()
        .map(|t| {
            let (code, body) = http_get(
                &format!("/v2/{}/monorepo/{t}/manifests/dev", api_name(ns)),
                Some(OCI_ACCEPT),
            );
            assert_eq!(code, 200, "{ns}/monorepo/{t}:dev");
            let index: serde_json::Value = serde_json::from_slice(&body).expect("JSON index");
            // With provenance attestations (BuildKit records the build's
            // times and invocation id in them, see the README) only the
            // image manifests can be identical; without, the index too.
            let attested = index["manifests"]
                .as_array()
                .expect("an index")
                .iter()
                .any(|m| m["platform"]["os"] == "unknown");
            let images: Vec<String> = index_images(&index)
                .into_iter()
                .map(|(p, d)| format!("{p}={d}"))
                .collect();
            let digest = if attested {
                String::new()
            } else {
                mybake::publish::index::sha256_digest(&body)
            };
            (t.to_string(), format!("{digest} {}", images.join(" ")))
        })
        .collect();
    ColdBuild { digests, out: o }
}
