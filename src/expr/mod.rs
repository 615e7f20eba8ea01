//! `${ EXPR }` expressions with bake's HCL semantics, on hcl-rs's parser and
//! evaluator (`hcl::eval`). `resolve::interp` hands over every `${…}` that
//! is not a plain name (those keep the fast path); this module finds where
//! an interpolation ends, parses and evaluates it, runs user `function`s,
//! and turns evaluation errors into located messages.
//!
//! Limits (the input sets no recursion depth or work): an expression is at
//! most [`MAX_EXPR_BYTES`] long and nests at most [`MAX_NESTING`] brackets
//! and strings deep (hcl's parser and evaluator recurse per level); user
//! functions call each other at most [`MAX_CALL_DEPTH`] deep (recursion is
//! a located error, never a stack overflow).

pub mod funcs;

use std::cell::RefCell;
use std::str::FromStr;
use std::sync::Arc;

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Expression, Value};

use crate::diag::suggest;

/// Longest expression inside one `${…}` (16 KiB).
pub const MAX_EXPR_BYTES: usize = 16 << 10;
/// Deepest nesting of brackets, strings and templates in one expression.
pub const MAX_NESTING: usize = 32;
/// Deepest chain of user function calls.
pub const MAX_CALL_DEPTH: usize = 16;
/// Most user functions one run may declare.
pub const MAX_USER_FUNCS: usize = 128;

/// Where an interpolation starting at `start` (`${`) cannot end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// No closing `}`.
    Unterminated,
    /// Nested deeper than [`MAX_NESTING`] at this byte offset.
    TooDeep(usize),
}

/// Offset of the `}` closing the interpolation whose `${` is at `start`:
/// braces, brackets and parentheses are counted and quoted strings (with
/// their own `${…}`) skipped.
pub fn find_close(s: &str, start: usize) -> Result<usize, ScanError> {
    let b = s.as_bytes();
    // (in a string, open brackets) per level.
    let mut stack: Vec<(bool, usize)> = vec![(false, 0)];
    let mut nest = 1usize;
    let mut i = start + 2;
    while i < b.len() {
        let c = b[i];
        let Some(top) = stack.last_mut() else {
            break;
        };
        if top.0 {
            match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                    nest -= 1;
                }
                b'$' if b.get(i + 1) == Some(&b'$') => i += 1,
                b'$' if b.get(i + 1) == Some(&b'{') => {
                    stack.push((false, 0));
                    nest += 1;
                    i += 1;
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => {
                    stack.push((true, 0));
                    nest += 1;
                }
                b'{' | b'(' | b'[' => {
                    top.1 += 1;
                    nest += 1;
                }
                b'}' | b')' | b']' => {
                    if top.1 > 0 {
                        top.1 -= 1;
                        nest -= 1;
                    } else if c == b'}' {
                        stack.pop();
                        nest -= 1;
                        if stack.is_empty() {
                            return Ok(i);
                        }
                    }
                }
                _ => {}
            }
        }
        if nest > MAX_NESTING {
            return Err(ScanError::TooDeep(i));
        }
        i += 1;
    }
    Err(ScanError::Unterminated)
}

/// An evaluation error, located by byte offset and length inside the
/// expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub len: usize,
    pub code: &'static str,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl ExprError {
    fn new(code: &'static str, offset: usize, len: usize, message: String, label: &str) -> Self {
        ExprError {
            offset,
            len,
            code,
            message,
            label: label.to_string(),
            help: None,
        }
    }
}

/// Identifier-like tokens of an expression with their offsets (names a
/// context may need to declare): not those after `.` (attributes) or
/// before `(` (functions), nor keywords or numbers.
pub fn idents(text: &str) -> Vec<(&str, usize)> {
    let b = text.as_bytes();
    let mut out: Vec<(&str, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                i += 1;
            }
            // A trailing `-` belongs to an operator.
            let mut end = i;
            while end > start + 1 && b[end - 1] == b'-' {
                end -= 1;
            }
            i = end;
            let tok = &text[start..end];
            let after_dot = text[..start].trim_end().ends_with('.');
            let call = text[end..].trim_start().starts_with('(');
            let keyword = matches!(
                tok,
                "true" | "false" | "null" | "for" | "in" | "if" | "else" | "endif" | "endfor"
            );
            if !after_dot && !call && !keyword && !out.iter().any(|(t, _)| *t == tok) {
                out.push((tok, start));
            }
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Offset of the first whole-word occurrence of `word` in `text`.
fn find_word(text: &str, word: &str, call: bool) -> Option<usize> {
    let b = text.as_bytes();
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut from = 0;
    while let Some(k) = text[from..].find(word) {
        let at = from + k;
        let end = at + word.len();
        let before_ok = at == 0 || !is_id(b[at - 1]);
        let after_ok = end >= b.len() || !is_id(b[end]);
        if before_ok && after_ok && (!call || text[end..].trim_start().starts_with('(')) {
            return Some(at);
        }
        from = at + word.len().max(1);
    }
    None
}

/// A piece of a user function's `result` template.
#[derive(Debug)]
enum Part {
    Lit(String),
    Expr(Expression, String),
}

/// A user `function`, parsed.
#[derive(Debug)]
pub struct UserFn {
    name: String,
    params: Vec<String>,
    variadic: Option<String>,
    parts: Vec<Part>,
    /// `file:line:col` of its `result`, for errors raised inside it.
    at: String,
}

/// A user function as declared (before parsing).
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub params: Vec<String>,
    pub variadic: Option<String>,
    pub result: String,
    pub at: String,
}

/// An error in a user function's `result`, at a byte offset inside it.
#[derive(Debug)]
pub struct FunctionError {
    pub function: usize,
    pub error: ExprError,
}

/// What every expression of a run can call: bake's library and the user
/// functions, and the values user functions may read (variables).
#[derive(Debug)]
pub struct Globals {
    base: Context<'static>,
    users: Vec<UserFn>,
    /// Names a user function body may read besides its parameters.
    vars: Vec<(String, Value)>,
}

impl Default for Globals {
    fn default() -> Self {
        let mut base = Context::new();
        funcs::register(&mut base);
        Globals {
            base,
            users: Vec::new(),
            vars: Vec::new(),
        }
    }
}

impl Globals {
    /// The library plus user functions (each error is located in its
    /// function's `result`).
    pub fn new(specs: &[FunctionSpec]) -> (Globals, Vec<FunctionError>) {
        let mut g = Globals::default();
        let mut errors = Vec::new();
        for (k, f) in specs.iter().enumerate().take(MAX_USER_FUNCS) {
            let mut parts = Vec::new();
            match split_template(&f.result) {
                Ok(pieces) => {
                    for p in pieces {
                        match p {
                            Piece::Lit(l) => parts.push(Part::Lit(l)),
                            Piece::Expr(text, off) => match parse(text) {
                                Ok(e) => parts.push(Part::Expr(e, text.to_string())),
                                Err(mut e) => {
                                    e.offset += off;
                                    errors.push(FunctionError {
                                        function: k,
                                        error: e,
                                    });
                                }
                            },
                        }
                    }
                }
                Err(e) => errors.push(FunctionError {
                    function: k,
                    error: e,
                }),
            }
            let mut def = FuncDef::builder();
            for _ in &f.params {
                def = def.param(ParamType::Any);
            }
            if f.variadic.is_some() {
                def = def.variadic_param(ParamType::Any);
            }
            g.base
                .declare_func(f.name.as_str(), def.build(TRAMPOLINES[k]));
            g.users.push(UserFn {
                name: f.name.clone(),
                params: f.params.clone(),
                variadic: f.variadic.clone(),
                parts,
                at: f.at.clone(),
            });
        }
        (g, errors)
    }

    /// Values user function bodies may read (the run's variables).
    pub fn set_vars(&mut self, vars: Vec<(String, Value)>) {
        self.vars = vars;
    }

    /// Whether a function of this name can be called.
    fn has_func(&self, name: &str) -> bool {
        let probe = format!("{name}()");
        let Ok(e) = Expression::from_str(&probe) else {
            return false;
        };
        !matches!(
            e.evaluate(&self.base).map_err(|e| e.into_kind()),
            Err(hcl::eval::ErrorKind::UndefinedFunc(_))
        )
    }

    fn func_names(&self) -> Vec<String> {
        funcs::NAMES
            .iter()
            .map(|s| s.to_string())
            .chain(self.users.iter().map(|u| u.name.clone()))
            .filter(|n| self.has_func(n))
            .collect()
    }
}

/// A piece of a template string.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Lit(String),
    /// Expression text and the byte offset of its first byte in the string.
    Expr(&'a str, usize),
}

/// Cut a template (`$${` an escaped `${`) into literal text and
/// expressions.
pub fn split_template(s: &str) -> Result<Vec<Piece<'_>>, ExprError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let mut lit_start = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'$') && b.get(i + 2) == Some(&b'{') {
            lit.push_str(&s[lit_start..i]);
            lit.push_str("${");
            i += 3;
            lit_start = i;
        } else if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            lit.push_str(&s[lit_start..i]);
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            let close = find_close(s, i).map_err(|e| scan_error(e, i))?;
            out.push(Piece::Expr(&s[i + 2..close], i + 2));
            i = close + 1;
            lit_start = i;
        } else {
            i += 1;
        }
    }
    lit.push_str(&s[lit_start..]);
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// The error for a `${` at `at` that [`find_close`] refused.
pub fn scan_error(e: ScanError, at: usize) -> ExprError {
    match e {
        ScanError::Unterminated => ExprError::new(
            "mybake::resolve::bad-interpolation",
            at,
            2,
            "unterminated `${`".into(),
            "here",
        ),
        ScanError::TooDeep(k) => ExprError::new(
            "mybake::resolve::too-deep",
            k,
            1,
            format!("expression nested more than {MAX_NESTING} levels deep"),
            "too deep here",
        ),
    }
}

/// Parse one expression (the text between `${` and `}`).
pub fn parse(text: &str) -> Result<Expression, ExprError> {
    if text.len() > MAX_EXPR_BYTES {
        return Err(ExprError::new(
            "mybake::resolve::too-large",
            0,
            text.len(),
            format!("expression longer than {} KiB", MAX_EXPR_BYTES >> 10),
            "this expression",
        ));
    }
    let lead = text.len() - text.trim_start().len();
    let trimmed = text.trim();
    // A strip marker (`${~ x ~}`) is accepted as HCL does.
    let (trimmed, lead) = match trimmed.strip_prefix('~') {
        Some(r) => (r.trim_start(), lead + 1 + (r.len() - r.trim_start().len())),
        None => (trimmed, lead),
    };
    let trimmed = trimmed.strip_suffix('~').map_or(trimmed, str::trim_end);
    if trimmed.is_empty() {
        return Err(ExprError::new(
            "mybake::resolve::bad-expression",
            0,
            text.len(),
            "empty `${}`".into(),
            "an expression is expected here",
        ));
    }
    Expression::from_str(trimmed).map_err(|e| match e {
        hcl::Error::Parse(p) => {
            let off = lead + p.location().offset().min(trimmed.len());
            ExprError::new(
                "mybake::resolve::bad-expression",
                off,
                1,
                format!("invalid expression: {}", p.message()),
                "cannot be read from here",
            )
        }
        other => ExprError::new(
            "mybake::resolve::bad-expression",
            0,
            text.len(),
            format!("invalid expression: {other}"),
            "here",
        ),
    })
}

thread_local! {
    /// The globals of the evaluation under way on this thread (for the
    /// user-function trampolines) and the user-function call depth.
    static CURRENT: RefCell<(Option<Arc<Globals>>, usize)> = const { RefCell::new((None, 0)) };
}

/// Sets [`CURRENT`] for one evaluation and restores it after.
struct Enter {
    prev: Option<Option<Arc<Globals>>>,
}

impl Enter {
    fn new(g: &Arc<Globals>) -> Enter {
        let prev = CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            match &c.0 {
                Some(cur) if Arc::ptr_eq(cur, g) => None,
                _ => Some(c.0.replace(g.clone())),
            }
        });
        Enter { prev }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        if let Some(prev) = self.prev.take() {
            CURRENT.with(|c| c.borrow_mut().0 = prev);
        }
    }
}

/// Evaluate one expression. `lookup` gives a name's value (`None`: not
/// known here); `names` lists the known names for suggestions.
pub fn eval(
    text: &str,
    g: &Arc<Globals>,
    lookup: &dyn Fn(&str) -> Option<Value>,
    names: &dyn Fn() -> Vec<String>,
) -> Result<Value, ExprError> {
    let expr = parsed(text)?;
    // This thread's context of the last evaluation with these globals is
    // reused (a clone of every function definition per expression is most
    // of an evaluation's cost), unless a name it declared must now be
    // unknown.
    let values: Vec<(&str, Option<Value>)> = idents(text)
        .into_iter()
        .map(|(t, _)| (t, lookup(t)))
        .collect();
    let cache = acquire(g, values);
    let r = {
        let _enter = Enter::new(g);
        // `try`/`can` take their arguments unevaluated in HCL; hcl-rs
        // evaluates arguments first, so they are settled here before.
        if text.contains("try") || text.contains("can") {
            let mut e = (*expr).clone();
            settle_lazy(&mut e, &cache.ctx);
            e.evaluate(&cache.ctx)
        } else {
            expr.evaluate(&cache.ctx)
        }
        .map_err(|e| locate(e, text, g, names))
    };
    release(cache);
    r
}

/// Replaces each `try(...)`/`can(...)` call in `e` with its value, as
/// HCL's lazy functions give it: `can(x)` is whether `x` evaluates, `try(a,
/// b, ...)` the first argument that evaluates. A `try` whose arguments all
/// fail is left in place (it fails as before, only where it is evaluated:
/// not in the branch a conditional does not take). Calls inside a `for`
/// expression are left alone: their loop variables exist only inside it.
/// Depth is bounded by the parser's nesting limit ([`MAX_NESTING`]).
fn settle_lazy(e: &mut Expression, ctx: &hcl::eval::Context<'_>) {
    use hcl::expr::{Operation, TraversalOperator};
    match e {
        Expression::FuncCall(f) => {
            for a in &mut f.args {
                settle_lazy(a, ctx);
            }
            if !f.name.namespace.is_empty() || f.expand_final {
                return;
            }
            match f.name.name.as_str() {
                "can" if f.args.len() == 1 => {
                    *e = Expression::Bool(f.args[0].evaluate(ctx).is_ok());
                }
                "try" if !f.args.is_empty() => {
                    if let Some(v) = f.args.iter().find_map(|a| a.evaluate(ctx).ok()) {
                        *e = Expression::from(v);
                    }
                }
                _ => {}
            }
        }
        Expression::Array(items) => items.iter_mut().for_each(|a| settle_lazy(a, ctx)),
        Expression::Object(o) => o.values_mut().for_each(|v| settle_lazy(v, ctx)),
        Expression::Traversal(t) => {
            settle_lazy(&mut t.expr, ctx);
            for op in &mut t.operators {
                if let TraversalOperator::Index(i) = op {
                    settle_lazy(i, ctx);
                }
            }
        }
        Expression::Parenthesis(p) => settle_lazy(p, ctx),
        Expression::Conditional(c) => {
            settle_lazy(&mut c.cond_expr, ctx);
            settle_lazy(&mut c.true_expr, ctx);
            settle_lazy(&mut c.false_expr, ctx);
        }
        Expression::Operation(op) => match op.as_mut() {
            Operation::Unary(u) => settle_lazy(&mut u.expr, ctx),
            Operation::Binary(b) => {
                settle_lazy(&mut b.lhs_expr, ctx);
                settle_lazy(&mut b.rhs_expr, ctx);
            }
        },
        _ => {}
    }
}

/// A context with `values` declared: one of this thread's pool when it was
/// made from the same globals and declares none of the names that must
/// now be unknown (`None` values), else a fresh copy of the globals'.
fn acquire(g: &Arc<Globals>, values: Vec<(&str, Option<Value>)>) -> ContextCache {
    let pooled = CACHE.with(|c| c.borrow_mut().pop());
    let mut cache = match pooled {
        Some(c)
            if Arc::ptr_eq(&c.globals, g)
                && values
                    .iter()
                    .all(|(t, v)| v.is_some() || !c.declared.iter().any(|d| d == t)) =>
        {
            c
        }
        _ => ContextCache {
            globals: g.clone(),
            ctx: g.base.clone(),
            declared: Vec::new(),
        },
    };
    for (tok, v) in values {
        if let Some(v) = v {
            cache.ctx.declare_var(tok, v);
            if !cache.declared.iter().any(|d| d == tok) {
                cache.declared.push(tok.to_string());
            }
        }
    }
    cache
}

/// Give a context back to this thread's pool (one grown too large, or
/// past the pool's size, is dropped).
fn release(cache: ContextCache) {
    if cache.declared.len() <= CACHE_MAX_NAMES {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() < POOL_MAX {
                c.push(cache);
            }
        });
    }
}

/// Most contexts a thread keeps for reuse (one per user-function depth in
/// use, and the expression's own).
const POOL_MAX: usize = MAX_CALL_DEPTH + 2;

/// [`parse`], remembered per thread: the same expression text is met once
/// per target that inherits or repeats it.
fn parsed(text: &str) -> Result<std::rc::Rc<Expression>, ExprError> {
    if let Some(e) = PARSED.with(|p| p.borrow().get(text).cloned()) {
        return Ok(e);
    }
    let e = std::rc::Rc::new(parse(text)?);
    PARSED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= PARSED_MAX {
            p.clear();
        }
        p.insert(text.to_string(), e.clone());
    });
    Ok(e)
}

/// Most parsed expressions a thread remembers.
const PARSED_MAX: usize = 4096;

thread_local! {
    static PARSED: RefCell<std::collections::HashMap<String, std::rc::Rc<Expression>>> =
        RefCell::new(std::collections::HashMap::new());
}

/// A reusable evaluation context (see [`eval`]).
struct ContextCache {
    globals: Arc<Globals>,
    ctx: Context<'static>,
    /// The variables declared in `ctx`.
    declared: Vec<String>,
}

/// Most names a cached context keeps declared.
const CACHE_MAX_NAMES: usize = 256;

thread_local! {
    static CACHE: RefCell<Vec<ContextCache>> = const { RefCell::new(Vec::new()) };
}

/// Turn an evaluation error into a located one.
fn locate(
    e: hcl::eval::Error,
    text: &str,
    g: &Globals,
    names: &dyn Fn() -> Vec<String>,
) -> ExprError {
    use hcl::eval::ErrorKind as K;
    let whole = |msg: String| {
        let lead = text.len() - text.trim_start().len();
        ExprError::new(
            "mybake::resolve::eval",
            lead,
            text.trim().len().max(1),
            msg,
            "in this expression",
        )
    };
    let expr_text = e.expr().map(|x| x.to_string());
    match e.kind() {
        K::UndefinedVar(id) => {
            let name = id.as_str();
            let at = find_word(text, name, false).unwrap_or(0);
            let mut err = ExprError::new(
                "mybake::resolve::unknown-variable",
                at,
                name.len(),
                format!("unknown name `{name}`"),
                "not a variable, matrix axis, built-in or function parameter",
            );
            let all = names();
            err.help = suggest(name, all.iter().map(String::as_str)).or_else(|| {
                Some(format!(
                    "declare it with `variable \"{name}\" default=\"…\"`"
                ))
            });
            err
        }
        K::UndefinedFunc(f) => {
            let name = f.to_string();
            let at = find_word(text, &name, true).unwrap_or(0);
            let mut err = ExprError::new(
                "mybake::resolve::unknown-function",
                at,
                name.len(),
                format!("unknown function `{name}`"),
                "no function of this name",
            );
            let all = g.func_names();
            err.help = suggest(&name, all.iter().map(String::as_str)).or_else(|| {
                Some(format!(
                    "declare it with `function \"{name}\" {{ params …; result \"${{…}}\" }}`"
                ))
            });
            err
        }
        K::FuncCall(f, msg) => {
            let name = f.to_string();
            match find_word(text, &name, true) {
                Some(at) => ExprError::new(
                    "mybake::resolve::eval",
                    at,
                    name.len(),
                    format!("function `{name}`: {msg}"),
                    "in this call",
                ),
                None => whole(format!("function `{name}`: {msg}")),
            }
        }
        kind => {
            let msg = match &expr_text {
                Some(x) => format!("{kind} (in `{x}`)"),
                None => kind.to_string(),
            };
            match expr_text
                .as_deref()
                .and_then(|x| text.find(x).map(|at| (at, x.len())))
            {
                Some((at, len)) => ExprError::new("mybake::resolve::eval", at, len, msg, "here"),
                None => whole(msg),
            }
        }
    }
}

/// Text form of a scalar value in a longer string (`None`: not a scalar).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Short name of a value's type (for messages).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Call user function `k` (from its trampoline).
fn call_user(k: usize, args: FuncArgs) -> Result<Value, String> {
    let (g, depth) = CURRENT.with(|c| {
        let c = c.borrow();
        (c.0.clone(), c.1)
    });
    let g = g.ok_or("user function called outside an evaluation")?;
    let Some(f) = g.users.get(k) else {
        return Err("unknown user function".into());
    };
    if depth >= MAX_CALL_DEPTH {
        return Err(format!(
            "`{}` calls functions more than {MAX_CALL_DEPTH} deep (does it call itself?)",
            f.name
        ));
    }
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().1 -= 1);
        }
    }
    CURRENT.with(|c| c.borrow_mut().1 += 1);
    let _depth = Depth;
    let args = args.into_values();
    let mut it = args.into_iter();
    let mut values: Vec<(&str, Option<Value>)> = Vec::new();
    for p in &f.params {
        values.push((p.as_str(), Some(it.next().unwrap_or(Value::Null))));
    }
    if let Some(v) = &f.variadic {
        values.push((v.as_str(), Some(Value::Array(it.collect()))));
    }
    let bound = |n: &str| f.params.iter().any(|p| p == n) || f.variadic.as_deref() == Some(n);
    let in_fn = |msg: String| format!("in function `{}` ({}): {msg}", f.name, f.at);
    for part in &f.parts {
        if let Part::Expr(_, text) = part {
            for (tok, _) in idents(text) {
                if bound(tok) || values.iter().any(|(t, _)| *t == tok) {
                    continue;
                }
                let v = g
                    .vars
                    .iter()
                    .find(|(n, _)| n == tok)
                    .map(|(_, v)| v.clone());
                values.push((tok, v));
            }
        }
    }
    let cache = acquire(&g, values);
    let r = user_body(f, &g, &cache.ctx, in_fn);
    release(cache);
    r
}

/// Evaluate user function `f`'s body in `ctx`.
fn user_body(
    f: &UserFn,
    g: &Globals,
    ctx: &Context<'static>,
    in_fn: impl Fn(String) -> String,
) -> Result<Value, String> {
    let eval = |e: &Expression| {
        e.evaluate(ctx).map_err(|e| match e.kind() {
            // An inner user function's message already says where it is.
            hcl::eval::ErrorKind::FuncCall(name, msg)
                if g.users.iter().any(|u| u.name == name.to_string()) =>
            {
                msg.clone()
            }
            _ => in_fn(e.to_string()),
        })
    };
    if let [Part::Expr(e, _)] = &f.parts[..] {
        let v = eval(e)?;
        return within_cap(f, v);
    }
    let mut out = String::new();
    for part in &f.parts {
        match part {
            Part::Lit(l) => out.push_str(l),
            Part::Expr(e, text) => {
                let v = eval(e)?;
                match scalar_text(&v) {
                    Some(t) => out.push_str(&t),
                    None => {
                        return Err(in_fn(format!(
                            "`{}` is {} and cannot be part of a longer string",
                            text.trim(),
                            type_name(&v)
                        )))
                    }
                }
            }
        }
    }
    within_cap(f, Value::String(out))
}

/// A user function's result, refused past [`MAX_RESULT_BYTES`] (a
/// function doubling its argument, nested, would otherwise grow
/// exponentially before any interpolation cap is checked).
fn within_cap(f: &UserFn, v: Value) -> Result<Value, String> {
    let n = match &v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len().saturating_mul(16),
        Value::Object(o) => o.len().saturating_mul(16),
        _ => 0,
    };
    if n > MAX_RESULT_BYTES {
        return Err(format!(
            "`{}` gives a value larger than {} MiB",
            f.name,
            MAX_RESULT_BYTES >> 20
        ));
    }
    Ok(v)
}

/// Largest value one user function call may give (1 MiB, the cap of an
/// interpolated value).
pub const MAX_RESULT_BYTES: usize = 1 << 20;

/// One plain function per user-function slot (hcl-rs functions are `fn`
/// pointers): slot `k` calls user function `k` of the current globals.
macro_rules! trampolines {
    ($($k:literal)*) => {
        const TRAMPOLINES: [hcl::eval::Func; MAX_USER_FUNCS] = [$({
            fn t(args: FuncArgs) -> Result<Value, String> {
                call_user($k, args)
            }
            t
        }),*];
    };
}

trampolines!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
    64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95
    96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120
    121 122 123 124 125 126 127
);

#[cfg(test)]
mod tests;
