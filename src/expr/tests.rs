use super::*;

fn g() -> Arc<Globals> {
    Arc::new(Globals::default())
}

fn ev(text: &str) -> Result<Value, ExprError> {
    let vars = |n: &str| match n {
        "TAG" => Some(Value::String("dev".into())),
        "L" => Some(Value::Array(vec!["a".into(), "b".into()])),
        "N" => Some(Value::from(3)),
        "NUL" => Some(Value::Null),
        _ => None,
    };
    let names = || vec!["TAG".to_string(), "L".to_string()];
    eval(text, &g(), &vars, &names)
}

#[test]
fn finds_the_closing_brace() {
    assert_eq!(find_close("${a}", 0), Ok(3));
    assert_eq!(find_close("x${ {a = 1}.a }y", 1), Ok(14));
    assert_eq!(find_close(r#"${ "}" }"#, 0), Ok(7));
    assert_eq!(find_close(r#"${ "${x}" }"#, 0), Ok(10));
    assert_eq!(find_close("${ a", 0), Err(ScanError::Unterminated));
    let deep = format!("${{{}}}", "(".repeat(100));
    assert!(matches!(find_close(&deep, 0), Err(ScanError::TooDeep(_))));
}

#[test]
fn evaluates_operators_conditionals_for_and_calls() {
    assert_eq!(ev("1 + N * 2").unwrap(), Value::from(7));
    assert_eq!(
        ev("TAG == \"dev\" ? \"d\" : \"p\"").unwrap(),
        Value::from("d")
    );
    assert_eq!(ev("L[1]").unwrap(), Value::from("b"));
    assert_eq!(
        ev("[for s in L : upper(s)]").unwrap(),
        Value::Array(vec!["A".into(), "B".into()])
    );
    assert_eq!(
        ev("join(\"-\", split(\",\", \"x,y\"))").unwrap(),
        Value::from("x-y")
    );
    assert_eq!(ev("NUL").unwrap(), Value::Null);
    assert_eq!(ev("{k = TAG}.k").unwrap(), Value::from("dev"));
}

#[test]
fn errors_are_located_and_suggest() {
    let e = ev("upper(TGA)").unwrap_err();
    assert_eq!((e.offset, e.len), (6, 3));
    assert_eq!(e.help.as_deref(), Some("did you mean `TAG`?"));
    let e = ev("uper(TAG)").unwrap_err();
    assert_eq!(e.message, "unknown function `uper`");
    assert_eq!(e.help.as_deref(), Some("did you mean `upper`?"));
    let e = ev(" 1 + ").unwrap_err();
    assert!(e.message.starts_with("invalid expression"), "{e:?}");
    let e = ev("split(TAG)").unwrap_err();
    assert!(e.message.contains("function `split`"), "{e:?}");
}

fn user(specs: &[(&str, &[&str], Option<&str>, &str)]) -> Arc<Globals> {
    let specs: Vec<FunctionSpec> = specs
        .iter()
        .map(|(n, p, v, r)| FunctionSpec {
            name: n.to_string(),
            params: p.iter().map(|s| s.to_string()).collect(),
            variadic: v.map(String::from),
            result: r.to_string(),
            at: "t.kdl:1:1".into(),
        })
        .collect();
    let (g, errors) = Globals::new(&specs);
    assert!(errors.is_empty(), "{errors:?}");
    Arc::new(g)
}

#[test]
fn user_functions_call_each_other_and_recursion_is_bounded() {
    let g = user(&[
        ("tag", &["repo", "v"], None, "${repo}:${v}"),
        ("all", &["sep"], Some("rest"), "${join(sep, rest)}"),
        ("twice", &["x"], None, "${tag(x, upper(x))}"),
        ("loop", &["x"], None, "${loop(x)}"),
    ]);
    let none = |_: &str| None;
    let names = Vec::new;
    let run = |t: &str| eval(t, &g, &none, &names);
    assert_eq!(run("tag(\"r\", 1)").unwrap(), Value::from("r:1"));
    assert_eq!(run("all(\"-\", \"a\", \"b\")").unwrap(), Value::from("a-b"));
    assert_eq!(run("twice(\"a\")").unwrap(), Value::from("a:A"));
    assert_eq!(
        run("[for s in [\"x\"] : tag(s, s)]").unwrap(),
        Value::Array(vec!["x:x".into()])
    );
    let e = run("loop(1)").unwrap_err();
    assert!(e.message.contains("more than 16 deep"), "{e:?}");
    assert!(run("tag(1)").is_err());
}

/// `try`/`can` take their arguments unevaluated, as in HCL. Expected values
/// recorded from `docker buildx bake --print` 0.13.1 on the same
/// expressions (`args = { A = try(split(",", CSV)[5], "none") ... }` with
/// `CSV = "a,b"`; here `L` is `["a", "b"]`).
#[test]
fn try_and_can_catch_their_arguments_errors() {
    assert_eq!(ev("try(L[5], \"none\")").unwrap(), Value::from("none"));
    assert_eq!(ev("try(L[1], \"none\")").unwrap(), Value::from("b"));
    assert_eq!(
        ev("can(regex(\"^v\", \"x\")) ? \"yes\" : \"no\"").unwrap(),
        Value::from("no")
    );
    assert_eq!(ev("can(tonumber(\"abc\"))").unwrap(), Value::Bool(false));
    assert_eq!(ev("can(L[0])").unwrap(), Value::Bool(true));
    assert_eq!(ev("try(upper(TAG), \"x\")").unwrap(), Value::from("DEV"));
    // Nested, and inside an operation.
    assert_eq!(ev("try(L[9], try(L[8], \"z\"))").unwrap(), Value::from("z"));
    assert_eq!(ev("!can(L[3]) && true").unwrap(), Value::Bool(true));
    // Every argument failing is still an error, only where it is reached.
    assert!(ev("try(L[5], L[6])").is_err());
    assert_eq!(
        ev("true ? \"a\" : try(L[5], L[6])").unwrap(),
        Value::from("a")
    );
    // Inside `for`, the loop variable is known only there: left to hcl-rs.
    assert_eq!(
        ev("[for s in L : try(upper(s), \"\")]").unwrap(),
        Value::Array(vec!["A".into(), "B".into()])
    );
}
