//! `target:` contexts passed in memory: a dependency built on the same
//! builder node hands its result to its dependents as LLB (a frontend
//! input of their solves, as bake does) as soon as it is built, instead of
//! through a push and a pull. Checked on the real test bed against the
//! registry path (`MYBAKE_TARGET_INPUTS=registry`): the same image, and
//! only the registry path reads the dependency back from the registry.

use crate::common;

use std::collections::BTreeSet;

use common::testbed::*;
use common::{Output, Test};
use serde_json::Value;

const EPOCH: &str = "1700000000";

/// `base` sets an environment variable and a working directory, writes a
/// file, and `app` checks all three in a `RUN` step: the image config
/// travels with the LLB (`input-metadata`), the files with the LLB.
fn project(prelude: &str, base_tags: &str, app_tags: &str, salt: &str) -> Test {
    Test::new()
        .kdl(&format!(
            r#"{prelude}
target "base" {{
    context "base"
    platforms "linux/amd64" "linux/arm64"
    {base_tags}
}}
target "app" {{
    context "app"
    platforms "linux/amd64" "linux/arm64"
    contexts {{
        base "target:base"
    }}
    {app_tags}
}}
"#
        ))
        .file(
            "base/Dockerfile",
            &format!(
                "FROM localhost:5000/busybox:latest\nENV BASE_ENV=from-base\nWORKDIR /work\n\
                 RUN echo '{salt}' > /base.txt && uname -m >> /base.txt\n"
            ),
        )
        .file(
            "app/Dockerfile",
            "FROM base\nRUN test \"$BASE_ENV\" = from-base && test \"$(pwd)\" = /work \
             && cat /base.txt > app.txt\n",
        )
}

struct Run {
    out: Output,
    /// Names of the steps of `app`'s solves.
    app_steps: BTreeSet<String>,
    started: BTreeSet<String>,
}

fn build(t: &Test, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mybake"));
    c.args(args)
        .args(["--progress", "json"])
        .current_dir(t.path())
        .env_remove("MYBAKE_TARGET_INPUTS")
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("MYBAKE_NO_DEFAULT_ATTESTATIONS", "1")
        .env("MYBAKE_CACHE_DIR", t.path().join(".cache-mybake"));
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run mybake");
    let out = Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    let mut run = Run {
        app_steps: BTreeSet::new(),
        started: BTreeSet::new(),
        out,
    };
    let text = format!("{}\n{}", run.out.stdout, run.out.stderr);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let node = v["node"].as_str().unwrap_or_default();
        match v["type"].as_str() {
            Some("step-started") if node.starts_with("app@") => {
                run.app_steps
                    .insert(v["name"].as_str().unwrap_or_default().to_owned());
            }
            Some("started") => {
                run.started.insert(node.to_owned());
            }
            _ => {}
        }
    }
    run
}

/// Whether a step read `base`'s result back from its repository.
fn reads_base_from_registry(steps: &BTreeSet<String>, ns: &str) -> bool {
    steps
        .iter()
        .any(|s| s.contains("load metadata for") && s.contains(&format!("{ns}/base@sha256:")))
}

#[test]
fn a_dependency_on_the_same_builder_is_passed_as_llb_and_gives_the_same_image() {
    testbed();
    let ns = unique_repo("inputs-llb");
    let t = project(
        r#"variable "TAG" default="llb""#,
        &format!(r#"tags "{ns}/base:dev""#),
        &format!(r#"tags "{ns}/app:${{TAG}}""#),
        &nonce(),
    );
    let llb = build(&t, &["build", "app", "--push"], &[]);
    assert_eq!(llb.out.code, 0, "{}\n{}", llb.out.stdout, llb.out.stderr);
    assert!(
        llb.app_steps.iter().any(|s| s.contains("RUN test")),
        "app's RUN step ran: {:?}",
        llb.app_steps
    );
    assert!(
        !reads_base_from_registry(&llb.app_steps, &ns),
        "the LLB path does not read base from the registry: {:?}",
        llb.app_steps
    );

    let registry = build(
        &t,
        &["--var", "TAG=registry", "build", "app", "--push"],
        &[("MYBAKE_TARGET_INPUTS", "registry")],
    );
    assert_eq!(
        registry.out.code, 0,
        "{}\n{}",
        registry.out.stdout, registry.out.stderr
    );
    assert!(
        reads_base_from_registry(&registry.app_steps, &ns),
        "the registry path reads base by digest: {:?}",
        registry.app_steps
    );
    // Same sources, same epoch, no attestations: the same index.
    assert_eq!(
        tag_digest(&format!("{ns}/app:llb")),
        tag_digest(&format!("{ns}/app:registry"))
    );
}

#[test]
fn a_dependency_without_tags_is_built_for_its_dependents_in_memory() {
    testbed();
    let ns = unique_repo("inputs-notag");
    let t = project("", "", &format!(r#"tags "{ns}/app:dev""#), &nonce());
    let run = build(&t, &["build", "app", "--push"], &[]);
    assert_eq!(run.out.code, 0, "{}\n{}", run.out.stdout, run.out.stderr);
    assert_eq!(
        run.started,
        [
            "app@linux/amd64",
            "app@linux/arm64",
            "base@linux/amd64",
            "base@linux/arm64"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    let index = http_json(
        &format!("/v2/{}/manifests/dev", api_name(&format!("{ns}/app"))),
        Some(OCI_ACCEPT),
    );
    assert_eq!(index_images(&index).len(), 2, "{index}");
    // base was never pushed anywhere: it has no repository.
    assert!(
        !run.out.stdout.contains("/base@sha256:"),
        "{}",
        run.out.stdout
    );

    // Through the registry it needs a repository, and says so before
    // anything is built (`--rebuild`: app is unchanged since the first run).
    let registry = build(
        &t,
        &["build", "app", "--push", "--rebuild"],
        &[("MYBAKE_TARGET_INPUTS", "registry")],
    );
    assert_eq!(
        registry.out.code, 2,
        "an invalid build file: {}",
        registry.out.stderr
    );
    assert!(registry.started.is_empty(), "{:?}", registry.started);
    assert!(
        registry
            .out
            .stderr
            .contains("target `base` is used through `target:` by another target, and with MYBAKE_TARGET_INPUTS=registry"),
        "{}",
        registry.out.stderr
    );
    // So does a build with the cache off, whose steps are run again.
    let no_cache = build(&t, &["build", "app", "--push", "--no-cache"], &[]);
    assert_eq!(no_cache.out.code, 2, "{}", no_cache.out.stderr);
    assert!(
        no_cache.out.stderr.contains("with the build cache off"),
        "{}",
        no_cache.out.stderr
    );
}
