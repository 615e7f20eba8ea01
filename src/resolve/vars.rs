//! Variables: typed values with precedence `--var` > environment > default.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use std::sync::Arc;

use super::interp::{self, Scope, Val};
use crate::diag::{suggest, Diag, Diagnostics};
use crate::expr::Globals;
use crate::load::{DefaultValue, VariableDecl};
use crate::source::{Sources, Sp, Span};
use crate::FastMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Bool,
    Int,
    List,
    Map,
}

impl VarType {
    fn parse(s: &str) -> Option<VarType> {
        Some(match s {
            "string" => VarType::String,
            "bool" => VarType::Bool,
            "int" => VarType::Int,
            "list" => VarType::List,
            "map" => VarType::Map,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Bool => "bool",
            VarType::Int => "int",
            VarType::List => "list",
            VarType::Map => "map",
        }
    }
}

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    Default(Span),
    Unset,
}

impl Origin {
    pub fn describe(&self) -> &'static str {
        match self {
            Origin::Flag => "--var",
            Origin::Env => "environment",
            Origin::Default(_) => "default",
            Origin::Unset => "unset",
        }
    }
}

/// A declared variable after merging files.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: Sp<String>,
    pub ty: VarType,
    pub description: Option<String>,
    pub origin: Origin,
    /// `None` when unset (an error only where used).
    pub value: Option<Val>,
    /// Its value was invalid (already reported; uses stay quiet).
    pub failed: bool,
    pub default: Option<Sp<DefaultValue>>,
}

/// All variables, in declaration order.
#[derive(Debug, Default)]
pub struct Variables {
    pub list: Vec<Variable>,
    index: FastMap<String, usize>,
}

impl Variables {
    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.index.get(name).map(|&i| &self.list[i])
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|v| v.name.v.as_str())
    }
}

/// Merge declarations (later attributes replace earlier ones) and evaluate.
pub fn evaluate(
    decls: Vec<&VariableDecl>,
    flags: &[(String, String)],
    env: &HashMap<String, String>,
    sources: &Sources,
    diags: &mut Diagnostics,
    budget: &interp::Budget,
    globals: &Arc<Globals>,
) -> Variables {
    // Merge by name, attribute by attribute.
    let mut merged: Vec<VariableDecl> = Vec::new();
    let mut index: FastMap<String, usize> = FastMap::default();
    for d in decls {
        match index.get(&d.name.v) {
            Some(&i) => {
                let m = &mut merged[i];
                if d.default.is_some() {
                    m.default = d.default.clone();
                }
                if d.ty.is_some() {
                    m.ty = d.ty.clone();
                }
                if d.description.is_some() {
                    m.description = d.description.clone();
                }
                if !d.validations.is_empty() {
                    m.validations = d.validations.clone();
                }
            }
            None => {
                index.insert(d.name.v.clone(), merged.len());
                merged.push(d.clone());
            }
        }
    }
    for m in &merged {
        if !super::valid_name(&m.name.v) {
            diags.push(super::bad_name("variable", &m.name.v, m.name.span, None));
        }
    }
    for (name, _) in flags {
        if !index.contains_key(name) {
            diags.push(
                Diag::new(
                    "mybake::resolve::unknown-variable",
                    format!("--var {name}: no variable `{name}` is declared"),
                )
                .help_opt(
                    suggest(name, merged.iter().map(|m| m.name.v.as_str()))
                        .or_else(|| Some(format!("declare it with `variable \"{name}\"`"))),
                ),
            );
        }
    }
    let types: Vec<VarType> = merged
        .iter()
        .map(|m| match &m.ty {
            None => VarType::String,
            Some(t) => VarType::parse(&t.v).unwrap_or_else(|| {
                diags.push(
                    Diag::new(
                        "mybake::resolve::bad-type",
                        format!("unknown variable type `{}`", t.v),
                    )
                    .label(t.span, "unknown type")
                    .help("use one of: string, bool, int, list, map"),
                );
                VarType::String
            }),
        })
        .collect();

    // Values given as text (flag/env) are literal; defaults may interpolate
    // other variables, evaluated on demand with cycle detection.
    let ev = Evaluator {
        decls: &merged,
        types: &types,
        index: &index,
        flags,
        env,
        sources,
        memo: RefCell::new(vec![None; merged.len()]),
        stack: RefCell::new(Vec::new()),
        on_stack: RefCell::new(vec![false; merged.len()]),
        budget,
        globals,
    };
    let mut vars = Variables::default();
    for i in 0..merged.len() {
        let (origin, value, failed) = match ev.eval(i) {
            Ok((o, v)) => (o, v, false),
            Err(d) => {
                diags.push(d);
                (Origin::Unset, None, true)
            }
        };
        let m = &merged[i];
        vars.index.insert(m.name.v.clone(), i);
        vars.list.push(Variable {
            name: m.name.clone(),
            ty: types[i],
            description: m.description.as_ref().map(|d| d.v.clone()),
            origin,
            value,
            failed,
            default: m.default.clone(),
        });
    }
    for (i, m) in merged.iter().enumerate() {
        if !vars.list[i].failed {
            validate(m, &vars.list[i], &ev, diags);
        }
    }
    vars
}

/// Check a variable's `validation` conditions (each false one is an
/// error showing its message and where the value came from).
fn validate(m: &VariableDecl, var: &Variable, ev: &Evaluator<'_>, diags: &mut Diagnostics) {
    for v in &m.validations {
        let result = match interp::interpolate(&v.condition, ev, ev.sources, false) {
            Ok(r) => r,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let ok = match &result {
            Val::Text(t) if t == "true" => true,
            Val::Text(t) if t == "false" => false,
            other => {
                diags.push(
                    Diag::new(
                        "mybake::resolve::bad-validation",
                        format!(
                            "validation of variable `{}` must be true or false, found {:?}",
                            m.name.v,
                            other.to_text()
                        ),
                    )
                    .label(v.condition.span, "not a condition"),
                );
                continue;
            }
        };
        if ok {
            continue;
        }
        let message = v
            .message
            .as_ref()
            .map_or_else(|| "validation failed".to_string(), |s| s.v.clone());
        let value = var
            .value
            .as_ref()
            .map_or_else(|| "null".to_string(), |v| format!("{:?}", v.to_text()));
        let mut d = Diag::new(
            "mybake::resolve::validation",
            format!("variable `{}`: {message}", m.name.v),
        )
        .label(v.condition.span, "this validation is false");
        d = match &var.origin {
            Origin::Default(span) => {
                d.label(*span, format!("the value {value} comes from this default"))
            }
            Origin::Flag => d.help(format!("the value {value} comes from --var {}", m.name.v)),
            Origin::Env => d.help(format!(
                "the value {value} comes from the environment variable {}",
                m.name.v
            )),
            Origin::Unset => d.label(m.name.span, "no value is set (null)"),
        };
        diags.push(d);
    }
}

type Evaluated = (Origin, Option<Val>);

struct Evaluator<'a> {
    decls: &'a [VariableDecl],
    types: &'a [VarType],
    index: &'a FastMap<String, usize>,
    flags: &'a [(String, String)],
    env: &'a HashMap<String, String>,
    sources: &'a Sources,
    memo: RefCell<Vec<Option<Result<Evaluated, Diag>>>>,
    stack: RefCell<Vec<usize>>,
    /// Membership of `stack`.
    on_stack: RefCell<Vec<bool>>,
    budget: &'a interp::Budget,
    globals: &'a Arc<Globals>,
}

impl Evaluator<'_> {
    /// Variable `i`'s value, evaluated once. The variables its default
    /// refers to are evaluated first ([`Self::evaluate_refs`], without
    /// recursion), so the lookups of [`Self::compute`] find them done or on
    /// the stack (a cycle).
    fn eval(&self, i: usize) -> Result<Evaluated, Diag> {
        if let Some(r) = &self.memo.borrow()[i] {
            return r.clone();
        }
        if self.on_stack.borrow()[i] {
            let d = &self.decls[i];
            let stack = self.stack.borrow();
            let names: Vec<&str> = stack
                .iter()
                .chain(std::iter::once(&i))
                .map(|&j| self.decls[j].name.v.as_str())
                .collect();
            return Err(Diag::new(
                "mybake::resolve::variable-cycle",
                format!(
                    "variables refer to each other in a cycle: {}",
                    crate::diag::elide_path(&names)
                ),
            )
            .label(d.name.span, "part of the cycle"));
        }
        self.push(i);
        self.evaluate_refs(i);
        let r = self.compute(i);
        self.pop();
        self.memo.borrow_mut()[i] = Some(r.clone());
        r
    }

    fn push(&self, i: usize) {
        self.stack.borrow_mut().push(i);
        self.on_stack.borrow_mut()[i] = true;
    }

    fn pop(&self) {
        if let Some(j) = self.stack.borrow_mut().pop() {
            self.on_stack.borrow_mut()[j] = false;
        }
    }

    /// The known variables `i`'s default looks up, in order (`None`: an
    /// unknown name, where interpolation stops).
    fn refs(&self, i: usize) -> Vec<Option<usize>> {
        let d = &self.decls[i];
        let name = &d.name.v;
        if self.flags.iter().any(|(n, _)| n == name) || self.env.contains_key(name) {
            return Vec::new();
        }
        match d.default.as_ref().map(|d| &d.v) {
            Some(DefaultValue::Str(s)) => interp::references(s)
                .into_iter()
                .filter_map(|(n, in_expr)| match self.index.get(n) {
                    Some(&j) => Some(Some(j)),
                    // A token of an expression may be a `for` variable.
                    None if in_expr => None,
                    None => Some(None),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Evaluate, depth first and without recursion, what `root`'s default
    /// refers to, in the order and as far as interpolating it would look
    /// things up (up to the first failure), so that [`Self::compute`] of
    /// `root` meets only evaluated variables or a cycle. `root` is on the
    /// stack.
    fn evaluate_refs(&self, root: usize) {
        let mut frames: Vec<(usize, Vec<Option<usize>>, usize)> = vec![(root, self.refs(root), 0)];
        while let Some((_, refs, k)) = frames.last_mut() {
            let next = refs.get(*k).copied();
            *k += 1;
            let child = match next {
                // The end, or an unknown name: interpolation stops there.
                None | Some(None) => None,
                Some(Some(j)) => match &self.memo.borrow()[j] {
                    Some(Ok((_, Some(_)))) => continue,
                    // Failed or unset: interpolation stops there.
                    Some(_) => None,
                    // A cycle: `compute` reports it.
                    None if self.on_stack.borrow()[j] => None,
                    None => Some(j),
                },
            };
            match child {
                Some(j) => {
                    self.push(j);
                    frames.push((j, self.refs(j), 0));
                }
                None => {
                    let Some((j, _, _)) = frames.pop() else {
                        break;
                    };
                    if frames.is_empty() {
                        break;
                    }
                    let r = self.compute(j);
                    self.pop();
                    self.memo.borrow_mut()[j] = Some(r);
                }
            }
        }
    }

    fn compute(&self, i: usize) -> Result<Evaluated, Diag> {
        let d = &self.decls[i];
        let ty = self.types[i];
        let name = &d.name.v;
        if let Some((_, v)) = self.flags.iter().rev().find(|(n, _)| n == name) {
            return parse_text(v, ty)
                .map(|v| (Origin::Flag, Some(v)))
                .map_err(|why| bad_value(d, ty, &format!("--var {name}={v}"), why));
        }
        if let Some(v) = self.env.get(name) {
            return parse_text(v, ty)
                .map(|v| (Origin::Env, Some(v)))
                .map_err(|why| bad_value(d, ty, &format!("environment variable {name}={v}"), why));
        }
        let Some(def) = &d.default else {
            return Ok((Origin::Unset, None));
        };
        let origin = Origin::Default(def.span);
        let wrong = |found: &str| {
            Diag::new(
                "mybake::resolve::bad-value",
                format!(
                    "variable `{name}` is of type {} but its default is {found}",
                    ty.name()
                ),
            )
            .label(def.span, format!("not a {}", ty.name()))
            .label(d.name.span, "declared here")
        };
        let v = match (&def.v, ty) {
            (DefaultValue::Bool(b), VarType::Bool) => Val::Text(b.to_string()),
            (DefaultValue::Int(n), VarType::Int) => Val::Text(n.to_string()),
            (DefaultValue::Int(n), VarType::String) => Val::Text(n.to_string()),
            (DefaultValue::Bool(_), _) => return Err(wrong("a boolean")),
            (DefaultValue::Int(_), _) => return Err(wrong("an integer")),
            (DefaultValue::Str(s), _) => {
                let lit = Sp::new(s.clone(), def.span);
                let typed = !interp::is_plain(s);
                let text = match interp::interpolate(&lit, self, self.sources, typed)? {
                    Val::Null => return Ok((origin, None)),
                    Val::List(l) if ty == VarType::List => return Ok((origin, Some(Val::List(l)))),
                    Val::Map(m) if ty == VarType::Map => return Ok((origin, Some(Val::Map(m)))),
                    v => v.into_text(),
                };
                parse_text(&text, ty).map_err(|why| {
                    Diag::new(
                        "mybake::resolve::bad-value",
                        format!("variable `{name}`: default {text:?} {why}"),
                    )
                    .label(def.span, format!("not a {}", ty.name()))
                    .label(d.name.span, "declared here")
                })?
            }
        };
        Ok((origin, Some(v)))
    }
}

impl Scope for Evaluator<'_> {
    fn lookup(&self, name: &str, at: Span) -> Result<Option<Cow<'_, Val>>, Diag> {
        let Some(&j) = self.index.get(name) else {
            return Ok(None);
        };
        let _ = at;
        match self.eval(j)? {
            (_, Some(v)) => Ok(Some(Cow::Owned(v))),
            (_, None) => Ok(Some(Cow::Owned(Val::Null))),
        }
    }
    fn expr_value(&self, name: &str) -> Option<hcl::Value> {
        let &j = self.index.get(name)?;
        match self.eval(j).ok()? {
            (_, Some(v)) => Some(typed_hcl(&v, self.types[j])),
            (_, None) => Some(hcl::Value::Null),
        }
    }
    fn globals(&self) -> Option<&Arc<Globals>> {
        Some(self.globals)
    }
    fn names(&self) -> Vec<String> {
        self.decls.iter().map(|d| d.name.v.clone()).collect()
    }
    fn budget(&self) -> Option<&interp::Budget> {
        Some(self.budget)
    }
}

pub fn unset(name: &Sp<String>, at: Span) -> Diag {
    Diag::new(
        "mybake::resolve::unset-variable",
        format!("variable `{}` has no value", name.v),
    )
    .label(at, "used here")
    .label(name.span, "declared without a default")
    .help(format!(
        "give it a default, set the environment variable {0}, or pass --var {0}=VALUE",
        name.v
    ))
}

fn bad_value(d: &VariableDecl, ty: VarType, source: &str, why: String) -> Diag {
    Diag::new(
        "mybake::resolve::bad-value",
        format!("variable `{}` ({}): {source} {why}", d.name.v, ty.name()),
    )
    .label(d.name.span, "declared here")
}

/// Parse text (from a flag, the environment or a default) as `ty`.
pub fn parse_text(s: &str, ty: VarType) -> Result<Val, String> {
    match ty {
        VarType::String => Ok(Val::Text(s.to_string())),
        VarType::Bool => match s.trim() {
            "true" | "1" => Ok(Val::Text("true".into())),
            "false" | "0" => Ok(Val::Text("false".into())),
            _ => Err("is not a boolean (true, false, 1, 0)".into()),
        },
        VarType::Int => s
            .trim()
            .parse::<i64>()
            .map(|n| Val::Text(n.to_string()))
            .map_err(|_| "is not an integer".into()),
        VarType::List => Ok(Val::List(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect(),
        )),
        VarType::Map => {
            let mut out: Vec<(String, String)> = Vec::new();
            for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                let Some((k, v)) = item.split_once('=') else {
                    return Err(format!("is not a map (`key=value,…`): `{item}` has no `=`"));
                };
                let k = k.trim().to_string();
                out.retain(|(x, _)| *x != k);
                out.push((k, v.trim().to_string()));
            }
            Ok(Val::Map(out))
        }
    }
}

/// A variable's value as an expression sees it: a bool or int variable
/// as a bool or number.
pub fn typed_hcl(v: &Val, ty: VarType) -> hcl::Value {
    match (v, ty) {
        (Val::Text(t), VarType::Bool) => hcl::Value::Bool(t == "true"),
        (Val::Text(t), VarType::Int) => match t.parse::<i64>() {
            Ok(n) => hcl::Value::from(n),
            Err(_) => hcl::Value::String(t.clone()),
        },
        (v, _) => v.to_hcl(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::decode_file;

    fn eval(text: &str, flags: &[(&str, &str)], env: &[(&str, &str)]) -> (Variables, Diagnostics) {
        let mut src = Sources::default();
        let f = src.add("t.kdl".into(), "/t.kdl".into(), text.into());
        let mut d = Diagnostics::default();
        let decls = decode_file(f, "t.kdl", text, &mut d);
        assert!(d.is_empty(), "{d:?}");
        let flags: Vec<_> = flags
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let env: HashMap<_, _> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let budget = interp::Budget::default();
        let v = evaluate(
            decls.variables.iter().collect(),
            &flags,
            &env,
            &src,
            &mut d,
            &budget,
            &Arc::new(Globals::default()),
        );
        (v, d)
    }

    #[test]
    fn precedence_flag_env_default() {
        let kdl = "variable \"TAG\" default=\"dev\"\n";
        assert_eq!(
            eval(kdl, &[], &[]).0.get("TAG").unwrap().value,
            Some(Val::Text("dev".into()))
        );
        assert_eq!(
            eval(kdl, &[], &[("TAG", "env")])
                .0
                .get("TAG")
                .unwrap()
                .value,
            Some(Val::Text("env".into()))
        );
        let (v, _) = eval(kdl, &[("TAG", "flag")], &[("TAG", "env")]);
        assert_eq!(v.get("TAG").unwrap().value, Some(Val::Text("flag".into())));
        assert_eq!(v.get("TAG").unwrap().origin, Origin::Flag);
    }

    #[test]
    fn typed_values() {
        let kdl = "variable \"B\" type=\"bool\" default=false\nvariable \"N\" type=\"int\" default=4\nvariable \"L\" type=\"list\" default=\"a, b,\"\n";
        let (v, d) = eval(kdl, &[], &[]);
        assert!(d.is_empty());
        assert_eq!(
            v.get("L").unwrap().value,
            Some(Val::List(vec!["a".into(), "b".into()]))
        );
        let (_, d) = eval(kdl, &[("N", "four")], &[]);
        assert!(
            d.items[0]
                .message
                .contains("--var N=four is not an integer"),
            "{d:?}"
        );
        let (_, d) = eval(kdl, &[], &[("B", "yes")]);
        assert!(
            d.items[0].message.contains("environment variable B=yes"),
            "{d:?}"
        );
    }

    #[test]
    fn defaults_interpolate_and_cycles_are_errors() {
        let (v, d) = eval(
            "variable \"R\" default=\"reg\"\nvariable \"I\" default=\"${R}/x\"\n",
            &[],
            &[],
        );
        assert!(d.is_empty());
        assert_eq!(v.get("I").unwrap().value, Some(Val::Text("reg/x".into())));
        let (_, d) = eval(
            "variable \"A\" default=\"${B}\"\nvariable \"B\" default=\"${A}\"\n",
            &[],
            &[],
        );
        assert!(d.items.iter().any(|d| d.message.contains("cycle")), "{d:?}");
    }

    #[test]
    fn unknown_flag_and_wrong_default_type() {
        let (_, d) = eval("variable \"TAG\" default=\"x\"\n", &[("TAH", "1")], &[]);
        assert_eq!(d.items[0].help.as_deref(), Some("did you mean `TAG`?"));
        let (_, d) = eval("variable \"N\" type=\"int\" default=true\n", &[], &[]);
        assert!(d.items[0].message.contains("default is a boolean"));
    }
}
