//! The examples and the schemas against each other and against the binary.
//!
//! - every directory of `examples/` is a working build file: it parses as
//!   KDL 1.0 and follows `schema/mybake.kdl-schema.kdl`;
//! - `mybake -C examples/<name> print` validates against
//!   `schema/print.schema.json`, `plan --format json` against
//!   `schema/plan.schema.json`, and the two agree on the targets;
//! - the JSON Schemas are valid draft 2020-12 and reject what they should.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use knuffel::ast::{Literal, Node, SpannedNode};
use knuffel::span::Span;
use serde_json::{json, Value};

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Every target attribute of the spec's attribute table.
const SPEC_TARGET_ATTRS: &[&str] = &[
    "description",
    "inherits",
    "context",
    "dockerfile",
    "dockerfile-inline",
    "stage",
    "platforms",
    "tags",
    "arg",
    "label",
    "annotation",
    "contexts",
    "cache-from",
    "cache-to",
    "output",
    "secret",
    "ssh",
    "attest",
    "network",
    "no-cache",
    "no-cache-filter",
    "pull",
    "matrix",
];

// ------------------------------------------------------------------ helpers

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Directories of `examples/` that hold a `mybake.kdl`, sorted.
fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("read examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in &dirs {
        assert!(
            d.join("mybake.kdl").is_file(),
            "{} has no mybake.kdl",
            d.display()
        );
    }
    dirs
}

fn name_of(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// The `.kdl` build files of an example directory (not recursive).
fn kdl_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    files.sort();
    files
}

fn parse_kdl(path: &Path) -> Vec<SpannedNode<Span>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match knuffel::parse_ast::<Span>(&path.display().to_string(), &text) {
        Ok(doc) => doc.nodes,
        Err(e) => panic!(
            "{} is not valid KDL 1.0:\n{:?}",
            path.display(),
            miette::Report::new(e)
        ),
    }
}

fn node_name(n: &Node<Span>) -> &str {
    &n.node_name
}

fn str_arg(n: &Node<Span>, i: usize) -> Option<&str> {
    match n.arguments.get(i).map(|v| &*v.literal) {
        Some(Literal::String(s)) => Some(s),
        _ => None,
    }
}

fn prop<'a>(n: &'a Node<Span>, key: &str) -> Option<&'a Literal> {
    n.properties
        .iter()
        .find(|(k, _)| k.as_ref() == key)
        .map(|(_, v)| &*v.literal)
}

/// Names of the top-level `KIND "NAME"` nodes of every file of an example.
fn declared(dir: &Path, kind: &str) -> BTreeSet<String> {
    kdl_files(dir)
        .iter()
        .flat_map(|f| parse_kdl(f))
        .filter(|n| node_name(n) == kind)
        .filter_map(|n| str_arg(&n, 0).map(str::to_string))
        .collect()
}

fn load_json(rel: &str) -> Value {
    let path = root().join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

fn validator(rel: &str) -> jsonschema::Validator {
    let schema = load_json(rel);
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{rel} does not compile: {e}"))
}

/// Every validation error of `instance`, one per line ("" when valid).
fn errors(v: &jsonschema::Validator, instance: &Value) -> String {
    v.iter_errors(instance)
        .map(|e| format!("  at {}: {e}", e.instance_path))
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, instance: &Value, what: &str) {
    let errs = errors(v, instance);
    assert!(
        errs.is_empty(),
        "{what} does not match its schema:\n{errs}\n{}",
        serde_json::to_string_pretty(instance).unwrap()
    );
}

/// Runs the binary from the repository root, with the example's variables
/// removed from the environment so that their defaults apply; returns
/// stdout of a successful run.
fn mybake_raw(dir: &Path, args: &[&str]) -> Vec<u8> {
    let rel = format!("examples/{}", name_of(dir));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mybake"));
    cmd.current_dir(root()).arg("-C").arg(&rel).args(args);
    for var in declared(dir, "variable") {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run mybake");
    assert!(
        out.status.success(),
        "`mybake -C {rel} {}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`mybake_raw`], parsed as JSON.
fn mybake(dir: &Path, args: &[&str]) -> Value {
    let stdout = mybake_raw(dir, args);
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "`mybake -C examples/{} {}` did not print JSON ({e}):\n{}",
            name_of(dir),
            args.join(" "),
            String::from_utf8_lossy(&stdout)
        )
    })
}

// ------------------------------------------------------- a KDL Schema subset

/// Enough of KDL Schema to check the examples against
/// `schema/mybake.kdl-schema.kdl`: node names and counts (`min`/`max`),
/// values (`min`/`max`, `type`, `enum`, `pattern`), properties (`required`,
/// `other-props-allowed`, and the same validations), children blocks and
/// `ref=r#"[id="…"]"#` references.
struct KdlSchema {
    doc: Vec<SpannedNode<Span>>,
}

impl KdlSchema {
    fn load() -> Self {
        KdlSchema {
            doc: parse_kdl(&root().join("schema/mybake.kdl-schema.kdl")),
        }
    }

    fn document(&self) -> &Node<Span> {
        let docs: Vec<_> = self
            .doc
            .iter()
            .filter(|n| node_name(n) == "document")
            .collect();
        assert_eq!(
            docs.len(),
            1,
            "a KDL Schema has exactly one top-level `document` node"
        );
        assert_eq!(self.doc.len(), 1, "nothing but `document` at the top level");
        docs[0]
    }

    fn by_id(&self, id: &str) -> Option<&Node<Span>> {
        fn walk<'a>(nodes: &'a [SpannedNode<Span>], id: &str) -> Option<&'a Node<Span>> {
            for n in nodes {
                if matches!(prop(n, "id"), Some(Literal::String(s)) if &**s == id) {
                    return Some(n);
                }
                if let Some(found) = n.children.as_ref().and_then(|c| walk(c, id)) {
                    return Some(found);
                }
            }
            None
        }
        walk(&self.doc, id)
    }

    /// Follows `ref=r#"[id="X"]"#` (the only query form this schema uses).
    fn resolve<'a>(&'a self, n: &'a Node<Span>) -> &'a Node<Span> {
        match prop(n, "ref") {
            Some(Literal::String(q)) => {
                let id = q
                    .strip_prefix("[id=\"")
                    .and_then(|s| s.strip_suffix("\"]"))
                    .unwrap_or_else(|| panic!("unsupported ref query {q:?}"));
                let target = self
                    .by_id(id)
                    .unwrap_or_else(|| panic!("ref to unknown id {id:?}"));
                self.resolve(target)
            }
            _ => n,
        }
    }

    fn kids<'a>(&'a self, n: &'a Node<Span>, name: &str) -> Vec<&'a Node<Span>> {
        n.children()
            .filter(|c| node_name(c) == name)
            .map(|c| self.resolve(c))
            .collect()
    }

    /// The `node` rules of the top level of a build file.
    fn top_rules(&self) -> Vec<&Node<Span>> {
        self.kids(self.document(), "node")
    }

    fn rule<'a>(rules: &[&'a Node<Span>], name: &str) -> Option<&'a Node<Span>> {
        rules
            .iter()
            .copied()
            .find(|r| str_arg(r, 0) == Some(name))
            .or_else(|| rules.iter().copied().find(|r| r.arguments.is_empty()))
    }

    /// The `node` rules of the children block of `rule`, if it has one.
    fn child_rules<'a>(&'a self, rule: &'a Node<Span>) -> Option<Vec<&'a Node<Span>>> {
        let blocks = self.kids(rule, "children");
        if blocks.is_empty() {
            return None;
        }
        Some(blocks.iter().flat_map(|b| self.kids(b, "node")).collect())
    }

    fn number(&self, n: &Node<Span>, name: &str) -> Option<usize> {
        self.kids(n, name)
            .first()
            .and_then(|c| match c.arguments.first().map(|v| &*v.literal) {
                Some(Literal::Int(i)) => usize::try_from(i).ok(),
                _ => None,
            })
    }

    fn flag(&self, n: &Node<Span>, name: &str) -> bool {
        self.kids(n, name).first().is_some_and(|c| {
            matches!(
                c.arguments.first().map(|v| &*v.literal),
                Some(Literal::Bool(true))
            )
        })
    }

    /// `type`, `enum` and `pattern` validations of a `value` or `prop` rule.
    fn check_literal(&self, rule: &Node<Span>, lit: &Literal, what: &str, errs: &mut Vec<String>) {
        let strings = |name: &str| -> Vec<String> {
            self.kids(rule, name)
                .iter()
                .flat_map(|c| c.arguments.iter())
                .filter_map(|v| match &*v.literal {
                    Literal::String(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect()
        };
        let kind = match lit {
            Literal::String(_) => "string",
            Literal::Bool(_) => "boolean",
            Literal::Int(_) | Literal::Decimal(_) => "number",
            Literal::Null => "null",
        };
        let types = strings("type");
        if !types.is_empty() && !types.iter().any(|t| t == kind) {
            errs.push(format!("{what}: a {kind}, expected {}", types.join(" or ")));
            return;
        }
        // Interpolated strings are only known after resolution.
        let Literal::String(s) = lit else { return };
        if s.contains("${") {
            return;
        }
        let allowed = strings("enum");
        if !allowed.is_empty() && !allowed.iter().any(|a| **a == **s) {
            errs.push(format!("{what}: {s:?} is not one of {allowed:?}"));
        }
        for p in strings("pattern") {
            // The schema's regexes are ECMA-262 style, as JSON Schema's.
            if !jsonschema::is_valid(&json!({ "pattern": p }), &json!(s.to_string())) {
                errs.push(format!("{what}: {s:?} does not match /{p}/"));
            }
        }
    }

    fn check_node(&self, rule: &Node<Span>, node: &Node<Span>, path: &str, errs: &mut Vec<String>) {
        // Values.
        let values = self.kids(rule, "value");
        match values.first() {
            None if !node.arguments.is_empty() => errs.push(format!("{path}: takes no values")),
            None => {}
            Some(v) => {
                let n = node.arguments.len();
                if let Some(min) = self.number(v, "min") {
                    if n < min {
                        errs.push(format!("{path}: {n} value(s), at least {min} expected"));
                    }
                }
                if let Some(max) = self.number(v, "max") {
                    if n > max {
                        errs.push(format!("{path}: {n} value(s), at most {max} expected"));
                    }
                }
                for (i, a) in node.arguments.iter().enumerate() {
                    self.check_literal(v, &a.literal, &format!("{path} value #{}", i + 1), errs);
                }
            }
        }
        // Properties.
        let props = self.kids(rule, "prop");
        let others = self.flag(rule, "other-props-allowed");
        for (k, v) in &node.properties {
            match props.iter().find(|p| str_arg(p, 0) == Some(&***k)) {
                Some(p) => {
                    self.check_literal(p, &v.literal, &format!("{path} property {}", &***k), errs)
                }
                None if others => {}
                None => errs.push(format!("{path}: unknown property `{}`", &***k)),
            }
        }
        for p in &props {
            if self.flag(p, "required") {
                let key = str_arg(p, 0).unwrap_or_default();
                if prop(node, key).is_none() {
                    errs.push(format!("{path}: missing required property `{key}`"));
                }
            }
        }
        // Children.
        let kids: &[SpannedNode<Span>] = node
            .children
            .as_deref()
            .map(|c| c.as_slice())
            .unwrap_or(&[]);
        match self.child_rules(rule) {
            None if node.children.is_some() => {
                errs.push(format!("{path}: takes no children block"))
            }
            None => {}
            Some(rules) => self.check_nodes(&rules, kids, path, errs),
        }
    }

    fn check_nodes(
        &self,
        rules: &[&Node<Span>],
        nodes: &[SpannedNode<Span>],
        path: &str,
        errs: &mut Vec<String>,
    ) {
        let mut counts: HashMap<*const Node<Span>, usize> = HashMap::new();
        for n in nodes {
            let name: &str = &n.node_name;
            let here = match str_arg(n, 0) {
                Some(a) => format!("{path}/{name} {a:?}"),
                None => format!("{path}/{name}"),
            };
            match Self::rule(rules, name) {
                None => {
                    let known: Vec<_> = rules.iter().filter_map(|r| str_arg(r, 0)).collect();
                    errs.push(format!(
                        "{here}: unknown node `{name}` (known: {})",
                        known.join(", ")
                    ));
                }
                Some(rule) => {
                    *counts.entry(rule as *const _).or_default() += 1;
                    self.check_node(rule, n, &here, errs);
                }
            }
        }
        for r in rules {
            let n = counts.get(&(*r as *const _)).copied().unwrap_or(0);
            let what = str_arg(r, 0)
                .map(|s| format!("`{s}`"))
                .unwrap_or_else(|| "entries".into());
            if let Some(min) = self.number(r, "min") {
                if n < min {
                    errs.push(format!(
                        "{path}: {n} {what} node(s), at least {min} expected"
                    ));
                }
            }
            if let Some(max) = self.number(r, "max") {
                if n > max {
                    errs.push(format!(
                        "{path}: {n} {what} node(s), at most {max} expected"
                    ));
                }
            }
        }
    }

    /// All errors of a build file's nodes against the schema.
    fn check(&self, nodes: &[SpannedNode<Span>], path: &str) -> Vec<String> {
        let mut errs = Vec::new();
        self.check_nodes(&self.top_rules(), nodes, path, &mut errs);
        errs
    }

    fn check_text(&self, text: &str) -> Vec<String> {
        let doc = knuffel::parse_ast::<Span>("snippet.kdl", text).expect("snippet parses");
        self.check(&doc.nodes, "snippet.kdl")
    }
}

// ------------------------------------------------------------------- tests

#[test]
fn there_are_at_least_three_examples_and_they_parse_as_kdl() {
    let dirs = example_dirs();
    assert!(
        dirs.len() >= 3,
        "expected at least 3 examples, found {dirs:?}"
    );
    for d in &dirs {
        for f in kdl_files(d) {
            let nodes = parse_kdl(&f);
            assert!(!nodes.is_empty(), "{} is empty", f.display());
        }
    }
}

#[test]
fn every_example_file_follows_the_kdl_schema() {
    let schema = KdlSchema::load();
    for d in example_dirs() {
        for f in kdl_files(&d) {
            let rel = f.strip_prefix(root()).unwrap().display().to_string();
            let errs = schema.check(&parse_kdl(&f), &rel);
            assert!(
                errs.is_empty(),
                "{rel} does not follow schema/mybake.kdl-schema.kdl:\n{}",
                errs.join("\n")
            );
        }
    }
}

#[test]
fn kdl_schema_describes_the_whole_file_format() {
    let schema = KdlSchema::load();
    let top: BTreeSet<_> = schema
        .top_rules()
        .iter()
        .filter_map(|r| str_arg(r, 0))
        .collect();
    assert_eq!(
        top,
        BTreeSet::from(["variable", "function", "group", "target"])
    );

    let target = KdlSchema::rule(&schema.top_rules(), "target").unwrap();
    let attrs: BTreeSet<_> = schema
        .child_rules(target)
        .unwrap()
        .iter()
        .filter_map(|r| str_arg(r, 0))
        .collect();
    let spec: BTreeSet<_> = SPEC_TARGET_ATTRS.iter().copied().collect();
    assert_eq!(
        attrs, spec,
        "target children in the KDL schema vs the spec's attribute table"
    );

    let variable = KdlSchema::rule(&schema.top_rules(), "variable").unwrap();
    let props: BTreeSet<_> = schema
        .kids(variable, "prop")
        .iter()
        .filter_map(|p| str_arg(p, 0))
        .collect();
    assert_eq!(props, BTreeSet::from(["default", "type", "description"]));

    let group = KdlSchema::rule(&schema.top_rules(), "group").unwrap();
    let kids: BTreeSet<_> = schema
        .child_rules(group)
        .unwrap()
        .iter()
        .filter_map(|r| str_arg(r, 0))
        .collect();
    assert_eq!(kids, BTreeSet::from(["targets", "description"]));
}

#[test]
fn kdl_schema_rejects_mistakes() {
    let schema = KdlSchema::load();
    let ok = schema.check_text(
        "variable \"V\" type=\"bool\" default=true\n\
         group \"default\" {\n    targets \"a\"\n}\n\
         target \"a\" {\n    platforms \"linux/amd64\" \"${P}\"\n    contexts {\n        base \"target:b\"\n    }\n    secret id=\"x\" env=\"X\"\n    output \"oci\" dest=\"a.tar\"\n    no-cache true\n}\n",
    );
    assert!(ok.is_empty(), "{ok:#?}");
    for (bad, expect) in [
        (
            "target \"a\" {\n    platfroms \"linux/amd64\"\n}\n",
            "unknown node `platfroms`",
        ),
        ("variable \"V\" type=\"float\"\n", "is not one of"),
        (
            "variable \"V\" defualt=\"x\"\n",
            "unknown property `defualt`",
        ),
        (
            "target \"a\" {\n    arg \"ONLY_A_KEY\"\n}\n",
            "at least 2 expected",
        ),
        (
            "target \"a\" {\n    context \"a\"\n    context \"b\"\n}\n",
            "at most 1 expected",
        ),
        (
            "target \"a\" {\n    secret src=\"x\"\n}\n",
            "missing required property `id`",
        ),
        ("target \"a\" {\n    output \"s3\"\n}\n", "is not one of"),
        (
            "target \"a\" {\n    platforms \"amd64\"\n}\n",
            "does not match",
        ),
        (
            "target \"a\" {\n    no-cache 1\n}\n",
            "expected boolean or string",
        ),
        (
            "target \"a\" {\n    matrix {\n    }\n}\n",
            "at least 1 expected",
        ),
        ("image \"a\"\n", "unknown node `image`"),
    ] {
        let errs = schema.check_text(bad).join("\n");
        assert!(
            errs.contains(expect),
            "{bad:?}: expected an error containing {expect:?}, got:\n{errs}"
        );
    }
}

#[test]
fn json_schemas_are_valid_draft_2020_12() {
    // The meta-schema ships with the validator, so no network is needed.
    let meta = jsonschema::draft202012::new(&json!({ "$ref": DRAFT_2020_12 }))
        .expect("draft 2020-12 meta-schema");
    assert!(
        !meta.is_valid(&json!({ "type": "strnig" })),
        "the meta-schema check is not vacuous"
    );
    assert!(!meta.is_valid(&json!({ "properties": { "a": { "minItems": -1 } } })));
    let mut found = 0;
    for entry in std::fs::read_dir(root().join("schema")).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".schema.json") {
            continue;
        }
        found += 1;
        let rel = format!("schema/{}", path.file_name().unwrap().to_string_lossy());
        let schema = load_json(&rel);
        assert_eq!(
            schema["$schema"], DRAFT_2020_12,
            "{rel} must declare draft 2020-12"
        );
        let errs = errors(&meta, &schema);
        assert!(
            errs.is_empty(),
            "{rel} is not a valid draft 2020-12 schema:\n{errs}"
        );
        // Compiling also checks regexes and references.
        validator(&rel);
    }
    assert_eq!(
        found, 4,
        "schema/ holds build-file, print, plan and progress-event schemas"
    );
}

#[test]
fn print_schema_accepts_the_spec_example_and_rejects_unknown_keys() {
    let v = validator("schema/print.schema.json");
    // The example of the spec's "print output" section.
    let spec = json!({
        "group": { "default": { "targets": ["api", "worker"] } },
        "target": {
            "api": {
                "context": "services/api",
                "dockerfile": "Dockerfile",
                "args": { "GO_VERSION": "1.22" },
                "labels": { "org.opencontainers.image.title": "api" },
                "tags": ["localhost:5000/api:dev"],
                "platforms": ["linux/amd64", "linux/arm64"],
                "target": "release",
                "contexts": { "base": "target:base" },
                "output": [{ "type": "registry" }]
            }
        }
    });
    assert_valid(&v, &spec, "the spec's print example");

    // Every key the schema knows, once.
    let full = json!({
        "group": { "all": { "targets": ["default", "svc-${svc}"], "description": "everything" } },
        "target": {
            "api": {
                "description": "public API",
                "context": ".",
                "contexts": { "base": "target:base", "assets": "assets", "alpine": "docker-image://localhost:5000/alpine:3" },
                "dockerfile": "Dockerfile.release",
                "dockerfile-inline": "FROM base\nRUN make",
                "args": { "GO_VERSION": "1.22" },
                "annotations": ["index:org.opencontainers.image.description=API"],
                "attest": [{ "type": "provenance", "mode": "max" }, { "type": "sbom" }],
                "labels": { "org.opencontainers.image.title": "api" },
                "tags": ["localhost:5000/api:dev", "localhost:5000/api:latest"],
                "cache-from": [{ "type": "registry", "ref": "localhost:5000/cache:api" }],
                "cache-to": [{ "type": "inline" }],
                "target": "release",
                "secret": [{ "id": "npmrc", "src": "/root/.npmrc" }, { "id": "token", "env": "API_TOKEN" }],
                "ssh": ["default"],
                "platforms": ["linux/amd64", "linux/arm64", "linux/arm/v7"],
                "output": [{ "type": "oci", "dest": "dist/api.tar" }, { "type": "registry" }],
                "pull": true,
                "no-cache": false,
                "network": "none",
                "no-cache-filter": ["deps"]
            }
        }
    });
    assert_valid(&v, &full, "a print output with every key");

    let mut typo = spec.clone();
    typo["target"]["api"]["platfroms"] = json!(["linux/amd64"]);
    let errs = errors(&v, &typo);
    assert!(
        !errs.is_empty(),
        "an unknown target key must fail validation"
    );
    assert!(
        errs.contains("platfroms"),
        "the error names the unknown key:\n{errs}"
    );

    let wrong: &[(&str, Value)] = &[
        ("stage", json!("release")),            // KDL name, not bake's `target`
        ("args", json!({ "JOBS": 4 })),         // args are strings
        ("platforms", json!(["amd64"])),        // not os/arch
        ("platforms", json!([])),               // empty lists are left out
        ("output", json!([{ "dest": "x" }])),   // output needs a type
        ("output", json!(["type=registry"])),   // objects, not CSV
        ("annotations", json!({ "a": "b" })),   // bake style: ["a=b"]
        ("attest", json!([{ "mode": "max" }])), // attest needs a type
        ("secret", json!([{ "src": "x" }])),    // secret needs an id
        ("no-cache", json!("true")),            // a boolean
        ("context", json!("./services/api")),   // normalised: no ./
        ("cache-from", json!([{ "ref": 1 }])),  // string values
    ];
    for (key, value) in wrong {
        let mut bad = spec.clone();
        bad["target"]["api"][*key] = value.clone();
        assert!(!v.is_valid(&bad), "`{key}: {value}` must fail validation");
    }
    assert!(
        !v.is_valid(&json!({ "target": {}, "groups": {} })),
        "unknown top-level key"
    );
    assert!(!v.is_valid(
        &json!({ "group": { "default": { "targets": ["a"], "extra": 1 } }, "target": {} })
    ));
}

#[test]
fn plan_schema_accepts_the_spec_example_and_rejects_mistakes() {
    let v = validator("schema/plan.schema.json");
    let spec = json!({
        "nodes": [
            { "id": "base@linux/amd64", "kind": "build", "target": "base", "platform": "linux/amd64" },
            { "id": "app@linux/amd64", "kind": "build", "target": "app", "platform": "linux/amd64" },
            { "id": "app", "kind": "merge", "target": "app" }
        ],
        "edges": [
            { "node": "app@linux/amd64", "needs": "base@linux/amd64" },
            { "node": "app", "needs": "app@linux/amd64" }
        ],
        "critical_path": ["base@linux/amd64", "app@linux/amd64", "app"]
    });
    assert_valid(&v, &spec, "the spec's plan example");
    let mut levels = spec.clone();
    levels["levels"] = json!([["base@linux/amd64"], ["app@linux/amd64"], ["app"]]);
    assert_valid(&v, &levels, "the plan example with levels");
    assert_plan_consistent(&levels, "the spec's plan example");

    let mut no_platform = spec.clone();
    no_platform["nodes"][0]
        .as_object_mut()
        .unwrap()
        .remove("platform");
    assert!(!v.is_valid(&no_platform), "a build node needs a platform");
    let mut merge_platform = spec.clone();
    merge_platform["nodes"][2]["platform"] = json!("linux/amd64");
    assert!(!v.is_valid(&merge_platform), "a merge node has no platform");
    let mut kind = spec.clone();
    kind["nodes"][0]["kind"] = json!("push");
    assert!(!v.is_valid(&kind));
    let mut edge = spec.clone();
    edge["edges"][0] = json!({ "from": "a", "to": "b" });
    assert!(!v.is_valid(&edge));
    let mut missing = spec.clone();
    missing.as_object_mut().unwrap().remove("critical_path");
    assert!(!v.is_valid(&missing));
}

#[test]
fn build_file_schema_describes_the_decoded_model() {
    let v = validator("schema/build-file.schema.json");
    // examples/monorepo/mybake.kdl (abridged), as the decoded model.
    let model = json!({
        "variables": {
            "REGISTRY": { "default": "localhost:5000", "description": "registry the tags point at" },
            "PUSH_LATEST": { "type": "bool", "default": false },
            "JOBS": { "type": "int", "default": 2 },
            "PLATFORMS": { "type": "list", "default": "linux/amd64,linux/arm64" }
        },
        "groups": {
            "default": { "description": "every image", "targets": ["libs", "services", "tools"] },
            "services": { "targets": ["svc-${svc}"] }
        },
        "targets": {
            "_common": {
                "platforms": ["linux/amd64", "linux/arm64"],
                "tags": ["${REGISTRY}/monorepo/${MYBAKE_TARGET}:${TAG}"],
                "label": { "org.opencontainers.image.vendor": "mybake examples" }
            },
            "svc-${svc}": {
                "matrix": { "svc": ["api", "worker"] },
                "inherits": ["_common"],
                "context": "services/${svc}",
                "contexts": { "base": "target:base", "greet": "target:lib-greet" },
                "arg": { "SERVICE": "${svc}" },
                "pull": "${PULL}",
                "no-cache": true,
                "secret": [{ "id": "signing-key", "src": "signing-key.example" }],
                "output": [{ "type": "oci", "dest": "dist/x.tar" }],
                "attest": [{ "type": "provenance", "mode": "min" }]
            }
        }
    });
    assert_valid(&v, &model, "a decoded build file");
    for (pointer, value) in [
        ("/targets/_common/platfroms", json!(["linux/amd64"])),
        ("/variables/PUSH_LATEST/default", json!("false")),
        ("/variables/JOBS/default", json!("2")),
        ("/variables/REGISTRY/type", json!("float")),
        ("/targets/svc-${svc}/matrix/svc", json!([])),
        ("/targets/svc-${svc}/secret/0/path", json!("x")),
        ("/groups/services/members", json!([])),
    ] {
        let mut bad = model.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        bad.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_string(), value.clone());
        assert!(
            !v.is_valid(&bad),
            "{pointer} = {value} must fail validation"
        );
    }
}

// ------------------------------------------------------- the binary's output

/// Internal consistency of a plan: unique ids that follow the spec's
/// naming, edges and the critical path between existing nodes, nodes in a
/// topological order, a merge node per target.
fn assert_plan_consistent(plan: &Value, what: &str) {
    let nodes = plan["nodes"].as_array().unwrap();
    let mut position = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = n["id"].as_str().unwrap();
        assert!(
            position.insert(id, i).is_none(),
            "{what}: node id {id} appears twice"
        );
        let target = n["target"].as_str().unwrap();
        match n["kind"].as_str().unwrap() {
            "build" => assert_eq!(
                id,
                format!("{target}@{}", n["platform"].as_str().unwrap()),
                "{what}: build node id"
            ),
            _ => assert_eq!(id, target, "{what}: merge node id"),
        }
    }
    for e in plan["edges"].as_array().unwrap() {
        let (node, needs) = (e["node"].as_str().unwrap(), e["needs"].as_str().unwrap());
        let (Some(a), Some(b)) = (position.get(node), position.get(needs)) else {
            panic!("{what}: edge {node} -> {needs} names a node that is not listed");
        };
        assert!(
            b < a,
            "{what}: nodes are not in topological order: {node} is listed before {needs}, which it needs"
        );
    }
    for id in plan["critical_path"].as_array().unwrap() {
        assert!(
            position.contains_key(id.as_str().unwrap()),
            "{what}: critical path names unknown node {id}"
        );
    }
    if let Some(levels) = plan.get("levels").and_then(Value::as_array) {
        let mut level_of = BTreeMap::new();
        for (l, ids) in levels.iter().enumerate() {
            for id in ids.as_array().unwrap() {
                let id = id.as_str().unwrap();
                assert!(
                    position.contains_key(id),
                    "{what}: levels name unknown node {id}"
                );
                assert!(
                    level_of.insert(id, l).is_none(),
                    "{what}: {id} is in two levels"
                );
            }
        }
        assert_eq!(
            level_of.len(),
            nodes.len(),
            "{what}: levels must hold every node once"
        );
        for e in plan["edges"].as_array().unwrap() {
            let (node, needs) = (e["node"].as_str().unwrap(), e["needs"].as_str().unwrap());
            assert!(
                level_of[needs] < level_of[node],
                "{what}: {needs} is not in a level before {node}"
            );
        }
    }
    // A merge node joins builds of its own target. (Not every target has one:
    // in the spec's example the dependency `base` has none.)
    for m in nodes.iter().filter(|n| n["kind"] == "merge") {
        let target = m["target"].as_str().unwrap();
        assert!(
            nodes
                .iter()
                .any(|n| n["kind"] == "build" && n["target"] == target),
            "{what}: merge node {target} has no build node"
        );
    }
}

/// Every file or directory a printed target names exists. Paths in `print`
/// are relative to the working directory, the example's directory.
fn assert_files_exist(dir: &Path, print: &Value) {
    for (name, t) in print["target"].as_object().unwrap() {
        let what = format!("examples/{} target {name}", name_of(dir));
        let context = dir.join(t["context"].as_str().unwrap_or("."));
        assert!(
            context.is_dir(),
            "{what}: context {} is missing",
            context.display()
        );
        if t.get("dockerfile-inline").is_none() {
            let dockerfile = context.join(t["dockerfile"].as_str().unwrap_or("Dockerfile"));
            assert!(
                dockerfile.is_file(),
                "{what}: {} is missing",
                dockerfile.display()
            );
        }
        for (key, source) in t
            .get("contexts")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let source = source.as_str().unwrap();
            if let Some(dep) = source.strip_prefix("target:") {
                assert!(
                    print["target"].get(dep).is_some(),
                    "{what}: context {key} needs target {dep}, which print does not show"
                );
            } else if !source.contains("://") {
                assert!(
                    dir.join(source).is_dir(),
                    "{what}: context {key}: directory {source} is missing"
                );
            }
        }
        for secret in t
            .get("secret")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(src) = secret["src"].as_str() {
                assert!(
                    dir.join(src).is_file(),
                    "{what}: secret file {src} is missing"
                );
            }
        }
    }
}

#[test]
fn print_of_every_example_matches_the_print_schema() {
    let v = validator("schema/print.schema.json");
    for d in example_dirs() {
        let name = name_of(&d);
        let raw = mybake_raw(&d, &["print"]);
        assert_eq!(
            raw,
            mybake_raw(&d, &["print"]),
            "examples/{name}: print output is not stable"
        );
        let out = mybake(&d, &["print"]);
        assert_valid(&v, &out, &format!("`mybake -C examples/{name} print`"));
        assert!(
            !out["target"].as_object().unwrap().is_empty(),
            "examples/{name}: print shows no target"
        );
        assert!(
            out["group"].get("default").is_some(),
            "examples/{name}: the request resolved through group default"
        );
        assert_files_exist(&d, &out);
        // Each group of the example on its own.
        for group in declared(&d, "group") {
            let out = mybake(&d, &["print", &group]);
            assert_valid(
                &v,
                &out,
                &format!("`mybake -C examples/{name} print {group}`"),
            );
            assert!(
                out["group"].get(&group).is_some(),
                "examples/{name}: `print {group}` does not list group {group}"
            );
        }
    }
}

#[test]
fn plan_of_every_example_matches_the_plan_schema_and_print() {
    let v = validator("schema/plan.schema.json");
    for d in example_dirs() {
        let name = name_of(&d);
        let what = format!("`mybake -C examples/{name} plan --format json`");
        let raw = mybake_raw(&d, &["plan", "--format", "json"]);
        assert_eq!(
            raw,
            mybake_raw(&d, &["plan", "--format", "json"]),
            "{what}: output is not stable"
        );
        let plan = mybake(&d, &["plan", "--format", "json"]);
        assert_valid(&v, &plan, &what);
        assert_plan_consistent(&plan, &what);

        let print = mybake(&d, &["print"]);
        let printed = print["target"].as_object().unwrap();
        for n in plan["nodes"].as_array().unwrap() {
            let target = n["target"].as_str().unwrap();
            let Some(t) = printed.get(target) else {
                panic!(
                    "{what}: node {} is for target {target}, which `print` does not show",
                    n["id"]
                );
            };
            if let (Some(p), Some(declared)) = (n["platform"].as_str(), t["platforms"].as_array()) {
                // Dependencies may be narrowed to what their dependents need, never widened.
                assert!(
                    declared.iter().any(|d| d == p),
                    "{what}: {target} is planned for {p}, print declares {declared:?}"
                );
            }
        }
        let planned: BTreeSet<_> = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["target"].as_str().unwrap())
            .collect();
        let shown: BTreeSet<_> = printed.keys().map(String::as_str).collect();
        assert_eq!(
            planned, shown,
            "{what}: targets of the plan vs targets of `print`"
        );
    }
}

/// What the examples' comments and examples/README.md promise.
#[test]
fn examples_resolve_as_documented() {
    let dirs = example_dirs();
    let dir = |n: &str| {
        dirs.iter()
            .find(|d| name_of(d) == n)
            .unwrap_or_else(|| panic!("examples/{n} is missing"))
            .clone()
    };

    let hello = mybake(&dir("hello"), &["print"]);
    assert_eq!(hello["group"]["default"]["targets"], json!(["hello"]));
    let h = &hello["target"]["hello"];
    assert_eq!(h["tags"], json!(["localhost:5000/hello:dev"]));
    assert_eq!(h["platforms"], json!(["linux/amd64", "linux/arm64"]));
    assert_eq!(h["context"], ".", "the default context prints as `.`");
    assert_eq!(h["description"], "busybox that says hello");
    // Pushing comes from `build --push`, not from the file.
    let outputs = h
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        outputs.iter().all(|o| o["type"] != "registry"),
        "hello declares no registry output: {outputs:?}"
    );
    let tagged = mybake(&dir("hello"), &["print", "--var", "TAG=v1"]);
    assert_eq!(
        tagged["target"]["hello"]["tags"],
        json!(["localhost:5000/hello:v1"])
    );

    let mono = mybake(&dir("monorepo"), &["print"]);
    let t = &mono["target"];
    let names: BTreeSet<_> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["base", "lib-greet", "svc-api", "svc-worker", "tools"])
    );
    assert_eq!(t["svc-api"]["context"], "services/api");
    assert_eq!(t["svc-worker"]["args"]["SERVICE"], "worker");
    assert_eq!(
        t["svc-api"]["tags"],
        json!(["localhost:5000/monorepo/svc-api:dev"]),
        "MYBAKE_TARGET is the concrete target"
    );
    assert_eq!(
        t["lib-greet"]["contexts"],
        json!({ "base": "target:base", "shared": "shared" })
    );
    assert_eq!(t["tools"]["platforms"], json!(["linux/amd64"]));
    assert_eq!(
        t["base"]["labels"]["org.opencontainers.image.vendor"],
        "mybake examples"
    );
    assert!(t["tools"].get("dockerfile-inline").is_some());
    let plan = mybake(&dir("monorepo"), &["plan", "--format", "json", "svc-api"]);
    let ids: BTreeSet<_> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    for platform in ["linux/amd64", "linux/arm64"] {
        for target in ["base", "lib-greet", "svc-api"] {
            assert!(
                ids.contains(format!("{target}@{platform}").as_str()),
                "plan svc-api: {target}@{platform} missing from {ids:?}"
            );
        }
    }
    assert!(
        !ids.iter()
            .any(|id| id.starts_with("svc-worker") || id.starts_with("tools")),
        "plan svc-api builds only what it needs: {ids:?}"
    );

    let release = mybake(&dir("release"), &["print"]);
    let r = &release["target"]["release"];
    assert_eq!(
        r["platforms"],
        json!(["linux/amd64", "linux/arm64"]),
        "a list variable alone expands to its elements"
    );
    assert_eq!(
        r["tags"],
        json!([
            "localhost:5000/release:1.0.0",
            "localhost:5000/release:stable"
        ]),
        "mybake.override.kdl replaces the tags"
    );
    assert_eq!(
        r["labels"]["org.opencontainers.image.vendor"], "Example Corp (release team)",
        "the override replaces one label"
    );
    assert_eq!(
        r["labels"]["org.opencontainers.image.title"], "mybake release example",
        "... and keeps the others"
    );
    assert_eq!(
        r["args"],
        json!({ "VERSION": "1.0.0", "JOBS": "2", "PUSH_LATEST": "false" })
    );
    assert_eq!(r["pull"], json!(false));
    assert_eq!(r["target"], "release");
    assert_eq!(
        r["attest"],
        json!([{ "type": "provenance", "mode": "min" }])
    );
    // Paths print relative to the working directory, which -C made examples/release.
    assert_eq!(
        r["secret"],
        json!([{ "id": "signing-key", "src": "signing-key.example" }])
    );
    assert_eq!(r["network"], "none");
    assert_eq!(
        r["cache-from"],
        json!([{ "type": "registry", "ref": "localhost:5000/release:1.0.0" }])
    );
    // No inline cache: it would make the release irreproducible.
    assert!(r.get("cache-to").is_none(), "{r}");
    let annotations = r["annotations"].as_array().unwrap();
    assert!(
        annotations.contains(&json!(
            "index:org.opencontainers.image.description=mybake release example"
        )),
        "{annotations:?}"
    );
    assert!(
        annotations.contains(&json!("org.opencontainers.image.licenses=Apache-2.0")),
        "inherited from _oci: {annotations:?}"
    );
    let debug = &release["target"]["release-debug"];
    assert_eq!(
        debug["output"],
        json!([{ "type": "oci", "dest": "dist/release-debug.tar" }])
    );
    assert_eq!(debug["no-cache-filter"], json!(["build"]));

    // Without the override file only mybake.kdl is read.
    let plain = mybake(&dir("release"), &["-f", "mybake.kdl", "print", "release"]);
    assert_eq!(
        plain["target"]["release"]["tags"],
        json!(["localhost:5000/release:1.0.0"])
    );
    let narrowed = mybake(
        &dir("release"),
        &["print", "release", "--var", "PLATFORMS=linux/arm64"],
    );
    assert_eq!(
        narrowed["target"]["release"]["platforms"],
        json!(["linux/arm64"])
    );
}

/// Issue 12 item 2: the schemas are tested against the attribute table
/// (`src/attrs.rs`), so a new row cannot be forgotten in them: the KDL
/// schema's and the build-file JSON schema's target children are the
/// table's node names plus `inherits`/`matrix`, and the print schema's
/// target keys are the table's `print` names.
#[test]
fn schemas_follow_the_attribute_table() {
    use mybake::attrs::{target_node_names, ATTRS};
    let table: BTreeSet<&str> = target_node_names().collect();
    let spec: BTreeSet<&str> = SPEC_TARGET_ATTRS.iter().copied().collect();
    assert_eq!(table, spec, "attribute table vs the spec's attribute table");

    let schema = KdlSchema::load();
    let target = KdlSchema::rule(&schema.top_rules(), "target").unwrap();
    let kdl: BTreeSet<&str> = schema
        .child_rules(target)
        .unwrap()
        .iter()
        .filter_map(|r| str_arg(r, 0))
        .collect();
    assert_eq!(
        kdl, table,
        "KDL schema target children vs the attribute table"
    );

    let keys = |doc: &Value| -> BTreeSet<String> {
        doc["$defs"]["target"]["properties"]
            .as_object()
            .expect("$defs.target.properties")
            .keys()
            .cloned()
            .collect()
    };
    let build_file = keys(&load_json("schema/build-file.schema.json"));
    let names: BTreeSet<String> = table.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        build_file, names,
        "build-file.schema.json target properties"
    );
    let print = keys(&load_json("schema/print.schema.json"));
    let prints: BTreeSet<String> = ATTRS.iter().map(|a| a.print.to_string()).collect();
    assert_eq!(
        print, prints,
        "print.schema.json target keys vs the `print` column"
    );
}
