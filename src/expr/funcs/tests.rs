//! The functions against values recorded from the real bake
//! (`testdata/recorded.txt`, re-recorded by `testdata/record.py`), plus the
//! cases bake cannot record (random, time-dependent, mybake's caps).

use std::str::FromStr;

use hcl::eval::{Context, Evaluate};
use hcl::expr::Expression;

use super::*;

/// Cases where bake fails but mybake returns a value: hcl-rs has one object
/// type, so an object literal is also a map (`length`, `hasindex`, `index`
/// accept maps in bake), and `divide` by zero is an error here (bake makes
/// infinity, which its `jsonencode` then refuses).
const MYBAKE_ACCEPTS: &[&str] = &[
    "hasindex({a = 1}, \"a\")",
    "hasindex({a = 1}, \"b\")",
    "index({a = \"x\"}, \"a\")",
    "length({a = 1})",
];

/// Cases where mybake's value differs from bake's because hcl-rs numbers are
/// f64 and go-cty's are 512-bit floats: mybake's value.
const F64_VALUE: &[(&str, &str)] = &[
    // 12.345 is 12.3450000000000006… as an f64, 12.3449999… in 512 bits.
    ("format(\"%6.2f%%\", 12.345)", "\" 12.35%\""),
];

/// Cases where mybake's value differs from bake's, and why.
const DIFFERENT_VALUE: &[(&str, &str)] = &[
    // bcrypt's salt is random; mybake does not support it.
    ("bcrypt(\"x\", 3)", "not supported"),
    // hcl-rs numbers are finite: bake makes infinity, then fails in jsonencode.
    ("divide(1, 0)", "can't divide by zero"),
    // Rust's regex crate words its syntax errors differently from Go's.
    (
        "regex(\"[\", \"x\")",
        "invalid regexp pattern: unclosed character class",
    ),
    // bake panics inside strings.Repeat; mybake says why.
    ("indent(-1, \"a\")", "must not be negative"),
    // log(0) is -infinity: bake fails in jsonencode, mybake in log.
    ("log(0, 10)", "not a finite number"),
    // hcl-rs evaluates arguments first: try/can see the argument's error.
    ("try(upper([1]), \"fallback\")", "string required"),
    ("can(upper([1]))", "string required"),
    // `string` is a type expression, evaluated by hcl-rs as a variable.
    ("convert(\"x\", string)", "undefined variable `string`"),
];

fn eval(ctx: &Context<'_>, src: &str) -> Result<hcl::Value, String> {
    let expr = Expression::from_str(src).map_err(|e| format!("parse: {e}"))?;
    expr.evaluate(ctx).map_err(|e| e.to_string())
}

fn ctx() -> Context<'static> {
    let mut ctx = Context::new();
    register(&mut ctx);
    ctx
}

/// The function names a bake error message quotes (`Call to function "x"`,
/// `Function "x" expects`).
fn bake_funcs(msg: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for marker in ["Call to function \"", "Function \""] {
        if let Some(i) = msg.find(marker) {
            let rest = &msg[i + marker.len()..];
            if let Some(j) = rest.find('"') {
                out.push(&rest[..j]);
            }
        }
    }
    out
}

/// bake's own words for an error: after "failed: " or "parameter: ", up to
/// the diagnostic summary.
fn bake_core(msg: &str) -> Option<&str> {
    let start = ["failed: ", "parameter: "]
        .iter()
        .filter_map(|m| msg.find(m).map(|i| i + m.len()))
        .next()?;
    let rest = &msg[start..];
    let end = rest.find("., and ").unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn recorded_from_bake() {
    let ctx = ctx();
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in include_str!("testdata/recorded.txt").lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (expr, rec) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("not recorded yet (run testdata/record.py): {line}"));
        checked += 1;
        let ours = eval(&ctx, &format!("jsonencode({expr})"));
        if let Some((_, why)) = DIFFERENT_VALUE.iter().find(|(e, _)| *e == expr) {
            match ours {
                Err(e) if e.contains(why) => continue,
                other => failures.push(format!(
                    "{expr}: expected an error with {why:?}, got {other:?}"
                )),
            }
            continue;
        }
        if let Some((_, v)) = F64_VALUE.iter().find(|(e, _)| *e == expr) {
            if ours.as_ref().ok().and_then(|o| o.as_str()) != Some(*v) {
                failures.push(format!("{expr}: expected {v}, got {ours:?}"));
            }
            continue;
        }
        if let Some(json) = rec.strip_prefix("=> ") {
            let want: String = serde_json::from_str(json).expect("recorded JSON string");
            match ours {
                Ok(hcl::Value::String(got)) if got == want => {}
                other => failures.push(format!("{expr}: bake {want}, mybake {other:?}")),
            }
        } else if let Some(msg) = rec.strip_prefix("!! ") {
            if MYBAKE_ACCEPTS.contains(&expr) {
                if ours.is_err() {
                    failures.push(format!("{expr}: expected a value, got {ours:?}"));
                }
                continue;
            }
            let Err(err) = ours else {
                failures.push(format!("{expr}: bake fails ({msg}), mybake {ours:?}"));
                continue;
            };
            for f in bake_funcs(msg) {
                if !err.contains(&format!("`{f}`")) {
                    failures.push(format!("{expr}: the error does not name `{f}`: {err}"));
                }
            }
            if let Some(core) = bake_core(msg) {
                if !err.contains(core) {
                    failures.push(format!("{expr}: bake says {core:?}, mybake {err:?}"));
                }
            }
        } else {
            panic!("bad recorded line: {line}");
        }
    }
    assert!(checked > 250, "only {checked} recorded cases");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_bake_function_is_declared_once() {
    let defs = defs();
    let names: Vec<&str> = defs.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, NAMES, "defs() must follow NAMES");
    let ctx = ctx();
    for name in NAMES {
        // Declared: a call fails on its arguments, never as an unknown function.
        let err = eval(&ctx, &format!("{name}(1, 2, 3, 4, 5, 6, 7)"))
            .err()
            .unwrap_or_default();
        assert!(!err.contains("undefined function"), "{name}: {err}");
    }
}

#[test]
fn wrong_arity_names_the_function() {
    let ctx = ctx();
    for (src, name) in [
        ("upper()", "upper"),
        ("add(1)", "add"),
        ("md5(\"a\", \"b\")", "md5"),
        ("timestamp(1)", "timestamp"),
        ("lookup({}, \"a\")", "lookup"),
    ] {
        let err = eval(&ctx, src).unwrap_err();
        assert!(err.contains(&format!("`{name}`")), "{src}: {err}");
        assert!(err.contains("positional arguments"), "{src}: {err}");
    }
}

#[test]
fn type_errors_name_the_function_and_argument() {
    let ctx = ctx();
    for (src, name, what) in [
        ("upper([1])", "upper", "string required"),
        ("add(1, \"x\")", "add", "a number is required"),
        ("join(\",\", \"a\")", "join", "list required"),
        ("not(\"x\")", "not", "a bool is required"),
        ("keys(\"x\")", "keys", "must have map or object type"),
        (
            "timeadd(\"2024-01-01T00:00:00Z\", 5)",
            "timeadd",
            "missing unit",
        ),
    ] {
        let err = eval(&ctx, src).unwrap_err();
        assert!(
            err.contains(&format!("`{name}`")) && err.contains(what),
            "{src}: {err}"
        );
    }
}

#[test]
fn timestamp_is_now_in_rfc3339_utc() {
    let ctx = ctx();
    let hcl::Value::String(ts) = eval(&ctx, "timestamp()").unwrap() else {
        panic!("not a string")
    };
    let t = datetime::parse_timestamp(&ts).unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    let now = chrono::Utc::now().timestamp();
    assert!((t.timestamp() - now).abs() < 3600, "{ts} is not now");
    // formatdate(timestamp()) as release pipelines use it.
    let v = eval(&ctx, "formatdate(\"YYYYMMDD\", timestamp())").unwrap();
    assert_eq!(v.as_str().map(str::len), Some(8));
}

#[test]
fn uuidv4_is_random_and_version_4() {
    let ctx = ctx();
    let a = eval(&ctx, "uuidv4()").unwrap();
    let b = eval(&ctx, "uuidv4()").unwrap();
    assert_ne!(a, b);
    let u = uuid::Uuid::parse_str(a.as_str().unwrap()).unwrap();
    assert_eq!(u.get_version_num(), 4);
}

#[test]
fn input_cannot_set_unbounded_work() {
    let ctx = ctx();
    for (src, what) in [
        ("range(100000000)", "more than 1024 values"),
        ("range(0, 1, 0)", "more than 1024 values"),
        ("format(\"%99999999d\", 1)", "limit"),
        ("format(\"%.99999999f\", 1)", "limit"),
        ("format(\"%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s%65536s\", \"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\")", "limit"),
        ("indent(100000000, \"a\\nb\")", "limit"),
        ("setproduct(range(1000), range(1000))", "limit"),
        ("replace(format(\"%65536s\", \"\"), \" \", format(\"%65536s\", \"\"))", "limit"),
        ("regex_replace(format(\"%65536s\", \"\"), \" \", format(\"%65536s\", \"\"))", "limit"),
        ("parseint(format(\"%2000s\", \"1\"), 10)", "cannot parse"),
    ] {
        let err = eval(&ctx, src).unwrap_err();
        assert!(err.contains(what), "{src}: {err}");
    }
}

#[test]
fn flatten_deep_nesting_is_iterative() {
    // Nesting built by the evaluator, not by the parser: 2,000 levels.
    let mut v = hcl::Value::from("x");
    for _ in 0..2000 {
        v = hcl::Value::Array(vec![v]);
    }
    let mut ctx = ctx();
    ctx.declare_var("deep", v);
    assert_eq!(
        eval(&ctx, "flatten(deep)").unwrap(),
        hcl::Value::Array(vec!["x".into()])
    );
}

#[test]
fn unsupported_functions_say_so() {
    let ctx = ctx();
    for src in ["bcrypt(\"x\")", "rsadecrypt(\"x\", \"k\")"] {
        let err = eval(&ctx, src).unwrap_err();
        assert!(err.contains("not supported by mybake"), "{src}: {err}");
    }
}

#[test]
fn numbers_convert_to_strings_as_go_cty() {
    for (n, s) in [
        (hcl::Number::from(3), "3"),
        (hcl::Number::from(-7), "-7"),
        (hcl::Number::from_f64(2.5).unwrap(), "2.5"),
        (
            hcl::Number::from_f64(1e21).unwrap(),
            "1000000000000000000000",
        ),
        (hcl::Number::from_f64(0.0001).unwrap(), "0.0001"),
    ] {
        assert_eq!(num_str(&n), s);
    }
}

mod never_panic {
    use hcl::expr::{Expression, FuncCall};
    use hcl::Value;
    use proptest::prelude::*;

    use super::*;

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-70i64..70).prop_map(Value::from),
            (-1e3f64..1e3).prop_map(|f| hcl::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            prop_oneof![
                Just(String::new()),
                "[a-c0-9,%./:\\-_ ]{0,12}",
                Just("%[2]5.2f %v %q %-08d %#x %.3s %%".to_string()),
                Just("10.0.0.0/8".to_string()),
                Just("fd00::/64".to_string()),
                Just("2024-02-29T23:59:59+05:30".to_string()),
                Just("1h2m3.5s".to_string()),
                Just("(a)|(?P<n>b)*".to_string()),
                Just("a,b\n1,\"2\"\n".to_string()),
                Just("{\"a\": [1, null]}".to_string()),
                Just("e\u{301}é😀".to_string()),
            ]
            .prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-c]{1,2}", inner), 0..3)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        /// Any function on any arguments returns a value or an error, never
        /// panics (the arguments are values, as the evaluator passes them).
        #[test]
        fn any_call_returns(name in prop::sample::select(NAMES), args in prop::collection::vec(value(), 0..5)) {
            let ctx = ctx();
            let call = args
                .into_iter()
                .fold(FuncCall::builder(name), |b, a| b.arg(Expression::from(a)))
                .build();
            let _ = Expression::from(call).evaluate(&ctx);
        }
    }
}

#[test]
fn set_functions_and_distinct_take_linear_time() {
    // 100,000 elements each (the collection cap): quadratic comparisons
    // would be 10^10 and never finish; this is not a timing assertion, a
    // regression just hangs the test.
    let big: Vec<hcl::Value> = (0..MAX_ELEMENTS as i64).map(hcl::Value::from).collect();
    let mut ctx = ctx();
    ctx.declare_var(
        "twice",
        hcl::Value::Array([big.clone(), big.clone()].concat()),
    );
    ctx.declare_var("big", hcl::Value::Array(big));
    for (src, len) in [
        ("distinct(twice)", MAX_ELEMENTS),
        ("setintersection(big, big)", MAX_ELEMENTS),
        ("setsubtract(big, big)", 0),
        ("setsymmetricdifference(big, big)", 0),
        ("setunion(big, big)", MAX_ELEMENTS),
    ] {
        let v = eval(&ctx, src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(v.as_array().map(Vec::len), Some(len), "{src}");
    }
}
