//! `${ EXPR }` expressions (issue 14): functions, user functions, null
//! variables, `map` variables, `validation`, object matrices and
//! expressions in names, through `mybake print` on real files.

use crate::common;

use common::Test;

const EXPRS: &str = r#"
variable "REGISTRY" default="localhost:5000"
variable "TAG" default="dev"
variable "TAGS" default="a,b"
variable "GO"
variable "PLATFORMS" type="list" default="linux/amd64,linux/arm64"
variable "JOBS" type="int" default=4 {
    validation "${JOBS > 0 && JOBS < 64}" message="JOBS must be between 1 and 63"
}
variable "PUSH" type="bool" default=false
variable "LABELS" type="map" default="team=infra,tier=1"
variable "IMAGE" default="${REGISTRY}/${lower(\"APP\")}"

function "tag" {
    params "repo" "version"
    result "${repo}/app:${version}"
}
function "all" {
    params "sep"
    variadic-param "rest"
    result "${join(sep, rest)}"
}
function "twice" {
    params "x"
    result "${tag(x, upper(x))}"
}

group "default" {
    targets "app-${upper(tgt.name)}"
}

target "app-${upper(tgt.name)}" {
    matrix {
        tgt {
            item name="a" ver="1"
            item name="b" ver=2
        }
    }
    dockerfile-inline "FROM scratch"
    platforms "${PUSH ? PLATFORMS : [\"linux/amd64\"]}"
    tags "${tag(REGISTRY, TAG)}" "${split(\",\", TAGS)}" "${tgt.ver}-v" "x-${JOBS + 1}" "${GO}"
    arg "GO_VERSION" "${GO}"
    arg "J" "${JOBS * 2}"
    arg "C" "${TAG == \"dev\" ? \"yes\" : \"no\"}"
    arg "TEAM" "${LABELS.team}"
    arg "UP" "${join(\",\", [for s in split(\",\", TAGS) : upper(s)])}"
    arg "IDX" "${PLATFORMS[1]}"
    arg "T" "${twice(tgt.name)}"
    label "all" "${all(\"-\", \"x\", \"y\", TAG)}"
    label "image" "${IMAGE}"
    label "lit" "$${not} ${TAG}"
    no-cache "${!PUSH}"
}
"#;

fn print(t: Test) -> serde_json::Value {
    let o = t.args(&["print"]).expect(0);
    serde_json::from_str(&o.stdout).unwrap()
}

#[test]
fn print_with_expressions_snapshot() {
    let o = Test::new().kdl(EXPRS).args(&["print"]).expect(0);
    insta::assert_snapshot!("print_expressions", o.stdout);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let a = &v["target"]["app-A"];
    assert_eq!(
        a["tags"],
        serde_json::json!(["localhost:5000/app:dev", "a", "b", "1-v", "x-5"])
    );
    assert_eq!(a["args"]["J"], "8");
    assert_eq!(a["args"]["C"], "yes");
    assert_eq!(a["args"]["TEAM"], "infra");
    assert_eq!(a["args"]["UP"], "A,B");
    assert_eq!(a["args"]["IDX"], "linux/arm64");
    assert_eq!(a["args"]["T"], "a/app:A");
    // GO is null: the arg is left out, and the tag position dropped.
    assert!(a["args"].get("GO_VERSION").is_none(), "{a}");
    assert_eq!(a["labels"]["all"], "x-y-dev");
    assert_eq!(a["labels"]["image"], "localhost:5000/app");
    assert_eq!(a["labels"]["lit"], "${not} dev");
    assert_eq!(a["platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(v["target"]["app-B"]["tags"][3], "2-v");
}

#[test]
fn variables_from_environment_and_flags_keep_working() {
    let v = print(
        Test::new()
            .kdl(EXPRS)
            .env("GO", "1.22")
            .env("LABELS", "team=web")
            .env("PUSH", "true")
            .args(&["--var", "TAGS=x"]),
    );
    let a = &v["target"]["app-A"];
    assert_eq!(a["args"]["GO_VERSION"], "1.22");
    assert_eq!(a["args"]["TEAM"], "web");
    assert_eq!(a["args"]["UP"], "X");
    assert_eq!(
        a["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(
        a["tags"],
        serde_json::json!(["localhost:5000/app:dev", "x", "1-v", "x-5", "1.22"])
    );
}

#[test]
fn validation_fails_with_its_message_and_origin() {
    let o = Test::new()
        .kdl(EXPRS)
        .args(&["--var", "JOBS=100", "print"])
        .expect(2);
    assert!(o.stdout.is_empty());
    assert!(
        o.stderr.contains("JOBS must be between 1 and 63"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--var JOBS"), "{}", o.stderr);
    Test::new()
        .kdl(EXPRS)
        .args(&["--var", "JOBS=63", "print"])
        .expect(0);
}

#[test]
fn null_entries_are_left_out() {
    let kdl = r#"
variable "V"
group "default" {
    targets "a"
}
target "a" {
    arg "A" "${V}"
    arg "B" "b"
    label "l" "${V}"
    contexts { c "${V}"; }
    tags "${V}" "t"
}
"#;
    let v = print(Test::new().kdl(kdl).args(&[]));
    let a = &v["target"]["a"];
    assert_eq!(a["args"], serde_json::json!({"B": "b"}));
    assert!(a.get("labels").is_none(), "{a}");
    assert!(a.get("contexts").is_none(), "{a}");
    assert_eq!(a["tags"], serde_json::json!(["t"]));
    let v = print(Test::new().kdl(kdl).env("V", "x"));
    assert_eq!(v["target"]["a"]["args"]["A"], "x");
    assert_eq!(v["target"]["a"]["tags"], serde_json::json!(["x", "t"]));
}

/// Every evaluation error of the run at once, each located inside its
/// string.
#[test]
fn evaluation_errors_snapshot() {
    let kdl = r#"variable "TAG" default="dev"
variable "NOPE"
function "loop" {
    params "x"
    result "${loop(x)}"
}
target "a" {
    tags "${uper(TAG)}" "${TGA}" "x-${NOPE}" "${1 +}" "${loop(1)}"
    arg "A" "${split(\",\")}"
    arg "B" "${TAG.x}"
}
"#;
    let o = Test::new().kdl(kdl).args(&["print", "a"]).expect(2);
    assert!(o.stdout.is_empty());
    insta::assert_snapshot!("diag_expressions", o.stderr);
}

#[test]
fn function_and_validation_errors_are_located() {
    let kdl = r#"function "f" {
    params "x"
    result "${x +}"
    resutl "x"
}
function "g" {
    params "1x"
}
variable "V" default="a" {
    validation "${V == \"b\"}" message="V must be b"
    validaton "x"
}
"#;
    let o = Test::new().kdl(kdl).args(&["print"]).expect(2);
    insta::assert_snapshot!("diag_functions", o.stderr);
    // Past loading: an error inside a function's `result`, and a false
    // validation (its message, and the default the value came from).
    let kdl = r#"function "f" {
    params "x"
    result "${x +}"
}
variable "V" default="a" {
    validation "${V == \"b\"}" message="V must be b"
}
target "a" {
}
"#;
    let o = Test::new().kdl(kdl).args(&["print", "a"]).expect(2);
    insta::assert_snapshot!("diag_function_result_and_validation", o.stderr);
}

#[test]
fn recursion_and_deep_nesting_are_bounded() {
    let deep = format!(
        "target \"a\" {{\n    tags \"${{{}1{}}}\"\n}}\n",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let o = Test::new().kdl(&deep).args(&["print", "a"]).expect(2);
    assert!(
        o.stderr.contains("nested more than 32 levels"),
        "{}",
        o.stderr
    );
    let kdl = "function \"f\" {\n    params \"x\"\n    result \"${g(x)}\"\n}\nfunction \"g\" {\n    params \"x\"\n    result \"${f(x)}\"\n}\ntarget \"a\" {\n    tags \"${f(1)}\"\n}\n";
    let o = Test::new().kdl(kdl).args(&["print", "a"]).expect(2);
    assert!(o.stderr.contains("more than 16 deep"), "{}", o.stderr);
    // A function doubling its argument, nested: refused at 1 MiB, long
    // before the 2^16 copies of 64 KiB it asks for.
    let kdl = format!(
        "variable \"X\" default=\"{}\"\nfunction \"d\" {{\n    params \"x\"\n    result \"${{x}}${{x}}\"\n}}\ntarget \"a\" {{\n    tags \"${{{}X{}}}\"\n}}\n",
        "x".repeat(64 << 10),
        "d(".repeat(16),
        ")".repeat(16)
    );
    let o = Test::new().kdl(&kdl).args(&["print", "a"]).expect(2);
    assert!(o.stderr.contains("larger than 1 MiB"), "{}", o.stderr);
}
