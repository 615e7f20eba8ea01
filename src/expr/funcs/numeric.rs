//! Number and logic functions: absolute, add, ceil, divide, floor, int, log,
//! max, min, modulo, multiply, negate, parseint, pow, signum, subtract,
//! greaterthan, greaterthanorequalto, lessthan, lessthanorequalto, equal,
//! notequal, and, or, not.

use hcl::eval::{FuncArgs, FuncDef};
use hcl::Value;

use super::{bool_arg, encoding, fixed, num, num_arg, values_equal, variadic, R};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        ("absolute", fixed(1, |a| num(num_arg(&a, 0)?.abs()))),
        ("add", fixed(2, |a| num(num_arg(&a, 0)? + num_arg(&a, 1)?))),
        ("ceil", fixed(1, |a| num(num_arg(&a, 0)?.ceil()))),
        ("divide", fixed(2, divide)),
        ("floor", fixed(1, |a| num(num_arg(&a, 0)?.floor()))),
        ("int", fixed(1, |a| num(num_arg(&a, 0)?.trunc()))),
        (
            "log",
            fixed(2, |a| num(num_arg(&a, 0)?.ln() / num_arg(&a, 1)?.ln())),
        ),
        ("max", variadic(0, |a| extreme(a, f64::max))),
        ("min", variadic(0, |a| extreme(a, f64::min))),
        ("modulo", fixed(2, modulo)),
        (
            "multiply",
            fixed(2, |a| num(num_arg(&a, 0)? * num_arg(&a, 1)?)),
        ),
        ("negate", fixed(1, |a| num(-num_arg(&a, 0)?))),
        ("parseint", fixed(2, parseint)),
        (
            "pow",
            fixed(2, |a| num(num_arg(&a, 0)?.powf(num_arg(&a, 1)?))),
        ),
        ("signum", fixed(1, signum)),
        (
            "subtract",
            fixed(2, |a| num(num_arg(&a, 0)? - num_arg(&a, 1)?)),
        ),
        (
            "greaterthan",
            fixed(2, |a| Ok(Value::Bool(num_arg(&a, 0)? > num_arg(&a, 1)?))),
        ),
        (
            "greaterthanorequalto",
            fixed(2, |a| Ok(Value::Bool(num_arg(&a, 0)? >= num_arg(&a, 1)?))),
        ),
        (
            "lessthan",
            fixed(2, |a| Ok(Value::Bool(num_arg(&a, 0)? < num_arg(&a, 1)?))),
        ),
        (
            "lessthanorequalto",
            fixed(2, |a| Ok(Value::Bool(num_arg(&a, 0)? <= num_arg(&a, 1)?))),
        ),
        (
            "equal",
            fixed(2, |a| Ok(Value::Bool(values_equal(&a[0], &a[1])))),
        ),
        (
            "notequal",
            fixed(2, |a| Ok(Value::Bool(!values_equal(&a[0], &a[1])))),
        ),
        (
            "and",
            fixed(2, |a| Ok(Value::Bool(bool_arg(&a, 0)? && bool_arg(&a, 1)?))),
        ),
        (
            "or",
            fixed(2, |a| Ok(Value::Bool(bool_arg(&a, 0)? || bool_arg(&a, 1)?))),
        ),
        ("not", fixed(1, |a| Ok(Value::Bool(!bool_arg(&a, 0)?)))),
    ]);
}

fn divide(a: FuncArgs) -> R<Value> {
    let (x, y) = (num_arg(&a, 0)?, num_arg(&a, 1)?);
    if y == 0.0 {
        return Err("can't divide by zero".into());
    }
    num(x / y)
}

fn modulo(a: FuncArgs) -> R<Value> {
    // go-cty: x - y*trunc(x/y), and x when y is zero.
    let (x, y) = (num_arg(&a, 0)?, num_arg(&a, 1)?);
    if y == 0.0 {
        return num(x);
    }
    num(x % y)
}

fn signum(a: FuncArgs) -> R<Value> {
    let x = num_arg(&a, 0)?;
    if x.fract() != 0.0 {
        return Err(
            "value must be a whole number, between -9223372036854775808 and 9223372036854775807"
                .into(),
        );
    }
    num(if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    })
}

fn extreme(a: FuncArgs, pick: fn(f64, f64) -> f64) -> R<Value> {
    if a.is_empty() {
        return Err("must pass at least one number".into());
    }
    let mut best = num_arg(&a, 0)?;
    for i in 1..a.len() {
        best = pick(best, num_arg(&a, i)?);
    }
    num(best)
}

fn parseint(a: FuncArgs) -> R<Value> {
    let Value::String(s) = &a[0] else {
        return Err(format!(
            "first argument must be a string, not {}",
            super::type_name(&a[0])
        ));
    };
    let base = super::int_arg(&a, 1)?;
    if !(2..=62).contains(&base) {
        return Err("base must be a whole number between 2 and 62 inclusive".into());
    }
    let bad = || {
        format!(
            "cannot parse {} as a base {base} integer",
            encoding::json_string(s)
        )
    };
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s.as_str()),
    };
    if digits.is_empty() || digits.len() > 1024 {
        return Err(bad());
    }
    let mut v = 0f64;
    for c in digits.chars() {
        let d = match c {
            '0'..='9' => c as i64 - '0' as i64,
            'a'..='z' => c as i64 - 'a' as i64 + 10,
            'A'..='Z' if base <= 36 => c as i64 - 'A' as i64 + 10,
            'A'..='Z' => c as i64 - 'A' as i64 + 36,
            _ => return Err(bad()),
        };
        if d >= base {
            return Err(bad());
        }
        v = v * base as f64 + d as f64;
    }
    num(if neg { -v } else { v })
}
