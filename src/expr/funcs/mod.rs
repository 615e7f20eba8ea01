//! bake's HCL function library (the go-cty stdlib as buildx registers it in
//! `bake/hclparser/stdlib.go`), as `hcl::eval::FuncDef`s.
//!
//! [`register`] declares every function docker buildx bake 0.13.1 registers,
//! split by family: [`strings`], [`collections`], [`numeric`], [`encoding`],
//! [`hash`], [`regex`], [`datetime`], [`cidr`], [`lang`] (try, can,
//! convert). Each follows go-cty's semantics: arguments are converted as cty
//! converts them (a number or bool where a string is expected becomes its
//! string, a numeric string where a number is expected becomes the number),
//! sets come out sorted and without duplicates, maps and objects come out
//! sorted by key, lengths count grapheme clusters, `\d`/`\w`/`\s` in
//! patterns are ASCII as in Go. Errors carry go-cty's words and name the
//! function (hcl-rs prefixes "error calling function `NAME`"). Work set by
//! the input is capped: collections built by a function hold at most
//! [`MAX_ELEMENTS`] elements (`range` keeps go-cty's 1,024), strings at most
//! [`MAX_STRING`] bytes, `format` widths and precisions at most 65,536.
//!
//! The tests (`tests.rs`) compare every function with values recorded from
//! the real `docker buildx bake --print` (`testdata/recorded.txt`,
//! re-recorded by `testdata/record.py`).
//!
//! Known differences from bake:
//! - numbers are f64/i64 (hcl-rs), not go-cty's 512-bit floats: a
//!   non-terminating fraction is the shortest f64 (`divide(1, 3)` is
//!   `0.3333333333333333`, bake prints 156 digits), and rounding at the last
//!   digit can differ (`format("%.2f", 12.345)`); infinity (`divide(1, 0)`,
//!   `log(0, 10)`) is an error in the function instead of in a later use;
//! - hcl-rs has arrays and objects only, so lists/tuples/sets and
//!   maps/objects are not told apart: `length`, `index`, `hasindex` also
//!   accept an object literal (bake rejects one, accepting only maps);
//! - regex syntax errors are worded by Rust's `regex` crate.
//!
//! | function | status |
//! |---|---|
//! | absolute, add, ceil, divide, floor, int, log, max, min, modulo, multiply, negate, parseint, pow, signum, subtract | done |
//! | greaterthan, greaterthanorequalto, lessthan, lessthanorequalto, equal, notequal, and, or, not | done |
//! | chomp, format, formatlist, indent, join, lower, upper, replace, reverse, split, strlen, substr, title, trim, trimprefix, trimspace, trimsuffix | done |
//! | chunklist, coalesce, coalescelist, compact, concat, contains, distinct, element, flatten, hasindex, index, keys, length, lookup, merge, range, reverselist, slice, sort, values, zipmap | done (`lookup` takes its default as a required third argument, as in 0.13.1) |
//! | sethaselement, setintersection, setproduct, setsubtract, setsymmetricdifference, setunion | done |
//! | base64decode, base64encode, csvdecode, jsondecode, jsonencode, urlencode | done |
//! | md5, sha1, sha256, sha512, uuidv4, uuidv5 | done |
//! | regex, regexall, regex_replace | done (Rust `regex`: RE2 syntax without `\C`; same matches) |
//! | timestamp, formatdate, timeadd | done |
//! | cidrhost, cidrnetmask, cidrsubnet, cidrsubnets | done |
//! | byteslen, bytesslice | declared; always an error, as in bake (they take go-cty's bytes capsule, which no bake value has) |
//! | try, can | done: the evaluator (`expr::settle_lazy`) gives them their arguments unevaluated, as HCL does, outside `for` expressions; inside a `for` body a failing argument is still that argument's error |
//! | convert | declared; an error: its second argument is a type expression (`list(string)`), which hcl-rs cannot evaluate |
//! | bcrypt, rsadecrypt | declared; an error "not supported by mybake" (bcrypt's salt is random, so bake's output differs per run anyway; rsadecrypt needs an RSA implementation) |
//!
//! Added to bake after 0.13.1 and not registered here (0.13.1 rejects them):
//! `indexof` (0.14), `basename`, `dirname`, `sanitize` (0.17), `homedir`
//! (0.27), `semvercmp` (0.31), `formattimestamp`, `unixtimestampparse` (0.33).

use hcl::eval::{Context, FuncDef, ParamType};
use hcl::{Number, Value};

pub mod cidr;
pub mod collections;
pub mod datetime;
pub mod encoding;
pub mod hash;
pub mod lang;
pub mod numeric;
pub mod regex;
pub mod strings;

#[cfg(test)]
mod tests;

/// The most elements a function builds into one collection (`range`,
/// `setproduct`, `chunklist`, `flatten`, …).
pub const MAX_ELEMENTS: usize = 100_000;
/// The longest string a function builds (`format` widths, `indent`, `join`,
/// `replace`, …): 1 MiB, the cap on values elsewhere.
pub const MAX_STRING: usize = 1 << 20;

/// Every function bake 0.13.1 registers, by name.
pub const NAMES: &[&str] = &[
    "absolute",
    "add",
    "and",
    "base64decode",
    "base64encode",
    "bcrypt",
    "byteslen",
    "bytesslice",
    "can",
    "ceil",
    "chomp",
    "chunklist",
    "cidrhost",
    "cidrnetmask",
    "cidrsubnet",
    "cidrsubnets",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "contains",
    "convert",
    "csvdecode",
    "distinct",
    "divide",
    "element",
    "equal",
    "flatten",
    "floor",
    "format",
    "formatdate",
    "formatlist",
    "greaterthan",
    "greaterthanorequalto",
    "hasindex",
    "indent",
    "index",
    "int",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lessthan",
    "lessthanorequalto",
    "log",
    "lookup",
    "lower",
    "max",
    "md5",
    "merge",
    "min",
    "modulo",
    "multiply",
    "negate",
    "not",
    "notequal",
    "or",
    "parseint",
    "pow",
    "range",
    "regex_replace",
    "regex",
    "regexall",
    "replace",
    "reverse",
    "reverselist",
    "rsadecrypt",
    "sethaselement",
    "setintersection",
    "setproduct",
    "setsubtract",
    "setsymmetricdifference",
    "setunion",
    "sha1",
    "sha256",
    "sha512",
    "signum",
    "slice",
    "sort",
    "split",
    "strlen",
    "substr",
    "subtract",
    "timeadd",
    "timestamp",
    "title",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "try",
    "upper",
    "urlencode",
    "uuidv4",
    "uuidv5",
    "values",
    "zipmap",
];

/// The functions whose arguments HCL passes unevaluated (`try`, `can`): an
/// evaluator that catches their arguments' errors itself gives bake's
/// fallback; the definitions registered here only see evaluated arguments.
pub const LAZY: &[&str] = &["try", "can"];

/// Declares every function of bake's library (see the module doc) in `ctx`.
pub fn register(ctx: &mut Context<'_>) {
    for (name, def) in defs() {
        ctx.declare_func(name, def);
    }
}

/// The name and definition of every function, in [`NAMES`] order.
pub fn defs() -> Vec<(&'static str, FuncDef)> {
    let mut all = Vec::with_capacity(NAMES.len());
    strings::defs(&mut all);
    collections::defs(&mut all);
    numeric::defs(&mut all);
    encoding::defs(&mut all);
    hash::defs(&mut all);
    lang::defs(&mut all);
    regex::defs(&mut all);
    datetime::defs(&mut all);
    cidr::defs(&mut all);
    all.sort_by_key(|(name, _)| NAMES.iter().position(|n| n == name));
    all
}

/// A definition with `n` parameters of any type (the function converts them
/// as go-cty would) and no variadic parameter.
pub(crate) fn fixed(n: usize, f: hcl::eval::Func) -> FuncDef {
    FuncDef::new(f, std::iter::repeat_n(ParamType::Any, n))
}

/// A definition with `n` parameters of any type then any number more.
pub(crate) fn variadic(n: usize, f: hcl::eval::Func) -> FuncDef {
    FuncDef::builder()
        .params(std::iter::repeat_n(ParamType::Any, n))
        .variadic_param(ParamType::Any)
        .build(f)
}

pub(crate) type R<T> = Result<T, String>;

/// The name go-cty gives a value's type in its messages.
pub(crate) use super::type_name;

/// A number as go-cty converts it to a string: integers exactly, fractions
/// in the shortest form that reads back, never with an exponent.
pub(crate) fn num_str(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == f.trunc() && f.abs() < 1e300 {
        // `{}` never writes an exponent, and an integral float has no ".0" to drop.
        let s = format!("{f}");
        return s.strip_suffix(".0").map(str::to_owned).unwrap_or(s);
    }
    format!("{f}")
}

/// Argument `i` as a string, converting numbers and bools as go-cty does.
pub(crate) fn str_arg(args: &[Value], i: usize) -> R<String> {
    to_str(&args[i]).map_err(|e| format!("argument {}: {e}", i + 1))
}

/// A value as a string, converting numbers and bools as go-cty does.
pub(crate) fn to_str(v: &Value) -> R<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(num_str(n)),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("argument must not be null".into()),
        other => Err(format!("string required, got {}", type_name(other))),
    }
}

/// A value as a number: numbers, and strings that hold one (go-cty's
/// conversion).
pub(crate) fn to_f64(v: &Value) -> R<f64> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => parse_number(s).ok_or_else(|| "a number is required".to_string()),
        Value::Null => Err("must not be null".into()),
        other => Err(format!("number required, got {}", type_name(other))),
    }
}

/// Argument `i` as a number (see [`to_f64`]).
pub(crate) fn num_arg(args: &[Value], i: usize) -> R<f64> {
    to_f64(&args[i]).map_err(|e| format!("argument {}: {e}", i + 1))
}

/// A number that must be whole, in go-cty's words.
pub(crate) fn whole(f: f64) -> R<i64> {
    if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.0e15 {
        return Err(
            "value must be a whole number, between -9223372036854775808 and 9223372036854775807"
                .into(),
        );
    }
    Ok(f as i64)
}

/// Argument `i` as a whole number (go-cty: "must be a whole number").
pub(crate) fn int_arg(args: &[Value], i: usize) -> R<i64> {
    let f = num_arg(args, i)?;
    if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.0e15 {
        return Err(format!(
            "argument {}: value must be a whole number, between -9223372036854775808 and 9223372036854775807",
            i + 1
        ));
    }
    Ok(f as i64)
}

/// Argument `i` as a bool (a "true"/"false" string converts).
pub(crate) fn bool_arg(args: &[Value], i: usize) -> R<bool> {
    match &args[i] {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        Value::Null => Err(format!("argument {}: must not be null", i + 1)),
        other => Err(format!(
            "argument {}: a bool is required, got {}",
            i + 1,
            type_name(other)
        )),
    }
}

/// Argument `i` as a list (a list, tuple or set).
pub(crate) fn list_arg(args: &[Value], i: usize) -> R<&Vec<Value>> {
    match &args[i] {
        Value::Array(a) => Ok(a),
        Value::Null => Err(format!("argument {}: must not be null", i + 1)),
        other => Err(format!(
            "argument {}: list required, got {}",
            i + 1,
            type_name(other)
        )),
    }
}

/// Argument `i` as a map or object.
pub(crate) fn map_arg(args: &[Value], i: usize) -> R<&hcl::Map<String, Value>> {
    match &args[i] {
        Value::Object(o) => Ok(o),
        Value::Null => Err(format!("argument {}: must not be null", i + 1)),
        other => Err(format!(
            "argument {}: map or object required, got {}",
            i + 1,
            type_name(other)
        )),
    }
}

/// go-cty's number syntax (decimal, optional sign, fraction and exponent).
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let t = s.strip_prefix('+').unwrap_or(s);
    let body = t.strip_prefix('-').unwrap_or(t);
    let ok = !body.is_empty()
        && body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !ok {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A number value from an f64, integral when it is one.
pub(crate) fn num(f: f64) -> R<Value> {
    if !f.is_finite() {
        return Err("the result is not a finite number".into());
    }
    if f.fract() == 0.0 && f.abs() < 9.0e18 {
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Ok(Value::Number(Number::from_f64(f).expect("finite")))
}

/// Errors when a built string would exceed [`MAX_STRING`].
pub(crate) fn check_len(len: usize) -> R<()> {
    if len > MAX_STRING {
        return Err(format!(
            "the result would be {len} bytes, more than the limit of {MAX_STRING}"
        ));
    }
    Ok(())
}

/// Errors when a built collection would exceed [`MAX_ELEMENTS`].
pub(crate) fn check_count(count: usize) -> R<()> {
    if count > MAX_ELEMENTS {
        return Err(format!(
            "the result would have {count} elements, more than the limit of {MAX_ELEMENTS}"
        ));
    }
    Ok(())
}

/// go-cty's equality: numbers by value, collections element-wise, objects
/// regardless of key order.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

/// go-cty's set order: bools false first, numbers ascending, strings by
/// bytes; other kinds by their JSON text.
pub(crate) fn set_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => encoding::json_text(a).cmp(&encoding::json_text(b)),
    }
}

/// Sorts and removes duplicates, making a go-cty set of `items`. Mixed
/// numbers and strings unify to strings, as go-cty's set conversion does.
pub(crate) fn make_set(mut items: Vec<Value>) -> Vec<Value> {
    let has_str = items.iter().any(|v| matches!(v, Value::String(_)));
    if has_str {
        for v in items.iter_mut() {
            if matches!(v, Value::Number(_) | Value::Bool(_)) {
                *v = Value::String(to_str(v).expect("primitive"));
            }
        }
    }
    items.sort_by(set_cmp);
    items.dedup_by(|a, b| values_equal(a, b));
    items
}

/// go-cty's unification of list elements for a list result: when any is a
/// string, numbers and bools become strings.
pub(crate) fn unify_strings(items: &mut [Value]) {
    if items.iter().any(|v| matches!(v, Value::String(_))) {
        for v in items.iter_mut() {
            if matches!(v, Value::Number(_) | Value::Bool(_)) {
                *v = Value::String(to_str(v).expect("primitive"));
            }
        }
    }
}

/// A map sorted by key, as go-cty orders maps and objects.
pub(crate) fn sorted_map(m: hcl::Map<String, Value>) -> hcl::Map<String, Value> {
    let mut m = m;
    m.sort_keys();
    m
}

/// A function bake declares that mybake cannot run: always this error.
pub(crate) fn unsupported(name: &str, why: &str) -> String {
    format!("`{name}` is not supported by mybake: {why}")
}
