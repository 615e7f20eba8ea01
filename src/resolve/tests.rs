use super::*;
use crate::attrs::A;

pub(crate) fn run(
    text: &str,
    sets: &[&str],
    vars: &[(&str, &str)],
) -> Result<Resolved, Diagnostics> {
    let mut src = Sources::default();
    let f = src.add("mybake.kdl".into(), "/w/mybake.kdl".into(), text.into());
    let mut d = Diagnostics::default();
    let decls = crate::load::decode_file(f, "mybake.kdl", text, &mut d);
    assert!(d.is_empty(), "load: {d:?}");
    let opts = ResolveOptions {
        cwd: "/w".into(),
        vars: vars
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        env: HashMap::from([("HOME".to_string(), "/home/u".to_string())]),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        local_platform: "linux/amd64".into(),
    };
    resolve(&[decls], &mut src, &opts)
}

fn errs(text: &str) -> Vec<String> {
    match run(text, &[], &[]) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.items.into_iter().map(|d| d.message).collect(),
    }
}

#[test]
fn inherits_left_to_right_then_own() {
    let r = run(
        r#"
target "_a" { platforms "linux/amd64"; arg "X" "a"; arg "Y" "a"; tags "a" }
target "_b" { arg "Y" "b"; tags "b" }
target "app" { inherits "_a" "_b"; arg "Z" "own" }
"#,
        &[],
        &[],
    )
    .unwrap();
    let t = r.target("app").unwrap();
    let args = t.get(A::Arg).unwrap().as_map().unwrap();
    let v: Vec<_> = args
        .iter()
        .map(|(k, e)| format!("{k}={}", e.value.v))
        .collect();
    assert_eq!(v, ["X=a", "Y=b", "Z=own"]);
    assert_eq!(t.list(A::Tags)[0].v, "b");
    assert_eq!(t.platforms()[0].v, "linux/amd64");
    assert!(r.target("_a").unwrap().is_abstract);
}

#[test]
fn matrix_expands_in_order_and_interpolates() {
    let r = run(
        r#"
variable "TAG" default="dev"
target "svc-${svc}-${v}" {
    matrix {
        svc "api" "worker"
        v "release" "debug"
    }
    context "services/${svc}"
    stage "${v}"
    tags "r/${MYBAKE_TARGET}:${TAG}"
}
group "default" { targets "svc-${svc}-${v}"; }
"#,
        &[],
        &[],
    )
    .unwrap();
    let names: Vec<_> = r.targets.iter().map(|t| t.name.v.as_str()).collect();
    assert_eq!(
        names,
        [
            "svc-api-release",
            "svc-api-debug",
            "svc-worker-release",
            "svc-worker-debug"
        ]
    );
    let t = r.target("svc-worker-debug").unwrap();
    assert_eq!(t.str(A::Context).unwrap().v, "/w/services/worker");
    assert_eq!(t.list(A::Tags)[0].v, "r/svc-worker-debug:dev");
    let sel = select(&r, &[]).unwrap();
    assert_eq!(sel.requested.len(), 4);
}

#[test]
fn list_variable_expands_in_list_position() {
    let r = run("variable \"P\" type=\"list\" default=\"linux/amd64,linux/arm64\"\ntarget \"a\" { platforms \"${P}\"; label \"p\" \"${P}\"; }\n", &[], &[]).unwrap();
    let t = r.target("a").unwrap();
    assert_eq!(t.platforms().len(), 2);
    assert_eq!(
        t.get(A::Label).unwrap().as_map().unwrap()["p"].value.v,
        "linux/amd64,linux/arm64"
    );
}

#[test]
fn set_overrides_with_globs() {
    let r = run(
        "target \"svc-a\" { tags \"x\"; }\ntarget \"b\" { tags \"y\"; }\n",
        &["svc-*.tags+=z", "*.platforms=linux/arm64", "b.arg.K=V"],
        &[],
    )
    .unwrap();
    assert_eq!(r.target("svc-a").unwrap().list(A::Tags).len(), 2);
    assert_eq!(r.target("b").unwrap().platforms()[0].v, "linux/arm64");
    assert_eq!(
        r.target("b")
            .unwrap()
            .get(A::Arg)
            .unwrap()
            .as_map()
            .unwrap()["K"]
            .value
            .v,
        "V"
    );
    let e = run("target \"a\" {}\n", &["zzz.tags=x"], &[]).unwrap_err();
    assert!(e.items[0].message.contains("no target matches"));
}

#[test]
fn set_applies_before_inheritance() {
    let text = r#"
target "_common" { arg "X" "0"; arg "Y" "0"; tags "c" }
target "a" { inherits "_common"; arg "Y" "own" }
target "b" { inherits "_common"; tags "b" }
"#;
    let r = run(
        text,
        &[
            "_common.args.X=1",
            "_common.args.Y=1",
            "_common.tags=set",
            "b.args.L=${NOPE}",
        ],
        &[],
    )
    .unwrap();
    let arg = |t: &str, k: &str| {
        r.target(t).unwrap().get(A::Arg).unwrap().as_map().unwrap()[k]
            .value
            .v
            .clone()
    };
    // The parent's override reaches its children; a child's own value wins.
    assert_eq!((arg("a", "X"), arg("b", "X")), ("1".into(), "1".into()));
    assert_eq!(arg("a", "Y"), "own");
    assert_eq!(r.target("a").unwrap().list(A::Tags)[0].v, "set");
    // A `--set` value is taken as written, never interpolated.
    assert_eq!(arg("b", "L"), "${NOPE}");
    // `target "default"` is built when there is no group `default`.
    let r = run("target \"default\" {}\ntarget \"x\" {}\n", &[], &[]).unwrap();
    let sel = select(&r, &[]).unwrap();
    assert_eq!(sel.requested, [r.index["default"]]);
    let r = run("target \"x\" {}\n", &[], &[]).unwrap();
    assert!(select(&r, &[]).unwrap_err().items[0]
        .help
        .as_deref()
        .unwrap()
        .contains("targets: x"));
}

#[test]
fn errors_are_all_reported() {
    let e = errs(
        r#"
target "a" {
    inherits "_missing"
    platforms "linux/aarch64"
    tags "${NOPE}"
    contexts { base "target:bsae"; }
    output "regsitry"
    network "bridge"
}
target "base" {}
group "default" { targets "a" "zz"; }
"#,
    );
    assert_eq!(e.len(), 7, "{e:#?}");
}

#[test]
fn inherit_cycle_prints_path() {
    let e = errs("target \"a\" { inherits \"b\"; }\ntarget \"b\" { inherits \"a\"; }\n");
    assert!(
        e.iter().any(|m| m == "inheritance cycle: a -> b -> a"),
        "{e:?}"
    );
}

#[test]
fn group_cycle_and_duplicate_expansion() {
    let e = errs("group \"x\" { targets \"y\"; }\ngroup \"y\" { targets \"x\"; }\n");
    assert!(e.iter().any(|m| m.contains("cycle: x -> y -> x")), "{e:?}");
    let e = errs("target \"s-${a}\" {\n matrix {\n a \"1\" \"1\"\n }\n}\n");
    assert!(e[0].contains("more than once"), "{e:?}");
}

#[test]
fn unset_variable_and_bad_bool() {
    let e = errs("variable \"R\"\ntarget \"a\" { tags \"${R}/a\"; no-cache \"maybe\"; }\n");
    assert!(
        e.iter()
            .any(|m| m.contains("`R` is null and cannot be part of a longer string")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("must be true or false")),
        "{e:?}"
    );
}

#[test]
fn paths_resolve_against_declaring_file() {
    let r = run("target \"a\" { context \"sub/../app\"; secret id=\"n\" src=\"~/.npmrc\"; output \"local\" dest=\"out\"; contexts { x \"./assets\"; y \"docker-image://r/i\"; }; }\n", &[], &[]).unwrap();
    let t = r.target("a").unwrap();
    assert_eq!(t.str(A::Context).unwrap().v, "/w/app");
    assert_eq!(
        t.objects(A::Secret)[0].get("src").unwrap().v,
        "/home/u/.npmrc"
    );
    assert_eq!(t.objects(A::Output)[0].get("dest").unwrap().v, "/w/out");
    let c = t.get(A::Contexts).unwrap().as_map().unwrap();
    assert_eq!(c["x"].value.v, "/w/assets");
    assert_eq!(c["y"].value.v, "docker-image://r/i");
}

/// Enough targets to be resolved in parts: diagnostics come in target
/// order, inheritance problems first, and an empty boolean is reported only
/// when nothing was reported before it in the whole run.
#[test]
fn many_targets_report_in_order() {
    let config = |extra: &dyn Fn(usize) -> &'static str| {
        let mut t = String::from("target \"_c\" {\n    platforms \"linux/amd64\"\n}\n");
        for i in 0..3 * TARGETS_PER_PART_MIN {
            t.push_str(&format!(
                "target \"t{i}\" {{\n    inherits \"_c\"\n{}}}\n",
                extra(i)
            ));
        }
        t
    };
    let late = 2 * TARGETS_PER_PART_MIN + 10;
    // Empty booleans only: the first is reported, the second is its echo.
    let e = errs(&config(&|i| match i {
        i if i == late || i == late + 1 => "    no-cache \"\"\n",
        _ => "",
    }));
    assert_eq!(e, ["`no-cache` must be true or false, found \"\""]);
    // An earlier problem, in another part: the empty boolean is its echo.
    let e = errs(&config(&|i| match i {
        3 => "    platforms \"linux/amd46\"\n",
        i if i == late => "    no-cache \"\"\n",
        _ => "",
    }));
    assert_eq!(
        e,
        ["invalid platform `linux/amd46`: unknown architecture `amd46`"]
    );
    // Problems in every part, in target order; a target's inheritance
    // problem before its own.
    let e = errs(&config(&|i| match i {
        5 => "    inherits \"_nope\"\n    network \"x\"\n",
        i if i == TARGETS_PER_PART_MIN + 5 => "    network \"y\"\n",
        i if i == late => "    inherits \"_gone\"\n    network \"z\"\n",
        _ => "",
    }));
    assert_eq!(
        e,
        [
            "`t5` inherits from unknown target `_nope`",
            "unknown network mode `x`",
            "unknown network mode `y`",
            "`t522` inherits from unknown target `_gone`",
            "unknown network mode `z`",
        ]
    );
}

#[test]
fn names_follow_bakes_rule() {
    assert!(valid_name("svc-api_2"));
    for bad in ["", "a b", "a.b", "../x", "a/b", "é", "a\u{1b}"] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    let e = errs(
        "variable \"A.B\" default=\"x\"\ngroup \"g h\" { targets \"t-1\"; }\ntarget \"t-${v}\" {\n matrix { v \"1\" \"x\u{1b}\"; }\n}\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.starts_with("invalid variable name `A.B`")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with("invalid group name `g h`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("invalid target name `t-x\\u{1b}` (from `t-${v}`)")),
        "{e:?}"
    );
}

/// Every group is expanded once: 2^40 paths through diamonds, one target.
#[test]
fn diamond_groups_select_once() {
    let mut text = String::from("target \"t\" {}\ntarget \"u\" {}\n");
    for i in 0..40 {
        text.push_str(&format!(
            "group \"g{i}\" {{ targets \"g{0}\" \"h{0}\"; }}\ngroup \"h{i}\" {{ targets \"h{0}\" \"g{0}\"; }}\n",
            i + 1
        ));
    }
    text.push_str("group \"g40\" { targets \"t\"; }\ngroup \"h40\" { targets \"u\" \"t\"; }\n");
    let r = run(&text, &[], &[]).unwrap();
    let sel = select(&r, &["g0".to_string()]).unwrap();
    let names: Vec<&str> = sel
        .requested
        .iter()
        .map(|&i| r.targets[i].name.v.as_str())
        .collect();
    // Depth first, in member order: g0 → g1 → … → g40 (t), then h40 (u).
    assert_eq!(names, ["t", "u"]);
    // g0 and both groups of levels 1 to 40 (h0 is not reached).
    assert_eq!(sel.groups.len(), 81);
}

/// A chain of defaults 10,000 long, declared child first, evaluates
/// without recursion (this runs on a 2 MiB test thread).
#[test]
fn long_variable_chain() {
    let n = 10_000;
    let mut text = String::new();
    for i in 0..n - 1 {
        text.push_str(&format!("variable \"v{i}\" default=\"${{v{}}}-\"\n", i + 1));
    }
    text.push_str(&format!("variable \"v{}\" default=\"x\"\n", n - 1));
    // (A label, not a tag: the value is no valid image reference.)
    text.push_str("target \"a\" { label \"k\" \"${v0}\"; }\n");
    let r = run(&text, &[], &[]).unwrap();
    let t = r.target("a").unwrap();
    let value = &t.get(A::Label).and_then(|v| v.as_map()).unwrap()["k"]
        .value
        .v;
    assert_eq!(value.len(), 1 + (n - 1));
    assert!(value.starts_with("x--"));
}
