//! Collection functions: chunklist, coalesce, coalescelist, compact, concat,
//! contains, distinct, element, flatten, hasindex, index, keys, length,
//! lookup, merge, range, reverselist, slice, sort, values, zipmap and the set
//! functions sethaselement, setintersection, setproduct, setsubtract,
//! setsymmetricdifference, setunion.

use hcl::eval::{FuncArgs, FuncDef};
use hcl::Value;

use super::{
    check_count, fixed, list_arg, make_set, map_arg, num, num_arg, sorted_map, str_arg, to_str,
    type_name, unify_strings, values_equal, variadic, R,
};

/// go-cty's own cap on `range`.
const MAX_RANGE: usize = 1024;

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        ("chunklist", fixed(2, chunklist)),
        ("coalesce", variadic(0, coalesce)),
        ("coalescelist", variadic(0, coalescelist)),
        ("compact", fixed(1, compact)),
        ("concat", variadic(0, concat)),
        (
            "contains",
            fixed(2, |a| {
                Ok(Value::Bool(
                    list_arg(&a, 0)?.iter().any(|v| values_equal(v, &a[1])),
                ))
            }),
        ),
        ("distinct", fixed(1, distinct)),
        ("element", fixed(2, element)),
        ("flatten", fixed(1, flatten)),
        ("hasindex", fixed(2, hasindex)),
        ("index", fixed(2, index)),
        ("keys", fixed(1, keys)),
        ("length", fixed(1, length)),
        ("lookup", fixed(3, lookup)),
        ("merge", variadic(0, merge)),
        ("range", variadic(0, range)),
        (
            "reverselist",
            fixed(1, |a| {
                let mut l = list_arg(&a, 0)?.clone();
                l.reverse();
                Ok(Value::Array(l))
            }),
        ),
        ("slice", fixed(3, slice)),
        ("sort", fixed(1, sort)),
        ("values", fixed(1, values)),
        ("zipmap", fixed(2, zipmap)),
        (
            "sethaselement",
            fixed(2, |a| {
                Ok(Value::Bool(
                    list_arg(&a, 0)?.iter().any(|v| values_equal(v, &a[1])),
                ))
            }),
        ),
        (
            "setintersection",
            variadic(1, |a| set_op(a, SetOp::Intersection)),
        ),
        ("setproduct", variadic(0, setproduct)),
        ("setsubtract", fixed(2, setsubtract)),
        (
            "setsymmetricdifference",
            variadic(1, |a| set_op(a, SetOp::SymmetricDifference)),
        ),
        ("setunion", variadic(1, |a| set_op(a, SetOp::Union))),
    ]);
}

fn chunklist(a: FuncArgs) -> R<Value> {
    let l = list_arg(&a, 0)?;
    let size = super::whole(num_arg(&a, 1)?).map_err(|e| format!("invalid size: {e}"))?;
    if size < 0 {
        return Err("the size argument must be positive".into());
    }
    if l.is_empty() {
        return Ok(Value::Array(vec![]));
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(l.clone())]));
    }
    Ok(Value::Array(
        l.chunks(size as usize)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

fn coalesce(a: FuncArgs) -> R<Value> {
    if a.is_empty() {
        return Err("at least one argument is required".into());
    }
    let mut all: Vec<Value> = a.iter().cloned().collect();
    unify_strings(&mut all);
    all.into_iter()
        .find(|v| !v.is_null())
        .ok_or_else(|| "no non-null arguments".into())
}

fn coalescelist(a: FuncArgs) -> R<Value> {
    if a.is_empty() {
        return Err("at least one argument is required".into());
    }
    for (i, v) in a.iter().enumerate() {
        if !matches!(v, Value::Null | Value::Array(_)) {
            return Err(format!(
                "argument {}: coalescelist arguments must be lists or tuples",
                i + 1
            ));
        }
    }
    a.iter()
        .find(|v| matches!(v, Value::Array(l) if !l.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-null arguments".into())
}

fn compact(a: FuncArgs) -> R<Value> {
    let mut out = Vec::new();
    for v in list_arg(&a, 0)? {
        if v.is_null() {
            continue;
        }
        let s = to_str(v)?;
        if !s.is_empty() {
            out.push(Value::String(s));
        }
    }
    Ok(Value::Array(out))
}

fn concat(a: FuncArgs) -> R<Value> {
    if a.is_empty() {
        return Err("at least one argument is required".into());
    }
    let mut out = Vec::new();
    for i in 0..a.len() {
        let l = list_arg(&a, i)?;
        check_count(out.len() + l.len())?;
        out.extend(l.iter().cloned());
    }
    Ok(Value::Array(out))
}

fn distinct(a: FuncArgs) -> R<Value> {
    let mut all = list_arg(&a, 0)?.clone();
    unify_strings(&mut all);
    let mut seen = crate::FastSet::default();
    all.retain(|v| seen.insert(super::encoding::json_text(v)));
    Ok(Value::Array(all))
}

fn element(a: FuncArgs) -> R<Value> {
    let l = list_arg(&a, 0)?;
    let i = super::whole(num_arg(&a, 1)?).map_err(|e| format!("invalid index: {e}"))?;
    if i < 0 {
        return Err("cannot use element function with a negative index".into());
    }
    if l.is_empty() {
        return Err("cannot use element function with an empty list".into());
    }
    Ok(l[(i as usize) % l.len()].clone())
}

fn flatten(a: FuncArgs) -> R<Value> {
    if !matches!(a[0], Value::Array(_)) {
        return Err("can only flatten lists, sets and tuples".into());
    }
    let mut out = Vec::new();
    // Iterative, so the nesting of the input sets no recursion depth.
    let mut stack: Vec<std::slice::Iter<'_, Value>> = vec![list_arg(&a, 0)?.iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            None => {
                stack.pop();
            }
            Some(Value::Array(inner)) => stack.push(inner.iter()),
            Some(v) => {
                check_count(out.len() + 1)?;
                out.push(v.clone());
            }
        }
    }
    Ok(Value::Array(out))
}

fn hasindex(a: FuncArgs) -> R<Value> {
    match &a[0] {
        Value::Array(l) => {
            let Ok(i) = super::to_f64(&a[1]) else {
                return Err("key for list must be number".into());
            };
            Ok(Value::Bool(
                i >= 0.0 && i.fract() == 0.0 && (i as usize) < l.len(),
            ))
        }
        Value::Object(m) => {
            let k = to_str(&a[1]).map_err(|_| "key for map must be string".to_string())?;
            Ok(Value::Bool(m.contains_key(&k)))
        }
        _ => Err("collection must be a list, a map or a tuple".into()),
    }
}

fn index(a: FuncArgs) -> R<Value> {
    match &a[0] {
        Value::Array(l) => {
            let Value::Number(i) = &a[1] else {
                return Err("key for tuple must be number".into());
            };
            let i = i.as_f64().unwrap_or(-1.0);
            if i < 0.0 || i.fract() != 0.0 || (i as usize) >= l.len() {
                return Err(format!("key must be between 0 and {} inclusive", l.len()));
            }
            Ok(l[i as usize].clone())
        }
        Value::Object(m) => {
            let k = to_str(&a[1]).map_err(|_| "key for map must be string".to_string())?;
            m.get(&k).cloned().ok_or_else(|| "invalid index".into())
        }
        _ => Err("collection must be a list, a map or a tuple".into()),
    }
}

fn keys(a: FuncArgs) -> R<Value> {
    let m = map_arg(&a, 0).map_err(|_| "argument 1: must have map or object type".to_string())?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(
        k.into_iter().map(|k| Value::String(k.clone())).collect(),
    ))
}

fn length(a: FuncArgs) -> R<Value> {
    match &a[0] {
        Value::Array(l) => Ok(Value::from(l.len())),
        Value::Object(m) => Ok(Value::from(m.len())),
        Value::Null => Err("argument 1: argument must not be null".into()),
        _ => Err("collection must be a list, a map or a tuple".into()),
    }
}

fn lookup(a: FuncArgs) -> R<Value> {
    let Value::Object(m) = &a[0] else {
        return Err("argument 1: lookup() requires a map as the first argument".into());
    };
    let k = str_arg(&a, 1)?;
    if let Some(v) = m.get(&k) {
        return Ok(v.clone());
    }
    Ok(a[2].clone())
}

fn merge(a: FuncArgs) -> R<Value> {
    let mut out = hcl::Map::new();
    for (i, v) in a.iter().enumerate() {
        match v {
            Value::Null => {}
            Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k.clone(), v.clone());
                }
            }
            other => {
                return Err(format!(
                    "argument {}: arguments must be maps or objects, got {}",
                    i + 1,
                    super::encoding::json_string(type_name(other))
                ))
            }
        }
    }
    Ok(Value::Object(sorted_map(out)))
}

fn range(a: FuncArgs) -> R<Value> {
    let (start, end, step) = match a.len() {
        1 => (0.0, num_arg(&a, 0)?, None),
        2 => (num_arg(&a, 0)?, num_arg(&a, 1)?, None),
        3 => (num_arg(&a, 0)?, num_arg(&a, 1)?, Some(num_arg(&a, 2)?)),
        0 => return Err("at least one argument is required".into()),
        _ => return Err("must have one, two, or three arguments".into()),
    };
    let step = step.unwrap_or(if end < start { -1.0 } else { 1.0 });
    let down = step < 0.0;
    if down && end > start {
        return Err("argument 2: end must be less than start when step is negative".into());
    }
    if !down && end < start {
        return Err("argument 2: end must be greater than start when step is positive".into());
    }
    let mut vals = Vec::new();
    let mut n = start;
    loop {
        if (down && n <= end) || (!down && n >= end) {
            break;
        }
        if vals.len() >= MAX_RANGE {
            return Err("more than 1024 values were generated; either decrease the difference between start and end or use a smaller step".into());
        }
        vals.push(num(n)?);
        n += step;
    }
    Ok(Value::Array(vals))
}

fn slice(a: FuncArgs) -> R<Value> {
    let l = list_arg(&a, 0).map_err(|_| "argument 1: must be a list or tuple value".to_string())?;
    let s = super::whole(num_arg(&a, 1)?).map_err(|e| format!("invalid start index: {e}"))?;
    let e = super::whole(num_arg(&a, 2)?).map_err(|e| format!("invalid end index: {e}"))?;
    let n = l.len() as i64;
    if s < 0 {
        return Err("argument 2: start index must not be less than zero".into());
    }
    if s > n {
        return Err(
            "argument 2: start index must not be greater than the length of the list".into(),
        );
    }
    if e < 0 {
        return Err("argument 3: end index must not be less than zero".into());
    }
    if e > n {
        return Err("argument 3: end index must not be greater than the length of the list".into());
    }
    if s > e {
        return Err("argument 2: start index must not be greater than end index".into());
    }
    Ok(Value::Array(l[s as usize..e as usize].to_vec()))
}

fn sort(a: FuncArgs) -> R<Value> {
    let mut out = Vec::new();
    for (i, v) in list_arg(&a, 0)?.iter().enumerate() {
        if v.is_null() {
            return Err(format!(
                "argument 1: given list element {i} is null; a null string cannot be sorted"
            ));
        }
        out.push(to_str(v).map_err(|e| format!("argument 1: element {i}: {e}"))?);
    }
    out.sort();
    Ok(Value::Array(out.into_iter().map(Value::String).collect()))
}

fn values(a: FuncArgs) -> R<Value> {
    let m =
        map_arg(&a, 0).map_err(|_| "values() requires a map as the first argument".to_string())?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| m[k].clone()).collect()))
}

fn zipmap(a: FuncArgs) -> R<Value> {
    let k = list_arg(&a, 0)?;
    let v =
        list_arg(&a, 1).map_err(|_| "values argument must be a list or tuple value".to_string())?;
    if k.len() != v.len() {
        return Err(format!(
            "number of keys ({}) does not match number of values ({})",
            k.len(),
            v.len()
        ));
    }
    let mut out = hcl::Map::new();
    for (i, (k, v)) in k.iter().zip(v).enumerate() {
        if k.is_null() {
            return Err(format!("keys list has null value at index {i}"));
        }
        out.insert(to_str(k)?, v.clone());
    }
    Ok(Value::Object(sorted_map(out)))
}

enum SetOp {
    Union,
    Intersection,
    SymmetricDifference,
}

fn set_arg(a: &[Value], i: usize) -> R<Vec<Value>> {
    match &a[i] {
        Value::Array(l) => Ok(make_set(l.clone())),
        _ => Err(format!("argument {}: a set or a list is required", i + 1)),
    }
}

/// go-cty's sets hold one element type: primitives (which unify to
/// string), or collections, not both.
fn check_kinds(sets: &[&[Value]]) -> R<()> {
    let kind = |v: &Value| matches!(v, Value::Array(_) | Value::Object(_));
    let mut all = sets.iter().copied().flatten().filter(|v| !v.is_null());
    if let Some(first) = all.next() {
        let k = kind(first);
        if all.any(|v| kind(v) != k) {
            return Err("given sets must all have compatible element types".into());
        }
    }
    Ok(())
}

/// The elements of a set by their canonical JSON text (go-cty's equality:
/// numbers by value, objects regardless of key order), so set operations
/// take linear time, not quadratic.
fn set_keys(set: &[Value]) -> crate::FastSet<String> {
    set.iter().map(super::encoding::json_text).collect()
}

fn has(keys: &crate::FastSet<String>, v: &Value) -> bool {
    keys.contains(&super::encoding::json_text(v))
}

fn set_op(a: FuncArgs, op: SetOp) -> R<Value> {
    let sets = (0..a.len())
        .map(|i| set_arg(&a, i))
        .collect::<R<Vec<_>>>()?;
    check_kinds(&sets.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
    let mut sets = sets.into_iter();
    let mut acc = sets.next().expect("one parameter");
    for other in sets {
        acc = match op {
            // Bounded by the inputs; the result is checked below.
            SetOp::Union => make_set(acc.into_iter().chain(other).collect()),
            SetOp::Intersection => {
                let other = set_keys(&other);
                acc.into_iter().filter(|v| has(&other, v)).collect()
            }
            SetOp::SymmetricDifference => {
                let (acc_keys, other_keys) = (set_keys(&acc), set_keys(&other));
                let mut out: Vec<Value> = acc
                    .iter()
                    .filter(|v| !has(&other_keys, v))
                    .cloned()
                    .collect();
                out.extend(other.iter().filter(|v| !has(&acc_keys, v)).cloned());
                out
            }
        };
    }
    let out = make_set(acc);
    check_count(out.len())?;
    Ok(Value::Array(out))
}

fn setsubtract(a: FuncArgs) -> R<Value> {
    let acc = set_arg(&a, 0)?;
    let other = set_arg(&a, 1)?;
    check_kinds(&[&acc, &other])?;
    let other = set_keys(&other);
    Ok(Value::Array(make_set(
        acc.into_iter().filter(|v| !has(&other, v)).collect(),
    )))
}

fn setproduct(a: FuncArgs) -> R<Value> {
    if a.len() < 2 {
        return Err("at least two arguments are required".into());
    }
    let mut sets = Vec::with_capacity(a.len());
    let mut total: usize = 1;
    for i in 0..a.len() {
        let l = list_arg(&a, i)
            .map_err(|_| format!("argument {}: a set or a list is required", i + 1))?
            .clone();
        total = total.saturating_mul(l.len());
        sets.push(l);
    }
    check_count(total)?;
    let mut out: Vec<Vec<Value>> = vec![vec![]];
    for s in &sets {
        let mut next = Vec::with_capacity(out.len() * s.len());
        for prefix in &out {
            for v in s {
                let mut p = prefix.clone();
                p.push(v.clone());
                next.push(p);
            }
        }
        out = next;
    }
    Ok(Value::Array(out.into_iter().map(Value::Array).collect()))
}
