//! Integration tests of `print`, `list`, `plan` and diagnostics, running
//! the binary. Snapshots live in tests/snapshots.

use crate::common;

use common::Test;

const MONO: &str = r#"
variable "REGISTRY" default="localhost:5000"
variable "TAG" default="dev" description="image tag"
variable "PLATFORMS" type="list" default="linux/amd64,linux/arm64"

group "default" {
    targets "services" "tools"
    description "everything"
}
group "services" {
    targets "svc-${svc}"
}

target "_common" {
    platforms "${PLATFORMS}"
    label "org.opencontainers.image.vendor" "acme"
    arg "VERSION" "${TAG}"
}

target "base" {
    inherits "_common"
    context "base"
    tags "${REGISTRY}/base:${TAG}"
}

target "svc-${svc}" {
    matrix {
        svc "api" "worker"
    }
    inherits "_common"
    description "the ${svc} service"
    context "services/${svc}"
    contexts {
        base "target:base"
    }
    tags "${REGISTRY}/${MYBAKE_TARGET}:${TAG}"
    cache-from "type=registry,ref=${REGISTRY}/cache:${svc}"
    output "registry"
}

target "tools" {
    platforms "linux/amd64"
    contexts { base "target:base"; }
    dockerfile-inline "FROM base\nRUN true"
    secret id="token" env="TOKEN"
    annotation "index:org.opencontainers.image.description" "tools"
    no-cache true
}
"#;

#[test]
fn print_snapshot_and_byte_stable() {
    let t = Test::new().kdl(MONO).args(&["print"]);
    let a = t.expect(0);
    let b = t.expect(0);
    assert_eq!(a.stdout, b.stdout, "print must be byte-stable");
    insta::assert_snapshot!("print_monorepo", a.stdout);
}

#[test]
fn print_selected_target_includes_dependencies() {
    let o = Test::new().kdl(MONO).args(&["print", "svc-api"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let names: Vec<&String> = v["target"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["base", "svc-api"]);
    assert!(v.get("group").is_none());
}

#[test]
fn plan_formats() {
    let t = Test::new().kdl(MONO);
    insta::assert_snapshot!("plan_text", t.args(&["plan"]).expect(0).stdout);
    let t = Test::new().kdl(MONO).args(&["plan", "--format", "json"]);
    let o = t.expect(0);
    insta::assert_snapshot!("plan_json", o.stdout);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    // tools is amd64 only, so base is needed for both platforms (services).
    let ids: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"base@linux/arm64") && !ids.contains(&"base"));
    let dot = Test::new()
        .kdl(MONO)
        .args(&["plan", "--format", "dot"])
        .expect(0)
        .stdout;
    assert!(
        dot.starts_with("digraph mybake {")
            && dot.contains("\"svc-api@linux/arm64\" -> \"base@linux/arm64\";"),
        "{dot}"
    );
}

#[test]
fn global_options_before_or_after_subcommand() {
    let a = Test::new()
        .file(
            "sub/mybake.kdl",
            "target \"a\" {\n context \"api\"\n}\ngroup \"default\" {\n targets \"a\"\n}\n",
        )
        .args(&["-C", "sub", "print"])
        .expect(0);
    let b = Test::new()
        .file(
            "sub/mybake.kdl",
            "target \"a\" {\n context \"api\"\n}\ngroup \"default\" {\n targets \"a\"\n}\n",
        )
        .args(&["print", "-C", "sub"])
        .expect(0);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn paths_are_relative_to_declaring_file_shown_relative_to_cwd() {
    let o = Test::new()
        .file(
            "sub/mybake.kdl",
            "target \"a\" {\n context \"api\"\n output \"oci\" dest=\"../dist/a.tar\"\n}\n",
        )
        .args(&["-f", "sub/mybake.kdl", "print", "a"])
        .expect(0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["target"]["a"]["context"], "sub/api");
    assert_eq!(v["target"]["a"]["output"][0]["dest"], "dist/a.tar");
}

#[test]
fn override_file_merges_attribute_by_attribute() {
    let o = Test::new()
        .kdl("target \"a\" {\n tags \"x:1\"\n arg \"A\" \"1\"\n arg \"B\" \"1\"\n platforms \"linux/amd64\"\n}\ngroup \"default\" {\n targets \"a\"\n}\n")
        .file("mybake.override.kdl", "target \"a\" {\n tags \"x:2\"\n arg \"B\" \"2\"\n}\n")
        .args(&["print"])
        .expect(0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["target"]["a"]["tags"], serde_json::json!(["x:2"]));
    assert_eq!(
        v["target"]["a"]["args"],
        serde_json::json!({"A": "1", "B": "2"})
    );
    assert_eq!(
        v["target"]["a"]["platforms"],
        serde_json::json!(["linux/amd64"])
    );
}

#[test]
fn explicit_files_replace_defaults_later_wins() {
    let o = Test::new()
        .kdl("target \"a\" {\n tags \"ignored\"\n}\n")
        .file(
            "one.kdl",
            "target \"a\" {\n tags \"one\"\n stage \"s1\"\n}\n",
        )
        .file("two.kdl", "target \"a\" {\n tags \"two\"\n}\n")
        .args(&["-f", "one.kdl", "-f", "two.kdl", "print", "a"])
        .expect(0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["target"]["a"]["tags"], serde_json::json!(["two"]));
    assert_eq!(v["target"]["a"]["target"], "s1");
}

#[test]
fn stdin_file() {
    let o = Test::new()
        .args(&["-f", "-", "print", "a"])
        .stdin("target \"a\" {\n}\n")
        .expect(0);
    assert!(o.stdout.contains("\"a\""));
}

#[test]
fn variables_precedence_and_set() {
    let kdl = "variable \"TAG\" default=\"dev\"\ntarget \"a\" {\n tags \"r/a:${TAG}\"\n}\n";
    let tag = |t: Test| -> serde_json::Value {
        let o = t.expect(0);
        serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["target"]["a"]["tags"][0]
            .clone()
    };
    assert_eq!(tag(Test::new().kdl(kdl).args(&["print", "a"])), "r/a:dev");
    assert_eq!(
        tag(Test::new().kdl(kdl).env("TAG", "env").args(&["print", "a"])),
        "r/a:env"
    );
    assert_eq!(
        tag(Test::new()
            .kdl(kdl)
            .env("TAG", "env")
            .args(&["--var", "TAG=flag", "print", "a"])),
        "r/a:flag"
    );
    assert_eq!(
        tag(Test::new()
            .kdl(kdl)
            .args(&["print", "a", "--set", "a.tags=z"])),
        "z"
    );
}

#[test]
fn list_targets_and_variables() {
    insta::assert_snapshot!(
        "list_targets",
        Test::new().kdl(MONO).args(&["list"]).expect(0).stdout
    );
    insta::assert_snapshot!(
        "list_variables",
        Test::new()
            .kdl(MONO)
            .args(&["list", "variables"])
            .env("TAG", "v1")
            .expect(0)
            .stdout
    );
    let j: serde_json::Value = serde_json::from_str(
        &Test::new()
            .kdl(MONO)
            .args(&["list", "variables", "--format", "json"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(
        j["variables"][2]["value"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
}

#[test]
fn build_checks_files_before_contacting_a_builder() {
    // Missing context and Dockerfile: located diagnostics, exit 2, and the
    // (unreachable) builder is never contacted.
    let o = Test::new()
        .kdl("target \"a\" {\n    context \"nope\"\n}\ntarget \"b\" {\n    dockerfile \"Dockerfile.missing\"\n}\ngroup \"default\" {\n    targets \"a\" \"b\"\n}\n")
        .args(&["build", "--builder", "unix:///nonexistent/buildkitd.sock"])
        .expect(2);
    insta::assert_snapshot!("build_preflight", o.stderr);
}

#[test]
fn build_with_unreachable_builder_fails_clearly() {
    let o = Test::new()
        .kdl("target \"a\" {\n    dockerfile-inline \"FROM scratch\"\n}\n")
        .args(&[
            "build",
            "a",
            "--builder",
            "unix:///nonexistent/buildkitd.sock",
        ])
        .expect(1);
    assert!(
        o.stderr.contains("unix:///nonexistent/buildkitd.sock")
            && o.stderr.contains("nothing was built"),
        "{}",
        o.stderr
    );
}

#[test]
fn no_default_group_lists_what_exists() {
    let o = Test::new()
        .kdl("target \"a\" {\n}\ngroup \"g\" {\n targets \"a\"\n}\n")
        .args(&["print"])
        .expect(2);
    assert!(o.stderr.contains("targets: a; groups: g"), "{}", o.stderr);
}

#[test]
fn missing_file_is_exit_2() {
    let o = Test::new().args(&["print"]).expect(2);
    assert!(o.stderr.contains("no mybake.kdl in [TMP]"), "{}", o.stderr);
}

#[test]
fn bad_cli_usage_is_exit_2() {
    Test::new()
        .kdl(MONO)
        .args(&["plan", "--format", "svg"])
        .expect(2);
    Test::new()
        .kdl(MONO)
        .args(&["--var", "NOEQUALS", "print"])
        .expect(2);
}

/// Each case: a build file (and flags) that must fail with exit 2, whose
/// rendered diagnostics are snapshotted.
fn diag(name: &str, kdl: &str, args: &[&str], env: &[(&str, &str)]) {
    let mut t = Test::new().kdl(kdl).args(args);
    for (k, v) in env {
        t = t.env(k, v);
    }
    let o = t.expect(2);
    assert!(o.stdout.is_empty());
    insta::assert_snapshot!(name, o.stderr);
}

#[test]
fn diagnostics() {
    diag(
        "diag_syntax",
        "target \"a\" {\n    context \"x\n}\n",
        &["print"],
        &[],
    );
    diag("diag_unknown_node", "targte \"a\" {\n}\ntarget \"b\" {\n    platfroms \"linux/amd64\"\n    dockerfile 3\n}\nvariable \"X\" defualt=\"1\"\n", &["print"], &[]);
    diag(
        "diag_wrong_type",
        "target \"a\" {\n    no-cache \"sometimes\"\n    pull 1\n}\n",
        &["print", "a"],
        &[],
    );
    diag("diag_unknown_refs", "target \"a\" {\n    inherits \"_comon\"\n    contexts {\n        base \"target:bsae\"\n    }\n    tags \"${REGISTY}/a\"\n}\ntarget \"_common\" {\n}\ntarget \"base\" {\n}\nvariable \"REGISTRY\" default=\"r\"\ngroup \"default\" {\n    targets \"a\" \"b\"\n}\n", &["print"], &[]);
    diag("diag_bad_var_value", "variable \"JOBS\" type=\"int\" default=4\nvariable \"PUSH\" type=\"bool\" default=false\ntarget \"a\" {\n    arg \"J\" \"${JOBS}\"\n}\n", &["--var", "JOBS=many", "print", "a"], &[("PUSH", "yes")]);
    diag(
        "diag_platform",
        "target \"a\" {\n    platforms \"linux/x86_64\" \"linux\"\n}\n",
        &["print", "a"],
        &[],
    );
    diag("diag_duplicate_expansion", "target \"svc-${svc}\" {\n    matrix {\n        svc \"api\" \"worker\"\n        variant \"release\" \"debug\"\n    }\n}\n", &["print"], &[]);
    diag("diag_missing_platform", "target \"base\" {\n    platforms \"linux/amd64\"\n}\ntarget \"app\" {\n    platforms \"linux/amd64\" \"linux/arm64\"\n    contexts {\n        base \"target:base\"\n    }\n}\n", &["plan", "app"], &[]);
    diag("diag_cycle", "target \"a\" {\n    contexts {\n        b \"target:b\"\n    }\n}\ntarget \"b\" {\n    contexts {\n        c \"target:c\"\n    }\n}\ntarget \"c\" {\n    contexts {\n        a \"target:a\"\n    }\n}\n", &["plan", "a"], &[]);
    diag(
        "diag_set",
        "target \"a\" {\n}\n",
        &[
            "--set",
            "a.platfroms=linux/arm64",
            "--set",
            "nothing.tags=x",
            "print",
            "a",
        ],
        &[],
    );
}

#[test]
fn diagnostics_across_files_point_at_each_file() {
    let o = Test::new()
        .kdl("target \"base\" {\n    platforms \"linux/amd64\"\n}\n")
        .file("mybake.override.kdl", "target \"app\" {\n    platforms \"linux/arm64\"\n    contexts {\n        base \"target:base\"\n    }\n}\n")
        .args(&["plan", "app"])
        .expect(2);
    assert!(
        o.stderr.contains("mybake.override.kdl:4:14") && o.stderr.contains("mybake.kdl:2:15"),
        "{}",
        o.stderr
    );
}

/// Issue 12 defect 2: `output "oci" tar="maybe"` is refused by `print` and
/// `plan` (exit 2, located), as by `build`, not late at build time.
#[test]
fn oci_tar_must_be_a_boolean_everywhere() {
    for cmd in ["print", "plan"] {
        let o = Test::new()
            .kdl("target \"a\" {\n    output \"oci\" tar=\"maybe\" dest=\"x\"\n}\n")
            .args(&[cmd, "a"])
            .expect(2);
        assert!(
            o.stderr
                .contains("mybake.kdl:2:22: output `oci` of `a`: `tar` must be true or false"),
            "{cmd}: {}",
            o.stderr
        );
    }
    Test::new()
        .kdl("target \"a\" {\n    output \"oci\" tar=\"false\" dest=\"x\"\n}\n")
        .args(&["print", "a"])
        .expect(0);
}

/// Issue 12 item 1: values typed at the end of resolve (`ssh`, cache
/// values) are refused by `print`, `plan` and `build` alike, located.
#[test]
fn typed_values_are_checked_by_every_command() {
    for cmd in ["print", "plan", "build"] {
        let o = Test::new()
            .kdl("target \"a\" {\n    ssh \"=/agent.sock\"\n    cache-from \"mode=max\"\n}\n")
            .args(&[cmd, "a"])
            .expect(2);
        assert!(
            o.stderr
                .contains("mybake.kdl:2:9: ssh \"=/agent.sock\" of `a`: the id is empty")
                && o.stderr.contains(
                    "mybake.kdl:3:16: `cache-from` value \"mode=max\" of `a` names no `type=`"
                ),
            "{cmd}: {}",
            o.stderr
        );
    }
}
