//! Encoding functions: base64decode, base64encode, csvdecode, jsondecode,
//! jsonencode, urlencode.

use base64::Engine as _;
use hcl::eval::FuncDef;
use hcl::{Number, Value};

use super::{check_count, fixed, num_str, sorted_map, str_arg, R};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        ("base64decode", fixed(1, base64decode)),
        (
            "base64encode",
            fixed(1, |a| {
                Ok(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(str_arg(&a, 0)?),
                ))
            }),
        ),
        ("csvdecode", fixed(1, csvdecode)),
        ("jsondecode", fixed(1, jsondecode)),
        (
            "jsonencode",
            fixed(1, |a| Ok(Value::String(json_text(&a[0])))),
        ),
        ("urlencode", fixed(1, urlencode)),
    ]);
}

fn base64decode(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&s)
        .map_err(|_| format!("failed to decode base64 data {}", redact(&s)))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "the result of decoding the the provided string is not valid UTF-8".into())
}

fn redact(s: &str) -> String {
    format!("'{s}'")
}

fn urlencode(a: hcl::eval::FuncArgs) -> R<Value> {
    // Go's url.QueryEscape.
    let s = str_arg(&a, 0)?;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(Value::String(out))
}

/// A value as go-cty's JSON: object keys sorted, numbers without exponent,
/// strings escaped as Go's encoding/json does (HTML characters too).
pub(crate) fn json_text(v: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&num_str(n)),
        Value::String(s) => out.push_str(&json_string(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(k));
                out.push(':');
                write_json(out, &map[k]);
            }
            out.push('}');
        }
    }
}

/// A string as Go's encoding/json writes it.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn jsondecode(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let j: serde_json::Value = serde_json::from_str(&s).map_err(|e| {
        if e.is_eof() {
            "EOF".to_string()
        } else if e.to_string().starts_with("trailing characters") {
            "extraneous data after JSON object".to_string()
        } else {
            e.to_string()
        }
    })?;
    from_json(j)
}

fn from_json(j: serde_json::Value) -> R<Value> {
    Ok(match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                super::num(n.as_f64().unwrap_or(0.0))?
            }
        }
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(from_json).collect::<R<_>>()?)
        }
        serde_json::Value::Object(map) => Value::Object(sorted_map(
            map.into_iter()
                .map(|(k, v)| Ok((k, from_json(v)?)))
                .collect::<R<_>>()?,
        )),
    })
}

fn csvdecode(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let mut rows = csv_rows(&s)?.into_iter();
    let Some(header) = rows.next() else {
        return Err("missing header line".into());
    };
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        if row.len() != header.len() {
            return Err(format!(
                "CSV parse error on line {}: wrong number of fields",
                n + 2
            ));
        }
        check_count(out.len() + 1)?;
        let obj: hcl::Map<String, Value> = header
            .iter()
            .cloned()
            .zip(row.into_iter().map(Value::String))
            .collect();
        out.push(Value::Object(sorted_map(obj)));
    }
    Ok(Value::Array(out))
}

/// Go encoding/csv's records (RFC 4180: `"` quotes, `""` inside quotes,
/// `\r\n` or `\n` line ends, empty lines skipped).
fn csv_rows(s: &str) -> R<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        if chars[i] == '\n' || (chars[i] == '\r' && chars.get(i + 1) == Some(&'\n')) {
            i += if chars[i] == '\r' { 2 } else { 1 };
            line += 1;
            continue;
        }
        let mut row = Vec::new();
        loop {
            let mut field = String::new();
            if chars.get(i) == Some(&'"') {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!("CSV parse error on line {line}: extraneous or missing \" in quoted-field"))
                        }
                        Some('"') if chars.get(i + 1) == Some(&'"') => {
                            field.push('"');
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                            i += 1;
                        }
                    }
                }
                match chars.get(i) {
                    None | Some(',') | Some('\n') => {}
                    Some('\r') if chars.get(i + 1) == Some(&'\n') => {}
                    Some(_) => {
                        return Err(format!(
                        "CSV parse error on line {line}: extraneous or missing \" in quoted-field"
                    ))
                    }
                }
            } else {
                while let Some(&c) = chars.get(i) {
                    if c == ',' || c == '\n' || (c == '\r' && chars.get(i + 1) == Some(&'\n')) {
                        break;
                    }
                    if c == '"' {
                        return Err(format!(
                            "CSV parse error on line {line}: bare \" in non-quoted-field"
                        ));
                    }
                    field.push(c);
                    i += 1;
                }
            }
            row.push(field);
            match chars.get(i) {
                Some(',') => i += 1,
                Some('\r') => {
                    i += 2;
                    line += 1;
                    break;
                }
                Some('\n') => {
                    i += 1;
                    line += 1;
                    break;
                }
                _ => break,
            }
        }
        check_count(rows.len() + 1)?;
        rows.push(row);
    }
    Ok(rows)
}
