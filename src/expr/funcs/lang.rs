//! HCL's language extensions bake registers: try, can (hcl `ext/tryfunc`)
//! and convert (hcl `ext/typeexpr`).
//!
//! In HCL these receive their arguments unevaluated; hcl-rs evaluates every
//! argument before the call. So `try` returns its first argument and `can`
//! returns true, which is right whenever the arguments evaluate; when one
//! fails, the call fails with that argument's error instead of falling back
//! (a located error, never a wrong value). `convert` takes a type
//! expression (`list(string)`), which hcl-rs cannot evaluate, and is
//! always an error.

use hcl::eval::FuncDef;
use hcl::Value;

use super::{fixed, unsupported, variadic};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        (
            "try",
            variadic(0, |a| {
                a.first()
                    .cloned()
                    .ok_or_else(|| "at least one argument is required".to_string())
            }),
        ),
        ("can", fixed(1, |_| Ok(Value::Bool(true)))),
        (
            "convert",
            fixed(2, |_| {
                Err(unsupported(
                    "convert",
                    "its second argument is a type expression, which mybake does not evaluate",
                ))
            }),
        ),
    ]);
}
