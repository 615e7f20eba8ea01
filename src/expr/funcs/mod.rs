//! bake's function library (minimal stand-in: engineer funcs14 provides the
//! full go-cty set as buildx registers it; this registers only what the
//! expression tests use).

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

/// Declare the library's functions in `ctx`.
pub fn register(ctx: &mut Context<'_>) {
    ctx.declare_func(
        "upper",
        FuncDef::builder().param(ParamType::String).build(upper),
    );
    ctx.declare_func(
        "lower",
        FuncDef::builder().param(ParamType::String).build(lower),
    );
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .param(ParamType::String)
            .variadic_param(ParamType::Array(Box::new(ParamType::String)))
            .build(join),
    );
    ctx.declare_func(
        "split",
        FuncDef::builder()
            .params([ParamType::String, ParamType::String])
            .build(split),
    );
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(text(&args[0]).to_uppercase()))
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(text(&args[0]).to_lowercase()))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let sep = text(&args[0]);
    let mut parts = Vec::new();
    for list in args.variadic_args() {
        if let Value::Array(items) = list {
            parts.extend(items.iter().map(text));
        }
    }
    Ok(Value::String(parts.join(&sep)))
}

fn split(args: FuncArgs) -> Result<Value, String> {
    let sep = text(&args[0]);
    let s = text(&args[1]);
    if sep.is_empty() {
        return Err("separator must not be empty".into());
    }
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}
