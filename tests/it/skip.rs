//! Skipping unchanged targets on `build --push`, against the real test bed:
//! a no-op rebuild solves nothing and leaves every index as it was;
//! touching one service's file rebuilds only that service; changing an arg
//! of a dependency rebuilds it and its dependents; moving the base image's
//! tag in the registry rebuilds everything above it; `--rebuild` forces.
//! Solves are counted from `--progress json` (`started` events).

use crate::common;

use std::collections::BTreeSet;

use common::testbed::*;
use common::Test;
use serde_json::Value;

/// The build file: `svc-a` and `svc-b` (requested, published) on `lib`
/// on `base` (dependencies, not published), `base` FROM `image`.
fn kdl(ns: &str, lib_arg: &str) -> String {
    format!(
        r#"group "default" {{
    targets "svc-a" "svc-b"
}}
target "base" {{
    context "base"
    tags "{ns}/base:dev"
}}
target "lib" {{
    context "lib"
    contexts {{
        base "target:base"
    }}
    arg "LIBARG" "{lib_arg}"
    tags "{ns}/lib:dev"
}}
target "svc-a" {{
    context "svc-a"
    contexts {{
        lib "target:lib"
    }}
    tags "{ns}/svc-a:dev" "{ns}/svc-a:second"
}}
target "svc-b" {{
    context "svc-b"
    contexts {{
        lib "target:lib"
    }}
    tags "{ns}/svc-b:dev"
}}
"#
    )
}

struct Run {
    /// Build nodes solved.
    started: BTreeSet<String>,
    /// Build nodes reported `skipped: unchanged`.
    unchanged: BTreeSet<String>,
}

fn build(t: &Test, extra: &[&str]) -> Run {
    let mut args = vec!["build", "--push", "--progress", "json"];
    args.extend_from_slice(extra);
    let o = run_in(t, &args);
    assert_eq!(o.code, 0, "build failed:\n{}\n{}", o.stdout, o.stderr);
    let mut run = Run {
        started: BTreeSet::new(),
        unchanged: BTreeSet::new(),
    };
    for line in o.stderr.lines().chain(o.stdout.lines()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let node = v["node"].as_str().unwrap_or_default().to_owned();
        match (v["type"].as_str(), v["reason"].as_str()) {
            (Some("started"), _) => {
                run.started.insert(node);
            }
            (Some("skipped"), Some("unchanged")) => {
                run.unchanged.insert(node);
            }
            _ => {}
        }
    }
    run
}

fn run_in(t: &Test, args: &[&str]) -> common::Output {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mybake"))
        .args(args)
        .current_dir(t.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", t.path())
        .env("MYBAKE_CACHE_DIR", t.path().join(".cache-mybake"))
        .output()
        .expect("run mybake");
    common::Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| format!("{s}@linux/amd64")).collect()
}

fn mybake_ok(args: &[&str]) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mybake"))
        .args(args)
        .output()
        .expect("run mybake");
    assert!(
        o.status.success(),
        "mybake {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn unchanged_targets_are_skipped_and_changes_rebuild_exactly_what_they_affect() {
    testbed();
    let ns = unique_repo("skip13-skip");
    // The base image, in a repository of this test: moved later.
    let image = format!("{ns}/image:latest");
    mybake_ok(&["index", "create", "-t", &image, BUSYBOX]);
    let t = Test::new()
        .kdl(&kdl(&ns, "1"))
        .file(
            "base/Dockerfile",
            &format!("FROM {image}\nCOPY base.txt /base.txt\n"),
        )
        .file("base/base.txt", "base\n")
        .file(
            "lib/Dockerfile",
            "FROM base\nARG LIBARG\nRUN echo \"$LIBARG\" > /lib.txt\n",
        )
        .file("svc-a/Dockerfile", "FROM lib\nCOPY app.txt /a.txt\n")
        .file("svc-a/app.txt", "a\n")
        .file("svc-b/Dockerfile", "FROM lib\nCOPY app.txt /b.txt\n")
        .file("svc-b/app.txt", "b\n")
        .file("svc-b/.dockerignore", "*.log\n");
    let all = set(&["base", "lib", "svc-a", "svc-b"]);

    let first = build(&t, &[]);
    assert_eq!(first.started, all, "first build solves everything");
    let a = tag_digest(&format!("{ns}/svc-a:dev"));
    let b = tag_digest(&format!("{ns}/svc-b:dev"));
    assert_eq!(tag_digest(&format!("{ns}/svc-a:second")), a);

    // No change: zero solves, every node unchanged, same indexes.
    let noop = build(&t, &["--metadata-file", "meta.json"]);
    assert_eq!(
        noop.started,
        BTreeSet::new(),
        "a no-op rebuild solves nothing"
    );
    assert_eq!(noop.unchanged, all);
    assert_eq!(tag_digest(&format!("{ns}/svc-a:dev")), a);
    assert_eq!(tag_digest(&format!("{ns}/svc-b:dev")), b);
    // The metadata file still names the published indexes.
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("meta.json")).expect("metadata file"),
    )
    .expect("metadata JSON");
    assert_eq!(meta["svc-a"]["containerimage.digest"], a.as_str(), "{meta}");
    assert_eq!(meta["svc-b"]["containerimage.digest"], b.as_str(), "{meta}");

    // A file the build does not send (.dockerignore) changes nothing.
    std::fs::write(t.path().join("svc-b/debug.log"), "x").expect("write");
    assert_eq!(build(&t, &[]).started, BTreeSet::new(), "ignored file");

    // A missing second tag is written without building.
    let second = format!("{ns}/svc-a:third");
    std::fs::write(
        t.path().join("mybake.kdl"),
        kdl(&ns, "1").replace(
            &format!("\"{ns}/svc-a:second\""),
            &format!("\"{ns}/svc-a:second\" \"{second}\""),
        ),
    )
    .expect("write");
    assert_eq!(build(&t, &[]).started, BTreeSet::new(), "new tag only");
    assert_eq!(
        tag_digest(&second),
        a,
        "the missing tag names the same index"
    );

    // One service's file: only that service.
    std::fs::write(t.path().join("svc-a/app.txt"), "a2\n").expect("write");
    let one = build(&t, &[]);
    assert_eq!(one.started, set(&["svc-a"]), "touching svc-a's file");
    let a2 = tag_digest(&format!("{ns}/svc-a:dev"));
    assert_ne!(a2, a);
    assert_eq!(tag_digest(&format!("{ns}/svc-b:dev")), b);

    // An arg of a dependency: it and its dependents, not its own base.
    std::fs::write(t.path().join("mybake.kdl"), kdl(&ns, "2")).expect("write");
    let arg = build(&t, &[]);
    assert_eq!(arg.started, set(&["lib", "svc-a", "svc-b"]), "lib arg");
    let b2 = tag_digest(&format!("{ns}/svc-b:dev"));
    assert_ne!(b2, b);

    // The base image's tag moves in the registry: everything above it.
    mybake_ok(&[
        "index",
        "create",
        "-t",
        &image,
        "--annotation",
        "org.example.moved=1",
        BUSYBOX,
    ]);
    let moved = build(&t, &[]);
    assert_eq!(moved.started, all, "base image moved");

    // --rebuild forces every solve, and a no-op after it is one again.
    assert_eq!(build(&t, &["--rebuild"]).started, all, "--rebuild");
    assert_eq!(
        build(&t, &[]).started,
        BTreeSet::new(),
        "no-op after --rebuild"
    );
    assert_eq!(build(&t, &["--no-cache"]).started, all, "--no-cache");
}
