//! Regular expression functions: regex, regexall, regex_replace, with Go's
//! RE2 syntax (the `regex` crate's syntax, with `\d`, `\w`, `\s` made ASCII
//! as in Go).

use hcl::eval::{FuncArgs, FuncDef};
use hcl::Value;

use super::{check_count, check_len, fixed, sorted_map, str_arg, R};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        ("regex", fixed(2, regex)),
        ("regexall", fixed(2, regexall)),
        ("regex_replace", fixed(3, regex_replace)),
    ]);
}

/// Compiles a Go (RE2) pattern.
fn compile(pattern: &str) -> R<regex::Regex> {
    regex::RegexBuilder::new(&go_classes(pattern))
        .size_limit(1 << 22)
        .build()
        .map_err(|e| {
            let msg = e.to_string();
            let last = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&msg);
            format!(
                "invalid regexp pattern: {}",
                last.trim().trim_start_matches("error: ")
            )
        })
}

/// Go's `\d`, `\w` and `\s` are ASCII-only; the regex crate's are Unicode.
fn go_classes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut in_class = false;
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push(c);
                    break;
                };
                let (inner, neg) = match n {
                    'd' => ("0-9", false),
                    'w' => ("0-9A-Za-z_", false),
                    's' => ("\\t\\n\\x0C\\r ", false),
                    'D' => ("0-9", true),
                    'W' => ("0-9A-Za-z_", true),
                    'S' => ("\\t\\n\\x0C\\r ", true),
                    _ => {
                        out.push(c);
                        out.push(n);
                        continue;
                    }
                };
                match (in_class, neg) {
                    (true, false) => out.push_str(inner),
                    (true, true) => {
                        out.push(c);
                        out.push(n);
                    }
                    (false, false) => out.push_str(&format!("[{inner}]")),
                    (false, true) => out.push_str(&format!("[^{inner}]")),
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` first in a class (after an optional `^`) is literal.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().expect("peeked"));
                }
                if chars.peek() == Some(&']') {
                    out.push(chars.next().expect("peeked"));
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // `[:alpha:]` inside a class.
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// go-cty's shape of one match: the match when the pattern has no groups, a
/// list of the groups when they are unnamed, an object when they are named.
fn captures(re: &regex::Regex, caps: &regex::Captures<'_>) -> Value {
    let named = re.capture_names().flatten().count();
    if re.captures_len() == 1 {
        return Value::String(caps[0].to_owned());
    }
    let get = |i: usize| {
        caps.get(i)
            .map(|m| Value::String(m.as_str().to_owned()))
            .unwrap_or(Value::Null)
    };
    if named > 0 {
        let obj: hcl::Map<String, Value> = re
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (n.to_owned(), get(i))))
            .collect();
        Value::Object(sorted_map(obj))
    } else {
        Value::Array((1..re.captures_len()).map(get).collect())
    }
}

fn check_groups(re: &regex::Regex) -> R<()> {
    let named = re.capture_names().flatten().count();
    if named > 0 && named != re.captures_len() - 1 {
        return Err(
            "invalid regexp pattern: cannot mix both named and unnamed capture groups".into(),
        );
    }
    Ok(())
}

fn regex(a: FuncArgs) -> R<Value> {
    let re = compile(&str_arg(&a, 0)?)?;
    check_groups(&re)?;
    let s = str_arg(&a, 1)?;
    let caps = re
        .captures(&s)
        .ok_or_else(|| "pattern did not match any part of the given string".to_string())?;
    Ok(captures(&re, &caps))
}

fn regexall(a: FuncArgs) -> R<Value> {
    let re = compile(&str_arg(&a, 0)?)?;
    check_groups(&re)?;
    let s = str_arg(&a, 1)?;
    let mut out = Vec::new();
    for caps in re.captures_iter(&s) {
        check_count(out.len() + 1)?;
        out.push(captures(&re, &caps));
    }
    Ok(Value::Array(out))
}

fn regex_replace(a: FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let re = compile(&str_arg(&a, 1)?)?;
    let rep = str_arg(&a, 2)?;
    // Bound the result before building it: each match adds the replacement,
    // each `$` reference in it at most the whole input.
    let refs = rep.matches('$').count();
    let per = rep.len().saturating_add(refs.saturating_mul(s.len()));
    check_len(
        s.len()
            .saturating_add(re.find_iter(&s).count().saturating_mul(per)),
    )?;
    let out = re.replace_all(&s, rep.as_str()).into_owned();
    check_len(out.len())?;
    Ok(Value::String(out))
}
