//! String functions: chomp, format, formatlist, indent, join, lower, upper,
//! replace, reverse, split, strlen, substr, title, trim, trimprefix,
//! trimspace, trimsuffix (and byteslen/bytesslice, which bake cannot call).
//!
//! Lengths and offsets count grapheme clusters, as go-cty does.

use hcl::eval::FuncDef;
use hcl::Value;
use unicode_segmentation::UnicodeSegmentation as _;

use super::{
    check_count, check_len, encoding, fixed, int_arg, list_arg, str_arg, to_str, type_name,
    variadic, R,
};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        ("chomp", fixed(1, chomp)),
        ("format", variadic(1, format)),
        ("formatlist", variadic(1, formatlist)),
        ("indent", fixed(2, indent)),
        ("join", variadic(1, join)),
        (
            "lower",
            fixed(1, |a| Ok(Value::String(str_arg(&a, 0)?.to_lowercase()))),
        ),
        (
            "upper",
            fixed(1, |a| Ok(Value::String(str_arg(&a, 0)?.to_uppercase()))),
        ),
        ("replace", fixed(3, replace)),
        (
            "reverse",
            fixed(1, |a| {
                Ok(Value::String(
                    str_arg(&a, 0)?.graphemes(true).rev().collect(),
                ))
            }),
        ),
        ("split", fixed(2, split)),
        (
            "strlen",
            fixed(1, |a| {
                Ok(Value::from(str_arg(&a, 0)?.graphemes(true).count()))
            }),
        ),
        ("substr", fixed(3, substr)),
        ("title", fixed(1, title)),
        ("trim", fixed(2, trim)),
        ("trimprefix", fixed(2, trimprefix)),
        (
            "trimspace",
            fixed(1, |a| Ok(Value::String(str_arg(&a, 0)?.trim().to_owned()))),
        ),
        ("trimsuffix", fixed(2, trimsuffix)),
        ("byteslen", fixed(1, |a| Err(bytes_err(&a[0])))),
        ("bytesslice", fixed(3, |a| Err(bytes_err(&a[0])))),
    ]);
}

fn bytes_err(v: &Value) -> String {
    format!(
        "argument 1: bytes required, got {} (no bake value is of go-cty's bytes type)",
        type_name(v)
    )
}

fn chomp(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    Ok(Value::String(s.trim_end_matches(['\r', '\n']).to_owned()))
}

fn indent(a: hcl::eval::FuncArgs) -> R<Value> {
    let n = int_arg(&a, 0)?;
    let s = str_arg(&a, 1)?;
    let n = usize::try_from(n).map_err(|_| "argument 1: must not be negative".to_string())?;
    let lines = s.matches('\n').count();
    check_len(s.len().saturating_add(lines.saturating_mul(n)))?;
    let pad = " ".repeat(n);
    Ok(Value::String(s.replace('\n', &format!("\n{pad}"))))
}

fn join(a: hcl::eval::FuncArgs) -> R<Value> {
    let sep = str_arg(&a, 0)?;
    if a.len() < 2 {
        return Err("at least one list is required".into());
    }
    let mut parts = Vec::new();
    for i in 1..a.len() {
        for (j, v) in list_arg(&a, i)?.iter().enumerate() {
            if v.is_null() {
                return Err(format!(
                    "element {j} is null; cannot concatenate null values (list {i})"
                ));
            }
            parts.push(to_str(v).map_err(|e| format!("argument {}: element {j}: {e}", i + 1))?);
        }
    }
    let len = parts.iter().map(String::len).sum::<usize>() + sep.len() * parts.len();
    check_len(len)?;
    Ok(Value::String(parts.join(&sep)))
}

fn replace(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let from = str_arg(&a, 1)?;
    let to = str_arg(&a, 2)?;
    let count = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(&from).count()
    };
    check_len(s.len().saturating_add(count.saturating_mul(to.len())))?;
    Ok(Value::String(s.replace(&from, &to)))
}

fn split(a: hcl::eval::FuncArgs) -> R<Value> {
    let sep = str_arg(&a, 0)?;
    let s = str_arg(&a, 1)?;
    // Count before building, so a long input is refused, not split.
    let count = if sep.is_empty() {
        s.chars().count()
    } else {
        s.matches(sep.as_str()).count() + 1
    };
    check_count(count)?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_owned()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn substr(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let mut offset = int_arg(&a, 1)?;
    let length = int_arg(&a, 2)?;
    let chars: Vec<&str> = s.graphemes(true).collect();
    let total = chars.len() as i64;
    if offset < 0 {
        offset += total;
    } else if length == 0 {
        return Ok(Value::String(String::new()));
    }
    if offset < 0 {
        offset = 0;
    }
    if offset >= total {
        return Ok(Value::String(String::new()));
    }
    let end = if length < 0 {
        total
    } else {
        (offset + length).min(total)
    };
    Ok(Value::String(chars[offset as usize..end as usize].concat()))
}

fn title(a: hcl::eval::FuncArgs) -> R<Value> {
    // Go's strings.Title: the first letter after a separator upper-cased
    // (ASCII other than letters, digits and '_'; beyond ASCII, spaces).
    let s = str_arg(&a, 0)?;
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        let sep = if prev.is_ascii() {
            !(prev.is_ascii_alphanumeric() || prev == '_')
        } else {
            !prev.is_alphanumeric() && prev.is_whitespace()
        };
        if sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    Ok(Value::String(out))
}

fn trim(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let cut: Vec<char> = str_arg(&a, 1)?.chars().collect();
    Ok(Value::String(
        s.trim_matches(|c| cut.contains(&c)).to_owned(),
    ))
}

fn trimprefix(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let p = str_arg(&a, 1)?;
    Ok(Value::String(
        s.strip_prefix(p.as_str()).unwrap_or(&s).to_owned(),
    ))
}

fn trimsuffix(a: hcl::eval::FuncArgs) -> R<Value> {
    let s = str_arg(&a, 0)?;
    let p = str_arg(&a, 1)?;
    Ok(Value::String(
        s.strip_suffix(p.as_str()).unwrap_or(&s).to_owned(),
    ))
}

fn format(a: hcl::eval::FuncArgs) -> R<Value> {
    let f = str_arg(&a, 0)?;
    Ok(Value::String(format_values(&f, &a[1..])?))
}

fn formatlist(a: hcl::eval::FuncArgs) -> R<Value> {
    let f = str_arg(&a, 0)?;
    let mut n: Option<(usize, usize)> = None;
    for (i, v) in a[1..].iter().enumerate() {
        if let Value::Array(l) = v {
            match n {
                Some((len, first)) if len != l.len() => {
                    return Err(format!(
                        "argument {}: argument {} has length {}, which is inconsistent with argument {} of length {}",
                        i + 2,
                        i + 1,
                        l.len(),
                        first + 1,
                        len
                    ));
                }
                None => n = Some((l.len(), i)),
                _ => {}
            }
        }
    }
    let Some((len, _)) = n else {
        // No list arguments: a one-element list.
        return Ok(Value::Array(vec![Value::String(format_values(
            &f,
            &a[1..],
        )?)]));
    };
    check_count(len)?;
    let mut out = Vec::with_capacity(len);
    let mut total = 0usize;
    for i in 0..len {
        let row: Vec<Value> = a[1..]
            .iter()
            .map(|v| match v {
                Value::Array(l) => l[i].clone(),
                other => other.clone(),
            })
            .collect();
        let s =
            format_values(&f, &row).map_err(|e| format!("error on format iteration {i}: {e}"))?;
        total += s.len();
        check_len(total)?;
        out.push(Value::String(s));
    }
    Ok(Value::Array(out))
}

/// One `%` verb of go-cty's `format`.
#[derive(Default)]
struct Verb {
    raw: String,
    offset: usize,
    mode: char,
    zero: bool,
    sharp: bool,
    plus: bool,
    minus: bool,
    space: bool,
    prec: Option<usize>,
    width: Option<usize>,
}

/// The widest width or precision a verb may ask for.
const MAX_WIDTH: usize = 1 << 16;

/// go-cty's `format` (Go's fmt verbs, applied to HCL values).
pub(crate) fn format_values(f: &str, args: &[Value]) -> R<String> {
    let mut out = String::new();
    let mut next_arg = 0usize;
    let mut used = 0usize;
    let b = f.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let Some(p) = f[i..].find('%') else {
            out.push_str(&f[i..]);
            break;
        };
        out.push_str(&f[i..i + p]);
        i += p + 1;
        if i < b.len() && b[i] == b'%' {
            out.push('%');
            i += 1;
            continue;
        }
        let vstart = i - 1;
        let mut v = Verb {
            offset: vstart,
            ..Verb::default()
        };
        while i < b.len() {
            match b[i] {
                b'0' => v.zero = true,
                b'#' => v.sharp = true,
                b'+' => v.plus = true,
                b'-' => v.minus = true,
                b' ' => v.space = true,
                _ => break,
            }
            i += 1;
        }
        if i < b.len() && b[i] == b'[' {
            let close = f[i..]
                .find(']')
                .ok_or_else(|| format!("unterminated argument index at offset {vstart}"))?;
            let idx: usize = f[i + 1..i + close]
                .parse()
                .map_err(|_| format!("invalid argument index at offset {vstart}"))?;
            if idx == 0 {
                return Err(format!("invalid argument index 0 at offset {vstart}"));
            }
            next_arg = idx - 1;
            i += close + 1;
        }
        let num = |i: &mut usize| -> R<Option<usize>> {
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            if s == *i {
                return Ok(None);
            }
            let n: usize = f[s..*i].parse().unwrap_or(usize::MAX);
            if n > MAX_WIDTH {
                return Err(format!(
                    "width or precision {} at offset {vstart} is more than the limit of {MAX_WIDTH}",
                    &f[s..*i]
                ));
            }
            Ok(Some(n))
        };
        v.width = num(&mut i)?;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            v.prec = Some(num(&mut i)?.unwrap_or(0));
        }
        let Some(mode) = f[i..].chars().next() else {
            return Err(format!("invalid format string starting at offset {i}"));
        };
        i += mode.len_utf8();
        v.mode = mode;
        v.raw = f[vstart..i].to_owned();
        let Some(arg) = args.get(next_arg) else {
            return Err(format!(
                "not enough arguments for {} at {}: need index {} but have {} total",
                encoding::json_string(&v.raw),
                v.offset,
                next_arg + 1,
                args.len()
            ));
        };
        next_arg += 1;
        used = used.max(next_arg);
        append(&mut out, &v, arg)?;
        check_len(out.len())?;
    }
    if used < args.len() {
        return Err(format!(
            "too many arguments; only {used} used by format string"
        ));
    }
    Ok(out)
}

fn unsupported_value(v: &Verb, why: &str) -> String {
    format!(
        "unsupported value for {} at {}: {why}",
        encoding::json_string(&v.raw),
        v.offset
    )
}

fn pad(v: &Verb, s: String) -> String {
    let Some(w) = v.width else { return s };
    let n = s.graphemes(true).count();
    if n >= w {
        return s;
    }
    let fill = if v.zero && !v.minus { "0" } else { " " }.repeat(w - n);
    if v.minus {
        s + &fill
    } else {
        fill + &s
    }
}

fn append(out: &mut String, v: &Verb, arg: &Value) -> R<()> {
    if v.mode != 'v' && arg.is_null() {
        return Err(unsupported_value(v, "null value cannot be formatted"));
    }
    match v.mode {
        'v' => {
            let s = match arg {
                Value::String(s) if !v.sharp => s.clone(),
                Value::Number(n) if !v.sharp => fmt_g_shortest(n.as_f64().unwrap_or(0.0), false),
                other => encoding::json_text(other),
            };
            out.push_str(&pad(v, s));
        }
        't' => {
            let b = match arg {
                Value::Bool(b) => *b,
                Value::String(s) if s == "true" => true,
                Value::String(s) if s == "false" => false,
                other => {
                    return Err(unsupported_value(
                        v,
                        &format!("a bool is required, got {}", type_name(other)),
                    ))
                }
            };
            out.push_str(if b { "true" } else { "false" });
        }
        'b' | 'd' | 'o' | 'x' | 'X' | 'e' | 'E' | 'f' | 'g' | 'G' => {
            let f = super::to_f64(arg).map_err(|e| unsupported_value(v, &e))?;
            let s = if matches!(v.mode, 'b' | 'd' | 'o' | 'x' | 'X') {
                if f.fract() != 0.0 || f.abs() > 9.2e18 {
                    return Err(unsupported_value(v, "an integer is required"));
                }
                fmt_int(v, f as i64)
            } else {
                fmt_float(v, f)
            };
            out.push_str(&s);
        }
        's' | 'q' => {
            let mut s = to_str(arg).map_err(|e| unsupported_value(v, &e))?;
            if let Some(p) = v.prec.filter(|p| *p > 0) {
                s = s.graphemes(true).take(p).collect();
            }
            if v.mode == 'q' {
                s = encoding::json_string(&s);
            }
            out.push_str(&pad(v, s));
        }
        m => {
            return Err(format!(
                "unsupported format verb '{m}' in {} at offset {}",
                encoding::json_string(&v.raw),
                v.offset
            ))
        }
    }
    Ok(())
}

/// Pads a formatted number to the verb's width: spaces left (or right with
/// `-`), or zeros after the sign with `0`.
fn pad_num(v: &Verb, sign: &str, prefix: &str, digits: String) -> String {
    let body_len = sign.len() + prefix.len() + digits.chars().count();
    let w = v.width.unwrap_or(0);
    if body_len >= w {
        return format!("{sign}{prefix}{digits}");
    }
    let fill = w - body_len;
    if v.minus {
        format!("{sign}{prefix}{digits}{}", " ".repeat(fill))
    } else if v.zero {
        format!("{sign}{prefix}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{sign}{prefix}{digits}", " ".repeat(fill))
    }
}

fn sign_of(v: &Verb, neg: bool) -> &'static str {
    if neg {
        "-"
    } else if v.plus {
        "+"
    } else if v.space {
        " "
    } else {
        ""
    }
}

fn fmt_int(v: &Verb, i: i64) -> String {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let mut digits = match v.mode {
        'b' => format!("{u:b}"),
        'o' => format!("{u:o}"),
        'x' => format!("{u:x}"),
        'X' => format!("{u:X}"),
        _ => u.to_string(),
    };
    if let Some(p) = v.prec {
        if digits.len() < p {
            digits = "0".repeat(p - digits.len()) + &digits;
        }
        if p == 0 && u == 0 {
            digits.clear();
        }
    }
    let prefix = match (v.sharp, v.mode) {
        (true, 'b') => "0b",
        (true, 'o') => "0",
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        _ => "",
    };
    let zero_ok = v.prec.is_none();
    let v2 = Verb {
        zero: v.zero && zero_ok,
        width: v.width,
        minus: v.minus,
        ..Verb::default()
    };
    pad_num(&v2, sign_of(v, neg), prefix, digits)
}

fn fmt_float(v: &Verb, f: f64) -> String {
    let neg = f < 0.0 || (f == 0.0 && f.is_sign_negative());
    let a = f.abs();
    let digits = match v.mode {
        'e' | 'E' => fmt_e(a, v.prec.unwrap_or(6), v.mode == 'E'),
        'f' => format!("{:.*}", v.prec.unwrap_or(6), a),
        _ => match v.prec {
            None => fmt_g_shortest(a, v.mode == 'G'),
            Some(p) => fmt_g(a, p.max(1), v.mode == 'G', v.sharp),
        },
    };
    pad_num(v, sign_of(v, neg), "", digits)
}

/// Go's `%e`: mantissa with `prec` decimals, exponent signed and at least
/// two digits.
fn fmt_e(a: f64, prec: usize, upper: bool) -> String {
    let s = format!("{a:.prec$e}");
    let (m, e) = s.split_once('e').expect("exponent");
    go_exp(m, e.parse().unwrap_or(0), upper)
}

fn go_exp(m: &str, e: i32, upper: bool) -> String {
    let sign = if e < 0 { '-' } else { '+' };
    let ech = if upper { 'E' } else { 'e' };
    format!("{m}{ech}{sign}{:02}", e.unsigned_abs())
}

/// Go's shortest `%g` (and `%v` of a number): the shortest digits, with an
/// exponent when it is below -4 or at least 21 (big.Float's rule).
fn fmt_g_shortest(f: f64, upper: bool) -> String {
    let neg = f < 0.0;
    let a = f.abs();
    if a == 0.0 {
        return if neg { "-0".into() } else { "0".into() };
    }
    let s = format!("{a:e}");
    let (m, e) = s.split_once('e').expect("exponent");
    let e: i32 = e.parse().unwrap_or(0);
    // big.Float Text('g', -1): an exponent from 1e+06 (eprec 6 when shortest).
    let eprec = 6;
    let body = if e < -4 || e >= eprec {
        go_exp(m, e, upper)
    } else {
        let plain = format!("{a}");
        plain.strip_suffix(".0").map(str::to_owned).unwrap_or(plain)
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// Go's `%.Pg`.
fn fmt_g(a: f64, p: usize, upper: bool, sharp: bool) -> String {
    let s = format!("{a:.*e}", p - 1);
    let (m, e) = s.split_once('e').expect("exponent");
    let e: i32 = e.parse().unwrap_or(0);
    let mut m = m.to_owned();
    if !sharp && m.contains('.') {
        m = m.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    let nd = m.chars().filter(char::is_ascii_digit).count() as i32;
    let mut eprec = p as i32;
    if eprec > nd && nd > e {
        eprec = nd;
    }
    if e < -4 || e >= eprec {
        return go_exp(&m, e, upper);
    }
    let decimals = (nd - e - 1).max(0) as usize;
    let decimals = if sharp {
        (p as i32 - e - 1).max(0) as usize
    } else {
        decimals
    };
    format!("{a:.decimals$}")
}
