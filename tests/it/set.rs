//! `--set` with bake's semantics (issue 15): the same `--set` lines run
//! through `docker buildx bake --print` (on a docker-bake.hcl written
//! here) and `mybake print` (on the equivalent mybake.kdl), and the
//! resulting targets compared. The values bake prints as CSV strings
//! (`output`, `secret`, `cache-from`, `attest`) and mybake as objects are
//! compared as key/value maps; a platform value bake keeps as one
//! comma-joined string is compared as the platforms it parses to.

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Output, Test};
use serde_json::{json, Value};

const HCL: &str = r#"
target "_common" {
  args = { X = "0", Y = "y" }
  labels = { "org.l" = "a" }
  annotations = ["index:a=b"]
  cache-from = ["type=registry,ref=localhost:5000/set15/cache:c"]
}
target "app" {
  inherits = ["_common"]
  args = { Y = "own" }
  tags = ["localhost:5000/set15/app:1"]
  platforms = ["linux/amd64"]
  secret = ["id=s1,env=S1"]
  target = "build"
}
target "base" {
  args = { B = "1" }
}
target "tool" {
  inherits = ["_common"]
  contexts = { base = "target:base" }
  output = ["type=local,dest=out"]
}
"#;

const KDL: &str = r#"
target "_common" {
    arg "X" "0"
    arg "Y" "y"
    label "org.l" "a"
    annotation "index:a" "b"
    cache-from "type=registry,ref=localhost:5000/set15/cache:c"
}
target "app" {
    inherits "_common"
    arg "Y" "own"
    tags "localhost:5000/set15/app:1"
    platforms "linux/amd64"
    secret id="s1" env="S1"
    stage "build"
}
target "base" {
    arg "B" "1"
}
target "tool" {
    inherits "_common"
    contexts {
        base "target:base"
    }
    output "local" dest="out"
}
"#;

fn test() -> Test {
    Test::new()
        .kdl(KDL)
        .file("docker-bake.hcl", HCL)
        .file("secret.txt", "s3")
}

/// `docker buildx bake --print TARGETS --set ...` in the test's directory.
fn bake_print(t: &Test, targets: &[&str], sets: &[&str]) -> Output {
    let mut c = Command::new("docker");
    c.args(["buildx", "bake", "-f", "docker-bake.hcl", "--print"])
        .args(targets)
        .current_dir(t.path());
    for s in sets {
        c.args(["--set", s]);
    }
    let out = c
        .output()
        .expect("run `docker buildx bake` (is docker buildx installed?)");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mybake_print(targets: &[&str], sets: &[&str]) -> Output {
    let mut args = vec!["print"];
    args.extend(targets);
    for s in sets {
        args.extend(["--set", s]);
    }
    test().args(&args).run()
}

/// `k=v,k2=v2` (or an object) as a map.
fn kv(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let mut m = BTreeMap::new();
            for part in s.split(',') {
                let (k, v) = part.split_once('=').unwrap_or(("type", part));
                m.insert(k.to_string(), Value::String(v.to_string()));
            }
            json!(m)
        }
        Value::Object(o) => json!(o.iter().collect::<BTreeMap<_, _>>()),
        other => other.clone(),
    }
}

/// The `target` object of a print, each value in one form for both tools.
fn targets(print: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    let v: Value = serde_json::from_str(print).unwrap_or_else(|e| panic!("{e}: {print}"));
    let mut out = BTreeMap::new();
    for (name, t) in v["target"].as_object().expect("a target object") {
        let mut m = BTreeMap::new();
        for (k, v) in t.as_object().expect("target is an object") {
            let v = match k.as_str() {
                "output" | "secret" | "cache-from" | "cache-to" | "attest" => {
                    Value::Array(v.as_array().expect("a list").iter().map(kv).collect())
                }
                "platforms" => Value::Array(
                    v.as_array()
                        .expect("a list")
                        .iter()
                        .flat_map(|p| p.as_str().unwrap_or_default().split(','))
                        .map(|p| json!(p))
                        .collect(),
                ),
                _ => v.clone(),
            };
            m.insert(k.clone(), v);
        }
        out.insert(name.clone(), m);
    }
    out
}

/// Run `sets` through both tools; both succeed and print the same
/// targets. Returns mybake's targets.
#[track_caller]
fn same(names: &[&str], sets: &[&str]) -> BTreeMap<String, BTreeMap<String, Value>> {
    let t = test();
    let b = bake_print(&t, names, sets);
    assert_eq!(b.code, 0, "bake --print {sets:?}: {}", b.stderr);
    let m = mybake_print(names, sets);
    assert_eq!(m.code, 0, "mybake print {sets:?}: {}", m.stderr);
    let (bt, mt) = (targets(&b.stdout), targets(&m.stdout));
    assert_eq!(
        mt, bt,
        "--set {sets:?}\nmybake:\n{}\nbake:\n{}",
        m.stdout, b.stdout
    );
    mt
}

#[test]
fn args_labels_before_inheritance() {
    // `_common`'s overrides reach `app` and `tool`; `app`'s own `Y` wins.
    let t = same(
        &["app", "tool"],
        &[
            "_common.args.X=1",
            "_common.args.Y=2",
            "_common.labels.org.l=b",
            "app.labels.new=n",
            "tool.args.Z=z=z",
        ],
    );
    assert_eq!(t["app"]["args"], json!({"X": "1", "Y": "own"}));
    assert_eq!(t["tool"]["args"], json!({"X": "1", "Y": "2", "Z": "z=z"}));
    assert_eq!(t["tool"]["labels"], json!({"org.l": "b"}));
}

#[test]
fn globs_match_abstract_and_concrete_targets() {
    let t = same(
        &["app", "tool"],
        &["*.args.G=1", "ap*.labels.L=l", "_c?mmon.args.X=c"],
    );
    assert_eq!(t["base"]["args"]["G"], "1", "the dependency is matched too");
    assert_eq!(t["app"]["args"]["X"], "c");
    assert!(t["tool"]["labels"].get("L").is_none());
}

#[test]
fn repeated_tags_append_and_are_not_split() {
    let t = same(
        &["app"],
        &[
            "app.tags=localhost:5000/set15/a:1",
            "app.tags=localhost:5000/set15/b:2",
            "*.tags=localhost:5000/set15/a:1",
        ],
    );
    assert_eq!(
        t["app"]["tags"],
        json!(["localhost:5000/set15/a:1", "localhost:5000/set15/b:2"])
    );
    // `a:1,b:2` is one value in bake; here it is one (invalid) tag,
    // reported at the flag, not two tags.
    let o = mybake_print(&["app"], &["app.tags=r/a:1,r/b:2"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("`r/a:1,r/b:2`"), "{}", o.stderr);
}

#[test]
fn platform_and_target_in_both_name_sets() {
    let bake_names = [
        "app.platform=linux/amd64,linux/arm64",
        "app.platform=linux/arm/v7",
        "app.target=release",
        "tool.platform=linux/arm64",
    ];
    let t = same(&["app", "tool"], &bake_names);
    assert_eq!(
        t["app"]["platforms"],
        json!(["linux/amd64", "linux/arm64", "linux/arm/v7"])
    );
    assert_eq!(t["app"]["target"], "release");
    // On the parent: reaches `tool`, which declares none; `app`'s own wins.
    let t = same(&["app", "tool"], &["_common.platform=linux/arm64"]);
    assert_eq!(t["tool"]["platforms"], json!(["linux/arm64"]));
    assert_eq!(t["app"]["platforms"], json!(["linux/amd64"]));
    // mybake's names say the same.
    let mine = mybake_print(
        &["app", "tool"],
        &[
            "app.platforms=linux/amd64,linux/arm64",
            "app.platforms=linux/arm/v7",
            "app.stage=release",
            "tool.platforms=linux/arm64",
        ],
    );
    assert_eq!(mine.code, 0, "{}", mine.stderr);
    let theirs = mybake_print(&["app", "tool"], &bake_names);
    assert_eq!(mine.stdout, theirs.stdout);
}

#[test]
fn contexts_caches_outputs_secrets_attest() {
    let t = same(
        &["app", "tool"],
        &[
            "tool.contexts.extra=docker-image://localhost:5000/busybox:latest",
            "app.cache-from=type=registry,ref=localhost:5000/set15/cache:app",
            "app.cache-from=type=local,src=cache",
            "app.cache-to=type=inline",
            "tool.output=type=tar,dest=out.tar",
            "app.secrets=id=s2,env=S2",
            "app.secrets=id=s3,src=secret.txt",
            "app.attest=type=sbom",
            "app.attest=type=provenance,mode=min",
            "app.attest=type=provenance,mode=max",
            "app.no-cache=true",
            "app.pull=false",
            "app.dockerfile=Dockerfile.release",
        ],
    );
    assert_eq!(t["app"]["secret"].as_array().unwrap().len(), 2);
    // An attestation of a type already there replaces it, in place.
    assert_eq!(
        t["app"]["attest"],
        json!([{"type": "sbom"}, {"type": "provenance", "mode": "max"}])
    );
    assert_eq!(t["app"]["cache-from"].as_array().unwrap().len(), 2);
    assert_eq!(
        t["tool"]["output"],
        json!([{"type": "tar", "dest": "out.tar"}])
    );
    assert_eq!(
        t["tool"]["contexts"]["extra"],
        "docker-image://localhost:5000/busybox:latest"
    );
}

/// bake 0.13.1 drops `--set T.annotations=...` (it reads the value from
/// the wrong field; later versions append it): mybake appends, so its
/// annotations are bake's plus the flag's.
#[test]
fn annotations_append() {
    let flag = "app.annotations=index:c=d";
    let t = test();
    let b = bake_print(&t, &["app"], &[flag]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let mut want = targets(&b.stdout)["app"]["annotations"].clone();
    want.as_array_mut().unwrap().push(json!("index:c=d"));
    let m = mybake_print(&["app"], &[flag]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert_eq!(targets(&m.stdout)["app"]["annotations"], want);
    // mybake's own form says the same.
    let mine = mybake_print(&["app"], &["app.annotation.index:c=d"]);
    assert_eq!(mine.stdout, m.stdout);
}

#[test]
fn unknown_names_fail_in_both() {
    for flag in [
        "app.lables.x=1",
        "app.platfrom=linux/arm64",
        "nothing.tags=x",
    ] {
        let t = test();
        let b = bake_print(&t, &["app"], &[flag]);
        assert_ne!(b.code, 0, "bake accepted {flag}");
        let m = mybake_print(&["app"], &[flag]);
        assert_eq!(m.code, 2, "{flag}: {}", m.stderr);
    }
    // Both name sets are suggested, and the error points at the flag.
    let m = mybake_print(&["app"], &["app.lables.x=1", "app.platfrom=linux/arm64"]);
    assert!(m.stderr.contains("did you mean `labels`?"), "{}", m.stderr);
    assert!(
        m.stderr.contains("did you mean `platform`?"),
        "{}",
        m.stderr
    );
    assert!(m.stderr.contains("--set:1:5"), "{}", m.stderr);
}

#[test]
fn default_target_and_local_platform() {
    let hcl = "target \"default\" {\n  platforms = [\"local\"]\n}\n";
    let kdl = "target \"default\" {\n    platforms \"local\"\n}\n";
    let t = Test::new().kdl(kdl).file("docker-bake.hcl", hcl);
    let b = bake_print(&t, &[], &[]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let m = t.args(&["print"]).run();
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert_eq!(targets(&m.stdout), targets(&b.stdout));
    // `plan` builds the local platform (`${MYBAKE_LOCAL_PLATFORM}`).
    let t = || {
        Test::new().kdl(&format!(
            "{kdl}target \"probe\" {{\n    arg \"P\" \"${{MYBAKE_LOCAL_PLATFORM}}\"\n}}\n"
        ))
    };
    let v: Value = serde_json::from_str(&t().args(&["print", "probe"]).expect(0).stdout).unwrap();
    let local = v["target"]["probe"]["args"]["P"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(local.starts_with("linux/"), "{local}");
    let p = t().args(&["plan", "--format", "json"]).expect(0);
    let v: Value = serde_json::from_str(&p.stdout).unwrap();
    let ids: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [format!("default@{local}").as_str(), "default"]);
}

/// Issue 15, end to end on the real daemon: a dependency that declares no
/// platforms is built for both platforms of its multi-platform dependent;
/// the pushed index holds both, each built on the dependency of its own
/// platform, and the dependency itself (not requested) is not tagged.
#[test]
fn platformless_dependency_builds_for_its_dependents_platforms() {
    use common::testbed::*;
    testbed();
    let base_repo = unique_repo("set15-plless-base");
    let app_repo = unique_repo("set15-plless-app");
    let kdl = format!(
        r#"
target "base" {{
    context "base"
    tags "{base_repo}:dev"
}}
target "app" {{
    context "app"
    contexts {{ base "target:base" }}
    platforms "linux/amd64" "linux/arm64"
    tags "{app_repo}:dev"
}}
"#
    );
    let t = Test::new()
        .kdl(&kdl)
        .file(
            "base/Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN uname -m > /base-arch\n"),
        )
        .file(
            "app/Dockerfile",
            "FROM base\nRUN echo \"app on $(uname -m) saw $(cat /base-arch)\" > /app-saw\n",
        );
    // The plan shows base narrowed/expanded to app's platforms.
    let p = Test::new()
        .kdl(&kdl)
        .args(&["plan", "app", "--format", "json"])
        .expect(0);
    let v: Value = serde_json::from_str(&p.stdout).unwrap();
    let ids: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .filter(|id| id.starts_with("base@"))
        .collect();
    assert_eq!(ids, ["base@linux/amd64", "base@linux/arm64"]);

    let mut pulled = StoreCleanup::new(&[&base_repo, &app_repo]);
    let o = t
        .args(&["build", "app", "--push", "--progress", "plain"])
        .run();
    assert_eq!(o.code, 0, "build failed:\n{}\n{}", o.stdout, o.stderr);
    let index = http_json(
        &format!("/v2/{}/manifests/dev", api_name(&app_repo)),
        Some(OCI_ACCEPT),
    );
    let platforms: Vec<String> = index_images(&index).into_iter().map(|(p, _)| p).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    for (p, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = pulled.run(
            p,
            &format!("{app_repo}:dev"),
            None,
            &["cat", "/base-arch", "/app-saw"],
        );
        assert_eq!(
            out,
            format!("{arch}\napp on {arch} saw {arch}\n"),
            "app for {p} must be built on base for {p}"
        );
    }
    assert_no_tags(&base_repo, "base is only a dependency");
}
