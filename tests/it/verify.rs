//! `mybake verify` against the real test bed: a reproducible target (only
//! `COPY`, `SOURCE_DATE_EPOCH` set) rebuilds identical to what is published
//! and, with nothing published, to a second rebuild; a target writing the
//! time (`RUN date > /f`) is different, and the report names its layer and
//! `/f`; exit 1 then.

use crate::common;

use common::testbed::*;
use common::Test;
use serde_json::Value;

/// Contents unique to the call: no other test's build of the same steps
/// (the solver shares identical in-flight steps, and the cache reuses a
/// COPY of the same content with another file's mtime) can stand in.
fn project(ns: &str) -> Test {
    let id = nonce();
    Test::new()
        .kdl(&format!(
            r#"target "repro" {{
    context "r"
    arg "SOURCE_DATE_EPOCH" "0"
    platforms "linux/amd64"
    tags "{ns}/repro:dev"
}}
target "dated" {{
    context "d"
    arg "SOURCE_DATE_EPOCH" "0"
    platforms "linux/amd64"
    tags "{ns}/dated:dev"
}}
"#
        ))
        .file("r/Dockerfile", &format!("FROM {BUSYBOX}\nCOPY f /f\n"))
        .file("r/f", &format!("same {id}\n"))
        .file(
            "d/Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN date +%s%N > /f && echo {id} > /id\n"),
        )
}

fn verify(t: &Test, args: &[&str]) -> (i32, Value, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mybake"))
        .arg("verify")
        .args(args)
        .args(["--format", "json"])
        .current_dir(t.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", t.path())
        .output()
        .expect("run mybake");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify output is not JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v, stdout)
}

fn the_one(v: &Value, target: &str) -> Value {
    let all: Vec<&Value> = v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|c| c["target"] == target)
        .collect();
    assert_eq!(all.len(), 1, "{target}: {v}");
    all[0].clone()
}

#[test]
fn verify_against_published_names_the_differing_file() {
    testbed();
    let ns = unique_repo("skip13-verify");
    let t = project(&ns).args(&["build", "--push", "repro", "dated"]);
    t.expect(0);

    let (code, v, _) = verify(&t, &["repro"]);
    assert_eq!(code, 0, "{v}");
    let c = the_one(&v, "repro");
    assert_eq!(c["identical"], true, "{v}");
    assert_eq!(c["against"], "published");
    assert_eq!(c["platform"], "linux/amd64");
    assert_eq!(v["identical"], true);

    let (code, v, _) = verify(&t, &["repro", "dated"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["identical"], false);
    assert_eq!(the_one(&v, "repro")["identical"], true);
    let c = the_one(&v, "dated");
    assert_eq!(c["identical"], false, "{v}");
    assert_eq!(c["file"], "/f", "{v}");
    assert!(c["layer"]["index"].as_u64().is_some(), "{v}");
    assert_ne!(c["layer"]["expected"], c["layer"]["rebuilt"]);

    // Text output says the same.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mybake"))
        .args(["verify", "dated"])
        .current_dir(t.path())
        .output()
        .expect("run mybake");
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("dated linux/amd64: different"), "{text}");
    assert!(text.contains("first differing file: /f"), "{text}");
}

#[test]
fn verify_with_nothing_published_compares_two_rebuilds() {
    testbed();
    let ns = unique_repo("skip13-verify-unpublished");
    let t = project(&ns);
    let (code, v, _) = verify(&t, &["repro"]);
    assert_eq!(code, 0, "{v}");
    let c = the_one(&v, "repro");
    assert_eq!(c["against"], "rebuild", "{v}");
    assert_eq!(c["identical"], true, "{v}");
    // Nothing was tagged.
    assert_no_tags(&format!("{ns}/repro"), "verify tags nothing");

    let (code, v, _) = verify(&t, &["dated"]);
    assert_eq!(code, 1, "{v}");
    let c = the_one(&v, "dated");
    assert_eq!(c["against"], "rebuild");
    assert_eq!(c["file"], "/f", "{v}");
}

/// A target with no tags has no repository for its rebuild: an invalid
/// build file, exit 2 with the reason and nothing built, for `verify` as
/// for `build --push`.
#[test]
fn verify_of_a_target_without_tags_is_invalid() {
    testbed();
    let t = Test::new()
        .kdl("target \"bare\" {\n    context \"b\"\n    platforms \"linux/amd64\"\n}\n")
        .file("b/Dockerfile", &format!("FROM {BUSYBOX}\n"));
    let (code, v, _) = verify(&t, &["bare"]);
    assert_eq!(code, 2, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("target `bare` is pushed, but it has no `tags`"),
        "{v}"
    );
    assert_eq!(v["targets"], serde_json::json!([]), "{v}");
    // `build --push` says the same, with the same exit code.
    let o = t.args(&["build", "bare", "--push"]).expect(2);
    assert!(
        o.stderr.contains(
            "target `bare` is pushed, but it has no `tags` naming a repository; nothing was built"
        ),
        "{}",
        o.stderr
    );
}
