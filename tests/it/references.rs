//! Image references (`tags`, registry `cache-from`/`cache-to` refs,
//! `docker-image://` contexts) are checked when the configuration is
//! resolved: `print`, `plan` and `build` stop with exit 2 and located
//! diagnostics, before anything is built.

use crate::common;

use common::{Output, Test};

const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Every kind of place, each wrong in its own way (line numbers matter).
fn bad_kdl() -> String {
    format!(
        r#"target "app" {{
    tags "localhost:5000/app:1" "Foo/bar:1" "app:tag with space"
    cache-from "type=registry,ref=localhost:5000/Cache:app" "user/app:"
    cache-to "type=registry,ref=localhost:5000/cache@{SHA}"
    contexts {{
        base "docker-image://-alpine:3"
        ok "docker-image://127.0.0.1:5000/a/b@{SHA}"
    }}
}}
"#
    )
}

/// The located messages `bad_kdl` must give, in file order.
const BAD: &[&str] = &[
    "mybake.kdl:2:34: tag `Foo/bar:1`: repository name must be lowercase: `Foo/bar`",
    "mybake.kdl:2:53: tag `app:tag with space`: invalid tag `tag with space`: a space is not allowed",
    "mybake.kdl:3:50: cache-from ref `localhost:5000/Cache:app`: repository name must be lowercase: `Cache`",
    "mybake.kdl:3:70: cache-from ref `user/app:`: empty tag after `:`",
    "mybake.kdl:4:53: cache-to ref `localhost:5000/cache@sha256:",
    "mybake.kdl:6:30: context `base` image `-alpine:3`: invalid repository name `-alpine`: `-alpine` must start and end with a letter or digit",
];

/// The messages (`× file:line:col: ...`) of rendered diagnostics, without
/// whitespace (long ones are wrapped, and not only at spaces).
fn messages(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_message = false;
    for line in stderr.lines() {
        if let Some(m) = line.strip_prefix("  × ") {
            out.push(squash(m));
            in_message = true;
        } else if let (true, Some(m)) = (in_message, line.strip_prefix("  │ ")) {
            out.last_mut().unwrap().push_str(&squash(m));
        } else {
            in_message = false;
        }
    }
    out
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

/// `stderr` has a message starting with each of `want`, in this order.
fn assert_messages(stderr: &str, want: &[&str]) {
    let got = messages(stderr);
    let mut from = 0;
    for w in want {
        let w = squash(w);
        match got[from..].iter().position(|m| m.starts_with(&w)) {
            Some(i) => from += i + 1,
            None => panic!("no {w:?} (in order) in:\n{stderr}"),
        }
    }
}

fn assert_bad(o: &Output) {
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert_messages(&o.stderr, BAD);
    assert_eq!(messages(&o.stderr).len(), BAD.len(), "{}", o.stderr);
    assert!(
        o.stderr.ends_with(&format!(
            "error: {} problems in the build configuration; nothing was built\n",
            BAD.len()
        )),
        "{}",
        o.stderr
    );
}

const NO_BUILDER: &str = "unix:///nonexistent/buildkitd.sock";

#[test]
fn print_plan_and_build_stop_at_bad_references() {
    assert_bad(&Test::new().kdl(&bad_kdl()).args(&["print", "app"]).run());
    assert_bad(&Test::new().kdl(&bad_kdl()).args(&["plan", "app"]).run());
    // build stops before choosing or contacting a builder: the one given
    // does not exist, and is never mentioned.
    let t = Test::new()
        .kdl(&bad_kdl())
        .file("Dockerfile", "FROM scratch\n")
        .env("MYBAKE_BUILDER", NO_BUILDER)
        .env("BUILDKIT_HOST", NO_BUILDER)
        .args(&["build", "app", "--push"]);
    let o = t.run();
    assert_bad(&o);
    assert!(!o.stderr.contains("nonexistent"), "{}", o.stderr);
    let o = Test::new()
        .kdl(&bad_kdl())
        .args(&["build", "app", "--builder", NO_BUILDER])
        .run();
    assert_bad(&o);
}

#[test]
fn the_same_file_with_good_references_goes_on_to_the_builder() {
    // Fixing the references alone makes `print` pass and `build` go as far
    // as the (missing) builder: the exit 2 above came from the references.
    let good = bad_kdl()
        .replace("Foo/bar:1", "foo/bar:1")
        .replace("app:tag with space", "app:tag-with-space")
        .replace("/Cache:app", "/cache:app")
        .replace("user/app:\"", "user/app:cache\"")
        .replace(&format!("/cache@{SHA}"), "/cache:app")
        .replace("-alpine:3", "alpine:3");
    let o = Test::new().kdl(&good).args(&["print", "app"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        v["target"]["app"]["cache-from"][1],
        serde_json::json!({"type": "registry", "ref": "user/app:cache"})
    );
    Test::new().kdl(&good).args(&["plan", "app"]).expect(0);
    let o = Test::new()
        .kdl(&good)
        .file("Dockerfile", "FROM scratch\n")
        .env("MYBAKE_BUILDER", NO_BUILDER)
        .args(&["build", "app"])
        .expect(1);
    assert!(o.stderr.contains(NO_BUILDER), "{}", o.stderr);
}

#[test]
fn rendered_diagnostic() {
    let o = Test::new()
        .kdl("variable \"REGISTRY\" default=\"localhost:5000\"\ntarget \"api\" {\n    tags \"${REGISTRY}/API:v1\" \"localhost:5000/api:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n    cache-to \"type=registry,mode=max\"\n}\n")
        .args(&["print"])
        .expect(2);
    insta::assert_snapshot!("diag_references", o.stderr);
}

#[test]
fn values_from_variables_set_and_other_files_are_located() {
    // Interpolated: the whole literal; --set: the flag's text; another
    // file: that file.
    let o = Test::new()
        .kdl("variable \"REGISTRY\" default=\"localhost:5000\"\ntarget \"a\" {\n    tags \"${REGISTRY}/a:1\"\n}\ntarget \"b\" {\n}\n")
        .file(
            "mybake.override.kdl",
            "target \"a\" {\n    cache-from \"R/cache\"\n}\n",
        )
        .args(&[
            "--var",
            "REGISTRY=my registry",
            "--set",
            "b.tags=B:1",
            "print",
            "a",
        ])
        .expect(2);
    assert_messages(
        &o.stderr,
        &[
            "mybake.kdl:3:10: tag `my registry/a:1`: invalid repository name `my registry/a`: a space is not allowed",
            "mybake.override.kdl:2:17: cache-from ref `R/cache`: repository name must be lowercase: `R/cache`",
            "--set:1:8: tag `B:1`: repository name must be lowercase: `B`",
        ],
    );
    assert!(
        o.stderr
            .contains("error: 3 problems in the build configuration"),
        "{}",
        o.stderr
    );
}

#[test]
fn every_expansion_of_a_matrix_is_checked() {
    let o = Test::new()
        .kdl("target \"svc-${svc}\" {\n    matrix {\n        svc \"api\" \"Web\" \"Db\"\n    }\n    tags \"r/${svc}:1\"\n}\n")
        .args(&["print"])
        .expect(2);
    // Same span: sorted in report order, then by position only.
    let mut got = messages(&o.stderr);
    got.sort();
    assert_eq!(
        got,
        [
            squash("mybake.kdl:5:10: tag `r/Db:1`: repository name must be lowercase: `r/Db`"),
            squash("mybake.kdl:5:10: tag `r/Web:1`: repository name must be lowercase: `r/Web`"),
        ],
        "{}",
        o.stderr
    );
}

#[test]
fn good_references_are_accepted_unchanged() {
    let kdl = format!(
        r#"target "a" {{
    tags "localhost:5000/x:y" "alpine" "docker.io/library/alpine:3.19" "ghcr.io/o/a.b_c__d---e:V_1.0-rc" "[::1]:5000/a" "Reg.Example.COM:443/a/b/c"
    cache-from "user/app:cache" "type=registry,ref=127.0.0.1:5000/a/b@{SHA}" "type=local,src=/x y" "type=gha,scope=Whatever"
    cache-to "type=inline" "type=registry,ref=localhost:5000/cache:a,mode=max"
    contexts {{
        img "docker-image://127.0.0.1:5000/a/b@{SHA}"
        dir "./Some Dir"
    }}
}}
"#
    );
    let o = Test::new().kdl(&kdl).args(&["print", "a"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["target"]["a"]["tags"][0], "localhost:5000/x:y");
    assert_eq!(
        v["target"]["a"]["contexts"]["img"],
        format!("docker-image://127.0.0.1:5000/a/b@{SHA}")
    );
}
